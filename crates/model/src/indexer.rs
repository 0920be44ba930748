//! The lightning indexer of ratio-4 layers (attention.md §10): scores every
//! visible compressed row with ReLU'd per-head dot products of a rotated,
//! FP4-rounded query, and keeps the top-k for attention.

use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::forward::{Options, Trace};
use crate::linear::dot_f32;
use crate::qat;
use crate::rope::Rope;
use crate::weights::IndexerWeights;

pub struct Indexer<'a> {
    pub cfg: &'a ModelConfig,
    pub layer: usize,
    pub w: &'a IndexerWeights<'a>,
    pub rope: &'a Rope,
    pub opts: Options,
}

impl Indexer<'_> {
    /// The top-k of the `n_comp` visible rows for the query at `pos`:
    /// query from `qr` (the normalized q-LoRA vector), head weights from `x`
    /// (the attention input), scores against `index_rows` (§10.1–§10.3).
    pub fn select(
        &self,
        qr: &[f32],
        x: &[f32],
        pos: usize,
        index_rows: &[f32],
        n_comp: usize,
        trace: &mut dyn Trace,
    ) -> Result<Vec<usize>> {
        let cfg = self.cfg;
        let (nh, d) = (cfg.indexer_heads, cfg.indexer_head_dim);
        let mut qi = vec![0f32; nh * d];
        self.w.q_b.matvec(qr, &mut qi, self.opts.numerics)?;
        for head in qi.chunks_mut(d) {
            self.rope.apply(head, pos, false);
            if self.opts.qat {
                qat::indexer_round_trip(head);
            }
        }
        let mut wts = vec![0f32; nh];
        self.w.proj.matvec(x, &mut wts, self.opts.numerics)?;
        let s = 1.0 / ((d * nh) as f32).sqrt();
        for w in &mut wts {
            *w *= s;
        }
        let scores: Vec<f32> = (0..n_comp)
            .into_par_iter()
            .map(|c| {
                let row = &index_rows[c * d..(c + 1) * d];
                let mut acc = 0f32;
                for (e, qh) in qi.chunks(d).enumerate() {
                    acc += wts[e] * dot_f32(qh, row).max(0.0);
                }
                acc
            })
            .collect();
        trace.record("index_scores", self.layer, pos, &scores);
        let sel = top_k(&scores, cfg.indexer_top_k);
        let as_f32: Vec<f32> = sel.iter().map(|&c| c as f32).collect();
        trace.record("index_selected", self.layer, pos, &as_f32);
        Ok(sel)
    }
}

/// Indices of the `k` largest values, lower index first on ties (§10.3),
/// returned in ascending index order.
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_prefers_lower_index_on_ties() {
        let s = [1.0, 3.0, 3.0, 0.0, 3.0, 2.0];
        assert_eq!(top_k(&s, 2), vec![1, 2]);
        assert_eq!(top_k(&s, 4), vec![1, 2, 4, 5]);
        assert_eq!(top_k(&s, 10), vec![0, 1, 2, 3, 4, 5]);
    }
}
