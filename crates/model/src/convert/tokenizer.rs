//! GGUF tokenizer metadata from a Hugging Face `tokenizer.json`, following
//! llama.cpp's conventions for GPT-2-style byte-level BPE
//! (`convert_hf_to_gguf.py`, `get_vocab_base`): `tokenizer.ggml.model` =
//! "gpt2", `tokens` in id order (ids the JSON does not name become
//! `[PAD{id}]`, type UNUSED), `token_type` NORMAL for the BPE vocabulary,
//! CONTROL for special added tokens and USER_DEFINED for the other added
//! tokens (kept verbatim: ds4 finds `<think>` and friends by their exact
//! text, model.md §1.3), `merges` as "left right" strings in rank order,
//! and the BOS/EOS/pad ids found by their V4 texts. `pre` is "joyai-llm",
//! the value in ds4's published files (model.md §1.3).

use gguf::{MetaArray, MetaValue, ValueType};
use serde_json::Value;

/// The V4 tokenizer, embedded so `synth` writes the real vocabulary with no
/// file at hand.
pub const V4_TOKENIZER_JSON: &str = include_str!("../../../text/tests/fixtures/tokenizer.json");

/// llama.cpp's `gguf.TokenType` values.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

const BOS: &str = "<｜begin▁of▁sentence｜>";
const EOS: &str = "<｜end▁of▁sentence｜>";
const PAD: &str = "<｜▁pad▁｜>";

/// The `tokenizer.ggml.*` records for `json` (the text of a tokenizer.json).
/// Errors are messages naming the field at fault.
pub fn tokenizer_metadata(json: &str) -> Result<Vec<(String, MetaValue)>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let model = v.get("model").ok_or("no \"model\" object")?;
    if model.get("type").and_then(Value::as_str) != Some("BPE") {
        return Err("model.type is not \"BPE\"".into());
    }
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or("no model.vocab object")?;
    let mut tokens: Vec<Option<(String, i32)>> = Vec::new();
    let mut put = |id: u64, text: &str, ty: i32| -> Result<(), String> {
        let id = usize::try_from(id)
            .ok()
            .filter(|&i| i < (1 << 31))
            .ok_or(format!("token id {id} out of range"))?;
        if tokens.len() <= id {
            tokens.resize(id + 1, None);
        }
        tokens[id] = Some((text.to_owned(), ty));
        Ok(())
    };
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .ok_or(format!("model.vocab[{text:?}] is not an id"))?;
        put(id, text, NORMAL)?;
    }
    for (i, t) in v
        .get("added_tokens")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let id = t
            .get("id")
            .and_then(Value::as_u64)
            .ok_or(format!("added_tokens[{i}].id missing"))?;
        let text = t
            .get("content")
            .and_then(Value::as_str)
            .ok_or(format!("added_tokens[{i}].content missing"))?;
        let special = t.get("special").and_then(Value::as_bool).unwrap_or(false);
        put(id, text, if special { CONTROL } else { USER_DEFINED })?;
    }
    let merges = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or("no model.merges array")?
        .iter()
        .enumerate()
        .map(|(i, m)| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(p) => match p.as_slice() {
                [Value::String(a), Value::String(b)] => Ok(format!("{a} {b}")),
                _ => Err(format!("model.merges[{i}] is not a pair of strings")),
            },
            _ => Err(format!("model.merges[{i}] is not a merge")),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let (texts, types): (Vec<String>, Vec<i32>) = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| t.unwrap_or((format!("[PAD{id}]"), UNUSED)))
        .unzip();
    let id_of = |s: &str| texts.iter().position(|t| t == s);
    let strings = |items: Vec<String>| {
        MetaValue::Array(MetaArray {
            elem_type: ValueType::String,
            items: items.into_iter().map(MetaValue::String).collect(),
        })
    };
    let mut m = vec![
        ("tokenizer.ggml.model".to_owned(), MetaValue::from("gpt2")),
        (
            "tokenizer.ggml.pre".to_owned(),
            MetaValue::from("joyai-llm"),
        ),
    ];
    let specials: Vec<(&str, Option<usize>)> = [
        ("tokenizer.ggml.bos_token_id", id_of(BOS)),
        ("tokenizer.ggml.eos_token_id", id_of(EOS)),
        ("tokenizer.ggml.padding_token_id", id_of(PAD)),
    ]
    .into();
    m.push(("tokenizer.ggml.tokens".into(), strings(texts)));
    m.push((
        "tokenizer.ggml.token_type".into(),
        MetaValue::Array(MetaArray {
            elem_type: ValueType::I32,
            items: types.into_iter().map(MetaValue::I32).collect(),
        }),
    ));
    m.push(("tokenizer.ggml.merges".into(), strings(merges)));
    for (key, id) in specials {
        if let Some(id) = id {
            m.push((key.into(), MetaValue::U32(id as u32)));
        }
    }
    Ok(m)
}
