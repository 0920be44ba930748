//! Conversion between the CPU layout of a state (`model::State`, a ring of
//! raw rows indexed by position) and the backend-neutral [`StateImage`]
//! (rows in logical order). The GPU backend downloads its state into the
//! CPU layout first, so both backends share these two functions and write
//! the same snapshot payload.

use model::state::{Frontier, State};
use model::{AttentionKind, ModelConfig};

use crate::backend::{LayerImage, StateImage};
use crate::error::{EngineError, Result};

pub fn to_image(cfg: &ModelConfig, state: &State) -> StateImage {
    let (hd, window) = (cfg.head_dim, cfg.sliding_window);
    let t = state.n_tokens;
    let live = t.min(window);
    let layers = state
        .layers
        .iter()
        .map(|l| {
            let mut raw = Vec::with_capacity(live * hd);
            for p in t - live..t {
                let slot = p % window;
                raw.extend_from_slice(&l.raw[slot * hd..(slot + 1) * hd]);
            }
            LayerImage {
                raw,
                comp: l.comp.clone(),
                comp_frontier: l.comp_frontier.clone(),
                index: l.index.clone(),
                index_frontier: l.index_frontier.clone(),
            }
        })
        .collect();
    StateImage {
        ctx: state.ctx,
        n_tokens: t,
        layers,
    }
}

/// A state holding `image`, checked against the model's shapes (an image
/// read from a file is untrusted).
pub fn from_image(cfg: &ModelConfig, image: &StateImage) -> Result<State> {
    let mismatch = |msg: String| Err(EngineError::StateMismatch(msg));
    let t = image.n_tokens;
    if t > image.ctx {
        return mismatch(format!("{t} tokens in a context of {}", image.ctx));
    }
    if image.layers.len() != cfg.n_layer {
        return mismatch(format!(
            "{} layers, the model has {}",
            image.layers.len(),
            cfg.n_layer
        ));
    }
    let (hd, window) = (cfg.head_dim, cfg.sliding_window);
    let mut state = State::new(cfg, image.ctx);
    for (il, (img, l)) in image.layers.iter().zip(&mut state.layers).enumerate() {
        let ratio = cfg.compress_ratios[il];
        let kind = cfg.attention_kind(il);
        let live = t.min(window);
        check_len(il, "raw rows", img.raw.len(), live * hd)?;
        for (i, p) in (t - live..t).enumerate() {
            let slot = p % window;
            l.raw[slot * hd..(slot + 1) * hd].copy_from_slice(&img.raw[i * hd..(i + 1) * hd]);
        }
        let n_comp = if kind == AttentionKind::Window {
            0
        } else {
            t / ratio
        };
        check_len(il, "compressed rows", img.comp.len(), n_comp * hd)?;
        l.comp = img.comp.clone();
        l.comp_frontier = frontier(il, "compressor", &l.comp_frontier, &img.comp_frontier)?;
        let n_index = if kind == AttentionKind::Sparse {
            t / ratio
        } else {
            0
        };
        check_len(
            il,
            "indexer rows",
            img.index.len(),
            n_index * cfg.indexer_head_dim,
        )?;
        l.index = img.index.clone();
        l.index_frontier = frontier(il, "indexer", &l.index_frontier, &img.index_frontier)?;
    }
    state.n_tokens = t;
    Ok(state)
}

fn check_len(layer: usize, what: &str, found: usize, expected: usize) -> Result<()> {
    if found != expected {
        return Err(EngineError::StateMismatch(format!(
            "layer {layer}: {found} values of {what}, expected {expected}"
        )));
    }
    Ok(())
}

/// The image's frontier if it has the shape of the fresh one `want`.
fn frontier(
    layer: usize,
    what: &str,
    want: &Option<Frontier>,
    got: &Option<Frontier>,
) -> Result<Option<Frontier>> {
    match (want, got) {
        (None, None) => Ok(None),
        (Some(w), Some(g))
            if g.rows == w.rows
                && g.width == w.width
                && g.kv.len() == w.kv.len()
                && g.score.len() == w.score.len() =>
        {
            Ok(Some(g.clone()))
        }
        _ => Err(EngineError::StateMismatch(format!(
            "layer {layer}: {what} frontier of the wrong shape or presence"
        ))),
    }
}
