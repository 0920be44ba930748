//! The tokenizer a GGUF carries (`tokenizer.ggml.*`, prompt-format.md §1.1)
//! and the end-of-sequence id, so a model file alone is enough to chat.

use gguf::{GgufHeader, MetaValue};
use text::Tokenizer;

use crate::error::{EngineError, Result};

fn bad(key: &str, msg: &str) -> EngineError {
    EngineError::Metadata {
        key: key.to_owned(),
        msg: msg.to_owned(),
    }
}

fn array<'a>(h: &'a GgufHeader, key: &str) -> Result<&'a [MetaValue]> {
    match h.get(key) {
        Some(MetaValue::Array(a)) => Ok(&a.items),
        Some(_) => Err(bad(key, "not an array")),
        None => Err(bad(key, "missing (the file has no tokenizer)")),
    }
}

fn strings(h: &GgufHeader, key: &str) -> Result<Vec<String>> {
    array(h, key)?
        .iter()
        .map(|v| match v {
            MetaValue::String(s) => Ok(s.clone()),
            _ => Err(bad(key, "not a string array")),
        })
        .collect()
}

/// Builds the tokenizer from the file's vocabulary, merges and token types.
pub fn tokenizer(h: &GgufHeader) -> Result<Tokenizer> {
    let key = "tokenizer.ggml.token_type";
    let types = array(h, key)?
        .iter()
        .map(|v| match v {
            MetaValue::I32(t) => Ok(*t),
            _ => Err(bad(key, "not an i32 array")),
        })
        .collect::<Result<Vec<i32>>>()?;
    let tokens = strings(h, "tokenizer.ggml.tokens")?;
    let merges = strings(h, "tokenizer.ggml.merges")?;
    Ok(Tokenizer::from_vocab(tokens, &merges, &types)?)
}

/// `tokenizer.ggml.eos_token_id`.
pub fn eos_id(h: &GgufHeader) -> Result<u32> {
    let key = "tokenizer.ggml.eos_token_id";
    h.get_u32(key).map_err(|e| bad(key, &e.to_string()))
}
