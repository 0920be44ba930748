//! Random-weight models: they load and run with finite, non-degenerate
//! outputs for every recipe, the bytes depend on the seed alone, weights
//! have the intended scales and the hash tables are valid.

mod common;

use std::path::Path;

use gguf::{GgmlType, GgufFile};
use model::config::metadata_records;
use model::convert::tokenizer::{tokenizer_metadata, V4_TOKENIZER_JSON};
use model::layout::Recipe;
use model::synth::{check_shape, pro_shape, synth, truncate_layers};
use model::{Logits, Model, ModelConfig, NoTrace, Numerics, Options};

fn tiny() -> ModelConfig {
    common::tiny(8, 3)
}

fn write(cfg: &ModelConfig, r: Recipe, seed: u64, path: &Path) {
    synth(cfg, r, seed, metadata_records(cfg), path, &|_| {}).unwrap();
}

fn f32s(f: &GgufFile, name: &str) -> Vec<f32> {
    let t = f.tensor(name).unwrap();
    let n = t.dims().iter().product::<u64>() as usize;
    let mut out = vec![0f32; n];
    gguf::quant::dequantize(t.ty(), t.data, &mut out).unwrap();
    out
}

fn mean_std(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let v = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
    (m, v.sqrt())
}

#[test]
fn every_recipe_runs_with_finite_logits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    let tokens: Vec<u32> = (0..40).map(|i| (i * 37 + 5) % 256).collect();
    for r in Recipe::ALL {
        let path = dir.path().join(format!("{r}.gguf"));
        write(&cfg, r, 3, &path);
        let f = GgufFile::open(&path).unwrap();
        let m = Model::load(&f, Options::default()).unwrap();
        let mut st = m.new_state(tokens.len());
        let logits = m
            .forward(&mut st, &tokens, Logits::All, &mut NoTrace)
            .unwrap();
        assert!(logits.iter().all(|v| v.is_finite()), "{r}");
        // Not degenerate: positions get different top-1 tokens and the
        // logits spread out.
        let top: std::collections::HashSet<usize> = logits
            .chunks(cfg.n_vocab)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
            })
            .collect();
        assert!(top.len() > 5, "{r}: top-1 tokens {top:?}");
        let (_, sd) = mean_std(&logits);
        assert!((0.3..30.0).contains(&sd), "{r}: logit std {sd}");
    }
}

#[test]
fn bytes_depend_on_the_seed_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    one.install(|| write(&cfg, Recipe::Q2, 9, &a));
    three.install(|| write(&cfg, Recipe::Q2, 9, &b));
    write(&cfg, Recipe::Q2, 10, &c);
    let (a, b, c) = (
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        std::fs::read(c).unwrap(),
    );
    assert!(a == b, "thread count changed the bytes");
    assert!(a != c, "seed did not change the bytes");
    assert_eq!(a.len(), c.len());
}

#[test]
fn weights_have_their_roles_scales() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny();
    cfg.n_embd = 512;
    for r in [Recipe::Q2, Recipe::Q4, Recipe::Q8_0, Recipe::F16] {
        let path = dir.path().join(format!("{r}.gguf"));
        write(&cfg, r, 5, &path);
        let f = GgufFile::open(&path).unwrap();
        for (name, want) in [
            ("blk.0.ffn_gate_exps.weight", 4.0 / 512f64.sqrt()),
            ("blk.2.ffn_down_exps.weight", 0.15 / 256f64.sqrt()),
            ("blk.1.attn_kv.weight", 1.0 / 512f64.sqrt()),
            ("output.weight", 2.0 / 512f64.sqrt()),
            ("token_embd.weight", 1.0),
        ] {
            let (m, sd) = mean_std(&f32s(&f, name));
            assert!(
                (sd / want - 1.0).abs() < 0.1,
                "{r} {name}: std {sd}, want {want}"
            );
            assert!(m.abs() < 0.1 * want, "{r} {name}: mean {m}");
        }
        let (m, sd) = mean_std(&f32s(&f, "blk.0.attn_norm.weight"));
        assert!((m - 1.0).abs() < 0.05 && (sd - 0.2).abs() < 0.05);
        for t in f.header().tensors() {
            let data = f.tensor(&t.name).unwrap().data;
            assert!(data.iter().any(|&b| b != 0), "{} is all zeros", t.name);
        }
    }
}

#[test]
fn hash_tables_hold_distinct_valid_experts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    let path = dir.path().join("m.gguf");
    write(&cfg, Recipe::Q2, 1, &path);
    let f = GgufFile::open(&path).unwrap();
    let t = f.tensor("blk.1.ffn_gate_tid2eid.weight").unwrap();
    assert_eq!(t.ty(), GgmlType::I32);
    let ids: Vec<i32> = t
        .data
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mut used = vec![0usize; cfg.n_expert];
    for row in ids.chunks(cfg.n_expert_used) {
        for (i, &e) in row.iter().enumerate() {
            assert!((0..cfg.n_expert as i32).contains(&e));
            assert!(!row[..i].contains(&e), "repeated expert in {row:?}");
            used[e as usize] += 1;
        }
    }
    assert!(used.iter().all(|&n| n > 40), "uneven hash routing {used:?}");
}

#[test]
fn f32_mode_runs_and_chunking_matches() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    let path = dir.path().join("m.gguf");
    write(&cfg, Recipe::Q2, 2, &path);
    let f = GgufFile::open(&path).unwrap();
    let opts = Options {
        numerics: Numerics::F32,
        ..Options::default()
    };
    let m = Model::load(&f, opts).unwrap();
    let tokens = [1u32, 2, 3, 200, 100, 7];
    let mut st = m.new_state(8);
    let all = m
        .forward(&mut st, &tokens, Logits::All, &mut NoTrace)
        .unwrap();
    let mut st = m.new_state(8);
    let mut chunked = Vec::new();
    for c in tokens.chunks(4) {
        chunked.extend(m.forward(&mut st, c, Logits::All, &mut NoTrace).unwrap());
    }
    assert_eq!(all, chunked);
    assert!(all.iter().all(|v| v.is_finite()));
}

