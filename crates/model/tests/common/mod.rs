//! Shared by the model crate's integration tests.

use model::ModelConfig;

/// A small shape with every layer kind (window, sparse, heavy), hash and
/// top-k layers, and dims the q2 block sizes accept.
pub fn tiny(n_expert: usize, n_expert_used: usize) -> ModelConfig {
    let mut c = ModelConfig::flash();
    c.n_layer = 3;
    c.n_embd = 256;
    c.n_vocab = 256;
    c.n_head = 4;
    c.head_dim = 256;
    c.q_lora_rank = 128;
    c.o_lora_rank = 128;
    c.o_groups = 2;
    c.n_expert = n_expert;
    c.n_expert_used = n_expert_used;
    c.n_ff_exp = 256;
    c.n_hash_layer = 2;
    c.sliding_window = 32;
    c.indexer_heads = 4;
    c.indexer_top_k = 8;
    c.compress_ratios = vec![0, 4, 128];
    c.swiglu_clamp = vec![10.0; 3];
    c
}
