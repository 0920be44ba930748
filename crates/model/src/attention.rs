//! One layer's attention for one token (attention.md §3–§11): the low-rank
//! Q path, the shared K=V row, the compressors, the indexer's selection, the
//! sink softmax over raw and compressed rows, and the grouped output
//! projection.

use rayon::prelude::*;

use crate::compressor::{RowKind, Step};
use crate::config::{AttentionKind, ModelConfig};
use crate::error::Result;
use crate::forward::{Options, Trace};
use crate::indexer::Indexer;
use crate::linear::dot_f32;
use crate::math;
use crate::norm::{rms_norm_inplace, rms_norm_plain_inplace};
use crate::qat;
use crate::rope::Rope;
use crate::state::LayerState;
use crate::weights::LayerWeights;

pub struct Attention<'a> {
    pub cfg: &'a ModelConfig,
    pub layer: usize,
    pub w: &'a LayerWeights<'a>,
    pub rope: &'a Rope,
    pub opts: Options,
}

impl Attention<'_> {
    /// The attention output for input `x` (the `attn_norm` output) at `pos`,
    /// updating the layer state.
    pub fn run(
        &self,
        st: &mut LayerState,
        x: &[f32],
        pos: usize,
        trace: &mut dyn Trace,
    ) -> Result<Vec<f32>> {
        let cfg = self.cfg;
        let (hd, nh, eps, num) = (cfg.head_dim, cfg.n_head, cfg.rms_eps, self.opts.numerics);

        // Q path (§4.1).
        let mut qr = vec![0f32; cfg.q_lora_rank];
        self.w.q_a.matvec(x, &mut qr, num)?;
        rms_norm_inplace(&mut qr, &self.w.q_a_norm, eps);
        trace.record("attn_q_residual", self.layer, pos, &qr);
        let mut q = vec![0f32; nh * hd];
        self.w.q_b.matvec(&qr, &mut q, num)?;
        for head in q.chunks_mut(hd) {
            rms_norm_plain_inplace(head, eps);
            self.rope.apply(head, pos, false);
        }
        trace.record("attn_q", self.layer, pos, &q);

        // The shared K=V row (§4.2), written before attending (§9.1).
        let mut kv = vec![0f32; hd];
        self.w.kv.matvec(x, &mut kv, num)?;
        rms_norm_inplace(&mut kv, &self.w.kv_norm, eps);
        self.rope.apply(&mut kv, pos, false);
        if self.opts.qat {
            qat::fp8_round_trip(&mut kv, cfg.nope_dim());
        }
        if self.opts.f16_rows {
            qat::f16_round(&mut kv);
        }
        trace.record("attn_kv", self.layer, pos, &kv);
        let window = cfg.sliding_window;
        let slot = pos % window;
        st.raw[slot * hd..(slot + 1) * hd].copy_from_slice(&kv);

        // Compressors (§8).
        let ratio = cfg.compress_ratios[self.layer];
        if let (Some(cw), Some(front)) = (&self.w.compressor, st.comp_frontier.as_mut()) {
            let step = self.step(cw, ratio, hd, RowKind::Attention);
            if let Some(row) = step.run(front, x, pos)? {
                trace.record("attn_comp_row", self.layer, pos, &row);
                st.comp.extend_from_slice(&row);
            }
        }
        if let (Some(iw), Some(front)) = (&self.w.indexer, st.index_frontier.as_mut()) {
            let step = self.step(
                &iw.compressor,
                ratio,
                cfg.indexer_head_dim,
                RowKind::Indexer,
            );
            if let Some(row) = step.run(front, x, pos)? {
                trace.record("index_row", self.layer, pos, &row);
                st.index.extend_from_slice(&row);
            }
        }

        // Visible compressed rows (§9.1), narrowed by the indexer (§10).
        let n_comp = st.comp.len() / hd;
        let selected: Vec<usize> = match (cfg.attention_kind(self.layer), &self.w.indexer) {
            (AttentionKind::Sparse, Some(iw)) if n_comp > cfg.indexer_top_k => {
                let indexer = Indexer {
                    cfg,
                    layer: self.layer,
                    w: iw,
                    rope: self.rope,
                    opts: self.opts,
                };
                indexer.select(&qr, x, pos, &st.index, n_comp, trace)?
            }
            _ => (0..n_comp).collect(),
        };

        // Keys: raw rows of the window (position order), then compressed rows.
        let first = (pos + 1).saturating_sub(window);
        let keys: Vec<&[f32]> = (first..=pos)
            .map(|p| &st.raw[(p % window) * hd..(p % window + 1) * hd])
            .chain(selected.iter().map(|&c| &st.comp[c * hd..(c + 1) * hd]))
            .collect();
        let scale = 1.0 / (hd as f32).sqrt();
        let mut heads = vec![0f32; nh * hd];
        heads
            .par_chunks_mut(hd)
            .zip(q.par_chunks(hd))
            .zip(self.w.sinks.par_iter())
            .for_each(|((out, qh), &sink)| {
                sink_attention(qh, &keys, sink, scale, out);
                self.rope.apply(out, pos, true);
            });
        trace.record("attn_heads", self.layer, pos, &heads);

        // Grouped output projection (§11).
        let groups = cfg.o_groups;
        let group_in = nh / groups * hd;
        let mut low = vec![0f32; groups * cfg.o_lora_rank];
        for g in 0..groups {
            let wa = self.w.out_a.rows(g * cfg.o_lora_rank, cfg.o_lora_rank);
            wa.matvec(
                &heads[g * group_in..(g + 1) * group_in],
                &mut low[g * cfg.o_lora_rank..(g + 1) * cfg.o_lora_rank],
                num,
            )?;
        }
        trace.record("attn_o_a", self.layer, pos, &low);
        let mut out = vec![0f32; cfg.n_embd];
        self.w.out_b.matvec(&low, &mut out, num)?;
        trace.record("attn_out", self.layer, pos, &out);
        Ok(out)
    }

    fn step<'s>(
        &'s self,
        w: &'s crate::weights::CompressorWeights<'s>,
        ratio: usize,
        dim: usize,
        kind: RowKind,
    ) -> Step<'s> {
        Step {
            weights: w,
            ratio,
            dim,
            n_rot: self.cfg.n_rot,
            rope: self.rope,
            kind,
            eps: self.cfg.rms_eps,
            numerics: self.opts.numerics,
            qat: self.opts.qat,
            f16_rows: self.opts.f16_rows,
        }
    }
}

