//! Model configuration read from GGUF metadata (model.md §1.3).
//!
//! ds4 compiles Flash's shapes in and only checks the metadata against
//! them; ds4rs reads every shape from the metadata instead, so the same code
//! runs Flash, Pro and the tiny oracle models. The checks kept here are the
//! ones the forward pass relies on (relations between dimensions, legal
//! per-layer values), not Flash's particular numbers.

use gguf::{GgufHeader, MetaValue};

use crate::error::{ModelError, Result};

/// What attention a layer runs (attention.md §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKind {
    /// Ratio 0: the raw sliding window only.
    Window,
    /// Ratio 4: overlapping compressor, indexer compressor and top-k indexer.
    Sparse,
    /// Any other ratio: non-overlapping compressor, every row attended.
    Heavy,
}

/// Serializable so `synth --shape FILE.json` can take any shape as JSON
/// with these field names.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_vocab: usize,
    pub n_head: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub q_lora_rank: usize,
    pub o_lora_rank: usize,
    pub o_groups: usize,
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub n_ff_exp: usize,
    pub n_hash_layer: usize,
    pub sliding_window: usize,
    pub indexer_heads: usize,
    pub indexer_head_dim: usize,
    pub indexer_top_k: usize,
    pub n_hc: usize,
    pub sinkhorn_iters: usize,
    /// Per-layer compression ratio (0, 4 or another positive ratio).
    pub compress_ratios: Vec<usize>,
    /// Per-layer SwiGLU clamp; ds4 uses it for routed and shared experts.
    pub swiglu_clamp: Vec<f32>,
    pub rope_base: f32,
    pub compress_rope_base: f32,
    pub rope_scale_factor: f32,
    pub rope_orig_ctx: u64,
    pub yarn_beta_fast: f32,
    pub yarn_beta_slow: f32,
    pub expert_weights_scale: f32,
    pub rms_eps: f32,
    pub hc_eps: f32,
    pub context_length: Option<u64>,
}

const P: &str = "deepseek4.";

fn meta_err(key: &str, msg: impl Into<String>) -> ModelError {
    ModelError::Metadata {
        key: key.to_owned(),
        msg: msg.into(),
    }
}

/// A dimension: an exact UINT32 (ds4's rule), non-zero.
fn dim(h: &GgufHeader, name: &str) -> Result<usize> {
    let key = format!("{P}{name}");
    let v = h.get_u32(&key)?;
    if v == 0 {
        return Err(meta_err(&key, "must be non-zero"));
    }
    Ok(v as usize)
}

fn float(h: &GgufHeader, name: &str) -> Result<f32> {
    Ok(h.get_f32(&format!("{P}{name}"))?)
}

fn optional_zero(h: &GgufHeader, name: &str) -> Result<()> {
    let key = format!("{P}{name}");
    match h.get(&key) {
        None | Some(MetaValue::U32(0)) => Ok(()),
        Some(MetaValue::U32(v)) => Err(meta_err(
            &key,
            format!("is {v}; group-limited routing is not part of DeepSeek V4 (expected 0)"),
        )),
        Some(_) => Ok(()),
    }
}

