//! The contract between sessions and a compute backend (the CPU's reference
//! forward, the CUDA model), so sessions, the sampler, the generation loop
//! and every front end run unchanged on either.
//!
//! A backend owns its model and hands out opaque per-sequence states. What a
//! session needs from a state is small: evaluate tokens (a prefill chunk or one
//! decode step), clone it (in-memory checkpoints) and convert it to and from a
//! [`StateImage`], the backend-neutral form the snapshot file stores. The image
//! is the logical content of ds4's session payload (attention.md §15.1), so a
//! GPU ring of a different physical capacity produces the same image.
//!
//! Logits stay where the backend computed them ([`Backend::Logits`]): a
//! generation step asks the backend for the next token ([`Backend::pick`])
//! and, when log-probabilities are wanted, for the few numbers they need
//! ([`Backend::top_logits`]); the whole vector is copied out only for a
//! caller that reads it ([`Backend::logits_to_host`]). On the GPU a token
//! step then moves a token id over the bus instead of the vocabulary's
//! logits (0.5 MB for Flash).

use std::borrow::Cow;
use std::sync::atomic::AtomicBool;

use model::state::Frontier;
use model::ModelConfig;

use crate::error::Result;
use crate::sampler::{Pick, TopLogits};

/// SHA-256 of what makes a model's state meaningful: its GGUF header bytes
/// (metadata and tensor directory). Snapshots carry it so a state is never
/// loaded into another model.
pub type ModelIdentity = [u8; 32];

/// Outcome of a prefill: how many tokens were evaluated (fewer than asked
/// when cancelled) and the logits after the last of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Prefilled<L> {
    pub consumed: usize,
    /// Logits for the token after the last evaluated one; `None` when none
    /// was evaluated.
    pub logits: Option<L>,
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

    /// One position's logits (`n_vocab` values) where the backend computed
    /// them: host memory for the CPU, device memory for the GPU. `Clone` is
    /// what a checkpoint copies.
    type Logits: Clone + Send;

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
    ) -> Result<Prefilled<Self::Logits>>;

    /// Evaluates one token; returns the logits for the next one.
    fn decode(&self, state: &mut Self::State, token: u32) -> Result<Self::Logits>;

    /// The whole vector on the host: borrowed where it already is, copied
    /// from a device otherwise.
    fn logits_to_host<'l>(&self, logits: &'l Self::Logits) -> Result<Cow<'l, [f32]>>;

    /// Host logits (a snapshot's) placed where this backend keeps them.
    fn logits_from_host(&self, logits: Vec<f32>) -> Result<Self::Logits>;

    /// The next token: the argmax or a draw (`sampling`'s rules). The
    /// default applies the rules to [`Backend::logits_to_host`], which is
    /// all a backend holding its logits on the host needs; a device backend
    /// overrides it so the vector stays where it is.
    fn pick(&self, logits: &Self::Logits, pick: &Pick) -> Result<u32> {
        Ok(crate::sampler::pick(&self.logits_to_host(logits)?, pick))
    }

    /// The plain softmax's log-sum-exp, `token`'s logit and the `n` largest
    /// logits (`token` must be below `n_vocab`). Default and overriding as
    /// for [`Backend::pick`].
    fn top_logits(&self, logits: &Self::Logits, token: Option<u32>, n: usize) -> Result<TopLogits> {
        Ok(crate::sampler::top_logits(
            &self.logits_to_host(logits)?,
            token,
            n,
        ))
    }

    /// The state's content in logical order (fallible: a device state must
    /// be copied back first).
    fn export(&self, state: &Self::State) -> Result<StateImage>;

    /// A state holding `image`, which must have this model's shapes (checked:
    /// an image from a file is untrusted).
    fn import(&self, image: &StateImage) -> Result<Self::State>;
}
