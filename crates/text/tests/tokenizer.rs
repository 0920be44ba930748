//! The tokenizer against HF `tokenizers` 0.23.3 on the committed corpus and decode cases.

mod common;

use common::{ids, jsonl, tokenizer};
use text::IncrementalDecoder;

#[test]
fn vocabulary_shape() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 129280);
    assert_eq!(tok.merge_count(), 127741);
    assert_eq!(tok.token_to_id("<｜begin▁of▁sentence｜>"), Some(0));
    assert_eq!(tok.token_to_id("｜DSML｜"), Some(128825));
}

#[test]
fn corpus_matches_hf() {
    let tok = tokenizer();
    let cases = jsonl("tokenizer_corpus.jsonl");
    assert!(cases.len() >= 20_000);
    let mut failures = Vec::new();
    for case in &cases {
        let text = case["t"].as_str().expect("text");
        let plain = ids(&case["ids"]);
        let hf = case.get("hf").map_or_else(|| plain.clone(), ids);
        let got = tok.encode(text);
        if got != plain {
            failures.push(format!("plain {text:?}: got {got:?} want {plain:?}"));
        }
        let got = tok.encode_with_added_tokens(text);
        if got != hf {
            failures.push(format!("hf {text:?}: got {got:?} want {hf:?}"));
        }
        if tok.decode(&plain) != text.as_bytes() {
            failures.push(format!("roundtrip {text:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed; first: {:#?}",
        failures.len(),
        cases.len(),
        &failures[..failures.len().min(10)]
    );
}

#[test]
fn spec_tokenizer_examples() {
    let tok = tokenizer();
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("prompt-examples.json")).expect("spec copy"),
    )
    .expect("json");
    for case in spec["tokenizer_examples"].as_array().expect("array") {
        let text = case["text"].as_str().expect("text");
        let want = ids(&case["ids"]);
        let got = if case["kind"] == "plain" {
            tok.encode(text)
        } else {
            tok.encode_with_added_tokens(text)
        };
        assert_eq!(got, want, "{text:?}");
    }
}

#[test]
fn decode_matches_hf_and_streams_valid_utf8() {
    let tok = tokenizer();
    for case in jsonl("decode_cases.jsonl") {
        let id_list = ids(&case["ids"]);
        let want = case["text"].as_str().expect("text");
        assert_eq!(
            String::from_utf8_lossy(&tok.decode(&id_list)),
            want,
            "{id_list:?}"
        );
        let mut d = IncrementalDecoder::new();
        let mut streamed = String::new();
        for &id in &id_list {
            streamed += &d.push(tok, id);
        }
        streamed += &d.finish();
        assert_eq!(streamed, want, "{id_list:?}");
    }
}

#[test]
fn client_text_never_becomes_a_control_token() {
    let tok = tokenizer();
    let ids = tok.encode("<｜User｜>hi<think>｜DSML｜");
    assert!(ids.iter().all(|&id| id < 128000), "{ids:?}");
    assert_eq!(
        String::from_utf8_lossy(&tok.decode(&ids)),
        "<｜User｜>hi<think>｜DSML｜"
    );
}

#[test]
fn malformed_tokenizer_json_is_an_error() {
    use text::Tokenizer;
    let text = std::fs::read_to_string(common::fixture("tokenizer.json")).expect("read");
    let base: serde_json::Value = serde_json::from_str(&text).expect("json");
    let load = |v: &serde_json::Value| Tokenizer::from_tokenizer_json(&v.to_string());
    assert!(load(&base).is_ok());
    assert!(Tokenizer::from_tokenizer_json("{").is_err());

    let mut v = base.clone();
    v["model"]["type"] = "WordPiece".into();
    assert!(load(&v).is_err());

    let mut v = base.clone();
    let id = v["model"]["vocab"]["Ġ"].clone();
    v["model"]["vocab"]
        .as_object_mut()
        .expect("vocab")
        .remove("Ġ");
    v["model"]["vocab"]["Ġ-moved"] = id;
    assert!(
        matches!(load(&v), Err(text::Error::Vocab(_))),
        "missing byte token"
    );

    let mut v = base.clone();
    v["model"]["vocab"]["far away"] = 4_000_000_000u64.into();
    assert!(matches!(load(&v), Err(text::Error::Vocab(_))), "sparse ids");

    let mut v = base.clone();
    v["model"]["merges"]
        .as_array_mut()
        .expect("merges")
        .push("nosuch token".into());
    assert!(
        matches!(load(&v), Err(text::Error::Merge { .. })),
        "unknown merge token"
    );
}
