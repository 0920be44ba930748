//! The output head (model.md §8): the HC state collapsed by sigmoid stream
//! weights, the final RMSNorm, and the LM head.

use crate::config::ModelConfig;
use crate::error::Result;
use crate::forward::Trace;
use crate::hc;
use crate::linear::Numerics;
use crate::norm::rms_norm;
use crate::weights::Weights;

/// Logits of the HC state `h` of the token at `pos`.
pub fn logits(
    cfg: &ModelConfig,
    w: &Weights<'_>,
    numerics: Numerics,
    h: &[f32],
    pos: usize,
    trace: &mut dyn Trace,
) -> Result<Vec<f32>> {
    let z = hc::head(h, &w.output_hc, cfg.hc_eps, numerics)?;
    let mut zn = vec![0f32; cfg.n_embd];
    rms_norm(&z, &w.output_norm, cfg.rms_eps, &mut zn);
    trace.record("head_norm", cfg.n_layer, pos, &zn);
    let mut out = vec![0f32; cfg.n_vocab];
    w.output.matvec(&zn, &mut out, numerics)?;
    trace.record("logits", cfg.n_layer, pos, &out);
    Ok(out)
}
