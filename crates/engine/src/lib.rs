//! The ds4rs engine: what every front end (CLI, server, agent, bench) needs
//! between a model file and a stream of text.
//!
//! * [`backend`]: the [`Backend`] trait a compute backend implements
//!   (CPU now, CUDA later) and the backend-neutral [`StateImage`].
//! * [`cpu`]: the CPU backend over `model::Model`, owning its mapped file.
//! * `gpu` (feature `cuda`): the CUDA backend over `cuda::GpuModel`.
//! * [`image`]: states in the CPU layout to and from [`StateImage`].
//! * [`session`]: tokens + state + logits; chunked prefill with progress and
//!   cancellation, decode, checkpoints, rewind, prefix-reusing `sync`.
//! * [`snapshot`]: ds4's session payload inside a checksummed wrapper that
//!   names the model.
//! * [`sampler`]: greedy, temperature, top-k, top-p, min-p, seeded.
//! * [`stop`]: stop strings across token boundaries.
//! * [`generate`]: the generation loop, streaming events and stats.
//! * [`vocab`]: the tokenizer stored in a GGUF.

pub mod backend;
pub mod cpu;
pub mod error;
pub mod generate;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod image;
pub mod sampler;
pub mod session;
pub mod snapshot;
pub mod stop;
pub mod vocab;

pub use backend::{Backend, ModelIdentity, StateImage};
pub use cpu::CpuBackend;
pub use error::{EngineError, Result};
pub use generate::{generate, Event, Finish, GenerateOptions, Generation, Stats, TokenInfo};
#[cfg(feature = "cuda")]
pub use gpu::GpuBackend;
pub use sampler::{Sampler, SamplerConfig};
pub use session::{Checkpoint, Session};
