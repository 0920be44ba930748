//! DeepSeek V4's tokenizer: byte-level BPE behind the V4 pre-tokenizer, exact to HF
//! `tokenizers` with the model's `tokenizer.json` (checked on a committed corpus).
//!
//! [`Tokenizer::encode`] treats its input as text, always: strings such as `<｜User｜>` that
//! spell control tokens are byte-pair encoded like any other text. Control tokens enter a
//! prompt only through the renderer ([`crate::render`]), which hands their ids over directly.
//! [`Tokenizer::encode_with_added_tokens`] reproduces HF's full behaviour (every added token
//! recognized) for trusted text.

mod added;
mod bpe;
mod byte_level;
mod classes;
mod incremental;
mod pretokenize;

use rustc_hash::FxHashMap;

use crate::{Error, Result};
use added::{AddedTokens, Span};
use bpe::Merges;
pub use incremental::IncrementalDecoder;
use pretokenize::pretokenize;

/// GGUF `tokenizer.ggml.token_type` values.
const TOKEN_TYPE_NORMAL: i32 = 1;
const TOKEN_TYPE_CONTROL: i32 = 3;

/// Bound on the per-call piece memo, so a huge input of distinct pieces stays linear.
const MAX_SEEN_PIECES: usize = 1 << 16;

/// A loaded vocabulary and merge table. Immutable after loading, so one instance can serve
/// every thread.
pub struct Tokenizer {
    tokens: Vec<String>,
    /// Bytes each id decodes to, precomputed so decoding is a copy.
    decoded: Vec<Box<[u8]>>,
    ids: FxHashMap<String, u32>,
    byte_ids: [u32; 256],
    merges: Merges,
    added: AddedTokens,
}

/// An added token as `tokenizer.json` lists it.
struct Added {
    content: String,
    id: u32,
    /// HF matches tokens with `normalized: false` in a first pass over raw text.
    normalized: bool,
}

