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
#[derive(Default, Clone, Copy)]
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
