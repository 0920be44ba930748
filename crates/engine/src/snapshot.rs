//! Session snapshots: ds4's session payload (attention.md §15.1) inside a
//! wrapper of our own.
//!
//! The payload is ds4's positional layout generalized to the model's shapes
//! (layer count, head widths, vocabulary and ratios come from its config):
//! 13 u32 header fields, the tokens, the logits for the next token, per-layer
//! row counts, then per layer the live raw rows oldest first, compressed rows
//! with the compressor frontier, indexer rows with the indexer frontier.
//!
//! The payload alone cannot tell which model wrote it, nor whether it was
//! damaged, so the file wraps it (all little-endian):
//!
//! ```text
//! 0   8 bytes  magic "DS4RSNAP"
//! 8   u32      wrapper version (1)
//! 12  32 bytes model identity: SHA-256 of the GGUF header (cpu::identity_of)
//! 44  u64      payload length in bytes
//! 52  32 bytes SHA-256 of the payload
//! 84  payload
//! ```
//!
//! Loading checks every field before touching the session: a truncated file,
//! trailing bytes, a wrong checksum, a foreign model, shapes or counts that
//! do not follow from the header are errors naming the field at fault.
//! Beyond ds4's checks (attention.md §15.2) the row counts must equal
//! `⌊T/ratio⌋`. Unlike ds4, `prefill_cap` need not match the loader's chunk:
//! the CPU forward gives identical state under any chunking, so it is
//! recorded (the writer's chunk) and only required to be non-zero.

use std::path::Path;

use model::state::Frontier;
use model::{AttentionKind, ModelConfig};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, LayerImage, StateImage};
use crate::error::{EngineError, Result};
use crate::session::Session;

pub const WRAPPER_MAGIC: &[u8; 8] = b"DS4RSNAP";
pub const WRAPPER_VERSION: u32 = 1;
const WRAPPER_LEN: usize = 84;
/// "DSV4" read as a little-endian u32.
pub const PAYLOAD_MAGIC: u32 = 0x3456_5344;
pub const PAYLOAD_VERSION: u32 = 1;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compressed-row capacity of the most compressed-row-hungry layer, ds4's
/// `comp_cap` (`ctx/4 + 2` for Flash).
fn comp_cap(cfg: &ModelConfig, ctx: usize) -> usize {
    cfg.compress_ratios
        .iter()
        .filter(|&&r| r != 0)
        .min()
        .map_or(0, |&r| ctx / r + 2)
}

/// Rows of layer `il` after `t` tokens: (compressed, indexer).
fn row_counts(cfg: &ModelConfig, il: usize, t: usize) -> (usize, usize) {
    let r = cfg.compress_ratios[il];
    match cfg.attention_kind(il) {
        AttentionKind::Window => (0, 0),
        AttentionKind::Sparse => (t / r, t / r),
        AttentionKind::Heavy => (t / r, 0),
    }
}

fn put_u32(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u32).to_le_bytes());
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

