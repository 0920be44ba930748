//! Rotary embedding on the tail dims, interleaved pairs, with YaRN in the
//! compressed layers (attention.md §5).
//!
//! The frequencies are computed the way the reference implementation does
//! (`1/base^(2k/n)` in f32, YaRN blended in frequency space, the angle as
//! one f32 product `p·ω_k`); ds4's CPU path forms the angle iteratively,
//! which differs only in the last bits of the angle (§5.4).

use crate::config::{AttentionKind, ModelConfig};

/// Per-pair inverse frequencies of one layer kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    /// The rope of a layer: plain for ratio-0 layers, YaRN otherwise.
    pub fn for_layer(cfg: &ModelConfig, layer: usize) -> Self {
        match cfg.attention_kind(layer) {
            AttentionKind::Window => Self::plain(cfg.rope_base, cfg.n_rot),
            _ => Self::yarn(cfg),
        }
    }

    pub fn plain(base: f32, n_rot: usize) -> Self {
        let inv_freq = (0..n_rot / 2)
            .map(|k| 1.0 / base.powf((2 * k) as f32 / n_rot as f32))
            .collect();
        Rope { inv_freq }
    }

    /// YaRN with magnitude factor 1 (§5.3).
    pub fn yarn(cfg: &ModelConfig) -> Self {
        let n = cfg.n_rot;
        let base = cfg.compress_rope_base;
        let factor = cfg.rope_scale_factor;
        let corr = |beta: f32| -> f64 {
            let (n, base, orig) = (n as f64, f64::from(base), cfg.rope_orig_ctx as f64);
            n * (orig / (f64::from(beta) * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
        };
        let low = corr(cfg.yarn_beta_fast).floor().max(0.0) as f32;
        let high = corr(cfg.yarn_beta_slow).ceil().min((n - 1) as f64) as f32;
        let span = if low == high { 0.001 } else { high - low };
        let inv_freq = (0..n / 2)
            .map(|k| {
                let pos_freq = base.powf((2 * k) as f32 / n as f32);
                let extrapolation = 1.0 / pos_freq;
                let interpolation = 1.0 / (factor * pos_freq);
                let ramp = ((k as f32 - low) / span).clamp(0.0, 1.0);
                let keep = 1.0 - ramp;
                interpolation * (1.0 - keep) + extrapolation * keep
            })
            .collect();
        Rope { inv_freq }
    }

    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Rotates the last `2·pairs` dims of `v` by the angles of position `pos`;
    /// `inverse` rotates by the negative angles (§5.6).
    pub fn apply(&self, v: &mut [f32], pos: usize, inverse: bool) {
        let n = v.len();
        let tail = &mut v[n - 2 * self.inv_freq.len()..];
        let p = pos as f32;
        for (k, &w) in self.inv_freq.iter().enumerate() {
            let theta = p * w;
            let (s, c) = crate::math::sin_cos(theta);
            let s = if inverse { -s } else { s };
            let (a, b) = (tail[2 * k], tail[2 * k + 1]);
            tail[2 * k] = a * c - b * s;
            tail[2 * k + 1] = a * s + b * c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// attention.md §17 item 2.
    #[test]
    fn flash_frequencies() {
        let cfg = ModelConfig::flash();
        let y = Rope::yarn(&cfg);
        assert_eq!(y.inv_freq()[0], 1.0);
        let k31 = y.inv_freq()[31];
        assert!((k31 / 5.68053e-7 - 1.0).abs() < 1e-5, "{k31}");
        let p = Rope::plain(10000.0, 64);
        assert!((p.inv_freq()[31] / 1.33352e-4 - 1.0).abs() < 1e-5);
        // The ramp: pure extrapolation up to pair 15, interpolation from 25.
        let plain = Rope::plain(160000.0, 64);
        for k in 0..=15 {
            assert_eq!(y.inv_freq()[k], plain.inv_freq()[k]);
        }
        for k in 25..32 {
            assert!((y.inv_freq()[k] * 16.0 / plain.inv_freq()[k] - 1.0).abs() < 1e-6);
        }
        let gamma20 = (y.inv_freq()[20] - plain.inv_freq()[20] / 16.0)
            / (plain.inv_freq()[20] - plain.inv_freq()[20] / 16.0);
        assert!((gamma20 - 0.5).abs() < 1e-5, "{gamma20}");
    }

    #[test]
    fn inverse_undoes_rotation() {
        let r = Rope::yarn(&ModelConfig::flash());
        let orig: Vec<f32> = (0..512)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let mut v = orig.clone();
        r.apply(&mut v, 12345, false);
        assert_ne!(v, orig);
        assert_eq!(v[..448], orig[..448]);
        r.apply(&mut v, 12345, true);
        for (a, b) in v.iter().zip(&orig) {
            assert!((a - b).abs() < 1e-5, "{a} {b}");
        }
    }
}
