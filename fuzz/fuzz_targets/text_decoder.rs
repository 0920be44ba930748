//! Tokenizer decoding: the incremental decoder must equal a lossy decode of the whole id
//! sequence however the bytes arrive, and encoding any text must decode back to it.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use text::{IncrementalDecoder, Tokenizer};

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/text/tests/fixtures/tokenizer.json"
        );
        let json = std::fs::read_to_string(path).expect("tokenizer.json");
        Tokenizer::from_tokenizer_json(&json).expect("tokenizer")
    })
}

fuzz_target!(|data: &[u8]| {
    let tok = tokenizer();
    // Ids: 3 bytes each, spread over the vocabulary and a little past it.
    let ids: Vec<u32> = data
        .chunks_exact(3)
        .map(|c| (u32::from(c[0]) | u32::from(c[1]) << 8 | u32::from(c[2]) << 16) % 140_000)
        .collect();
    let mut dec = IncrementalDecoder::new();
    let mut streamed = String::new();
    for &id in &ids {
        streamed += &dec.push(tok, id);
    }
    streamed += &dec.finish();
    assert_eq!(streamed, String::from_utf8_lossy(&tok.decode(&ids)));

    // Raw bytes in chunks whose sizes come from the data itself.
    let mut dec = IncrementalDecoder::new();
    let mut streamed = String::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (usize::from(rest[0]) % 5 + 1).min(rest.len());
        streamed += &dec.push_bytes(&rest[..n]);
        rest = &rest[n..];
    }
    streamed += &dec.finish();
    let text = String::from_utf8_lossy(data);
    assert_eq!(streamed, text);

    // Encoding is lossless.
    assert_eq!(tok.decode(&tok.encode(&text)), text.as_bytes());
});
