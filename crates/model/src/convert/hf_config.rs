//! `ModelConfig` from an official DeepSeek V4 `config.json`, with the field
//! mapping of model.md §1.3 (last paragraph). Fields the GGUF cannot express
//! (`scoring_func`, `norm_topk_prob`, shared-expert and KV-head counts) are
//! checked against what ds4's model hard-codes instead.

use serde_json::Value;

use crate::config::ModelConfig;

/// Reads the configuration; errors name the field at fault.
pub fn from_config_json(text: &str) -> Result<ModelConfig, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let field = |k: &str| v.get(k).ok_or(format!("missing field {k:?}"));
    let uint = |k: &str| -> Result<usize, String> {
        field(k)?
            .as_u64()
            .map(|x| x as usize)
            .ok_or(format!("field {k:?} is not a non-negative integer"))
    };
    // `at` is the path of the object holding `k`, for the messages.
    let num_in = |v: &Value, at: &str, k: &str| -> Result<f32, String> {
        v.get(k)
            .ok_or(format!("missing field \"{at}{k}\""))?
            .as_f64()
            .map(|x| x as f32)
            .ok_or(format!("field \"{at}{k}\" is not a number"))
    };
    let num = |k: &str| num_in(&v, "", k);
    let expect = |k: &str, want: &Value| -> Result<(), String> {
        match v.get(k) {
            Some(got) if got != want => Err(format!(
                "field {k:?} is {got}; DeepSeek V4 as ds4 runs it needs {want}"
            )),
            _ => Ok(()),
        }
    };
    expect("scoring_func", &"sqrtsoftplus".into())?;
    expect("norm_topk_prob", &true.into())?;
    expect("n_shared_experts", &1.into())?;
    expect("num_key_value_heads", &1.into())?;

    let n_layer = uint("num_hidden_layers")?;
    let ratios = field("compress_ratios")?
        .as_array()
        .ok_or("field \"compress_ratios\" is not an array")?;
    if ratios.len() < n_layer {
        return Err(format!(
            "field \"compress_ratios\" has {} entries for {n_layer} layers",
            ratios.len()
        ));
    }
    let compress_ratios = ratios[..n_layer]
        .iter()
        .map(|r| {
            r.as_u64()
                .map(|r| r as usize)
                .ok_or(format!("compress_ratios entry {r} is not a ratio"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rope = field("rope_scaling")?;
    let clamp = num("swiglu_limit")?;
    let head_dim = uint("head_dim")?;
    Ok(ModelConfig {
        n_layer,
        n_embd: uint("hidden_size")?,
        n_vocab: uint("vocab_size")?,
        n_head: uint("num_attention_heads")?,
        head_dim,
        n_rot: uint("qk_rope_head_dim")?,
        q_lora_rank: uint("q_lora_rank")?,
        o_lora_rank: uint("o_lora_rank")?,
        o_groups: uint("o_groups")?,
        n_expert: uint("n_routed_experts")?,
        n_expert_used: uint("num_experts_per_tok")?,
        n_ff_exp: uint("moe_intermediate_size")?,
        n_hash_layer: uint("num_hash_layers")?,
        sliding_window: uint("sliding_window")?,
        indexer_heads: uint("index_n_heads")?,
        indexer_head_dim: uint("index_head_dim")?,
        indexer_top_k: uint("index_topk")?,
        n_hc: uint("hc_mult")?,
        sinkhorn_iters: uint("hc_sinkhorn_iters")?,
        compress_ratios,
        swiglu_clamp: vec![clamp; n_layer],
        rope_base: num("rope_theta")?,
        compress_rope_base: num("compress_rope_theta")?,
        rope_scale_factor: num_in(rope, "rope_scaling.", "factor")?,
        rope_orig_ctx: rope
            .get("original_max_position_embeddings")
            .and_then(Value::as_u64)
            .ok_or("rope_scaling.original_max_position_embeddings missing or not an integer")?,
        yarn_beta_fast: num_in(rope, "rope_scaling.", "beta_fast")?,
        yarn_beta_slow: num_in(rope, "rope_scaling.", "beta_slow")?,
        expert_weights_scale: num("routed_scaling_factor")?,
        rms_eps: num("rms_norm_eps")?,
        hc_eps: num("hc_eps")?,
        context_length: v.get("max_position_embeddings").and_then(Value::as_u64),
    })
}
