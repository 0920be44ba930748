//! Errors of the model layer; each names the metadata key or tensor at fault
//! and says what was expected.

use gguf::GgmlType;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error(transparent)]
    Quant(#[from] gguf::quant::QuantError),
    #[error("metadata {key}: {msg}")]
    Metadata { key: String, msg: String },
    #[error("missing tensor {0:?}")]
    MissingTensor(String),
    #[error("tensor {name:?}: type {found}, expected {expected}")]
    TensorType {
        name: String,
        found: GgmlType,
        expected: String,
    },
    #[error("tensor {name:?}: shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("token id {token} is outside the vocabulary of {n_vocab}")]
    TokenOutOfRange { token: u32, n_vocab: usize },
    #[error("hash routing table of layer {layer}: expert id {id} for token {token} is outside 0..{n_expert}")]
    BadHashEntry {
        layer: usize,
        token: u32,
        id: i32,
        n_expert: usize,
    },
    #[error(
        "context full: position {pos} needs more than the {ctx} tokens the state was made for"
    )]
    ContextFull { pos: usize, ctx: usize },
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A recipe asks for a type the tensor's shape cannot hold.
    #[error("tensor {name:?} cannot be stored as {ty}: {msg}")]
    Layout {
        name: String,
        ty: GgmlType,
        msg: String,
    },
    /// A source checkpoint (`convert`) is malformed: `path` is the file and,
    /// where one is at fault, the tensor or field.
    #[error("{path}: {msg}")]
    Checkpoint { path: String, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
