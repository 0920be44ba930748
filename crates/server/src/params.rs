//! Request knobs every API shares, resolved as the spec's §2 says: thinking
//! mode from switches, effort and model alias; sampling (fixed in thinking
//! modes, like DeepSeek's hosted API); the output limit; stop strings.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use text::render::Thinking;

use crate::error::ApiError;

/// The thinking inputs of a request, as sent.
#[derive(Default)]
pub struct ThinkingInputs<'a> {
    pub model: &'a str,
    /// `thinking`, present (even `null`) or absent.
    pub thinking: Option<&'a Value>,
    pub think: Option<bool>,
    /// Effort fields in the order they apply (`null` ones as `None`).
    pub efforts: Vec<Option<&'a str>>,
}

/// Resolution algorithm of spec §2.3 (Think Max gating is the renderer's).
pub fn resolve_thinking(inputs: &ThinkingInputs) -> Result<Thinking, ApiError> {
    let mut enabled = true;
    let mut explicit = false;
    let mut max = false;
    let mut none = false;
    if let Some(t) = inputs.thinking {
        explicit = true;
        match t {
            Value::Bool(b) => enabled = *b,
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("enabled") => enabled = true,
                Some("disabled") => enabled = false,
                _ => {}
            },
            _ => {}
        }
    }
    if let Some(b) = inputs.think {
        explicit = true;
        enabled = b;
    }
    for effort in inputs.efforts.iter().flatten() {
        (max, none) = match *effort {
            "max" => (true, false),
            "xhigh" | "high" | "medium" | "low" | "minimal" => (false, false),
            "none" => (false, true),
            _ => return Err(ApiError::invalid_json()),
        };
    }
    if !explicit {
        match inputs.model {
            "deepseek-chat" => enabled = false,
            "deepseek-reasoner" => enabled = true,
            _ => {}
        }
    }
    Ok(if !enabled || none {
        Thinking::Off
    } else if max {
        Thinking::Max
    } else {
        Thinking::High
    })
}

/// The client's sampling values (used only with thinking off).
#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<f64>,
    pub min_p: Option<f64>,
    pub seed: Option<f64>,
}

impl Sampling {
    /// The engine's sampler settings under spec §2.4: thinking modes use
    /// ds4's fixed values; otherwise out-of-range values fall back as the
    /// engine's rules say rather than failing the request.
    pub fn resolve(&self, thinking: Thinking) -> engine::SamplerConfig {
        let seed = match self.seed {
            Some(s) if s >= 1.0 => s as u64,
            _ => crate::ids::random_seed(),
        };
        if thinking != Thinking::Off {
            return engine::SamplerConfig::thinking(seed);
        }
        let d = engine::SamplerConfig::default();
        let top_p = self.top_p.map_or(
            d.top_p,
            |p| {
                if p > 0.0 && p <= 1.0 {
                    p as f32
                } else {
                    1.0
                }
            },
        );
        engine::SamplerConfig {
            temperature: self
                .temperature
                .map_or(d.temperature, |t| t.max(0.0) as f32),
            top_k: self.top_k.map_or(0, |k| k.clamp(0.0, 1024.0) as usize),
            top_p,
            min_p: self.min_p.map_or(d.min_p, |m| m.clamp(0.0, 1.0) as f32),
            seed,
        }
    }
}

/// An integer request field: truncated toward zero, negatives as 0.
pub fn count(v: Option<f64>) -> Option<usize> {
    v.map(|n| n.clamp(0.0, i32::MAX as f64) as usize)
}

/// `stop` / `stop_sequences`: a string or an array whose non-string
/// elements are skipped; empty strings dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stops(pub Vec<String>);

impl<'de> Deserialize<'de> for Stops {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = match Value::deserialize(d)? {
            Value::Null => Vec::new(),
            Value::String(s) => vec![s],
            Value::Array(a) => a
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => {
                return Err(serde::de::Error::custom(
                    "stop must be a string or an array",
                ))
            }
        };
        Ok(Stops(list.into_iter().filter(|s| !s.is_empty()).collect()))
    }
}