/// One head's softmax over `keys` (which are also the values) with a sink
/// logit in the denominator (§9.2).
pub fn sink_attention(q: &[f32], keys: &[&[f32]], sink: f32, scale: f32, out: &mut [f32]) {
    let s: Vec<f32> = keys.iter().map(|k| dot_f32(q, k) * scale).collect();
    let m = s.iter().copied().fold(sink, f32::max);
    let mut den = math::exp(sink - m);
    out.fill(0.0);
    for (k, &sk) in keys.iter().zip(&s) {
        let e = math::exp(sk - m);
        den += e;
        for (o, &v) in out.iter_mut().zip(k.iter()) {
            *o += e * v;
        }
    }
    let inv = 1.0 / den;
    for o in out {
        *o *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_only_shrinks_the_output() {
        let k1 = [1.0f32, 0.0];
        let k2 = [0.0f32, 1.0];
        let keys: Vec<&[f32]> = vec![&k1, &k2];
        let mut out = [0f32; 2];
        sink_attention(&[0.0, 0.0], &keys, f32::NEG_INFINITY, 1.0, &mut out);
        assert_eq!(out, [0.5, 0.5]);
        sink_attention(&[0.0, 0.0], &keys, 0.0, 1.0, &mut out);
        assert!((out[0] - 1.0 / 3.0).abs() < 1e-7);
    }
}
