//! Container tests: writer/reader round trip, one test per validation
//! error, and a file written by the PyPI `gguf` package's GGUFWriter.

use gguf::{
    GgmlType, GgufBuilder, GgufError, GgufFile, GgufHeader, MetaArray, MetaValue, ValueType,
};

fn sample_builder() -> GgufBuilder {
    let mut b = GgufBuilder::new();
    b.add_metadata("general.architecture", "deepseek4".into())
        .unwrap();
    b.add_metadata("a.u8", MetaValue::U8(200)).unwrap();
    b.add_metadata("a.i8", MetaValue::I8(-5)).unwrap();
    b.add_metadata("a.u16", MetaValue::U16(65000)).unwrap();
    b.add_metadata("a.i16", MetaValue::I16(-30000)).unwrap();
    b.add_metadata("a.u32", MetaValue::U32(4096)).unwrap();
    b.add_metadata("a.i32", MetaValue::I32(-7)).unwrap();
    b.add_metadata("a.f32", MetaValue::F32(1e-6)).unwrap();
    b.add_metadata("a.bool", MetaValue::Bool(true)).unwrap();
    b.add_metadata("a.u64", MetaValue::U64(1 << 40)).unwrap();
    b.add_metadata("a.i64", MetaValue::I64(-(1 << 40))).unwrap();
    b.add_metadata("a.f64", MetaValue::F64(0.1)).unwrap();
    b.add_metadata(
        "a.tokens",
        MetaValue::string_array(["<｜begin▁of▁sentence｜>", "a", ""]),
    )
    .unwrap();
    b.add_metadata(
        "a.empty",
        MetaValue::Array(MetaArray {
            elem_type: ValueType::F32,
            items: vec![],
        }),
    )
    .unwrap();
    b.add_tensor("blk.0.attn_q_a.weight", GgmlType::Q8_0, &[64, 3])
        .unwrap();
    b.add_tensor("norm", GgmlType::F32, &[5]).unwrap();
    b.add_tensor("exps", GgmlType::Q2K, &[256, 2, 3]).unwrap();
    b
}

fn pattern(n: u64, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn write_sample() -> Vec<u8> {
    let b = sample_builder();
    let expected_len = b.file_len().unwrap();
    let mut w = b.begin(Vec::new()).unwrap();
    let mut seed = 0;
    while let Some(t) = w.current().cloned() {
        let data = pattern(t.n_bytes, seed);
        // Stream in uneven chunks to exercise chunk handling.
        for chunk in data.chunks(7) {
            w.write_data(chunk).unwrap();
        }
        seed += 1;
    }
    let bytes = w.finish().unwrap();
    assert_eq!(bytes.len() as u64, expected_len);
    bytes
}

#[test]
fn round_trip() {
    let bytes = write_sample();
    let h = GgufHeader::parse(&bytes).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.alignment, 32);
    assert_eq!(h.data_start % 32, 0);
    assert_eq!(bytes.len() % 32, 0, "the last tensor is padded too");
    let b = sample_builder();
    assert_eq!(h.metadata(), b.metadata());
    let keys: Vec<_> = h.metadata().iter().map(|(k, _)| k).collect();
    assert_eq!(keys[0], "general.architecture");
    assert_eq!(h.get_u32("a.u32").unwrap(), 4096);
    assert_eq!(h.get_u64("a.u32").unwrap(), 4096);
    assert_eq!(h.get_f32("a.u32").unwrap(), 4096.0);
    assert!(h.get_u32("a.u64").is_err());
    assert!(h.get_bool("a.bool").unwrap());
    assert_eq!(h.get_str("general.architecture").unwrap(), "deepseek4");
    assert!(matches!(h.get_u32("nope"), Err(GgufError::MissingKey(_))));
    assert!(matches!(
        h.get_str("a.u32"),
        Err(GgufError::WrongValueType { .. })
    ));

    let names: Vec<_> = h.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["blk.0.attn_q_a.weight", "norm", "exps"]);
    let t = h.tensor_info("exps").unwrap();
    assert_eq!(t.ty, GgmlType::Q2K);
    assert_eq!(t.dims, [256, 2, 3]);
    assert_eq!(t.n_bytes, 6 * 84);
    assert_eq!(t.n_rows(), 6);
    for (i, t) in h.tensors().iter().enumerate() {
        let r = h.tensor_range(t);
        assert_eq!(
            &bytes[r.start as usize..r.end as usize],
            pattern(t.n_bytes, i as u8)
        );
    }
}

