//! `convert` on official-format checkpoints: a tiny one built here with
//! every dtype of the release (FP8 + E8M0 block scales, FP4 in I8 + E8M0,
//! BF16, F32, I64), sharded, and the oracle's fixtures. The f32 recipe is
//! checked value by value against an independent decode, the quantized
//! experts byte by byte against gguf's quantizers, every recipe loads and
//! runs, and each kind of malformed input gets an error naming the culprit
//! with no output file left behind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gguf::{GgmlType, GgufFile};
use model::convert::Converter;
use model::layout::{layout, Official, Recipe, Role};
use model::{Logits, Model, ModelConfig, NoTrace, Options};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::json;

fn tiny() -> ModelConfig {
    common::tiny(4, 2)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Roughly normal (sum of uniforms), std about `s`.
    fn normal(&mut self, s: f32) -> f32 {
        let u: f32 = (0..4)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32)
            .sum();
        (u - 2.0) * 1.732 * s
    }
}

type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// An official-format checkpoint of `cfg` in memory.
struct Ckpt {
    tensors: Tensors,
    config: serde_json::Value,
}

fn official(cfg: &ModelConfig) -> Ckpt {
    let mut rng = Rng(42);
    let mut t = Tensors::new();
    for spec in layout(cfg, Recipe::Q2).unwrap() {
        let (rows, cols) = (spec.dims.get(1).copied().unwrap_or(1) as usize, spec.cols());
        match &spec.official {
            Official::Experts { layer, part } => {
                for e in 0..spec.dims[2] as usize {
                    let name = Official::expert_name(*layer, e, *part);
                    let w: Vec<u8> = (0..rows * cols / 2).map(|_| rng.next() as u8).collect();
                    let base = if *part == 2 { 118 } else { 122 };
                    let s: Vec<u8> = (0..rows * cols / 32)
                        .map(|_| base + (rng.next() % 3) as u8)
                        .collect();
                    t.insert(name.clone(), (Dtype::I8, vec![rows, cols / 2], w));
                    let sname = name.replace(".weight", ".scale");
                    t.insert(sname, (Dtype::F8_E8M0, vec![rows, cols / 32], s));
                }
            }
            Official::Tensor(name) => {
                let shape = if spec.dims.len() == 1 {
                    vec![cols]
                } else {
                    vec![rows, cols]
                };
                let n = rows * cols;
                let entry = if spec.ty == GgmlType::I32 {
                    let mut data = Vec::new();
                    for _ in 0..rows {
                        let mut ids: Vec<i64> = Vec::new();
                        while ids.len() < cols {
                            let e = (rng.next() % cfg.n_expert as u64) as i64;
                            if !ids.contains(&e) {
                                ids.push(e);
                            }
                        }
                        data.extend(ids.iter().flat_map(|v| v.to_le_bytes()));
                    }
                    (Dtype::I64, shape, data)
                } else if spec.ty == GgmlType::Q8_0 {
                    let w: Vec<u8> = (0..n)
                        .map(|_| {
                            let b = rng.next() as u8;
                            if b & 0x7F == 0x7F {
                                b ^ 1
                            } else {
                                b
                            }
                        })
                        .collect();
                    let sshape = vec![rows.div_ceil(128), cols.div_ceil(128)];
                    let s: Vec<u8> = (0..sshape[0] * sshape[1])
                        .map(|_| 114 + (rng.next() % 3) as u8)
                        .collect();
                    t.insert(
                        name.replace(".weight", ".scale"),
                        (Dtype::F8_E8M0, sshape, s),
                    );
                    (Dtype::F8_E4M3, shape, w)
                } else if spec.dims.len() == 1 || spec.role == Role::Ape || name.contains("hc_") {
                    let (m, s) = match spec.role {
                        Role::Norm | Role::HcScale => (1.0, 0.2),
                        Role::Matrix { gain } => (0.0, gain / (cols as f32).sqrt()),
                        _ => (0.0, 0.5),
                    };
                    let data = (0..n)
                        .flat_map(|_| (m + rng.normal(s)).to_le_bytes())
                        .collect();
                    (Dtype::F32, shape, data)
                } else {
                    let s = match spec.role {
                        Role::Matrix { gain } => gain / (cols as f32).sqrt(),
                        _ => 1.0,
                    };
                    let data = (0..n)
                        .flat_map(|_| half::bf16::from_f32(rng.normal(s)).to_le_bytes())
                        .collect();
                    (Dtype::BF16, shape, data)
                };
                t.insert(name.clone(), entry);
            }
        }
    }
    let config = json!({
        "architectures": ["DeepseekV4ForCausalLM"],
        "vocab_size": cfg.n_vocab, "hidden_size": cfg.n_embd,
        "moe_intermediate_size": cfg.n_ff_exp, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "num_key_value_heads": 1, "head_dim": cfg.head_dim,
        "qk_rope_head_dim": cfg.n_rot, "q_lora_rank": cfg.q_lora_rank,
        "o_lora_rank": cfg.o_lora_rank, "o_groups": cfg.o_groups,
        "n_routed_experts": cfg.n_expert, "n_shared_experts": 1,
        "num_experts_per_tok": cfg.n_expert_used, "num_hash_layers": cfg.n_hash_layer,
        "scoring_func": "sqrtsoftplus", "norm_topk_prob": true, "routed_scaling_factor": 1.5,
        "swiglu_limit": 10.0, "sliding_window": cfg.sliding_window,
        "compress_ratios": cfg.compress_ratios.iter().copied().chain([0]).collect::<Vec<_>>(),
        "compress_rope_theta": 160000.0, "index_n_heads": cfg.indexer_heads,
        "index_head_dim": cfg.indexer_head_dim, "index_topk": cfg.indexer_top_k,
        "hc_mult": cfg.n_hc, "hc_sinkhorn_iters": 20, "hc_eps": 1e-6, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "max_position_embeddings": 1048576,
        "rope_scaling": {"type": "yarn", "factor": 16, "original_max_position_embeddings": 65536,
                         "beta_fast": 32, "beta_slow": 1},
    });
    Ckpt { tensors: t, config }
}

