//! Next-token sampling: greedy, temperature, top-k, top-p, min-p, seeded.
//!
//! Order: logits are divided by the temperature; top-k keeps the k largest;
//! top-p keeps the smallest most-probable prefix whose probability (softmax
//! over the top-k set) reaches p; min-p keeps tokens whose probability is at
//! least `min_p` times the most probable one's. The draw is over what all
//! three keep, renormalized. Every filter keeps a most-probable prefix, so
//! the kept set is never empty. Ties order by lower token id, so a given
//! seed gives the same tokens on every run and platform.
//!
//! The generator is ChaCha8 (`rand_chacha`): a published, portable stream,
//! so a seed means the same tokens in every build.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{EngineError, Result};

/// Sampling parameters. The default is ds4's: temperature 1, top-k off,
/// top-p 1, min-p 0.05.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means off.
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.05,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// ds4's fixed sampling in thinking mode (prompt-format.md §9.1): the
    /// request's values are ignored, only the seed is kept.
    pub fn thinking(seed: u64) -> Self {
        SamplerConfig {
            seed,
            ..Self::default()
        }
    }

    /// Rejects values with no meaning, naming the parameter.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::Sampler(m));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("temperature {} must be >= 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p {} must be in [0, 1]", self.min_p));
        }
        Ok(())
    }
}

/// Index of the largest logit, lower id on ties; NaN never wins.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > bv {
            best = i;
            bv = v;
        }
    }
    best as u32
}

/// `k` most probable tokens with their log-probabilities under the plain
/// softmax of `logits`, most probable first.
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let lse = log_sum_exp(logits);
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let k = k.min(ids.len());
    if k > 0 && k < ids.len() {
        ids.select_nth_unstable_by(k - 1, by_logit);
    }
    ids.truncate(k);
    ids.sort_by(by_logit);
    ids.into_iter()
        .map(|i| (i, logits[i as usize] - lse))
        .collect()
}

/// `ln Σ exp(x)`, stable.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if !m.is_finite() {
        return m;
    }
    let s: f64 = x.iter().map(|&v| f64::from(v - m).exp()).sum();
    m + s.ln() as f32
}

pub struct Sampler {
    cfg: SamplerConfig,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Sampler {
            cfg,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Draws the next token; `greedy` forces the argmax (DSML structure).
    pub fn sample(&mut self, logits: &[f32], greedy: bool) -> u32 {
        if greedy || self.cfg.temperature == 0.0 {
            return argmax(logits);
        }
        let kept = self.candidates(logits);
        let total: f64 = kept.iter().map(|&(_, p)| p).sum();
        let u = (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * total;
        let mut acc = 0.0;
        for &(id, p) in &kept {
            acc += p;
            if u < acc {
                return id;
            }
        }
        kept.last().map_or_else(|| argmax(logits), |&(id, _)| id)
    }

    /// The tokens the filters keep with their unnormalized weights, most
    /// probable first.
    pub fn candidates(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let t = f64::from(self.cfg.temperature);
        let mut ids: Vec<u32> = (0..logits.len() as u32)
            .filter(|&i| !logits[i as usize].is_nan())
            .collect();
        let by_logit = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        if self.cfg.top_k > 0 && self.cfg.top_k < ids.len() {
            ids.select_nth_unstable_by(self.cfg.top_k - 1, by_logit);
            ids.truncate(self.cfg.top_k);
        }
        let Some(zmax) = ids
            .iter()
            .map(|&i| f64::from(logits[i as usize]) / t)
            .reduce(f64::max)
        else {
            return Vec::new();
        };
        // One exp per candidate: weights relative to the most probable (1).
        let mut kept: Vec<(u32, f64)> = ids
            .into_iter()
            .map(|i| (i, (f64::from(logits[i as usize]) / t - zmax).exp()))
            .collect();
        let denom: f64 = kept.iter().map(|&(_, w)| w).sum();
        // min-p: p_i >= min_p * p_max  <=>  w_i >= min_p.
        let min_w = f64::from(self.cfg.min_p);
        kept.retain(|&(_, w)| w >= min_w);
        kept.sort_by(|a, b| by_logit(&a.0, &b.0));
        if self.cfg.top_p < 1.0 {
            let target = f64::from(self.cfg.top_p) * denom;
            let mut cum = 0.0;
            let n = kept
                .iter()
                .position(|&(_, w)| {
                    cum += w;
                    cum >= target
                })
                .map_or(kept.len(), |i| i + 1);
            kept.truncate(n);
        }
        kept
    }
}
