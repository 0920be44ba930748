//! `ds4rs tokenize`, `detokenize` and `render` end to end, with the text crate's committed
//! tokenizer.json.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn tokenizer_json() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../text/tests/fixtures/tokenizer.json")
}

fn ds4rs(args: &[&str], stdin: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ds4rs"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ds4rs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tokenize_and_detokenize_round_trip() {
    let tok = tokenizer_json();
    let tok = tok.to_str().expect("utf-8 path");
    let text = "Hello, world!<｜User｜> 1234567\n";
    let (ok, out, err) = ds4rs(&["tokenize", "--tokenizer", tok, "--json"], text.as_bytes());
    assert!(ok, "{err}");
    let ids: Vec<u32> = serde_json::from_slice(&out).expect("JSON ids");
    assert_eq!(&ids[..4], [19923, 14, 2058, 3]);
    assert!(
        ids.iter().all(|&i| i < 128000),
        "control token from stdin: {ids:?}"
    );
    let (ok, out, err) = ds4rs(&["detokenize", "--tokenizer", tok], &out);
    assert!(ok, "{err}");
    assert_eq!(out, text.as_bytes());
    let (ok, _, _) = ds4rs(&["detokenize", "--tokenizer", tok], b"999999");
    assert!(!ok);
}

#[test]
fn render_text_and_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let messages = dir.path().join("m.json");
    std::fs::write(
        &messages,
        r#"[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is 2+2?"}]"#,
    )
    .expect("write");
    let m = messages.to_str().expect("path");
    let (ok, out, err) = ds4rs(&["render", "--messages", m], b"");
    assert!(ok, "{err}");
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>What is 2+2?<｜Assistant｜><think>"
    );
    let tok = tokenizer_json();
    let args = [
        "render",
        "--messages",
        m,
        "--ids",
        "--tokenizer",
        tok.to_str().expect("path"),
    ];
    let (ok, out, err) = ds4rs(&args, b"");
    assert!(ok, "{err}");
    let ids: Vec<u32> = serde_json::from_slice(&out).expect("ids");
    assert_eq!(
        ids,
        [
            0, 3476, 477, 260, 11502, 22896, 16, 128803, 3085, 344, 223, 20, 13, 20, 33, 128804,
            128821
        ]
    );
    let (ok, _, err) = ds4rs(&["render", "--messages", m, "--ids"], b"");
    assert!(!ok && err.contains("--tokenizer"), "{err}");
}

/// The GGUF arrays (`tokenizer.ggml.tokens` / `merges` / `token_type`) give the same
/// tokenizer as tokenizer.json. The GGUF here is written from tokenizer.json the way
/// llama.cpp's converter does (special added tokens are CONTROL = 3, other added tokens
/// USER_DEFINED = 4, the rest NORMAL = 1).
#[test]
fn gguf_vocabulary_matches_tokenizer_json() {
    use gguf::{GgufBuilder, MetaArray, MetaValue, ValueType};

    let path = tokenizer_json();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let mut tokens = vec![String::new(); 129280];
    let mut types = vec![1i32; 129280];
    for (t, id) in json["model"]["vocab"].as_object().expect("vocab") {
        tokens[id.as_u64().expect("id") as usize] = t.clone();
    }
    for a in json["added_tokens"].as_array().expect("added") {
        let id = a["id"].as_u64().expect("id") as usize;
        tokens[id] = a["content"].as_str().expect("content").to_string();
        types[id] = if a["special"] == true { 3 } else { 4 };
    }
    let merges: Vec<String> = json["model"]["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .map(|m| m.as_str().expect("merge").to_string())
        .collect();
    let mut b = GgufBuilder::new();
    b.add_metadata("tokenizer.ggml.tokens", MetaValue::string_array(tokens))
        .expect("tokens");
    b.add_metadata("tokenizer.ggml.merges", MetaValue::string_array(merges))
        .expect("merges");
    b.add_metadata(
        "tokenizer.ggml.token_type",
        MetaValue::Array(MetaArray {
            elem_type: ValueType::I32,
            items: types.into_iter().map(MetaValue::I32).collect(),
        }),
    )
    .expect("types");
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("vocab.gguf");
    let file = std::fs::File::create(&model).expect("create");
    b.begin(std::io::BufWriter::new(file))
        .expect("begin")
        .finish()
        .expect("finish");

    let text = "Hello 世界 1234567 <｜User｜> émoji 😀\n\n  code()";
    let (ok, from_json, err) = ds4rs(
        &[
            "tokenize",
            "--json",
            "--tokenizer",
            path.to_str().expect("path"),
        ],
        text.as_bytes(),
    );
    assert!(ok, "{err}");
    let (ok, from_gguf, err) = ds4rs(
        &[
            "tokenize",
            "--json",
            "--model",
            model.to_str().expect("path"),
        ],
        text.as_bytes(),
    );
    assert!(ok, "{err}");
    assert_eq!(from_gguf, from_json);
}