impl Ckpt {
    /// Writes config, index and two shards (globals, then layers).
    fn save(&self, dir: &Path) {
        std::fs::write(dir.join("config.json"), self.config.to_string()).unwrap();
        let shard_of = |n: &str| {
            if n.starts_with("layers.") {
                "model-00002-of-00002.safetensors"
            } else {
                "model-00001-of-00002.safetensors"
            }
        };
        let mut map = serde_json::Map::new();
        for shard in [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ] {
            let views: Vec<(String, TensorView)> = self
                .tensors
                .iter()
                .filter(|(n, _)| shard_of(n) == shard)
                .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
                .collect();
            for (n, _) in &views {
                map.insert(n.clone(), shard.into());
            }
            let bytes = safetensors::serialize(views, None).unwrap();
            std::fs::write(dir.join(shard), bytes).unwrap();
        }
        let index = json!({"metadata": {}, "weight_map": map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
}

fn convert(dir: &Path, r: Recipe) -> model::Result<PathBuf> {
    let out = dir.join(format!("out.{r}.gguf"));
    Converter::open(dir, r)?.write(&out, &|_| {})?;
    Ok(out)
}

fn f32s(f: &GgufFile, name: &str) -> Vec<f32> {
    let t = f.tensor(name).unwrap();
    let mut out = vec![0f32; t.dims().iter().product::<u64>() as usize];
    gguf::quant::dequantize(t.ty(), t.data, &mut out).unwrap();
    out
}

fn e8m0(e: u8) -> f32 {
    2f32.powi(e as i32 - 127)
}

fn e4m3(v: u8) -> f32 {
    let (e, m) = ((v >> 3) & 15, v & 7);
    let mag = if e == 0 {
        m as f32 / 512.0
    } else {
        (8 + m) as f32 / 8.0 * 2f32.powi(e as i32 - 7)
    };
    if v & 0x80 != 0 {
        -mag
    } else {
        mag
    }
}

fn runs(path: &Path) {
    let f = GgufFile::open(path).unwrap();
    let m = Model::load(&f, Options::default()).unwrap();
    let mut st = m.new_state(16);
    let logits = m
        .forward(
            &mut st,
            &[0, 5, 9, 200, 17, 3, 3, 1],
            Logits::All,
            &mut NoTrace,
        )
        .unwrap();
    assert!(logits.iter().all(|v| v.is_finite()), "{}", path.display());
}

#[test]
fn f32_recipe_is_the_exact_dequantization() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    let ck = official(&cfg);
    ck.save(dir.path());
    let out = convert(dir.path(), Recipe::F32).unwrap();
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(ModelConfig::from_gguf(f.header()).unwrap(), cfg);
    let raw = |n: &str| &ck.tensors[n].2;

    // FP8 with 128x128 block scales: attn_kv is [256 out, 256 in].
    let got = f32s(&f, "blk.1.attn_kv.weight");
    let (w, s) = (
        raw("layers.1.attn.wkv.weight"),
        raw("layers.1.attn.wkv.scale"),
    );
    for r in 0..256 {
        for c in 0..256 {
            let want = e4m3(w[r * 256 + c]) * e8m0(s[(r / 128) * 2 + c / 128]);
            assert_eq!(got[r * 256 + c], want, "wkv[{r}][{c}]");
        }
    }
    // FP4 experts: expert 2 of the down tensor, rows of 256 (n_ff_exp) inputs.
    let got = f32s(&f, "blk.2.ffn_down_exps.weight");
    let (w, s) = (
        raw("layers.2.ffn.experts.2.w2.weight"),
        raw("layers.2.ffn.experts.2.w2.scale"),
    );
    const E2M1: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
    let per = 256 * 256;
    for i in 0..per {
        let b = w[i / 2];
        let nib = if i % 2 == 0 { b & 15 } else { b >> 4 };
        let v = E2M1[(nib & 7) as usize] * if nib & 8 != 0 { -1.0 } else { 1.0 };
        assert_eq!(got[2 * per + i], v * e8m0(s[i / 32]), "expert value {i}");
    }
    // BF16, F32 and the I64 hash table.
    let emb = raw("embed.weight");
    let got = f32s(&f, "token_embd.weight");
    for (i, c) in emb.chunks_exact(2).enumerate() {
        assert_eq!(got[i], half::bf16::from_le_bytes([c[0], c[1]]).to_f32());
    }
    let norm: Vec<f32> = raw("layers.0.attn_norm.weight")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(f32s(&f, "blk.0.attn_norm.weight"), norm);
    let ids: Vec<i64> = raw("layers.1.ffn.gate.tid2eid")
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let t = f.tensor("blk.1.ffn_gate_tid2eid.weight").unwrap();
    let got: Vec<i64> = t
        .data
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
        .collect();
    assert_eq!(got, ids);
    // The official ape is [ratio, width]; GGUF [width, ratio] stores it as is.
    let ape: Vec<f32> = raw("layers.1.attn.compressor.ape")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(f32s(&f, "blk.1.attn_compressor_ape.weight"), ape);
}

#[test]
fn quantized_recipes_use_gguf_quantizers_per_expert() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    official(&cfg).save(dir.path());
    let reference = GgufFile::open(convert(dir.path(), Recipe::F32).unwrap()).unwrap();
    for r in [Recipe::Q2, Recipe::Q4, Recipe::Q8_0, Recipe::F16] {
        let f = GgufFile::open(convert(dir.path(), r).unwrap()).unwrap();
        for name in ["blk.0.ffn_gate_exps.weight", "blk.2.ffn_down_exps.weight"] {
            let t = f.tensor(name).unwrap();
            let x = f32s(&reference, name);
            let cols = t.dims()[0] as usize;
            let per_expert = x.len() / cfg.n_expert;
            let mut want = Vec::new();
            for e in x.chunks(per_expert) {
                want.extend(gguf::quant::quantize(t.ty(), e, cols, None).unwrap());
            }
            assert!(t.data == want.as_slice(), "{r} {name}");
        }
        let t = f.tensor("blk.1.attn_q_b.weight").unwrap();
        let x = f32s(&reference, "blk.1.attn_q_b.weight");
        let want = gguf::quant::quantize(t.ty(), &x, t.dims()[0] as usize, None).unwrap();
        assert!(t.data == want.as_slice(), "{r} attn_q_b");
    }
}

#[test]
fn every_recipe_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny();
    official(&cfg).save(dir.path());
    for r in Recipe::ALL {
        runs(&convert(dir.path(), r).unwrap());
    }
}

