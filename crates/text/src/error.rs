//! The crate's one error type: every fallible entry point reports bad input through it.

/// What went wrong while loading a tokenizer, reading a conversation or rendering it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `tokenizer.json` is not the shape DeepSeek ships (BPE model, vocab, merges).
    #[error("tokenizer.json: {0}")]
    TokenizerJson(String),
    /// The token list is unusable (gaps, duplicates the BPE needs, missing byte tokens).
    #[error("vocabulary: {0}")]
    Vocab(String),
    /// A merge entry is malformed or names tokens that are not in the vocabulary.
    #[error("merge #{index} {merge:?}: {reason}")]
    Merge {
        index: usize,
        merge: String,
        reason: &'static str,
    },
    /// A control token the renderer needs is not in the vocabulary.
    #[error("required token {0:?} is missing from the vocabulary")]
    MissingToken(String),
    /// The conversation or tools JSON does not have the OpenAI shape.
    #[error("messages: {0}")]
    Messages(String),
    /// Malformed JSON text.
    #[error("JSON: {0}")]
    Json(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
