//! Loading refuses bad files with an error naming the key or tensor and
//! what was expected; nothing panics.

use std::path::Path;

use gguf::{GgmlType, GgufBuilder, GgufFile, MetaArray, MetaValue, ValueType};
use model::layout::Recipe;
use model::{Model, ModelError, Options};

/// A copy of `src` with metadata and tensors passed through `edit_meta` /
/// `keep_tensor` (and a tensor's declared type/dims through `retype`);
/// `rewrite_adding` also appends a key the file lacks.
fn rewrite(
    src: &GgufFile,
    dst: &Path,
    edit_meta: impl Fn(&str, &MetaValue) -> Option<MetaValue>,
    keep_tensor: impl Fn(&str) -> bool,
    retype: impl Fn(&str, GgmlType, &[u64]) -> (GgmlType, Vec<u64>),
) {
    rewrite_adding(src, dst, None, edit_meta, keep_tensor, retype)
}

fn rewrite_adding(
    src: &GgufFile,
    dst: &Path,
    add: Option<(&str, MetaValue)>,
    edit_meta: impl Fn(&str, &MetaValue) -> Option<MetaValue>,
    keep_tensor: impl Fn(&str) -> bool,
    retype: impl Fn(&str, GgmlType, &[u64]) -> (GgmlType, Vec<u64>),
) {
    let mut b = GgufBuilder::new();
    for (k, v) in src.metadata().iter() {
        if let Some(v) = edit_meta(k, v) {
            b.add_metadata(k, v).unwrap();
        }
    }
    if let Some((k, v)) = add {
        if !src.metadata().contains(k) {
            b.add_metadata(k, v).unwrap();
        }
    }
    let mut kept = Vec::new();
    for t in src.tensors() {
        if keep_tensor(&t.name) {
            let (ty, dims) = retype(&t.name, t.ty, &t.dims);
            b.add_tensor(t.name.clone(), ty, &dims).unwrap();
            kept.push((t.clone(), ty, dims));
        }
    }
    let mut w = b.begin(std::fs::File::create(dst).unwrap()).unwrap();
    for (t, ty, dims) in kept {
        let n: u64 = dims.iter().product();
        let want = ty.bytes_for(n).unwrap() as usize;
        let mut data = src.tensor_data(&t).to_vec();
        data.resize(want, 0);
        w.write_data(&data).unwrap();
    }
    w.finish().unwrap();
}

fn base() -> (tempfile::TempDir, GgufFile) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("base.gguf");
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle/small_hca16");
    model::convert::Converter::open(&fx, Recipe::F16)
        .unwrap()
        .write(&out, &|_| {})
        .unwrap();
    let f = GgufFile::open(&out).unwrap();
    (dir, f)
}

