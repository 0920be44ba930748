//! The CPU backend: `model::Model`, the reference forward pass, behind the
//! [`Backend`] trait.
//!
//! `model::Model<'a>` borrows the mapped `GgufFile` its weights point into.
//! The engine needs a model it can own and move between threads, so the file
//! and the model borrowing it live together in a self-referential cell
//! (`self_cell`): no change to the model crate, no `unsafe` here, and the
//! mapping is dropped exactly when the model is.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use gguf::GgufFile;
use model::state::State;
use model::{Logits, Model, ModelConfig, NoTrace, Options};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, ModelIdentity, Prefilled, StateImage};
use crate::error::Result;
use crate::image;

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
    type Logits = Vec<f32>;

    fn config(&self) -> &ModelConfig {
        &self.model().cfg
    }

    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    fn device_name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
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
    ) -> Result<Prefilled<Vec<f32>>> {
        let mut done = 0;
        let mut logits = None;
        while done < tokens.len() {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let pos = state.n_tokens;
            let len = (self.chunk - pos % self.chunk).min(tokens.len() - done);
            let chunk = &tokens[done..done + len];
            logits = Some(
                self.model()
                    .forward(state, chunk, Logits::Last, &mut NoTrace)?,
            );
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

    fn logits_to_host<'l>(&self, logits: &'l Vec<f32>) -> Result<Cow<'l, [f32]>> {
        Ok(Cow::Borrowed(logits))
    }

    fn logits_from_host(&self, logits: Vec<f32>) -> Result<Vec<f32>> {
        Ok(logits)
    }

    fn export(&self, state: &State) -> Result<StateImage> {
        Ok(image::to_image(self.config(), state))
    }

    fn import(&self, image: &StateImage) -> Result<State> {
        image::from_image(self.config(), image)
    }
}