#[test]
fn open_file_and_views() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, write_sample()).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let t = f.tensor("blk.0.attn_q_a.weight").unwrap();
    assert_eq!(t.data.len(), 3 * 68);
    assert_eq!(t.row(2).unwrap(), &pattern(3 * 68, 0)[136..204]);
    assert!(t.row(3).is_none());
    assert!(matches!(
        f.tensor("missing"),
        Err(GgufError::MissingTensor(_))
    ));
    f.advise_willneed().unwrap();
}

#[test]
fn open_reports_path() {
    let err = GgufFile::open("/nonexistent/x.gguf").err().unwrap();
    assert!(err.to_string().contains("/nonexistent/x.gguf"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, b"GGUF").unwrap();
    assert!(matches!(
        GgufFile::open(&path),
        Err(GgufError::Truncated { .. })
    ));
}

#[test]
fn custom_alignment() {
    let mut b = GgufBuilder::new();
    b.add_metadata("general.alignment", MetaValue::U32(64))
        .unwrap();
    b.add_tensor("a", GgmlType::F32, &[3]).unwrap();
    b.add_tensor("b", GgmlType::F16, &[5]).unwrap();
    let mut w = b.begin(Vec::new()).unwrap();
    w.write_tensor("a", &[1; 12]).unwrap();
    w.write_tensor("b", &[2; 10]).unwrap();
    let bytes = w.finish().unwrap();
    let h = GgufHeader::parse(&bytes).unwrap();
    assert_eq!(h.alignment, 64);
    assert_eq!(h.tensor_info("b").unwrap().offset, 64);
    assert_eq!(bytes.len() % 64, 0);
}

#[test]
fn writer_rejects_misuse() {
    let mut b = GgufBuilder::new();
    assert!(matches!(
        b.add_metadata(
            "n",
            MetaValue::Array(MetaArray {
                elem_type: ValueType::Array,
                items: vec![MetaValue::string_array(["x"])],
            })
        ),
        Err(GgufError::NestedArrayWrite(_))
    ));
    assert!(matches!(
        b.add_metadata(
            "m",
            MetaValue::Array(MetaArray {
                elem_type: ValueType::U32,
                items: vec![MetaValue::U8(1)],
            })
        ),
        Err(GgufError::MixedArray { .. })
    ));
    assert!(matches!(
        b.add_metadata("general.alignment", MetaValue::U32(48)),
        Err(GgufError::BadAlignment(48))
    ));
    b.add_metadata("k", MetaValue::U8(1)).unwrap();
    assert!(matches!(
        b.add_metadata("k", MetaValue::U8(2)),
        Err(GgufError::DuplicateKey(_))
    ));
    assert!(matches!(
        b.add_tensor("q", GgmlType::Q4K, &[100]),
        Err(GgufError::PartialBlock { .. })
    ));
    assert!(matches!(
        b.add_tensor("q", GgmlType::F32, &[1, 1, 1, 1, 1]),
        Err(GgufError::BadDimCount { .. })
    ));
    assert!(matches!(
        b.add_tensor("q", GgmlType::F32, &[u64::MAX, 2]),
        Err(GgufError::DimsOverflow { .. })
    ));
    b.add_tensor("t", GgmlType::F32, &[2]).unwrap();
    assert!(matches!(
        b.add_tensor("t", GgmlType::F32, &[2]),
        Err(GgufError::DuplicateTensor(_))
    ));
    b.add_tensor("u", GgmlType::F32, &[1]).unwrap();
    let mut w = b.begin(Vec::new()).unwrap();
    assert!(w.write_tensor("u", &[0; 4]).is_err(), "out of order");
    assert!(w.write_data(&[0; 9]).is_err(), "too long");
    w.write_data(&[0; 8]).unwrap();
    assert!(w.finish().is_err(), "u is missing");
}

/// Hand-assembled GGUF images for the corrupt-file tests.
struct Raw(Vec<u8>);

impl Raw {
    fn header(n_tensors: u64, n_kv: u64) -> Self {
        let mut v = b"GGUF".to_vec();
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&n_tensors.to_le_bytes());
        v.extend_from_slice(&n_kv.to_le_bytes());
        Raw(v)
    }
    fn u32(mut self, x: u32) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(mut self, x: u64) -> Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    fn kv_u32(self, key: &str, v: u32) -> Self {
        self.str(key).u32(4).u32(v)
    }
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    /// Pads to the data section and appends `n` data bytes.
    fn data(mut self, n: usize) -> Self {
        let pad = (32 - self.0.len() % 32) % 32;
        self.0.resize(self.0.len() + pad + n, 0xAB);
        self
    }
    fn parse(&self) -> Result<GgufHeader, GgufError> {
        GgufHeader::parse(&self.0)
    }
}

#[test]
fn bad_magic() {
    let mut v = write_sample();
    v[0] = b'X';
    assert!(matches!(
        GgufHeader::parse(&v),
        Err(GgufError::BadMagic(m)) if &m == b"XGUF"
    ));
}