impl ModelConfig {
    /// Reads and checks the configuration of a `deepseek4` GGUF.
    pub fn from_gguf(h: &GgufHeader) -> Result<Self> {
        if let Ok(arch) = h.get_str("general.architecture") {
            if arch != "deepseek4" {
                return Err(meta_err(
                    "general.architecture",
                    format!("is {arch:?}, expected \"deepseek4\""),
                ));
            }
        }
        let n_layer = dim(h, "block_count")?;
        let key_len = dim(h, "attention.key_length")?;
        let value_len = dim(h, "attention.value_length")?;
        if key_len != value_len {
            return Err(meta_err(
                &format!("{P}attention.value_length"),
                format!(
                    "is {value_len}; the shared K=V head needs it equal to key_length {key_len}"
                ),
            ));
        }
        let kv_heads = dim(h, "attention.head_count_kv")?;
        if kv_heads != 1 {
            return Err(meta_err(
                &format!("{P}attention.head_count_kv"),
                format!("is {kv_heads}, expected 1 (one shared K=V head)"),
            ));
        }
        let shared = dim(h, "expert_shared_count")?;
        if shared != 1 {
            return Err(meta_err(
                &format!("{P}expert_shared_count"),
                format!("is {shared}, expected 1"),
            ));
        }
        optional_zero(h, "expert_group_count")?;
        optional_zero(h, "expert_group_used_count")?;
        let norm_key = format!("{P}expert_weights_norm");
        if !h.get_bool(&norm_key)? {
            return Err(meta_err(&norm_key, "must be true"));
        }

        let cfg = ModelConfig {
            n_layer,
            n_embd: dim(h, "embedding_length")?,
            n_vocab: dim(h, "vocab_size")?,
            n_head: dim(h, "attention.head_count")?,
            head_dim: key_len,
            n_rot: dim(h, "rope.dimension_count")?,
            q_lora_rank: dim(h, "attention.q_lora_rank")?,
            o_lora_rank: dim(h, "attention.output_lora_rank")?,
            o_groups: dim(h, "attention.output_group_count")?,
            n_expert: dim(h, "expert_count")?,
            n_expert_used: dim(h, "expert_used_count")?,
            n_ff_exp: dim(h, "expert_feed_forward_length")?,
            n_hash_layer: h.get_u32(&format!("{P}hash_layer_count"))? as usize,
            sliding_window: dim(h, "attention.sliding_window")?,
            indexer_heads: dim(h, "attention.indexer.head_count")?,
            indexer_head_dim: dim(h, "attention.indexer.key_length")?,
            indexer_top_k: dim(h, "attention.indexer.top_k")?,
            n_hc: dim(h, "hyper_connection.count")?,
            sinkhorn_iters: dim(h, "hyper_connection.sinkhorn_iterations")?,
            compress_ratios: ratios(h, n_layer)?,
            swiglu_clamp: clamps(h, n_layer)?,
            rope_base: float(h, "rope.freq_base")?,
            compress_rope_base: float(h, "attention.compress_rope_freq_base")?,
            rope_scale_factor: float(h, "rope.scaling.factor")?,
            rope_orig_ctx: h.get_u64(&format!("{P}rope.scaling.original_context_length"))?,
            yarn_beta_fast: float(h, "rope.scaling.yarn_beta_fast")?,
            yarn_beta_slow: float(h, "rope.scaling.yarn_beta_slow")?,
            expert_weights_scale: float(h, "expert_weights_scale")?,
            rms_eps: float(h, "attention.layer_norm_rms_epsilon")?,
            hc_eps: float(h, "hyper_connection.epsilon")?,
            context_length: match h.get(&format!("{P}context_length")) {
                Some(v) => v.as_u64(),
                None => None,
            },
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Relations the forward pass depends on.
    fn check(&self) -> Result<()> {
        let need = |ok: bool, key: &str, msg: String| {
            if ok {
                Ok(())
            } else {
                Err(meta_err(&format!("{P}{key}"), msg))
            }
        };
        need(
            self.n_rot.is_multiple_of(2)
                && self.n_rot <= self.head_dim
                && self.n_rot <= self.indexer_head_dim,
            "rope.dimension_count",
            format!(
                "is {}; must be even and at most key_length {} and indexer key_length {}",
                self.n_rot, self.head_dim, self.indexer_head_dim
            ),
        )?;
        need(
            self.n_head.is_multiple_of(self.o_groups),
            "attention.output_group_count",
            format!(
                "is {}; must divide head_count {}",
                self.o_groups, self.n_head
            ),
        )?;
        need(
            self.n_expert_used <= self.n_expert,
            "expert_used_count",
            format!(
                "is {}; more than expert_count {}",
                self.n_expert_used, self.n_expert
            ),
        )?;
        need(
            self.n_hash_layer <= self.n_layer,
            "hash_layer_count",
            format!(
                "is {}; more than block_count {}",
                self.n_hash_layer, self.n_layer
            ),
        )?;
        need(
            self.indexer_head_dim.is_power_of_two(),
            "attention.indexer.key_length",
            format!(
                "is {}; the indexer's Hadamard rotation needs a power of two",
                self.indexer_head_dim
            ),
        )?;
        need(
            self.head_dim >= self.n_rot && (self.head_dim - self.n_rot).is_multiple_of(64),
            "attention.key_length",
            format!(
                "is {}; the FP8 round trip works on 64-wide blocks of the {} non-RoPE dims",
                self.head_dim,
                self.head_dim.saturating_sub(self.n_rot)
            ),
        )?;
        need(
            self.indexer_head_dim.is_multiple_of(32),
            "attention.indexer.key_length",
            format!(
                "is {}; the FP4 round trip works on 32-wide blocks",
                self.indexer_head_dim
            ),
        )?;
        need(
            self.rms_eps > 0.0 && self.hc_eps > 0.0,
            "attention.layer_norm_rms_epsilon",
            "epsilons must be positive".into(),
        )?;
        Ok(())
    }

    pub fn attention_kind(&self, layer: usize) -> AttentionKind {
        match self.compress_ratios[layer] {
            0 => AttentionKind::Window,
            4 => AttentionKind::Sparse,
            _ => AttentionKind::Heavy,
        }
    }

    /// Layers below `n_hash_layer` route by token id (model.md §7.3).
    pub fn is_hash_layer(&self, layer: usize) -> bool {
        layer < self.n_hash_layer
    }

    /// Width of the flattened HC state.
    pub fn hc_dim(&self) -> usize {
        self.n_hc * self.n_embd
    }

    /// Width of the HC mix vector: pre, post and the comb matrix.
    pub fn hc_mix(&self) -> usize {
        2 * self.n_hc + self.n_hc * self.n_hc
    }

    /// Non-rotated dims of a head.
    pub fn nope_dim(&self) -> usize {
        self.head_dim - self.n_rot
    }
}

/// The first `n_layer` entries of a per-layer array, each converted by
/// `entry` (which names the accepted types in `expected`).
fn per_layer<T>(
    h: &GgufHeader,
    name: &str,
    n_layer: usize,
    expected: &str,
    entry: impl Fn(&MetaValue) -> Option<T>,
) -> Result<Vec<T>> {
    let key = format!("{P}{name}");
    let arr = h.get_array(&key)?;
    if arr.items.len() < n_layer {
        return Err(meta_err(
            &key,
            format!(
                "has {} entries, block_count needs {n_layer}",
                arr.items.len()
            ),
        ));
    }
    arr.items[..n_layer]
        .iter()
        .enumerate()
        .map(|(l, v)| {
            entry(v).ok_or_else(|| meta_err(&key, format!("entry {l} is {v}; expected {expected}")))
        })
        .collect()
}

fn ratios(h: &GgufHeader, n_layer: usize) -> Result<Vec<usize>> {
    per_layer(
        h,
        "attention.compress_ratios",
        n_layer,
        "a non-negative UINT32 or INT32",
        |v| match *v {
            MetaValue::U32(r) => Some(r as usize),
            MetaValue::I32(r) => usize::try_from(r).ok(),
            _ => None,
        },
    )
}

fn clamps(h: &GgufHeader, n_layer: usize) -> Result<Vec<f32>> {
    per_layer(
        h,
        "swiglu_clamp_exp",
        n_layer,
        "FLOAT32 or FLOAT64",
        |v| match *v {
            MetaValue::F32(x) => Some(x),
            MetaValue::F64(x) => Some(x as f32),
            _ => None,
        },
    )
}

/// Metadata of a configuration, for writers (`synth`, `convert`): the keys
/// and value types ds4's published files use.
pub fn metadata_records(cfg: &ModelConfig) -> Vec<(String, MetaValue)> {
    use gguf::{MetaArray, ValueType};
    let u = |v: usize| MetaValue::U32(v as u32);
    let mut m: Vec<(String, MetaValue)> = vec![
        ("general.architecture".into(), "deepseek4".into()),
        (
            format!("{P}context_length"),
            MetaValue::U64(cfg.context_length.unwrap_or(1 << 20)),
        ),
        (format!("{P}block_count"), u(cfg.n_layer)),
        (format!("{P}embedding_length"), u(cfg.n_embd)),
        (format!("{P}vocab_size"), u(cfg.n_vocab)),
        (format!("{P}attention.head_count"), u(cfg.n_head)),
        (format!("{P}attention.head_count_kv"), u(1)),
        (format!("{P}attention.key_length"), u(cfg.head_dim)),
        (format!("{P}attention.value_length"), u(cfg.head_dim)),
        (format!("{P}rope.dimension_count"), u(cfg.n_rot)),
        (format!("{P}attention.q_lora_rank"), u(cfg.q_lora_rank)),
        (format!("{P}attention.output_lora_rank"), u(cfg.o_lora_rank)),
        (format!("{P}attention.output_group_count"), u(cfg.o_groups)),
        (format!("{P}expert_count"), u(cfg.n_expert)),
        (format!("{P}expert_used_count"), u(cfg.n_expert_used)),
        (format!("{P}expert_feed_forward_length"), u(cfg.n_ff_exp)),
        (format!("{P}expert_shared_count"), u(1)),
        (format!("{P}hash_layer_count"), u(cfg.n_hash_layer)),
        (
            format!("{P}attention.sliding_window"),
            u(cfg.sliding_window),
        ),
        (
            format!("{P}attention.indexer.head_count"),
            u(cfg.indexer_heads),
        ),
        (
            format!("{P}attention.indexer.key_length"),
            u(cfg.indexer_head_dim),
        ),
        (format!("{P}attention.indexer.top_k"), u(cfg.indexer_top_k)),
        (format!("{P}hyper_connection.count"), u(cfg.n_hc)),
        (
            format!("{P}hyper_connection.sinkhorn_iterations"),
            u(cfg.sinkhorn_iters),
        ),
    ];
    m.push((
        format!("{P}attention.compress_ratios"),
        MetaValue::Array(MetaArray {
            elem_type: ValueType::U32,
            items: cfg.compress_ratios.iter().map(|&r| u(r)).collect(),
        }),
    ));
    m.push((
        format!("{P}swiglu_clamp_exp"),
        MetaValue::Array(MetaArray {
            elem_type: ValueType::F32,
            items: cfg
                .swiglu_clamp
                .iter()
                .map(|&c| MetaValue::F32(c))
                .collect(),
        }),
    ));
    let f = |v: f32| MetaValue::F32(v);
    m.extend([
        (
            format!("{P}rope.scaling.original_context_length"),
            MetaValue::U32(cfg.rope_orig_ctx as u32),
        ),
        (format!("{P}rope.freq_base"), f(cfg.rope_base)),
        (format!("{P}rope.scaling.factor"), f(cfg.rope_scale_factor)),
        (
            format!("{P}rope.scaling.yarn_beta_fast"),
            f(cfg.yarn_beta_fast),
        ),
        (
            format!("{P}rope.scaling.yarn_beta_slow"),
            f(cfg.yarn_beta_slow),
        ),
        (
            format!("{P}attention.compress_rope_freq_base"),
            f(cfg.compress_rope_base),
        ),
        (
            format!("{P}expert_weights_scale"),
            f(cfg.expert_weights_scale),
        ),
        (
            format!("{P}attention.layer_norm_rms_epsilon"),
            f(cfg.rms_eps),
        ),
        (format!("{P}hyper_connection.epsilon"), f(cfg.hc_eps)),
        (format!("{P}expert_weights_norm"), MetaValue::Bool(true)),
    ]);
    m
}

impl ModelConfig {
    /// DeepSeek V4 Flash as ds4 checks it (model.md §0, §1.3).
    pub fn flash() -> Self {
        let n_layer = 43;
        ModelConfig {
            n_layer,
            n_embd: 4096,
            n_vocab: 129280,
            n_head: 64,
            head_dim: 512,
            n_rot: 64,
            q_lora_rank: 1024,
            o_lora_rank: 1024,
            o_groups: 8,
            n_expert: 256,
            n_expert_used: 6,
            n_ff_exp: 2048,
            n_hash_layer: 3,
            sliding_window: 128,
            indexer_heads: 64,
            indexer_head_dim: 128,
            indexer_top_k: 512,
            n_hc: 4,
            sinkhorn_iters: 20,
            compress_ratios: (0..n_layer)
                .map(|l| match l {
                    0 | 1 => 0,
                    l if l % 2 == 0 => 4,
                    _ => 128,
                })
                .collect(),
            swiglu_clamp: vec![10.0; n_layer],
            rope_base: 10000.0,
            compress_rope_base: 160000.0,
            rope_scale_factor: 16.0,
            rope_orig_ctx: 65536,
            yarn_beta_fast: 32.0,
            yarn_beta_slow: 1.0,
            expert_weights_scale: 1.5,
            rms_eps: 1e-6,
            hc_eps: 1e-6,
            context_length: Some(1 << 20),
        }
    }
}
