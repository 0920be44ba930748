//! Shared fixture loading for the integration tests (fixtures are committed; see
//! tools/reference/make_text_fixtures.py for how they were produced).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use text::Tokenizer;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

pub fn jsonl(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture readable");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect()
}

pub fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let text = std::fs::read_to_string(fixture("tokenizer.json")).expect("tokenizer.json");
        Tokenizer::from_tokenizer_json(&text).expect("tokenizer loads")
    })
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}
