//! What the binary's integration tests share: the binary runner and the
//! tiny model shape they synthesize.

use std::process::{Command, Output};

/// Runs the built `ds4rs` with `args` (no backtraces in its error output).
pub fn ds4rs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ds4rs"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run ds4rs")
}

/// A 3-layer shape with every attention kind, in ModelConfig's JSON form.
pub const TINY: &str = r#"{"n_layer":3,"n_embd":256,"n_vocab":256,"n_head":4,"head_dim":256,
"n_rot":64,"q_lora_rank":128,"o_lora_rank":128,"o_groups":2,"n_expert":8,"n_expert_used":3,
"n_ff_exp":256,"n_hash_layer":2,"sliding_window":32,"indexer_heads":4,"indexer_head_dim":128,
"indexer_top_k":8,"n_hc":4,"sinkhorn_iters":20,"compress_ratios":[0,4,128],
"swiglu_clamp":[10,10,10],"rope_base":10000,"compress_rope_base":160000,
"rope_scale_factor":16,"rope_orig_ctx":65536,"yarn_beta_fast":32,"yarn_beta_slow":1,
"expert_weights_scale":1.5,"rms_eps":1e-6,"hc_eps":1e-6,"context_length":1048576}"#;
