//! The attention state a session carries between calls (attention.md §14):
//! per layer the raw sliding window, the compressed rows, the indexer rows
//! and the compressors' frontier.

use crate::config::{AttentionKind, ModelConfig};

/// Value of an empty score slot: its softmax weight is exactly 0 (§8.2).
pub const EMPTY_SCORE: f32 = -1e30;

/// A compressor's frontier: `rows` slots of `width` projected values and
/// their gate scores (ape already added).
#[derive(Clone, Debug, PartialEq)]
pub struct Frontier {
    pub rows: usize,
    pub width: usize,
    pub kv: Vec<f32>,
    pub score: Vec<f32>,
}

impl Frontier {
    pub fn new(ratio: usize, d: usize) -> Self {
        let c = if ratio == 4 { 2 } else { 1 };
        let (rows, width) = (c * ratio, c * d);
        Frontier {
            rows,
            width,
            kv: vec![0.0; rows * width],
            score: vec![EMPTY_SCORE; rows * width],
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LayerState {
    /// Ring of the last `window` raw KV rows; position p lives in slot `p % window`.
    pub raw: Vec<f32>,
    /// Compressed attention rows, row c covering the window starting at c·ratio.
    pub comp: Vec<f32>,
    pub comp_frontier: Option<Frontier>,
    /// Compressed indexer rows (ratio-4 layers).
    pub index: Vec<f32>,
    pub index_frontier: Option<Frontier>,
}

/// Everything a sequence leaves behind for the next call.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub layers: Vec<LayerState>,
    /// Tokens processed so far (the next position).
    pub n_tokens: usize,
    /// Positions this state may hold.
    pub ctx: usize,
}

impl State {
    pub fn new(cfg: &ModelConfig, ctx: usize) -> Self {
        let layers = (0..cfg.n_layer)
            .map(|il| {
                let ratio = cfg.compress_ratios[il];
                let kind = cfg.attention_kind(il);
                LayerState {
                    raw: vec![0.0; cfg.sliding_window * cfg.head_dim],
                    comp: Vec::new(),
                    comp_frontier: (kind != AttentionKind::Window)
                        .then(|| Frontier::new(ratio, cfg.head_dim)),
                    index: Vec::new(),
                    index_frontier: (kind == AttentionKind::Sparse)
                        .then(|| Frontier::new(ratio, cfg.indexer_head_dim)),
                }
            })
            .collect();
        State {
            layers,
            n_tokens: 0,
            ctx,
        }
    }
}
