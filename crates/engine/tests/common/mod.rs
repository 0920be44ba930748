//! Shared test fixtures: the oracle's tiny checkpoints converted to GGUF
//! (crates/model/tests/fixtures/oracle), their exact-mode logits, and a
//! byte-level tokenizer over their 256-token vocabulary.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::CpuBackend;
use gguf::GgufFile;
use model::layout::Recipe;
use model::{Numerics, Options};
use safetensors::{Dtype, SafeTensors};
use text::Tokenizer;

/// The oracle's numerics: no QAT round trips, no f16 rows, f32 activations.
pub const EXACT: Options = Options {
    numerics: Numerics::F32,
    qat: false,
    f16_rows: false,
};

pub fn fixture(config: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/oracle")
        .join(config)
}

/// `config` converted to an F32 GGUF in a temporary directory.
pub fn convert(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.gguf");
    model::convert::Converter::open(&fixture(config), Recipe::F32)
        .unwrap()
        .write(&out, &|_| {})
        .unwrap();
    (dir, out)
}

/// A CPU backend over the converted `config`; the directory must outlive it
/// only until the file is mapped.
pub fn backend(config: &str, chunk: usize) -> Arc<CpuBackend> {
    backend_with(config, chunk, EXACT)
}

/// [`backend`] with other numerics.
pub fn backend_with(config: &str, chunk: usize, opts: Options) -> Arc<CpuBackend> {
    let (_dir, path) = convert(config);
    let file = GgufFile::open(&path).unwrap();
    Arc::new(
        CpuBackend::from_file(file, opts)
            .unwrap()
            .with_prefill_chunk(chunk),
    )
}

/// The oracle's `tokens` and `logits` (one row of n_vocab per position).
pub fn oracle(config: &str) -> (Vec<u32>, Vec<f32>) {
    let path = fixture(config).join("logits_exact.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut map = HashMap::new();
    for (name, view) in st.tensors() {
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| match view.dtype() {
                Dtype::F32 => f32::from_le_bytes(c.try_into().unwrap()),
                Dtype::I32 => i32::from_le_bytes(c.try_into().unwrap()) as f32,
                other => panic!("{name}: unexpected dtype {other:?}"),
            })
            .collect();
        map.insert(name, v);
    }
    let tokens = map["tokens"].iter().map(|&v| v as u32).collect();
    (tokens, map.remove("logits").unwrap())
}

/// `max|a - b| / max|b|`.
pub fn rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let scale = b.iter().fold(0f32, |m, y| m.max(y.abs()));
    diff / scale.max(f32::MIN_POSITIVE)
}

/// Token i is byte i (GPT-2 byte-level spelling), no merges: every id
/// decodes to one byte.
pub fn byte_tokenizer() -> Tokenizer {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut extra = 0;
    let tokens = (0u32..256)
        .map(|b| {
            if printable.contains(&b) {
                char::from_u32(b).unwrap().to_string()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap().to_string()
            }
        })
        .collect();
    Tokenizer::from_vocab(tokens, &[], &[1; 256]).unwrap()
}