impl<B: Backend> Session<B> {
    /// The session as a snapshot file's bytes.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let backend = self.backend();
        let cfg = backend.config();
        let logits = self.logits()?;
        let image = backend.export(self.state())?;
        let t = image.n_tokens;
        let ctx = image.ctx;
        let window = cfg.sliding_window.min(ctx);
        let mut p = Vec::new();
        for v in [
            PAYLOAD_MAGIC as usize,
            PAYLOAD_VERSION as usize,
            ctx,
            backend.prefill_chunk(),
            cfg.sliding_window,
            window,
            comp_cap(cfg, ctx),
            t,
            cfg.n_layer,
            cfg.head_dim,
            cfg.indexer_head_dim,
            cfg.n_vocab,
            t.min(window),
        ] {
            put_u32(&mut p, v);
        }
        for &tok in self.tokens() {
            p.extend_from_slice(&tok.to_le_bytes());
        }
        put_f32s(&mut p, &logits);
        for l in &image.layers {
            put_u32(&mut p, l.comp.len() / cfg.head_dim);
        }
        for l in &image.layers {
            put_u32(&mut p, l.index.len() / cfg.indexer_head_dim);
        }
        for l in &image.layers {
            put_f32s(&mut p, &l.raw);
            put_f32s(&mut p, &l.comp);
            if let Some(f) = &l.comp_frontier {
                put_f32s(&mut p, &f.kv);
                put_f32s(&mut p, &f.score);
            }
            put_f32s(&mut p, &l.index);
            if let Some(f) = &l.index_frontier {
                put_f32s(&mut p, &f.kv);
                put_f32s(&mut p, &f.score);
            }
        }
        let mut out = Vec::with_capacity(WRAPPER_LEN + p.len());
        out.extend_from_slice(WRAPPER_MAGIC);
        out.extend_from_slice(&WRAPPER_VERSION.to_le_bytes());
        out.extend_from_slice(backend.identity());
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&p));
        out.extend_from_slice(&p);
        Ok(out)
    }

    /// Writes [`Session::snapshot`] to `path`.
    pub fn save_snapshot(&self, path: &Path) -> Result<()> {
        let bytes = self.snapshot()?;
        std::fs::write(path, bytes).map_err(|source| EngineError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Replaces the session with a snapshot's checkpoint. The snapshot's
    /// context must fit this session's; the session keeps its own context
    /// size. Nothing changes when the snapshot is rejected.
    pub fn load_snapshot(&mut self, bytes: &[u8]) -> Result<()> {
        let payload = unwrap(bytes, self.backend().identity())?;
        let (tokens, logits, mut image) = parse_payload(self.backend().config(), payload)?;
        let ctx = self.ctx();
        if image.ctx > ctx {
            return Err(EngineError::snapshot(
                "ctx_size",
                format!("{} exceeds this session's context of {ctx}", image.ctx),
            ));
        }
        image.ctx = ctx;
        let state = self.backend().import(&image)?;
        let logits = self.backend().logits_from_host(logits)?;
        self.replace(tokens, state, logits);
        Ok(())
    }

    /// Reads `path` and loads it as [`Session::load_snapshot`] does.
    pub fn load_snapshot_file(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.load_snapshot(&bytes)
    }
}

/// Checks the wrapper and returns the payload.
fn unwrap<'a>(bytes: &'a [u8], identity: &[u8; 32]) -> Result<&'a [u8]> {
    if bytes.len() < WRAPPER_LEN {
        return Err(EngineError::snapshot(
            "wrapper",
            format!(
                "truncated: {} bytes, the wrapper header alone is {WRAPPER_LEN}",
                bytes.len()
            ),
        ));
    }
    if &bytes[..8] != WRAPPER_MAGIC {
        return Err(EngineError::snapshot(
            "magic",
            "not a ds4rs snapshot (expected \"DS4RSNAP\")",
        ));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != WRAPPER_VERSION {
        return Err(EngineError::snapshot(
            "version",
            format!("{version}, this build reads {WRAPPER_VERSION}"),
        ));
    }
    if &bytes[12..44] != identity {
        return Err(EngineError::ForeignSnapshot {
            found: hex(&bytes[12..44]),
            expected: hex(identity),
        });
    }
    let len = u64::from_le_bytes(bytes[44..52].try_into().expect("8 bytes"));
    let have = (bytes.len() - WRAPPER_LEN) as u64;
    if len > have {
        return Err(EngineError::snapshot(
            "payload",
            format!("truncated: header says {len} bytes, file has {have}"),
        ));
    }
    if len < have {
        return Err(EngineError::snapshot(
            "payload",
            format!("{} trailing bytes after the {len}-byte payload", have - len),
        ));
    }
    let payload = &bytes[WRAPPER_LEN..];
    if Sha256::digest(payload).as_slice() != &bytes[52..84] {
        return Err(EngineError::snapshot(
            "checksum",
            "payload SHA-256 does not match: the file is corrupted",
        ));
    }
    Ok(payload)
}

