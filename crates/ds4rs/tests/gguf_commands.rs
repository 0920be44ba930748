//! `ds4rs inspect` and `ds4rs dequant` driven as a user would run them.

use std::path::Path;
use std::process::{Command, Output};

use gguf::{GgmlType, GgufBuilder, MetaValue};

fn ds4rs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ds4rs"))
        .args(args)
        .output()
        .expect("run ds4rs")
}

fn f16_bits(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}

/// A small model-like file: F32, F16 and Q8_0 tensors with known values.
fn write_model(path: &Path) {
    let mut b = GgufBuilder::new();
    b.add_metadata("general.architecture", "deepseek4".into())
        .unwrap();
    b.add_metadata("deepseek4.embedding_length", MetaValue::U32(64))
        .unwrap();
    b.add_metadata("deepseek4.rope.freq_base", MetaValue::F32(1e-6))
        .unwrap();
    b.add_metadata(
        "tokenizer.ggml.tokens",
        MetaValue::string_array((0..100).map(|i| format!("tok{i}"))),
    )
    .unwrap();
    b.add_tensor("norm.weight", GgmlType::F32, &[3]).unwrap();
    b.add_tensor("embd.weight", GgmlType::F16, &[2, 2]).unwrap();
    b.add_tensor("blk.0.attn_kv.weight", GgmlType::Q8_0, &[32, 2])
        .unwrap();
    let mut w = b
        .begin(std::io::BufWriter::new(
            std::fs::File::create(path).unwrap(),
        ))
        .unwrap();
    let norm: Vec<u8> = [1.0f32, -2.5, 3.25]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    w.write_tensor("norm.weight", &norm).unwrap();
    let embd: Vec<u8> = [0.5f32, -1.0, 65504.0, 0.0]
        .iter()
        .flat_map(|&v| f16_bits(v))
        .collect();
    w.write_tensor("embd.weight", &embd).unwrap();
    let mut q8 = Vec::new();
    for (d, base) in [(0.5f32, 0i8), (-0.25, -16)] {
        q8.extend_from_slice(&f16_bits(d));
        q8.extend((0..32).map(|i| (base + i as i8) as u8));
    }
    w.write_tensor("blk.0.attn_kv.weight", &q8).unwrap();
    w.finish().unwrap();
}

#[test]
fn inspect_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_model(&path);
    let out = ds4rs(&["inspect", path.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 3);
    assert_eq!(v["alignment"], 32);
    assert_eq!(v["metadata"]["deepseek4.embedding_length"], 64);
    assert_eq!(v["metadata"]["deepseek4.rope.freq_base"], 1e-6);
    assert_eq!(v["metadata"]["tokenizer.ggml.tokens"][99], "tok99");
    let t = &v["tensors"][2];
    assert_eq!(t["name"], "blk.0.attn_kv.weight");
    assert_eq!(t["type"], "Q8_0");
    assert_eq!(t["shape"], serde_json::json!([32, 2]));
    assert_eq!(t["offset"], 64);
    assert_eq!(t["bytes"], 68);
}

#[test]
fn inspect_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_model(&path);
    let out = ds4rs(&["inspect", path.to_str().unwrap()]);
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.contains("tokenizer.ggml.tokens"), "{s}");
    assert!(
        s.contains("[STRING x 100: \"tok0\""),
        "arrays are summarized: {s}"
    );
    assert!(!s.contains("tok99"), "arrays are summarized: {s}");
    assert!(s.contains("blk.0.attn_kv.weight"));
    assert!(
        s.lines()
            .any(|l| l.trim_start().starts_with("Q8_0") && l.contains("68 bytes")),
        "{s}"
    );
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn dequant_writes_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_model(&path);
    let out_path = dir.path().join("x.f32");
    let run = |name: &str| {
        let out = ds4rs(&[
            "dequant",
            path.to_str().unwrap(),
            name,
            "--out",
            out_path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        read_f32(&out_path)
    };
    assert_eq!(run("norm.weight"), [1.0, -2.5, 3.25]);
    assert_eq!(run("embd.weight"), [0.5, -1.0, 65504.0, 0.0]);
    let q = run("blk.0.attn_kv.weight");
    assert_eq!(q.len(), 64);
    for i in 0..32 {
        assert_eq!(q[i], 0.5 * i as f32);
        assert_eq!(q[32 + i], -0.25 * (i as f32 - 16.0));
    }
}

#[test]
fn errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_model(&path);
    let p = path.to_str().unwrap();
    let out_path = dir.path().join("x.f32");
    let o = out_path.to_str().unwrap();

    let out = ds4rs(&["dequant", p, "no.such.tensor", "--out", o]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no.such.tensor"), "{err}");
    assert!(!out_path.exists());

    let out = ds4rs(&["inspect", "/nonexistent/model.gguf"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model.gguf"));

    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 40);
    std::fs::write(&path, &bytes).unwrap();
    let out = ds4rs(&["inspect", p]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("blk.0.attn_kv.weight") && err.contains("outside"),
        "{err}"
    );
}
