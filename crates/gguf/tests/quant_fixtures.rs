//! Bit-exact comparison with PyPI gguf's numpy codecs (spec §7), through
//! the fixtures of `tools/reference/make_quant_fixtures.py`.

use std::path::PathBuf;

use gguf::quant::{dequantize, quantize};
use gguf::GgmlType;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Equal bits, or both NaN (the generator avoids NaN, but a NaN scale
/// would make payload bits meaningless).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

struct Fixture {
    name: String,
    ty: GgmlType,
    kind: String,
    elements: usize,
}

fn manifest() -> Vec<Fixture> {
    let m: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    m["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Fixture {
            name: f["name"].as_str().unwrap().to_string(),
            ty: GgmlType::from_name(f["type"].as_str().unwrap()).unwrap(),
            kind: f["kind"].as_str().unwrap().to_string(),
            elements: f["elements"].as_u64().unwrap() as usize,
        })
        .collect()
}

#[test]
fn dequantize_matches_gguf_py() {
    let mut seen = Vec::new();
    for f in manifest().into_iter().filter(|f| f.kind == "decode") {
        let raw = read(&format!("{}.blocks", f.name));
        let want = floats(&read(&format!("{}.f32", f.name)));
        assert_eq!(want.len(), f.elements, "{}", f.name);
        let mut got = vec![0.0f32; f.elements];
        dequantize(f.ty, &raw, &mut got).unwrap();
        let bad: Vec<usize> = (0..got.len()).filter(|&i| !same(got[i], want[i])).collect();
        assert!(
            bad.is_empty(),
            "{}: {} of {} values differ, first at {}: got {:#010x} want {:#010x}",
            f.name,
            bad.len(),
            got.len(),
            bad[0],
            got[bad[0]].to_bits(),
            want[bad[0]].to_bits()
        );
        seen.push(f.ty);
    }
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q4K,
        GgmlType::Iq2Xxs,
        GgmlType::Mxfp4,
        GgmlType::F16,
        GgmlType::Bf16,
    ] {
        assert!(seen.contains(&ty), "no decode fixture for {ty}");
    }
}

#[test]
fn quantize_matches_gguf_py() {
    let mut n = 0;
    for f in manifest().into_iter().filter(|f| f.kind == "quantize") {
        let x = floats(&read(&format!("{}.in.f32", f.name)));
        let want = read(&format!("{}.blocks", f.name));
        let got = quantize(f.ty, &x, 32, None).unwrap();
        assert_eq!(got.len(), want.len(), "{}", f.name);
        let bad = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(bad, None, "{}: first differing byte", f.name);
        n += 1;
    }
    assert_eq!(n, 3, "Q8_0, BF16 and F16 quantize fixtures");
}
