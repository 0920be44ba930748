//! Compressors (attention.md §8): each token's projection enters the
//! frontier; a full window is pooled per channel with a gated softmax,
//! normalized, rotated and rounded into one compressed row.

use crate::error::Result;
use crate::linear::Numerics;
use crate::norm::rms_norm_inplace;
use crate::qat;
use crate::rope::Rope;
use crate::state::Frontier;
use crate::weights::CompressorWeights;

/// The round trip a compressor's rows go through before storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// Attention rows: FP8 on the non-RoPE dims.
    Attention,
    /// Indexer rows: Hadamard + FP4.
    Indexer,
}

pub struct Step<'a> {
    pub weights: &'a CompressorWeights<'a>,
    pub ratio: usize,
    /// Head dim `d` of the rows this compressor emits.
    pub dim: usize,
    pub n_rot: usize,
    pub rope: &'a Rope,
    pub kind: RowKind,
    pub eps: f32,
    pub numerics: Numerics,
    pub qat: bool,
    pub f16_rows: bool,
}

impl Step<'_> {
    /// Feeds the token at `pos` (input `x`, the attention-norm output) and
    /// returns the row emitted when its window completes (§8.3).
    pub fn run(&self, f: &mut Frontier, x: &[f32], pos: usize) -> Result<Option<Vec<f32>>> {
        let w = f.width;
        let phase = pos % self.ratio;
        let row = if self.ratio == 4 { 4 + phase } else { phase };
        let kv = &mut f.kv[row * w..(row + 1) * w];
        self.weights.kv.matvec(x, kv, self.numerics)?;
        let score = &mut f.score[row * w..(row + 1) * w];
        self.weights.gate.matvec(x, score, self.numerics)?;
        for (s, &a) in score
            .iter_mut()
            .zip(&self.weights.ape[phase * w..(phase + 1) * w])
        {
            *s += a;
        }
        if !(pos + 1).is_multiple_of(self.ratio) {
            return Ok(None);
        }
        let mut out = pool(f, self.ratio, self.dim);
        rms_norm_inplace(&mut out, &self.weights.norm, self.eps);
        self.rope.apply(&mut out, pos + 1 - self.ratio, false);
        if self.qat {
            match self.kind {
                RowKind::Attention => qat::fp8_round_trip(&mut out, self.dim - self.n_rot),
                RowKind::Indexer => qat::indexer_round_trip(&mut out),
            }
        }
        if self.f16_rows {
            qat::f16_round(&mut out);
        }
        if self.ratio == 4 {
            let half = 4 * w;
            f.kv.copy_within(half..2 * half, 0);
            f.score.copy_within(half..2 * half, 0);
        }
        Ok(Some(out))
    }
}

/// Per-channel softmax pooling over the window (§8.4).
pub fn pool(f: &Frontier, ratio: usize, d: usize) -> Vec<f32> {
    let w = f.width;
    // (slot, column offset) of every candidate of channel 0.
    let slots: Vec<(usize, usize)> = if ratio == 4 {
        (0..4)
            .map(|t| (t, 0))
            .chain((4..8).map(|t| (t, d)))
            .collect()
    } else {
        (0..ratio).map(|t| (t, 0)).collect()
    };
    (0..d)
        .map(|j| {
            let m = slots
                .iter()
                .map(|&(t, o)| f.score[t * w + o + j])
                .fold(f32::NEG_INFINITY, f32::max);
            if m <= -0.5e30 {
                return 0.0;
            }
            let (mut num, mut den) = (0f32, 0f32);
            for &(t, o) in &slots {
                let e = crate::math::exp(f.score[t * w + o + j] - m);
                num += e * f.kv[t * w + o + j];
                den += e;
            }
            num / den
        })
        .collect()
}