fn load_err(path: &Path) -> ModelError {
    let f = GgufFile::open(path).unwrap();
    match Model::load(&f, Options::default()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn base_loads() {
    let (_d, f) = base();
    Model::load(&f, Options::default()).unwrap();
}

#[test]
fn missing_key() {
    let (d, f) = base();
    let p = d.path().join("x.gguf");
    let key = "deepseek4.attention.q_lora_rank";
    rewrite(
        &f,
        &p,
        |k, v| (k != key).then(|| v.clone()),
        |_| true,
        |_, t, d| (t, d.to_vec()),
    );
    let e = load_err(&p);
    assert!(e.to_string().contains(key), "{e}");
}

#[test]
fn wrong_key_type() {
    let (d, f) = base();
    let p = d.path().join("x.gguf");
    let key = "deepseek4.embedding_length";
    rewrite(
        &f,
        &p,
        |k, v| {
            Some(if k == key {
                MetaValue::U64(v.as_u64().unwrap())
            } else {
                v.clone()
            })
        },
        |_| true,
        |_, t, d| (t, d.to_vec()),
    );
    let e = load_err(&p);
    assert!(
        e.to_string().contains(key) && e.to_string().contains("UINT32"),
        "{e}"
    );
}

#[test]
fn bad_values() {
    let cases: Vec<(&str, MetaValue, &str)> = vec![
        (
            "deepseek4.attention.head_count_kv",
            MetaValue::U32(2),
            "expected 1",
        ),
        (
            "deepseek4.expert_group_count",
            MetaValue::U32(4),
            "expected 0",
        ),
        (
            "deepseek4.expert_weights_norm",
            MetaValue::Bool(false),
            "must be true",
        ),
        (
            "deepseek4.attention.output_group_count",
            MetaValue::U32(3),
            "must divide",
        ),
        (
            "deepseek4.expert_used_count",
            MetaValue::U32(99),
            "more than expert_count",
        ),
        ("deepseek4.block_count", MetaValue::U32(0), "non-zero"),
        (
            "deepseek4.attention.compress_ratios",
            MetaValue::Array(MetaArray {
                elem_type: ValueType::I32,
                items: vec![
                    MetaValue::I32(0),
                    MetaValue::I32(-16),
                    MetaValue::I32(4),
                    MetaValue::I32(16),
                ],
            }),
            "entry 1",
        ),
        (
            "deepseek4.attention.compress_ratios",
            MetaValue::Array(MetaArray {
                elem_type: ValueType::U32,
                items: vec![MetaValue::U32(0)],
            }),
            "block_count needs 4",
        ),
        (
            "general.architecture",
            MetaValue::from("llama"),
            "deepseek4",
        ),
    ];
    let (d, f) = base();
    for (key, value, needle) in cases {
        let p = d.path().join("x.gguf");
        rewrite_adding(
            &f,
            &p,
            Some((key, value.clone())),
            |k, v| Some(if k == key { value.clone() } else { v.clone() }),
            |_| true,
            |_, t, d| (t, d.to_vec()),
        );
        let e = load_err(&p).to_string();
        assert!(e.contains(needle), "{key}: {e}");
    }
}

#[test]
fn missing_tensor() {
    let (d, f) = base();
    let p = d.path().join("x.gguf");
    let name = "blk.2.indexer.proj.weight";
    rewrite(
        &f,
        &p,
        |_, v| Some(v.clone()),
        |n| n != name,
        |_, t, d| (t, d.to_vec()),
    );
    assert!(matches!(load_err(&p), ModelError::MissingTensor(n) if n == name));
}

#[test]
fn wrong_tensor_type() {
    let (d, f) = base();
    let p = d.path().join("x.gguf");
    let name = "blk.1.attn_norm.weight";
    rewrite(
        &f,
        &p,
        |_, v| Some(v.clone()),
        |_| true,
        |n, t, d| (if n == name { GgmlType::F16 } else { t }, d.to_vec()),
    );
    let e = load_err(&p);
    assert!(
        matches!(&e, ModelError::TensorType { name: n, .. } if n == name),
        "{e}"
    );
    assert!(e.to_string().contains("F32"), "{e}");
}

#[test]
fn wrong_tensor_shape() {
    let (d, f) = base();
    let p = d.path().join("x.gguf");
    let name = "blk.3.ffn_down_exps.weight";
    rewrite(
        &f,
        &p,
        |_, v| Some(v.clone()),
        |_| true,
        |n, t, d| {
            let mut d = d.to_vec();
            if n == name {
                d[2] -= 1;
            }
            (t, d)
        },
    );
    let e = load_err(&p);
    assert!(
        matches!(&e, ModelError::TensorShape { name: n, .. } if n == name),
        "{e}"
    );
}

#[test]
fn gate_and_up_types_must_match() {
    let (d, f) = base();
    let p = d.path().join("x.gguf");
    let name = "blk.0.ffn_up_exps.weight";
    rewrite(
        &f,
        &p,
        |_, v| Some(v.clone()),
        |_| true,
        |n, t, d| (if n == name { GgmlType::F32 } else { t }, d.to_vec()),
    );
    let e = load_err(&p);
    assert!(
        e.to_string().contains(name) && e.to_string().contains("gate type"),
        "{e}"
    );
}

#[test]
fn bad_tokens_and_context() {
    let (_d, f) = base();
    let model = Model::load(&f, Options::default()).unwrap();
    let mut st = model.new_state(4);
    let bad = model.cfg.n_vocab as u32;
    assert!(matches!(
        model.forward(&mut st, &[1, bad], model::Logits::Last, &mut model::NoTrace),
        Err(ModelError::TokenOutOfRange { token, .. }) if token == bad
    ));
    assert_eq!(st.n_tokens, 0, "a refused call leaves the state alone");
    model
        .forward(
            &mut st,
            &[1, 2, 3],
            model::Logits::None,
            &mut model::NoTrace,
        )
        .unwrap();
    assert!(matches!(
        model.forward(&mut st, &[4, 5], model::Logits::Last, &mut model::NoTrace),
        Err(ModelError::ContextFull { .. })
    ));
    let logits = model
        .forward(&mut st, &[4], model::Logits::Last, &mut model::NoTrace)
        .unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
}

#[test]
fn hash_table_entries_are_checked() {
    let (d, f) = base();
    let p = d.path().join("x.gguf");
    // Corrupt the hash table of layer 0: every expert id becomes 1000.
    let mut b = GgufBuilder::new();
    for (k, v) in f.metadata().iter() {
        b.add_metadata(k, v.clone()).unwrap();
    }
    for t in f.tensors() {
        b.add_tensor(t.name.clone(), t.ty, &t.dims).unwrap();
    }
    let mut w = b.begin(std::fs::File::create(&p).unwrap()).unwrap();
    for t in f.tensors() {
        if t.name == "blk.0.ffn_gate_tid2eid.weight" {
            let bad: Vec<u8> = (0..t.n_bytes / 4)
                .flat_map(|_| 1000i32.to_le_bytes())
                .collect();
            w.write_data(&bad).unwrap();
        } else {
            w.write_data(f.tensor_data(t)).unwrap();
        }
    }
    w.finish().unwrap();
    let f = GgufFile::open(&p).unwrap();
    let model = Model::load(&f, Options::default()).unwrap();
    let mut st = model.new_state(8);
    let e = model
        .forward(&mut st, &[3], model::Logits::Last, &mut model::NoTrace)
        .unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::BadHashEntry {
                layer: 0,
                id: 1000,
                ..
            }
        ),
        "{e}"
    );
}
