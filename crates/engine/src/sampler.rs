//! Next-token sampling: greedy, temperature, top-k, top-p, min-p, seeded.
//!
//! The rules (order of the filters, ties, NaN) are the `sampling` crate's,
//! re-exported here; they are shared with the CUDA kernels, which apply
//! them to logits that never leave the device. This module adds the
//! settings' validation and the randomness: a [`Sampler`] turns its seed
//! into one uniform number per draw ([`Sampler::next_pick`]), and whichever
//! backend holds the logits picks the token with it, so a seed gives the
//! same tokens on the CPU and on the GPU (up to the last bits of f64 sums,
//! `docs/cuda.md`).
//!
//! The generator is ChaCha8 (`rand_chacha`): a published, portable stream,
//! so a seed means the same tokens in every build.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use sampling::{
    argmax, candidates, largest, log_sum_exp, pick, top_logits, top_logprobs, Filters, Pick,
    TopLogits,
};

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

    /// The filters of a draw.
    pub fn filters(&self) -> Filters {
        Filters {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
        }
    }
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

    /// How to choose the next token: the argmax when `greedy` (DSML
    /// structure) or at temperature 0, else a draw with the next number of
    /// the seeded stream (consumed only by draws).
    pub fn next_pick(&mut self, greedy: bool) -> Pick {
        if greedy || self.cfg.temperature == 0.0 {
            return Pick::Greedy;
        }
        let unit = (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        Pick::Draw {
            filters: self.cfg.filters(),
            unit,
        }
    }

    /// Draws the next token from host logits; `greedy` forces the argmax.
    pub fn sample(&mut self, logits: &[f32], greedy: bool) -> u32 {
        pick(logits, &self.next_pick(greedy))
    }

    /// The tokens the filters keep with their unnormalized weights, most
    /// probable first.
    pub fn candidates(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        candidates(logits, &self.cfg.filters())
    }
}
