//! Errors of the engine. Each says what was expected, and for snapshots which
//! field or byte range is at fault, so a front end can show it as is.

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error(transparent)]
    Text(#[from] text::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The prompt plus what it asks for does not fit the session's context.
    #[error("prompt of {tokens} tokens does not fit a context of {ctx}")]
    PromptTooLong { tokens: usize, ctx: usize },
    #[error("empty prompt: a session needs at least one token to have logits")]
    EmptyPrompt,
    /// Logits were asked for before any token was evaluated.
    #[error("no logits yet: the session has not evaluated any token")]
    NoLogits,
    /// A rewind target beyond the session's tokens.
    #[error("cannot rewind to {target} tokens: the session holds only {len}")]
    RewindPastEnd { target: usize, len: usize },
    /// A checkpoint or snapshot from a differently shaped session.
    #[error("state does not fit this session: {0}")]
    StateMismatch(String),
    /// A snapshot file is malformed; `field` names the part at fault.
    #[error("snapshot: {field}: {msg}")]
    Snapshot { field: String, msg: String },
    /// A snapshot written for another model.
    #[error("snapshot: written for another model (identity {found}, this model is {expected})")]
    ForeignSnapshot { found: String, expected: String },
    /// A GGUF metadata record the engine needs is missing or mistyped.
    #[error("metadata {key}: {msg}")]
    Metadata { key: String, msg: String },
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Cuda(#[from] cuda::CudaError),
    #[error("sampler: {0}")]
    Sampler(String),
}

impl EngineError {
    pub(crate) fn snapshot(field: impl Into<String>, msg: impl Into<String>) -> Self {
        EngineError::Snapshot {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
