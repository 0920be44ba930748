//! DeepSeek V4 for ds4rs: configuration from GGUF metadata, weight binding,
//! the CPU reference forward pass and the per-layer attention state. Spec:
//! `shared/spec/model.md` and `shared/spec/attention.md`; each module cites
//! the sections it implements.

pub mod attention;
pub mod compressor;
pub mod config;
pub mod convert;
pub mod error;
pub mod forward;
pub mod hc;
pub mod head;
pub mod indexer;
pub mod layout;
pub mod linear;
pub mod math;
pub mod moe;
pub mod norm;
pub mod qat;
pub mod rope;
pub mod state;
pub mod synth;
pub mod weights;

pub use config::{AttentionKind, ModelConfig};
pub use error::{ModelError, Result};
pub use forward::{Logits, Model, NoTrace, Options, Trace};
pub use linear::Numerics;
pub use state::State;
