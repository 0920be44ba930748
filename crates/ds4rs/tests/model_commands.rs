//! `ds4rs synth`, `convert` and `logits` driven as a user would run them,
//! on tiny shapes: the files they write load and give finite logits, and
//! bad input fails with a message naming what is wrong.

mod common;

use std::path::Path;
use std::process::Output;

use common::{ds4rs, TINY};

fn ok(args: &[&str]) -> Output {
    let o = ds4rs(args);
    assert!(
        o.status.success(),
        "ds4rs {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Fails, and stderr mentions every one of `words`.
fn fails(args: &[&str], words: &[&str]) {
    let o = ds4rs(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "ds4rs {args:?} succeeded");
    for w in words {
        assert!(err.contains(w), "ds4rs {args:?}: {w:?} not in\n{err}");
    }
}

fn logits(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn synth_then_logits() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(d("tiny.json"), TINY).unwrap();
    ok(&[
        "synth",
        "--shape",
        &d("tiny.json"),
        "--layers",
        "2",
        "--recipe",
        "q2",
        "--seed",
        "4",
        "--out",
        &d("m.gguf"),
    ]);
    assert!(!Path::new(&d("m.gguf.partial")).exists());
    let info = String::from_utf8(ok(&["inspect", &d("m.gguf")]).stdout).unwrap();
    assert!(info.contains("blk.1.ffn_gate_exps.weight") && info.contains("IQ2_XXS"));
    assert!(info.contains("tokenizer.ggml.tokens") && !info.contains("blk.2."));

    let tokens = "0,7,255,31,31,2,100";
    ok(&[
        "logits",
        "--model",
        &d("m.gguf"),
        "--tokens",
        tokens,
        "--out",
        &d("a.bin"),
    ]);
    ok(&[
        "logits",
        "--model",
        &d("m.gguf"),
        "--tokens",
        tokens,
        "--chunk",
        "3",
        "--ctx",
        "64",
        "--out",
        &d("b.bin"),
    ]);
    let (a, b) = (
        logits(Path::new(&d("a.bin"))),
        logits(Path::new(&d("b.bin"))),
    );
    assert_eq!(a.len(), 7 * 256);
    assert!(a.iter().all(|v| v.is_finite()));
    assert_eq!(a, b, "chunked prefill changed the logits");
    ok(&[
        "logits",
        "--model",
        &d("m.gguf"),
        "--tokens",
        tokens,
        "--mode",
        "f32",
        "--out",
        &d("c.bin"),
    ]);
    let c = logits(Path::new(&d("c.bin")));
    assert!(c.iter().all(|v| v.is_finite()) && c != a);
}

#[test]
fn convert_then_logits() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/oracle/flash_mini");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let o = ok(&[
        "convert",
        "--hf",
        fixture.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--recipe",
        "q2",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("tokenizer"));
    let bin = dir.path().join("l.bin");
    ok(&[
        "logits",
        "--model",
        out.to_str().unwrap(),
        "--tokens",
        "1,2,3",
        "--out",
        bin.to_str().unwrap(),
    ]);
    assert!(logits(&bin).iter().all(|v| v.is_finite()));
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    fails(
        &["synth", "--shape", &d("none.json"), "--out", &d("x.gguf")],
        &["none.json"],
    );
    std::fs::write(d("bad.json"), r#"{"n_layer": 2}"#).unwrap();
    fails(
        &["synth", "--shape", &d("bad.json"), "--out", &d("x.gguf")],
        &["bad.json", "missing field"],
    );
    fails(
        &[
            "synth",
            "--shape",
            "flash",
            "--recipe",
            "q3",
            "--out",
            &d("x.gguf"),
        ],
        &["q3"],
    );
    fails(
        &[
            "synth",
            "--shape",
            "flash",
            "--layers",
            "50",
            "--out",
            &d("x.gguf"),
        ],
        &["--layers", "50"],
    );
    std::fs::write(
        d("tiny.json"),
        TINY.replace("\"n_embd\":256", "\"n_embd\":128"),
    )
    .unwrap();
    fails(
        &[
            "synth",
            "--shape",
            &d("tiny.json"),
            "--recipe",
            "q2",
            "--out",
            &d("x.gguf"),
        ],
        &["blk.0.ffn_gate_exps.weight", "256"],
    );
    fails(
        &[
            "convert",
            "--hf",
            &d("nowhere"),
            "--out",
            &d("x.gguf"),
            "--recipe",
            "f16",
        ],
        &["nowhere", "config.json"],
    );
    assert!(!Path::new(&d("x.gguf")).exists());

    std::fs::write(d("tiny.json"), TINY).unwrap();
    ok(&[
        "synth",
        "--shape",
        &d("tiny.json"),
        "--layers",
        "1",
        "--recipe",
        "f16",
        "--out",
        &d("m.gguf"),
    ]);
    let m = d("m.gguf");
    fails(
        &[
            "logits",
            "--model",
            &m,
            "--tokens",
            "1,x",
            "--out",
            &d("l.bin"),
        ],
        &["\"x\""],
    );
    fails(
        &[
            "logits",
            "--model",
            &m,
            "--tokens",
            "1,256",
            "--out",
            &d("l.bin"),
        ],
        &["256", "vocabulary"],
    );
    fails(
        &[
            "logits",
            "--model",
            &m,
            "--tokens",
            "1,2,3",
            "--ctx",
            "2",
            "--out",
            &d("l.bin"),
        ],
        &["context"],
    );
    fails(
        &[
            "logits",
            "--model",
            &d("none.gguf"),
            "--tokens",
            "1",
            "--out",
            &d("l.bin"),
        ],
        &["none.gguf"],
    );
}