#[test]
fn oracle_fixtures_convert() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle");
    let out = tempfile::tempdir().unwrap();
    for (config, recipes) in [
        ("flash_mini", &Recipe::ALL[..]),
        ("small_hca16", &[Recipe::F32, Recipe::F16, Recipe::Q8_0][..]),
    ] {
        for &r in recipes {
            let path = out.path().join(format!("{config}.{r}.gguf"));
            let conv = Converter::open(&root.join(config), r).unwrap();
            assert_eq!(conv.notes.len(), 1, "no tokenizer.json note");
            conv.write(&path, &|_| {}).unwrap();
            runs(&path);
        }
    }
    // 128-wide experts cannot be IQ2_XXS.
    let e = Converter::open(&root.join("small_hca16"), Recipe::Q2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("ffn_gate_exps") && e.contains("256"), "{e}");
}

#[test]
fn tokenizer_json_becomes_gguf_metadata() {
    let dir = tempfile::tempdir().unwrap();
    official(&tiny()).save(dir.path());
    std::fs::write(
        dir.path().join("tokenizer.json"),
        model::convert::tokenizer::V4_TOKENIZER_JSON,
    )
    .unwrap();
    let conv = Converter::open(dir.path(), Recipe::F16).unwrap();
    assert!(conv.notes.is_empty());
    let out = dir.path().join("t.gguf");
    conv.write(&out, &|_| {}).unwrap();
    let f = GgufFile::open(&out).unwrap();
    let h = f.header();
    assert_eq!(
        h.get_array("tokenizer.ggml.tokens").unwrap().items.len(),
        129280
    );
    assert_eq!(h.get_str("tokenizer.ggml.pre").unwrap(), "joyai-llm");
    assert_eq!(h.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 1);
}

