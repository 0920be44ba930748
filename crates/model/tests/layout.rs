//! The declared tensor table against ds4's (model.md §1.4), without writing
//! the 81 GiB file: counts, types, shapes and sizes of §1.4.5, official
//! names of §1.7, and a written tiny file binding with `Weights::bind`.

mod common;

use gguf::{GgmlType, GgufFile};
use model::config::metadata_records;
use model::layout::{builder, layout, Official, Recipe, TensorSpec};
use model::weights::Weights;
use model::{ModelConfig, ModelError};

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

fn find<'a>(t: &'a [TensorSpec], name: &str) -> &'a TensorSpec {
    t.iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn tiny() -> ModelConfig {
    common::tiny(8, 3)
}

#[test]
fn flash_q2_is_ds4s_table() {
    let cfg = ModelConfig::flash();
    let t = layout(&cfg, Recipe::Q2).unwrap();
    assert_eq!(t.len(), 1328, "model.md §1.4.4 count");

    let mib = |name: &str| find(&t, name).n_bytes() as f64 / MIB;
    assert_eq!(mib("token_embd.weight"), 1010.0);
    assert!((mib("output.weight") - 536.6).abs() < 0.05);
    assert_eq!(mib("blk.7.hc_attn_fn.weight"), 0.75);
    assert_eq!(mib("blk.7.ffn_gate_inp.weight"), 2.0);
    assert_eq!(mib("blk.7.ffn_gate_exps.weight"), 528.0);
    assert_eq!(mib("blk.7.ffn_up_exps.weight"), 528.0);
    assert_eq!(mib("blk.7.ffn_down_exps.weight"), 672.0);
    assert_eq!(mib("blk.7.ffn_gate_shexp.weight"), 8.5);
    assert_eq!(mib("blk.7.ffn_down_shexp.weight"), 8.5);
    assert!((mib("blk.0.ffn_gate_tid2eid.weight") - 2.96).abs() < 0.01);
    assert_eq!(find(&t, "blk.7.ffn_gate_exps.weight").row_bytes(), 1056);
    assert_eq!(find(&t, "blk.7.ffn_down_exps.weight").row_bytes(), 672);

    let file = builder(metadata_records(&cfg), &t)
        .unwrap()
        .file_len()
        .unwrap() as f64
        / GIB;
    assert!((80.7..80.9).contains(&file), "q2 file {file} GiB");

    // Types and shapes of §1.4.1-§1.4.3.
    let check = |name: &str, ty: GgmlType, dims: &[u64]| {
        let s = find(&t, name);
        assert_eq!((s.ty, s.dims.as_slice()), (ty, dims), "{name}");
    };
    use GgmlType::*;
    check("token_embd.weight", F16, &[4096, 129280]);
    check("output_hc_fn.weight", F16, &[16384, 4]);
    check("output_hc_scale.weight", F32, &[1]);
    check("output_hc_base.weight", F32, &[4]);
    check("output.weight", Q8_0, &[4096, 129280]);
    check("blk.0.hc_attn_scale.weight", F32, &[3]);
    check("blk.0.attn_q_b.weight", Q8_0, &[1024, 32768]);
    check("blk.0.attn_output_a.weight", Q8_0, &[4096, 8192]);
    check("blk.0.attn_output_b.weight", Q8_0, &[8192, 4096]);
    check("blk.0.attn_sinks.weight", F32, &[64]);
    check("blk.2.attn_compressor_ape.weight", F16, &[1024, 4]);
    check("blk.3.attn_compressor_ape.weight", F16, &[512, 128]);
    check("blk.3.attn_compressor_kv.weight", F16, &[4096, 512]);
    check("blk.2.attn_compressor_gate.weight", F16, &[4096, 1024]);
    check("blk.2.indexer.attn_q_b.weight", F16, &[1024, 8192]);
    check("blk.2.indexer.proj.weight", F16, &[4096, 64]);
    check("blk.2.indexer_compressor_ape.weight", F16, &[256, 4]);
    check("blk.2.indexer_compressor_norm.weight", F32, &[128]);
    check("blk.42.ffn_gate_exps.weight", Iq2Xxs, &[4096, 2048, 256]);
    check("blk.42.ffn_down_exps.weight", Q2K, &[2048, 4096, 256]);
    check("blk.1.ffn_gate_tid2eid.weight", I32, &[6, 129280]);
    check("blk.3.exp_probs_b.bias", F32, &[256]);

    // The layer schedule of §1.4.4.
    let has = |name: String| t.iter().any(|s| s.name == name);
    for il in 0..43 {
        assert_eq!(has(format!("blk.{il}.ffn_gate_tid2eid.weight")), il < 3);
        assert_eq!(has(format!("blk.{il}.exp_probs_b.bias")), il >= 3);
        assert_eq!(has(format!("blk.{il}.attn_compressor_kv.weight")), il >= 2);
        assert_eq!(
            has(format!("blk.{il}.indexer.proj.weight")),
            il >= 2 && il % 2 == 0
        );
    }
    // Globals first, then each layer's tensors together.
    assert_eq!(t[0].name, "token_embd.weight");
    assert_eq!(t[5].name, "output.weight");
    assert_eq!(t[6].name, "blk.0.hc_attn_fn.weight");
    assert_eq!(t.last().unwrap().name, "blk.42.ffn_down_shexp.weight");
}