#[test]
fn tokenizer_metadata_is_the_v4_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    let mut meta = metadata_records(&cfg);
    meta.extend(tokenizer_metadata(V4_TOKENIZER_JSON).unwrap());
    let path = dir.path().join("m.gguf");
    synth(&cfg, Recipe::F16, 1, meta, &path, &|_| {}).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let h = f.header();
    assert_eq!(h.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    let tokens = h.get_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.items.len(), 129280);
    let text = |i: usize| match &tokens.items[i] {
        gguf::MetaValue::String(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(text(0), "<｜begin▁of▁sentence｜>");
    assert_eq!(text(1), "<｜end▁of▁sentence｜>");
    let all: Vec<String> = (0..tokens.items.len()).map(text).collect();
    for s in [
        "<｜User｜>",
        "<｜Assistant｜>",
        "<think>",
        "</think>",
        "｜DSML｜",
    ] {
        assert!(all.iter().any(|t| t == s), "{s} missing");
    }
    let types = h.get_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!(types.items.len(), 129280);
    assert_eq!(types.items[0], gguf::MetaValue::I32(3));
    assert_eq!(types.items[100], gguf::MetaValue::I32(1));
    let merges = h.get_array("tokenizer.ggml.merges").unwrap();
    assert_eq!(merges.items[0], gguf::MetaValue::String("Ġ t".into()));
    assert_eq!(h.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 0);
    assert_eq!(h.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 1);
}

#[test]
fn shapes() {
    let pro = pro_shape();
    assert_eq!(&pro.compress_ratios[..6], &[128, 128, 128, 4, 128, 4]);
    assert_eq!(pro.compress_ratios[42], 128);
    check_shape(&pro).unwrap();

    let mut f = ModelConfig::flash();
    truncate_layers(&mut f, 2).unwrap();
    assert_eq!((f.n_layer, f.n_hash_layer), (2, 2));
    assert_eq!(f.compress_ratios, vec![0, 0]);
    assert_eq!(f.swiglu_clamp.len(), 2);
    assert!(truncate_layers(&mut f, 3).is_err());
    assert!(truncate_layers(&mut f, 0).is_err());

    let mut bad = tiny();
    bad.swiglu_clamp.pop();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    let e = synth(&bad, Recipe::F16, 1, vec![], &path, &|_| {}).unwrap_err();
    assert!(e.to_string().contains("swiglu_clamp_exp"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let json = serde_json::to_string(&tiny()).unwrap();
    let back: ModelConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, tiny());
    assert!(serde_json::from_str::<ModelConfig>(r#"{"n_layer": 2}"#).is_err());
}

/// Records the RMS of the HC state after each layer and the routed experts.
#[derive(Default)]
struct Probe {
    state_rms: Vec<(usize, f32)>,
    experts: std::collections::HashMap<usize, Vec<Vec<u32>>>,
}

impl model::Trace for Probe {
    fn record(&mut self, stage: &'static str, layer: usize, _pos: usize, data: &[f32]) {
        match stage {
            "hc_ffn_post" => {
                let ms = data.iter().map(|v| v * v).sum::<f32>() / data.len() as f32;
                self.state_rms.push((layer, ms.sqrt()));
            }
            "moe_experts" => self
                .experts
                .entry(layer)
                .or_default()
                .push(data.iter().map(|&v| v as u32).collect()),
            _ => {}
        }
    }
}

/// Flash's and Pro's 43-layer schedules (hash, CSA and HCA layers, 6 of 16
/// experts) at small width: the random weights keep the residual stream
/// finite and O(1) and spread the top-k routing over the experts.
#[test]
fn deep_schedules_stay_finite_and_route_widely() {
    for shape in [ModelConfig::flash(), pro_shape()] {
        let mut cfg = tiny();
        cfg.n_layer = shape.n_layer;
        cfg.compress_ratios = shape.compress_ratios.clone();
        cfg.swiglu_clamp = shape.swiglu_clamp.clone();
        cfg.n_hash_layer = 3;
        cfg.n_expert = 16;
        cfg.n_expert_used = 6;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep.gguf");
        write(&cfg, Recipe::Q2, 11, &path);
        let f = GgufFile::open(&path).unwrap();
        let m = Model::load(&f, Options::default()).unwrap();
        let tokens: Vec<u32> = (0..24).map(|i| (i * 91 + 3) % 256).collect();
        let mut st = m.new_state(tokens.len());
        let mut probe = Probe::default();
        let logits = m
            .forward(&mut st, &tokens, Logits::All, &mut probe)
            .unwrap();
        assert!(logits.iter().all(|v| v.is_finite()));
        for &(layer, rms) in &probe.state_rms {
            assert!(
                rms.is_finite() && (0.1..100.0).contains(&rms),
                "layer {layer}: HC state RMS {rms}"
            );
        }
        for layer in 3..cfg.n_layer {
            let picks = &probe.experts[&layer];
            let distinct: std::collections::HashSet<u32> =
                picks.iter().flatten().copied().collect();
            assert!(
                distinct.len() >= 12,
                "layer {layer}: only experts {distinct:?} used"
            );
            let firsts: std::collections::HashSet<u32> = picks.iter().map(|p| p[0]).collect();
            assert!(
                firsts.len() >= 4,
                "layer {layer}: top-1 expert always in {firsts:?}"
            );
        }
    }
}