/// Writes a broken variant of the checkpoint and returns convert's error,
/// checking that nothing was left at the output path.
fn broken(edit: impl FnOnce(&mut Ckpt, &Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut ck = official(&tiny());
    edit(&mut ck, dir.path());
    if !dir.path().join("config.json").exists() {
        ck.save(dir.path());
    }
    let out = dir.path().join("out.gguf");
    let e = Converter::open(dir.path(), Recipe::Q2)
        .and_then(|c| c.write(&out, &|_| {}))
        .unwrap_err();
    assert!(!out.exists());
    assert!(!dir.path().join("out.gguf.partial").exists());
    e.to_string()
}

#[test]
fn missing_tensor() {
    let e = broken(|ck, _| {
        ck.tensors.remove("layers.2.attn.wo_b.weight");
    });
    assert!(
        e.contains("missing tensor \"layers.2.attn.wo_b.weight\""),
        "{e}"
    );
    let e = broken(|ck, _| {
        ck.tensors.remove("layers.0.ffn.experts.3.w3.weight");
    });
    assert!(e.contains("layers.0.ffn.experts.3.w3.weight"), "{e}");
}

#[test]
fn missing_scale() {
    let e = broken(|ck, _| {
        ck.tensors.remove("layers.1.attn.wq_a.scale");
    });
    assert!(
        e.contains("layers.1.attn.wq_a.scale") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn wrong_dtype() {
    let e = broken(|ck, _| {
        let t = ck.tensors.get_mut("norm.weight").unwrap();
        t.0 = Dtype::I32;
    });
    assert!(e.contains("norm.weight") && e.contains("I32"), "{e}");
    let e = broken(|ck, _| {
        let t = ck.tensors.get_mut("layers.0.attn.wkv.scale").unwrap();
        t.0 = Dtype::U8;
    });
    assert!(
        e.contains("layers.0.attn.wkv.scale") && e.contains("F8_E8M0"),
        "{e}"
    );
    let e = broken(|ck, _| {
        let t = ck.tensors.get_mut("layers.0.ffn.gate.tid2eid").unwrap();
        t.0 = Dtype::F64;
    });
    assert!(e.contains("tid2eid") && e.contains("I64"), "{e}");
}

#[test]
fn wrong_shape() {
    let e = broken(|ck, _| {
        let t = ck.tensors.get_mut("layers.1.attn.kv_norm.weight").unwrap();
        t.1 = vec![128, 2];
    });
    assert!(
        e.contains("layers.1.attn.kv_norm.weight") && e.contains("[256]"),
        "{e}"
    );
    let e = broken(|ck, _| {
        let t = ck
            .tensors
            .get_mut("layers.0.ffn.experts.0.w2.weight")
            .unwrap();
        t.1 = vec![128, 256];
    });
    assert!(e.contains("experts.0.w2.weight"), "{e}");
}

#[test]
fn hash_id_out_of_range() {
    let e = broken(|ck, _| {
        let t = ck.tensors.get_mut("layers.0.ffn.gate.tid2eid").unwrap();
        t.2[8..16].copy_from_slice(&99i64.to_le_bytes());
    });
    assert!(e.contains("tid2eid") && e.contains("99"), "{e}");
}

#[test]
fn truncated_or_missing_shard() {
    let e = broken(|ck, dir| {
        ck.save(dir);
        let p = dir.join("model-00002-of-00002.safetensors");
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 1000).unwrap();
    });
    assert!(e.contains("model-00002-of-00002.safetensors"), "{e}");
    let e = broken(|ck, dir| {
        ck.save(dir);
        std::fs::remove_file(dir.join("model-00001-of-00002.safetensors")).unwrap();
    });
    assert!(e.contains("model-00001-of-00002.safetensors"), "{e}");
    let e = broken(|ck, dir| {
        ck.save(dir);
        std::fs::remove_file(dir.join("model.safetensors.index.json")).unwrap();
    });
    assert!(e.contains("model.safetensors.index.json"), "{e}");
}

#[test]
fn bad_config() {
    let e = broken(|ck, _| {
        ck.config.as_object_mut().unwrap().remove("o_groups");
    });
    assert!(e.contains("config.json") && e.contains("o_groups"), "{e}");
    let e = broken(|ck, _| {
        ck.config["scoring_func"] = "softmax".into();
    });
    assert!(e.contains("scoring_func"), "{e}");
    let e = broken(|ck, _| {
        ck.config["compress_ratios"] = json!([0, 4]);
    });
    assert!(e.contains("compress_ratios"), "{e}");
}
