//! The contract between sessions and a compute backend. The CPU backend
//! implements it today; the CUDA backend will implement the same trait, so
//! sessions, the sampler, the generation loop and every front end stay
//! unchanged when it arrives.
//!
//! A backend owns its model and hands out opaque per-sequence states. What a
//! session needs from a state is small: evaluate tokens (a prefill chunk or one
//! decode step), clone it (in-memory checkpoints) and convert it to and from a
//! [`StateImage`], the backend-neutral form the snapshot file stores. The image
//! is the logical content of ds4's session payload (attention.md §15.1), so a
//! GPU ring of a different physical capacity produces the same image.

use std::sync::atomic::AtomicBool;

use model::state::Frontier;
use model::ModelConfig;

use crate::error::Result;

/// SHA-256 of what makes a model's state meaningful: its GGUF header bytes
/// (metadata and tensor directory). Snapshots carry it so a state is never
/// loaded into another model.
pub type ModelIdentity = [u8; 32];

/// Outcome of a prefill: how many tokens were evaluated (fewer than asked
/// when cancelled) and the logits after the last of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Prefilled {
    pub consumed: usize,
    /// Logits for the token after the last evaluated one; empty when none was
    /// evaluated.
    pub logits: Vec<f32>,
}

/// One layer of a [`StateImage`], rows in logical order.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerImage {
    /// Raw KV rows of the last `min(n_tokens, window)` positions, oldest first.
    pub raw: Vec<f32>,
    /// Compressed attention rows `0..n_comp` (empty on window-only layers).
    pub comp: Vec<f32>,
    pub comp_frontier: Option<Frontier>,
    /// Compressed indexer rows (ratio-4 layers).
    pub index: Vec<f32>,
    pub index_frontier: Option<Frontier>,
}

/// A sequence's attention state independent of how a backend lays it out.
#[derive(Clone, Debug, PartialEq)]
pub struct StateImage {
    pub ctx: usize,
    pub n_tokens: usize,
    pub layers: Vec<LayerImage>,
}

/// A loaded model that evaluates token sequences.
pub trait Backend: Send + Sync {
    /// Per-sequence state. `Clone` is the in-memory checkpoint.
    type State: Clone + Send;

    fn config(&self) -> &ModelConfig;

    fn identity(&self) -> &ModelIdentity;

    /// What runs the model, for reports (the bench's CSV, logs).
    fn device_name(&self) -> String;

    /// Tokens per prefill chunk: the granularity of progress reports and of
    /// cancellation during prefill.
    fn prefill_chunk(&self) -> usize;

    /// An empty state for a context of `ctx` positions.
    fn new_state(&self, ctx: usize) -> Self::State;

    /// Tokens the state has consumed (its next position).
    fn n_tokens(&self, state: &Self::State) -> usize;

    /// Positions the state may hold.
    fn ctx(&self, state: &Self::State) -> usize;

    /// Evaluates `tokens` at the state's next positions in chunks of
    /// [`Backend::prefill_chunk`] aligned to absolute multiples of it (as ds4
    /// does), calling `progress(done)` after each chunk. `cancel` is read
    /// before each chunk; once set, the state stays at the last chunk
    /// boundary and [`Prefilled::consumed`] says how far it got.
    fn prefill(
        &self,
        state: &mut Self::State,
        tokens: &[u32],
        progress: &mut dyn FnMut(usize),
        cancel: &AtomicBool,
    ) -> Result<Prefilled>;

    /// Evaluates one token; returns the logits for the next one.
    fn decode(&self, state: &mut Self::State, token: u32) -> Result<Vec<f32>>;

    /// The state's content in logical order (fallible: a device state must
    /// be copied back first).
    fn export(&self, state: &Self::State) -> Result<StateImage>;

    /// A state holding `image`, which must have this model's shapes (checked:
    /// an image from a file is untrusted).
    fn import(&self, image: &StateImage) -> Result<Self::State>;
}
