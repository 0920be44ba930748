//! Text layer of ds4rs: tokenizer, chat rendering, DSML tool calls.
//!
//! * [`tokenizer`]: DeepSeek V4's byte-level BPE, exact to HF `tokenizers` with the model's
//!   `tokenizer.json`, built from that file or from the GGUF token/merge arrays.
//! * [`render`]: a conversation to the exact prompt of DeepSeek's reference encoder
//!   (`encoding_dsv4.py`), as text and control-token segments and as token ids.
//! * [`dsml`]: model output back into reasoning, content and tool calls, complete or streaming,
//!   plus the decode-state tracker that keeps DSML structure greedy.
//!
//! Control tokens only ever come from the renderer: text supplied by a client is encoded as
//! text even when it spells a control token.

pub mod dsml;
mod error;
pub mod json;
pub mod render;
pub mod tokenizer;

pub use error::{Error, Result};
pub use tokenizer::{IncrementalDecoder, Tokenizer};
