#!/usr/bin/env python3
"""Oracle logits for a q2-converted tiny model ("the oracle run on the same dequantized weights").

Issue 3 asks that a converted q2 tiny model meets the oracle bounds against the oracle run on
*its own* weights. This script takes the GGUF written by `ds4rs convert --recipe q2`,
dequantizes every tensor with PyPI gguf's numpy decoders (independent of ds4rs's decoders, and
bit-exact with ggml's), writes the values back as an official-format checkpoint (F32, official
names: gguf-and-quants.md §6.1 table) and runs make_oracle.py --from-checkpoint on it. Only the
logits files and the manifest are kept (the test needs nothing else).

Regenerate (after `cargo build --release -p ds4rs`; needs the oracle venv plus gguf==0.19.0):

    target/release/ds4rs convert --hf crates/model/tests/fixtures/oracle/flash_mini \\
        --out /tmp/flash_mini_q2.gguf --recipe q2
    python tools/reference/oracle/make_q2_oracle.py /tmp/flash_mini_q2.gguf \\
        crates/model/tests/fixtures/oracle/flash_mini crates/model/tests/fixtures/oracle/flash_mini_q2

The GGUF's SHA-256 is recorded in OUT/source.json; the Rust test converts the checkpoint again
and refuses to compare if the bytes differ (then this fixture must be regenerated).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file

GLOBAL = {
    "token_embd.weight": "embed.weight",
    "output_norm.weight": "norm.weight",
    "output.weight": "head.weight",
    "output_hc_base.weight": "hc_head_base",
    "output_hc_fn.weight": "hc_head_fn",
    "output_hc_scale.weight": "hc_head_scale",
}

LAYER = {
    "hc_attn_base.weight": "hc_attn_base",
    "hc_attn_fn.weight": "hc_attn_fn",
    "hc_attn_scale.weight": "hc_attn_scale",
    "hc_ffn_base.weight": "hc_ffn_base",
    "hc_ffn_fn.weight": "hc_ffn_fn",
    "hc_ffn_scale.weight": "hc_ffn_scale",
    "attn_norm.weight": "attn_norm.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "attn_sinks.weight": "attn.attn_sink",
    "attn_q_a.weight": "attn.wq_a.weight",
    "attn_q_a_norm.weight": "attn.q_norm.weight",
    "attn_q_b.weight": "attn.wq_b.weight",
    "attn_kv.weight": "attn.wkv.weight",
    "attn_kv_a_norm.weight": "attn.kv_norm.weight",
    "attn_output_a.weight": "attn.wo_a.weight",
    "attn_output_b.weight": "attn.wo_b.weight",
    "attn_compressor_ape.weight": "attn.compressor.ape",
    "attn_compressor_kv.weight": "attn.compressor.wkv.weight",
    "attn_compressor_gate.weight": "attn.compressor.wgate.weight",
    "attn_compressor_norm.weight": "attn.compressor.norm.weight",
    "indexer.attn_q_b.weight": "attn.indexer.wq_b.weight",
    "indexer.proj.weight": "attn.indexer.weights_proj.weight",
    "indexer_compressor_ape.weight": "attn.indexer.compressor.ape",
    "indexer_compressor_kv.weight": "attn.indexer.compressor.wkv.weight",
    "indexer_compressor_gate.weight": "attn.indexer.compressor.wgate.weight",
    "indexer_compressor_norm.weight": "attn.indexer.compressor.norm.weight",
    "ffn_gate_inp.weight": "ffn.gate.weight",
    "exp_probs_b.bias": "ffn.gate.bias",
    "ffn_gate_tid2eid.weight": "ffn.gate.tid2eid",
    "ffn_gate_shexp.weight": "ffn.shared_experts.w1.weight",
    "ffn_up_shexp.weight": "ffn.shared_experts.w3.weight",
    "ffn_down_shexp.weight": "ffn.shared_experts.w2.weight",
}

EXPERTS = {"ffn_gate_exps.weight": "w1", "ffn_down_exps.weight": "w2", "ffn_up_exps.weight": "w3"}


def official_tensors(gguf_path):
    out = {}
    for t in GGUFReader(gguf_path).tensors:
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF ne reversed = official [out, in]
        if t.tensor_type.name == "I32":
            out_name = LAYER[t.name.split(".", 2)[2]]
            layer = t.name.split(".")[1]
            out[f"layers.{layer}.{out_name}"] = np.asarray(t.data, dtype=np.int64).reshape(shape)
            continue
        values = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        if t.name in GLOBAL:
            out[GLOBAL[t.name]] = values
            continue
        m = re.fullmatch(r"blk\.(\d+)\.(.+)", t.name)
        layer, suffix = m.group(1), m.group(2)
        if suffix in EXPERTS:
            for e in range(shape[0]):
                out[f"layers.{layer}.ffn.experts.{e}.{EXPERTS[suffix]}.weight"] = np.ascontiguousarray(values[e])
        else:
            out[f"layers.{layer}.{LAYER[suffix]}"] = values
    return out


def main(gguf_path, checkpoint_dir, out_dir):
    config = os.path.basename(os.path.normpath(checkpoint_dir))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "ckpt")
        os.makedirs(ckpt)
        tensors = official_tensors(gguf_path)
        shard = "model-00001-of-00001.safetensors"
        save_file(tensors, os.path.join(ckpt, shard))
        with open(os.path.join(ckpt, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": {k: shard for k in sorted(tensors)}}, f)
        shutil.copy(os.path.join(checkpoint_dir, "config.json"), ckpt)
        run = os.path.join(tmp, "run")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "make_oracle.py")
        subprocess.run([sys.executable, script, "--from-checkpoint", ckpt, "--configs", config,
                        "--out", run, "--skip-checks"], check=True)
        produced = os.path.join(run, config) if os.path.isdir(os.path.join(run, config)) else run
        os.makedirs(out_dir, exist_ok=True)
        for name in sorted(os.listdir(produced)):
            if name.startswith("logits_"):
                shutil.copy(os.path.join(produced, name), out_dir)
    with open(gguf_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(out_dir, "source.json"), "w") as f:
        json.dump({"checkpoint": config, "recipe": "q2", "gguf_sha256": digest}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
