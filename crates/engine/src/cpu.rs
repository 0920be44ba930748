//! The CPU backend: `model::Model`, the reference forward pass, behind the
//! [`Backend`] trait.
//!
//! `model::Model<'a>` borrows the mapped `GgufFile` its weights point into.
//! The engine needs a model it can own and move between threads, so the file
//! and the model borrowing it live together in a self-referential cell
//! (`self_cell`): no change to the model crate, no `unsafe` here, and the
//! mapping is dropped exactly when the model is.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use gguf::GgufFile;
use model::state::{Frontier, State};
use model::{AttentionKind, Logits, Model, ModelConfig, NoTrace, Options};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, LayerImage, ModelIdentity, Prefilled, StateImage};
use crate::error::{EngineError, Result};

self_cell::self_cell!(
    struct LoadedModel {
        owner: GgufFile,
        #[covariant]
        dependent: Model,
    }
);

/// Prefill chunk of the CPU backend. The CPU forward is bit-identical under
/// any chunking (forward.rs), so the size only trades cancellation latency
/// against per-chunk overhead.
pub const CPU_PREFILL_CHUNK: usize = 64;

pub struct CpuBackend {
    model: LoadedModel,
    identity: ModelIdentity,
    chunk: usize,
}

impl CpuBackend {
    /// Maps `path` and binds its weights.
    pub fn load(path: &Path, opts: Options) -> Result<Self> {
        Self::from_file(GgufFile::open(path)?, opts)
    }

    /// Binds the weights of an already mapped file.
    pub fn from_file(file: GgufFile, opts: Options) -> Result<Self> {
        let identity = identity_of(&file);
        let model = LoadedModel::try_new(file, |f| Model::load(f, opts))?;
        Ok(CpuBackend {
            model,
            identity,
            chunk: CPU_PREFILL_CHUNK,
        })
    }

    /// Same backend with another prefill chunk (at least 1).
    pub fn with_prefill_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// The mapped GGUF (for its tokenizer metadata).
    pub fn file(&self) -> &GgufFile {
        self.model.borrow_owner()
    }

    fn model(&self) -> &Model<'_> {
        self.model.borrow_dependent()
    }
}

/// SHA-256 over the header bytes (everything before the tensor data): the
/// metadata and the tensor directory with every tensor's type, shape and
/// offset. Hashing the weights themselves (81 GiB) on every load is out of
/// the question; two files with identical headers but different weights are
/// indistinguishable, a limit shared with ds4's own cache keys.
pub fn identity_of(file: &GgufFile) -> ModelIdentity {
    let end = (file.header().data_start as usize).min(file.bytes().len());
    Sha256::digest(&file.bytes()[..end]).into()
}

impl Backend for CpuBackend {
    type State = State;

    fn config(&self) -> &ModelConfig {
        &self.model().cfg
    }

    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    fn prefill_chunk(&self) -> usize {
        self.chunk
    }

    fn new_state(&self, ctx: usize) -> State {
        self.model().new_state(ctx)
    }

    fn n_tokens(&self, state: &State) -> usize {
        state.n_tokens
    }

    fn ctx(&self, state: &State) -> usize {
        state.ctx
    }

    fn prefill(
        &self,
        state: &mut State,
        tokens: &[u32],
        progress: &mut dyn FnMut(usize),
        cancel: &AtomicBool,
    ) -> Result<Prefilled> {
        let mut done = 0;
        let mut logits = Vec::new();
        while done < tokens.len() {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let pos = state.n_tokens;
            let len = (self.chunk - pos % self.chunk).min(tokens.len() - done);
            let chunk = &tokens[done..done + len];
            logits = self
                .model()
                .forward(state, chunk, Logits::Last, &mut NoTrace)?;
            done += len;
            progress(done);
        }
        Ok(Prefilled {
            consumed: done,
            logits,
        })
    }

    fn decode(&self, state: &mut State, token: u32) -> Result<Vec<f32>> {
        Ok(self
            .model()
            .forward(state, &[token], Logits::Last, &mut NoTrace)?)
    }

    fn export(&self, state: &State) -> StateImage {
        let cfg = self.config();
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

    fn import(&self, image: &StateImage) -> Result<State> {
        let cfg = self.config();
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