impl Tokenizer {
    /// Builds the tokenizer from the GGUF metadata arrays `tokenizer.ggml.tokens`,
    /// `tokenizer.ggml.merges` (`"left right"`, index = rank) and `tokenizer.ggml.token_type`
    /// (one per token; every non-normal token is an added token, control tokens matched
    /// first as HF does with its special tokens).
    pub fn from_vocab(tokens: Vec<String>, merges: &[String], token_types: &[i32]) -> Result<Self> {
        if token_types.len() != tokens.len() {
            return Err(Error::Vocab(format!(
                "{} token types for {} tokens",
                token_types.len(),
                tokens.len()
            )));
        }
        let added = tokens
            .iter()
            .zip(token_types)
            .enumerate()
            .filter(|(_, (_, &ty))| ty != TOKEN_TYPE_NORMAL)
            .map(|(id, (content, &ty))| Added {
                content: content.clone(),
                id: id as u32,
                normalized: ty != TOKEN_TYPE_CONTROL,
            })
            .collect();
        let merges = merges
            .iter()
            .enumerate()
            .map(|(index, m)| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(Error::Merge {
                    index,
                    merge: m.clone(),
                    reason: "expected \"left right\"",
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        Self::build(tokens, merges, added)
    }

    /// Builds the tokenizer from the text of a `tokenizer.json` (HF format, BPE model).
    pub fn from_tokenizer_json(text: &str) -> Result<Self> {
        let bad = |m: &str| Error::TokenizerJson(m.to_string());
        let root: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::TokenizerJson(e.to_string()))?;
        let model = root.get("model").ok_or_else(|| bad("no model"))?;
        if model.get("type").and_then(|t| t.as_str()) != Some("BPE") {
            return Err(bad("model is not BPE"));
        }
        let vocab = model
            .get("vocab")
            .and_then(|v| v.as_object())
            .ok_or_else(|| bad("no model.vocab object"))?;
        let mut pairs: Vec<(u32, String)> = Vec::with_capacity(vocab.len());
        for (tok, id) in vocab {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| bad("vocab id is not a u32"))?;
            pairs.push((id, tok.clone()));
        }
        let mut added = Vec::new();
        for a in root
            .get("added_tokens")
            .and_then(|v| v.as_array())
            .map_or(&[][..], |v| v.as_slice())
        {
            let content = a.get("content").and_then(|c| c.as_str());
            let id = a
                .get("id")
                .and_then(|i| i.as_u64())
                .and_then(|i| u32::try_from(i).ok());
            let (Some(content), Some(id)) = (content, id) else {
                return Err(bad("added token without content or id"));
            };
            let normalized = a
                .get("normalized")
                .and_then(|n| n.as_bool())
                .unwrap_or(true);
            added.push(Added {
                content: content.to_string(),
                id,
                normalized,
            });
        }
        let size = pairs
            .iter()
            .map(|p| p.0)
            .chain(added.iter().map(|a| a.id))
            .max()
            .map_or(0, |m| m as usize + 1);
        // Ids must be dense (the model indexes embeddings by id); a stray huge id would
        // otherwise make this allocation enormous.
        if size > pairs.len() + added.len() {
            return Err(Error::Vocab(format!(
                "ids are not contiguous (highest is {})",
                size - 1
            )));
        }
        let mut tokens: Vec<Option<String>> = vec![None; size];
        for (id, tok) in pairs {
            tokens[id as usize] = Some(tok);
        }
        for a in &added {
            tokens[a.id as usize] = Some(a.content.clone());
        }
        let tokens = tokens
            .into_iter()
            .enumerate()
            .map(|(id, t)| t.ok_or_else(|| Error::Vocab(format!("id {id} has no token"))))
            .collect::<Result<Vec<_>>>()?;
        let mut merges = Vec::new();
        for (index, m) in model
            .get("merges")
            .and_then(|v| v.as_array())
            .ok_or_else(|| bad("no model.merges array"))?
            .iter()
            .enumerate()
        {
            let pair = match m {
                serde_json::Value::String(s) => s
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string())),
                serde_json::Value::Array(v) => match v.as_slice() {
                    [serde_json::Value::String(a), serde_json::Value::String(b)] => {
                        Some((a.clone(), b.clone()))
                    }
                    _ => None,
                },
                _ => None,
            };
            merges.push(pair.ok_or_else(|| Error::Merge {
                index,
                merge: m.to_string(),
                reason: "expected \"left right\" or [left, right]",
            })?);
        }
        Self::build(tokens, merges, added)
    }

    fn build(
        tokens: Vec<String>,
        merges: Vec<(String, String)>,
        added: Vec<Added>,
    ) -> Result<Self> {
        let n = u32::try_from(tokens.len()).map_err(|_| Error::Vocab("too many tokens".into()))?;
        let mut ids = FxHashMap::default();
        ids.reserve(tokens.len());
        for (id, t) in tokens.iter().enumerate() {
            ids.entry(t.clone()).or_insert(id as u32);
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let c = byte_level::byte_char(b as u8).to_string();
            *slot = *ids.get(&c).ok_or_else(|| {
                Error::Vocab(format!("byte token {c:?} (byte {b:#04x}) is missing"))
            })?;
        }
        let mut table = Merges::new();
        for (index, (a, b)) in merges.iter().enumerate() {
            let lookup = |s: &str, reason| {
                ids.get(s).copied().ok_or_else(|| Error::Merge {
                    index,
                    merge: format!("{a} {b}"),
                    reason,
                })
            };
            let ia = lookup(a, "left token not in vocabulary")?;
            let ib = lookup(b, "right token not in vocabulary")?;
            let im = lookup(&format!("{a}{b}"), "merged token not in vocabulary")?;
            table.insert(ia, ib, index as u32, im);
        }
        let (normalized, raw): (Vec<Added>, Vec<Added>) = added
            .into_iter()
            .filter(|a| a.id < n)
            .partition(|a| a.normalized);
        let added = AddedTokens::new(
            raw.into_iter().map(|a| (a.content, a.id)).collect(),
            normalized.into_iter().map(|a| (a.content, a.id)).collect(),
        )?;
        let decoded = tokens
            .iter()
            .map(|t| byte_level::token_bytes(t).into_boxed_slice())
            .collect();
        Ok(Tokenizer {
            tokens,
            decoded,
            ids,
            byte_ids,
            merges: table,
            added,
        })
    }

    /// Number of token ids (129280 for DeepSeek V4).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Number of merge rules.
    pub fn merge_count(&self) -> usize {
        self.merges.len()
    }

    /// The id of a token string, e.g. `"<｜User｜>"`.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The vocabulary string of an id (byte-level alphabet for ordinary tokens).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|s| s.as_str())
    }

    /// Encodes text as text: no control token is ever produced.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        self.encode_into(text, &mut out);
        out
    }

    /// [`Tokenizer::encode`], appending to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        // Words repeat: each distinct piece is byte-pair encoded once per call, later
        // occurrences copy its ids (the merge table is too big for the cache, so this is
        // most of the speed).
        let mut seen: FxHashMap<&str, (usize, usize)> = FxHashMap::default();
        let mut symbols = Vec::with_capacity(64);
        pretokenize(text, &mut |piece| {
            if let [b] = piece.as_bytes() {
                out.push(self.byte_ids[*b as usize]);
                return;
            }
            if let Some(&(start, len)) = seen.get(piece) {
                out.extend_from_within(start..start + len);
                return;
            }
            let start = out.len();
            symbols.clear();
            symbols.extend(piece.bytes().map(|b| self.byte_ids[b as usize]));
            self.merges.apply(&mut symbols, out);
            if seen.len() < MAX_SEEN_PIECES {
                seen.insert(piece, (start, out.len() - start));
            }
        });
    }

    /// HF `Tokenizer.encode(text, add_special_tokens=False)`: every added-token string in
    /// `text` becomes its id. Only for trusted text; client text goes through
    /// [`Tokenizer::encode`].
    pub fn encode_with_added_tokens(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        for span in self.added.split(text) {
            match span {
                Span::Text(t) => self.encode_into(t, &mut out),
                Span::Token(id) => out.push(id),
            }
        }
        out
    }

    /// The bytes one id stands for; `None` for ids outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.decoded.get(id as usize).map(|b| &b[..])
    }

    /// Decodes ids to bytes; ids outside the vocabulary are skipped (as HF does). The bytes
    /// may be invalid UTF-8 when the ids cut a character; see [`IncrementalDecoder`].
    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        for &id in ids {
            if let Some(b) = self.token_bytes(id) {
                out.extend_from_slice(b);
            }
        }
        out
    }
}