#[test]
fn flash_q4_size() {
    let cfg = ModelConfig::flash();
    let t = layout(&cfg, Recipe::Q4).unwrap();
    assert_eq!(t.len(), 1328);
    let e = find(&t, "blk.9.ffn_up_exps.weight");
    assert_eq!((e.ty, e.n_bytes() as f64 / MIB), (GgmlType::Q4K, 1152.0));
    let file = builder(metadata_records(&cfg), &t)
        .unwrap()
        .file_len()
        .unwrap() as f64
        / GIB;
    assert!((153.2..153.4).contains(&file), "q4 file {file} GiB");
}

/// Pro's default schedule: every layer compressed (two HCA layers first),
/// so all 43 have compressors and the 20 CSA layers indexers.
#[test]
fn pro_table() {
    let t = layout(&model::synth::pro_shape(), Recipe::Q2).unwrap();
    assert_eq!(t.len(), 6 + 43 * 23 + 43 + 43 * 4 + 20 * 6);
    assert_eq!(
        find(&t, "blk.0.attn_compressor_ape.weight").dims,
        [512, 128]
    );
    assert_eq!(find(&t, "blk.3.attn_compressor_ape.weight").dims, [1024, 4]);
    assert!(t.iter().all(|s| !s.name.starts_with("blk.2.indexer")));
}

#[test]
fn recipes_choose_types_by_family() {
    let cfg = tiny();
    let ty = |r: Recipe, name: &str| find(&layout(&cfg, r).unwrap(), name).ty;
    use GgmlType::*;
    for (r, proj, dense, gate, down) in [
        (Recipe::F32, F32, F32, F32, F32),
        (Recipe::F16, F16, F16, F16, F16),
        (Recipe::Q8_0, Q8_0, F16, Q8_0, Q8_0),
        (Recipe::Q2, Q8_0, F16, Iq2Xxs, Q2K),
        (Recipe::Q4, Q8_0, F16, Q4K, Q4K),
    ] {
        assert_eq!(ty(r, "blk.0.attn_kv.weight"), proj, "{r}");
        assert_eq!(ty(r, "output.weight"), proj, "{r}");
        assert_eq!(ty(r, "token_embd.weight"), dense, "{r}");
        assert_eq!(ty(r, "blk.1.indexer.proj.weight"), dense, "{r}");
        assert_eq!(ty(r, "blk.0.ffn_gate_exps.weight"), gate, "{r}");
        assert_eq!(ty(r, "blk.0.ffn_up_exps.weight"), gate, "{r}");
        assert_eq!(ty(r, "blk.0.ffn_down_exps.weight"), down, "{r}");
        assert_eq!(ty(r, "blk.0.attn_norm.weight"), F32, "{r}");
        assert_eq!(ty(r, "blk.0.ffn_gate_tid2eid.weight"), I32, "{r}");
    }
    assert_eq!("q8_0".parse::<Recipe>(), Ok(Recipe::Q8_0));
    assert!("q3".parse::<Recipe>().unwrap_err().contains("q3"));
}