/// Sequential reader naming the field it reads in errors.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        let end = n
            .checked_mul(4)
            .and_then(|b| self.pos.checked_add(b))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                EngineError::snapshot(
                    field,
                    format!(
                        "payload ends at byte {} while {n} values remain to read at {}",
                        self.buf.len(),
                        self.pos
                    ),
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32s(&mut self, n: usize, field: &str) -> Result<Vec<u32>> {
        Ok(self
            .take(n, field)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    fn f32s(&mut self, n: usize, field: &str) -> Result<Vec<f32>> {
        Ok(self
            .take(n, field)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    fn frontier(&mut self, fresh: &Frontier, field: &str) -> Result<Frontier> {
        let n = fresh.rows * fresh.width;
        Ok(Frontier {
            rows: fresh.rows,
            width: fresh.width,
            kv: self.f32s(n, &format!("{field} state_kv"))?,
            score: self.f32s(n, &format!("{field} state_score"))?,
        })
    }
}

fn expect(field: &str, found: u32, expected: usize) -> Result<()> {
    if found as usize != expected {
        return Err(EngineError::snapshot(
            field,
            format!("{found}, expected {expected}"),
        ));
    }
    Ok(())
}

/// Parses and validates a payload against the model's config.
fn parse_payload(cfg: &ModelConfig, payload: &[u8]) -> Result<(Vec<u32>, Vec<f32>, StateImage)> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let h = r.u32s(13, "header")?;
    expect("header.magic", h[0], PAYLOAD_MAGIC as usize)?;
    expect("header.version", h[1], PAYLOAD_VERSION as usize)?;
    let ctx = h[2] as usize;
    if h[3] == 0 {
        return Err(EngineError::snapshot("header.prefill_cap", "0"));
    }
    let t = h[7] as usize;
    if t == 0 || t > ctx {
        return Err(EngineError::snapshot(
            "header.T",
            format!("{t} tokens, expected 1..={ctx} (ctx_size)"),
        ));
    }
    let window = cfg.sliding_window.min(ctx);
    expect("header.raw_cap", h[4], cfg.sliding_window)?;
    expect("header.raw_window", h[5], window)?;
    expect("header.comp_cap", h[6], comp_cap(cfg, ctx))?;
    expect("header.n_layer", h[8], cfg.n_layer)?;
    expect("header.head_dim", h[9], cfg.head_dim)?;
    expect("header.indexer_head_dim", h[10], cfg.indexer_head_dim)?;
    expect("header.n_vocab", h[11], cfg.n_vocab)?;
    expect("header.raw_live", h[12], t.min(window))?;
    let tokens = r.u32s(t, "tokens")?;
    if let Some(bad) = tokens.iter().find(|&&id| id as usize >= cfg.n_vocab) {
        return Err(EngineError::snapshot(
            "tokens",
            format!("token id {bad} outside the vocabulary of {}", cfg.n_vocab),
        ));
    }
    let logits = r.f32s(cfg.n_vocab, "logits")?;
    let n_comp = r.u32s(cfg.n_layer, "n_comp")?;
    let n_index = r.u32s(cfg.n_layer, "n_index_comp")?;
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for il in 0..cfg.n_layer {
        let (want_comp, want_index) = row_counts(cfg, il, t);
        expect(&format!("n_comp[{il}]"), n_comp[il], want_comp)?;
        expect(&format!("n_index_comp[{il}]"), n_index[il], want_index)?;
        let ratio = cfg.compress_ratios[il];
        let kind = cfg.attention_kind(il);
        let raw = r.f32s(
            t.min(window) * cfg.head_dim,
            &format!("layer {il} raw rows"),
        )?;
        let (comp, comp_frontier) = if kind == AttentionKind::Window {
            (Vec::new(), None)
        } else {
            let comp = r.f32s(
                want_comp * cfg.head_dim,
                &format!("layer {il} compressed rows"),
            )?;
            let f = r.frontier(
                &Frontier::new(ratio, cfg.head_dim),
                &format!("layer {il} compressor"),
            )?;
            (comp, Some(f))
        };
        let (index, index_frontier) = if kind == AttentionKind::Sparse {
            let index = r.f32s(
                want_index * cfg.indexer_head_dim,
                &format!("layer {il} indexer rows"),
            )?;
            let f = r.frontier(
                &Frontier::new(ratio, cfg.indexer_head_dim),
                &format!("layer {il} indexer"),
            )?;
            (index, Some(f))
        } else {
            (Vec::new(), None)
        };
        layers.push(LayerImage {
            raw,
            comp,
            comp_frontier,
            index,
            index_frontier,
        });
    }
    if r.pos != payload.len() {
        return Err(EngineError::snapshot(
            "payload",
            format!("{} bytes after the last layer", payload.len() - r.pos),
        ));
    }
    Ok((
        tokens,
        logits,
        StateImage {
            ctx,
            n_tokens: t,
            layers,
        },
    ))
}