#[test]
fn unsupported_version() {
    for version in [1u32, 2, 4, 0x0300_0000] {
        let mut v = write_sample();
        v[4..8].copy_from_slice(&version.to_le_bytes());
        assert!(matches!(
            GgufHeader::parse(&v),
            Err(GgufError::UnsupportedVersion(x)) if x == version
        ));
    }
}

#[test]
fn truncation_anywhere_is_an_error() {
    let v = write_sample();
    let h = GgufHeader::parse(&v).unwrap();
    // Every prefix shorter than the end of the last tensor's data fails;
    // none panics. (Padding after the last tensor is not required.)
    let last = h
        .tensors()
        .iter()
        .map(|t| h.tensor_range(t).end)
        .max()
        .unwrap();
    for cut in 0..last as usize {
        let err = GgufHeader::parse(&v[..cut]).err();
        assert!(
            matches!(
                err,
                Some(GgufError::Truncated { .. })
                    | Some(GgufError::OutOfBounds { .. })
                    | Some(GgufError::AbsurdCount { .. })
            ),
            "cut at {cut}: {err:?}"
        );
    }
    assert!(GgufHeader::parse(&v[..last as usize]).is_ok());
}

#[test]
fn truncated_names_field() {
    let err = Raw::header(0, 1)
        .str("general.name")
        .u32(8)
        .u64(100)
        .bytes(b"abc")
        .parse();
    let msg = err.unwrap_err().to_string();
    assert!(
        msg.contains("general.name") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn unknown_value_type() {
    let err = Raw::header(0, 1).str("k").u32(13).u32(0).parse();
    assert!(matches!(err, Err(GgufError::UnknownValueType { key, id: 13 }) if key == "k"));
    let err = Raw::header(0, 1).str("arr").u32(9).u32(77).u64(0).parse();
    assert!(matches!(
        err,
        Err(GgufError::UnknownValueType { id: 77, .. })
    ));
}

#[test]
fn nested_arrays_are_read_to_depth_eight() {
    fn nest(r: Raw, depth: usize) -> Raw {
        if depth == 0 {
            r.u32(4).u64(1).u32(7)
        } else {
            nest(r.u32(9).u64(1), depth - 1)
        }
    }
    let ok = nest(Raw::header(0, 1).str("n").u32(9), 7).parse().unwrap();
    let mut v = ok.get("n").unwrap();
    for _ in 0..7 {
        v = &v.as_array().unwrap().items[0];
    }
    assert_eq!(v.as_array().unwrap().items[0], MetaValue::U32(7));
    let err = nest(Raw::header(0, 1).str("n").u32(9), 8).parse();
    assert!(matches!(err, Err(GgufError::NestingTooDeep { .. })));
}

#[test]
fn absurd_counts_allocate_nothing() {
    let err = Raw::header(0, u64::MAX).parse();
    assert!(matches!(err, Err(GgufError::AbsurdCount { .. })));
    let err = Raw::header(1 << 60, 0).parse();
    assert!(matches!(err, Err(GgufError::AbsurdCount { .. })));
    let err = Raw::header(0, 1)
        .str("a")
        .u32(9)
        .u32(8)
        .u64(1 << 61)
        .parse();
    assert!(matches!(err, Err(GgufError::AbsurdCount { .. })));
    let err = Raw::header(0, 1)
        .str("a")
        .u32(9)
        .u32(0)
        .u64(u64::MAX)
        .parse();
    assert!(matches!(err, Err(GgufError::AbsurdCount { .. })));
}

#[test]
fn invalid_utf8_key() {
    let err = Raw::header(0, 1)
        .u64(2)
        .bytes(&[0xff, 0xfe])
        .u32(4)
        .u32(1)
        .parse();
    assert!(matches!(err, Err(GgufError::InvalidUtf8 { .. })));
}

#[test]
fn duplicate_key() {
    let err = Raw::header(0, 2).kv_u32("x", 1).kv_u32("x", 2).parse();
    assert!(matches!(err, Err(GgufError::DuplicateKey(k)) if k == "x"));
}

#[test]
fn duplicate_tensor_name() {
    let err = Raw::header(2, 0)
        .tensor("t", &[8], 0, 0)
        .tensor("t", &[8], 0, 32)
        .data(64)
        .parse();
    assert!(matches!(err, Err(GgufError::DuplicateTensor(n)) if n == "t"));
}

#[test]
fn unknown_tensor_type() {
    let err = Raw::header(1, 0).tensor("t", &[8], 4, 0).data(32).parse();
    assert!(matches!(err, Err(GgufError::UnknownType { id: 4, .. })));
}

#[test]
fn bad_dim_counts() {
    let err = Raw::header(1, 0).tensor("t", &[], 0, 0).data(0).parse();
    assert!(matches!(err, Err(GgufError::BadDimCount { n_dims: 0, .. })));
    let err = Raw::header(1, 0).tensor("t", &[1; 9], 0, 0).data(4).parse();
    assert!(matches!(err, Err(GgufError::BadDimCount { n_dims: 9, .. })));
}

#[test]
fn dims_overflow() {
    let err = Raw::header(1, 0)
        .tensor("t", &[1 << 32, 1 << 32, 2], 0, 0)
        .data(32)
        .parse();
    assert!(matches!(err, Err(GgufError::DimsOverflow { .. })));
    // Elements fit in u64 but bytes do not.
    let err = Raw::header(1, 0)
        .tensor("t", &[1 << 62], 0, 0)
        .data(32)
        .parse();
    assert!(matches!(err, Err(GgufError::DimsOverflow { .. })));
}

#[test]
fn partial_block() {
    let err = Raw::header(1, 0)
        .tensor("t", &[100, 2], 10, 0)
        .data(200)
        .parse();
    assert!(matches!(err, Err(GgufError::PartialBlock { ne0: 100, .. })));
}

#[test]
fn out_of_bounds() {
    let err = Raw::header(1, 0).tensor("t", &[16], 0, 0).data(63).parse();
    assert!(matches!(err, Err(GgufError::OutOfBounds { end, .. }) if end > 0));
    let err = Raw::header(1, 0)
        .tensor("t", &[8], 0, u64::MAX - 31)
        .data(32)
        .parse();
    assert!(matches!(err, Err(GgufError::OutOfBounds { .. })));
}

#[test]
fn misaligned_offset() {
    let err = Raw::header(1, 0).tensor("t", &[8], 0, 4).data(64).parse();
    assert!(matches!(
        err,
        Err(GgufError::Misaligned {
            offset: 4,
            alignment: 32,
            ..
        })
    ));
}

#[test]
fn overlapping_tensors() {
    let err = Raw::header(2, 0)
        .tensor("a", &[16], 0, 0)
        .tensor("b", &[8], 0, 32)
        .data(96)
        .parse();
    assert!(matches!(err, Err(GgufError::Overlap { .. })));
}

#[test]
fn bad_alignment() {
    let err = Raw::header(0, 1).kv_u32("general.alignment", 48).parse();
    assert!(matches!(err, Err(GgufError::BadAlignment(48))));
    // A zero or non-UINT32 alignment falls back to 32 (§2.4).
    let h = Raw::header(0, 1)
        .kv_u32("general.alignment", 0)
        .parse()
        .unwrap();
    assert_eq!(h.alignment, 32);
}

/// A file written by PyPI gguf's GGUFWriter (tools/reference/make_container_fixture.py).
#[test]
fn reads_gguf_py_file() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/container");
    let f = GgufFile::open(format!("{dir}/gguf_py_writer.gguf")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/gguf_py_writer.json")).unwrap())
            .unwrap();
    assert_eq!(
        f.header().alignment,
        expected["alignment"].as_u64().unwrap()
    );
    assert_eq!(
        f.header().data_start,
        expected["data_start"].as_u64().unwrap()
    );
    for t in expected["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let got = f.tensor(name).unwrap();
        assert_eq!(got.ty().name(), t["type"].as_str().unwrap(), "{name}");
        let dims: Vec<u64> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(got.dims(), dims, "{name}");
        let start = t["data_offset"].as_u64().unwrap();
        assert_eq!(f.header().tensor_range(got.info).start, start, "{name}");
        assert_eq!(got.data.len() as u64, t["n_bytes"].as_u64().unwrap());
    }
    let meta = expected["metadata"].as_object().unwrap();
    for (k, v) in meta {
        let got = f.metadata().get(k).unwrap_or_else(|| panic!("missing {k}"));
        assert_eq!(json_of(got), *v, "{k}");
    }
}

fn json_of(v: &MetaValue) -> serde_json::Value {
    use serde_json::json;
    match v {
        MetaValue::U8(x) => json!(x),
        MetaValue::I8(x) => json!(x),
        MetaValue::U16(x) => json!(x),
        MetaValue::I16(x) => json!(x),
        MetaValue::U32(x) => json!(x),
        MetaValue::I32(x) => json!(x),
        MetaValue::F32(x) => json!(x),
        MetaValue::Bool(x) => json!(x),
        MetaValue::String(x) => json!(x),
        MetaValue::U64(x) => json!(x),
        MetaValue::I64(x) => json!(x),
        MetaValue::F64(x) => json!(x),
        MetaValue::Array(a) => a.items.iter().map(json_of).collect(),
    }
}