/// Deserializes a field that counts as given even when `null` (`thinking`).
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mode(
        model: &str,
        thinking: Option<Value>,
        think: Option<bool>,
        effort: &[Option<&str>],
    ) -> Thinking {
        resolve_thinking(&ThinkingInputs {
            model,
            thinking: thinking.as_ref(),
            think,
            efforts: effort.to_vec(),
        })
        .unwrap()
    }

    #[test]
    fn thinking_resolution_follows_spec_2_3() {
        assert_eq!(mode("deepseek-v4-flash", None, None, &[]), Thinking::High);
        assert_eq!(mode("deepseek-chat", None, None, &[]), Thinking::Off);
        assert_eq!(
            mode("deepseek-reasoner", None, Some(false), &[]),
            Thinking::Off
        );
        // An explicit switch, even null or an unknown type, beats the alias.
        assert_eq!(
            mode("deepseek-chat", Some(Value::Null), None, &[]),
            Thinking::High
        );
        assert_eq!(
            mode(
                "deepseek-chat",
                Some(json!({"type": "adaptive"})),
                None,
                &[]
            ),
            Thinking::High
        );
        assert_eq!(
            mode(
                "x",
                Some(json!({"type": "disabled", "budget_tokens": 9})),
                None,
                &[]
            ),
            Thinking::Off
        );
        assert_eq!(
            mode("x", Some(json!(true)), None, &[Some("max")]),
            Thinking::Max
        );
        assert_eq!(mode("x", None, None, &[Some("xhigh")]), Thinking::High);
        assert_eq!(mode("x", None, None, &[Some("none")]), Thinking::Off);
        assert_eq!(mode("x", None, None, &[None, Some("max")]), Thinking::Max);
        // Effort alone is not explicit: the alias still turns thinking off.
        assert_eq!(
            mode("deepseek-chat", None, None, &[Some("max")]),
            Thinking::Off
        );
        let bad = ThinkingInputs {
            model: "x",
            efforts: vec![Some("extreme")],
            ..ThinkingInputs::default()
        };
        assert_eq!(
            resolve_thinking(&bad).unwrap_err(),
            ApiError::invalid_json()
        );
    }

    #[test]
    fn sampling_is_fixed_when_thinking_and_clamped_otherwise() {
        let s = Sampling {
            temperature: Some(0.2),
            top_p: Some(0.5),
            top_k: Some(5000.0),
            min_p: Some(-1.0),
            seed: Some(42.9),
        };
        let t = s.resolve(Thinking::High);
        assert_eq!(
            (t.temperature, t.top_k, t.top_p, t.min_p, t.seed),
            (1.0, 0, 1.0, 0.05, 42)
        );
        let c = s.resolve(Thinking::Off);
        assert_eq!(
            (c.temperature, c.top_k, c.top_p, c.min_p, c.seed),
            (0.2, 1024, 0.5, 0.0, 42)
        );
        let odd = Sampling {
            temperature: Some(-3.0),
            top_p: Some(7.0),
            ..Sampling::default()
        }
        .resolve(Thinking::Off);
        assert_eq!((odd.temperature, odd.top_p), (0.0, 1.0));
        assert!(odd.validate().is_ok());
    }

    #[test]
    fn counts_truncate_and_clamp() {
        assert_eq!(count(Some(3.9)), Some(3));
        assert_eq!(count(Some(-2.0)), Some(0));
        assert_eq!(count(Some(1e12)), Some(i32::MAX as usize));
        assert_eq!(count(None), None);
    }

    #[test]
    fn stops_skip_non_strings_and_empties() {
        let s: Stops = serde_json::from_str(r#"["a", 3, "", null, "b"]"#).unwrap();
        assert_eq!(s.0, ["a", "b"]);
        let s: Stops = serde_json::from_str(r#""x""#).unwrap();
        assert_eq!(s.0, ["x"]);
        assert!(serde_json::from_str::<Stops>("5").is_err());
    }
}

/// OpenAI's `stream_options` (chat and legacy completions).
#[derive(serde::Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}