#[test]
fn official_names() {
    let t = layout(&ModelConfig::flash(), Recipe::Q2).unwrap();
    let off = |name: &str| find(&t, name).official.clone();
    let one = |s: &str| Official::Tensor(s.into());
    assert_eq!(off("token_embd.weight"), one("embed.weight"));
    assert_eq!(off("output.weight"), one("head.weight"));
    assert_eq!(off("output_hc_fn.weight"), one("hc_head_fn"));
    assert_eq!(off("output_norm.weight"), one("norm.weight"));
    assert_eq!(off("blk.5.hc_ffn_base.weight"), one("layers.5.hc_ffn_base"));
    assert_eq!(
        off("blk.5.attn_sinks.weight"),
        one("layers.5.attn.attn_sink")
    );
    assert_eq!(
        off("blk.5.attn_q_a_norm.weight"),
        one("layers.5.attn.q_norm.weight")
    );
    assert_eq!(
        off("blk.4.indexer_compressor_ape.weight"),
        one("layers.4.attn.indexer.compressor.ape")
    );
    assert_eq!(
        off("blk.4.indexer.proj.weight"),
        one("layers.4.attn.indexer.weights_proj.weight")
    );
    assert_eq!(off("blk.4.exp_probs_b.bias"), one("layers.4.ffn.gate.bias"));
    assert_eq!(
        off("blk.0.ffn_gate_tid2eid.weight"),
        one("layers.0.ffn.gate.tid2eid")
    );
    assert_eq!(
        off("blk.4.ffn_up_shexp.weight"),
        one("layers.4.ffn.shared_experts.w3.weight")
    );
    assert_eq!(
        off("blk.4.ffn_up_exps.weight"),
        Official::Experts { layer: 4, part: 3 }
    );
    assert_eq!(
        off("blk.4.ffn_down_exps.weight"),
        Official::Experts { layer: 4, part: 2 }
    );
    assert_eq!(
        Official::expert_name(4, 255, 1),
        "layers.4.ffn.experts.255.w1.weight"
    );
}

#[test]
fn block_size_violations_are_named() {
    let mut cfg = tiny();
    cfg.n_embd = 128;
    match layout(&cfg, Recipe::Q2) {
        Err(ModelError::Layout { name, ty, .. }) => {
            assert_eq!(
                (name.as_str(), ty),
                ("blk.0.ffn_gate_exps.weight", GgmlType::Iq2Xxs)
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(layout(&cfg, Recipe::F16).is_ok());
    assert!(layout(&cfg, Recipe::Q8_0).is_ok());
}

#[test]
fn written_layout_binds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    for r in Recipe::ALL {
        let path = dir.path().join(format!("{r}.gguf"));
        model::synth::synth(&cfg, r, 1, metadata_records(&cfg), &path, &|_| {}).unwrap();
        let f = GgufFile::open(&path).unwrap();
        let read = ModelConfig::from_gguf(f.header()).unwrap();
        assert_eq!(read, cfg);
        Weights::bind(&f, &read).unwrap_or_else(|e| panic!("{r}: {e}"));
        let names: Vec<&str> = f
            .header()
            .tensors()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        let want = layout(&cfg, r).unwrap();
        assert_eq!(
            names,
            want.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
        );
    }
}

/// The full 81 GiB Flash q2 directory, read back by the GGUF reader from a
/// sparse file (header written, data left as a hole): every tensor fits
/// and the table is the declared one.
#[test]
fn full_flash_header_reads_back() {
    let cfg = ModelConfig::flash();
    let t = layout(&cfg, Recipe::Q2).unwrap();
    let b = builder(metadata_records(&cfg), &t).unwrap();
    let len = b.file_len().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flash.gguf");
    let file = std::fs::File::create(&path).unwrap();
    // The header goes straight to the file; the data stays a hole.
    drop(b.begin(&file).unwrap());
    file.set_len(len).unwrap();
    drop(file);
    let f = GgufFile::open(&path).unwrap();
    let got: Vec<(&str, GgmlType, &[u64])> = f
        .header()
        .tensors()
        .iter()
        .map(|i| (i.name.as_str(), i.ty, i.dims.as_slice()))
        .collect();
    let want: Vec<(&str, GgmlType, &[u64])> = t
        .iter()
        .map(|s| (s.name.as_str(), s.ty, s.dims.as_slice()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(ModelConfig::from_gguf(f.header()).unwrap(), cfg);
}
