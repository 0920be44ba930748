#!/usr/bin/env python3
"""Correctness oracle for ds4rs: tiny random DeepSeek V4 models run through HF transformers.

Builds tiny random ``DeepseekV4ForCausalLM`` models (transformers' own implementation, on the
CPU, in float32), patched toward DeepSeek's official inference semantics, and writes for each
configuration:

  * the checkpoint in DeepSeek's OFFICIAL safetensors naming and dtypes (FP8 e4m3 weights with
    e8m0 128x128 block scales, FP4 e2m1 routed experts packed in I8 with e8m0 1x32 scales, BF16 /
    F32 / I64 for the rest), with an official-style ``config.json`` and
    ``model.safetensors.index.json``;
  * the input token ids;
  * the expected logits at every position, in three modes (see MODES);
  * per-stage intermediates (HC pre/post, attention internals, compressor rows, indexer scores and
    selection, MoE routing and outputs, head) for teacher-forced stage-by-stage checks.

The weights loaded into the HF model are exactly the dequantized official tensors: every weight
is generated, rounded to its official storage format, and the dequantized value is what the
oracle runs. Every non-FP8/FP4 weight is additionally chosen to be exactly representable in BF16
*and* F16, so ds4's F16 GGUF layout can hold it without loss.

Regenerate (deterministic; fixed seeds, one torch thread):

    python tools/reference/oracle/make_oracle.py --out crates/model/tests/fixtures/oracle

See README.md next to this file for the configurations, the patches, and the file formats.

PATCHES applied on top of transformers' DeepseekV4 (module functions/methods replaced at run
time; each is marked ``# PATCH <id>`` below). Why: transformers omits parts of DeepSeek's official
graph (model.md §12, attention.md §16.2) or differs in evaluation details that matter for a
reference.

  P1 fp8_kv      FP8 (E4M3FN) round trip of the non-RoPE dims of every raw KV row and every
                 compressed *attention* row, blocks of 64, power-of-two (ue8m0) scale
                 (attention.md §6.1; official ``act_quant`` on kv). Transformers has no QAT.
                 Switch: mode "qat"/"qat_f16" on, "exact" off.
  P2 fp4_indexer Hadamard-128 rotation + FP4 (E2M1) round trip, blocks of 32, power-of-two scale,
                 of every indexer query head and every compressed *indexer* row, after RoPE
                 (attention.md §6.2; official ``rotate_activation`` + ``fp4_act_quant``).
                 Switch: as P1.
  P3 f16_rows    f16 rounding of stored rows (raw KV rows, compressed attention rows, indexer
                 rows) after RoPE/QAT: ds4's CPU storage precision (attention.md §12). Not an
                 official rounding (official stores bf16); only in mode "qat_f16".
  P4 moe_order   Routed MoE evaluated like the official ``Expert.forward``/ds4: the router weight
                 is applied BEFORE the down projection (transformers applies it after), the
                 6 (here k) expert outputs are summed in slot order, slots sorted by descending
                 biased score with ties to the lower expert id (transformers: topk(sorted=False),
                 unspecified tie order), and weights normalised by max(sum, 2^-14) (ds4;
                 transformers uses sum+1e-20, official plain sum: identical at these magnitudes).
                 Always on (no effect in exact arithmetic; fixes evaluation order and ties).
  P5 index_topk  Indexer top-k selection with a deterministic tie rule (higher score first,
                 lower row index on exact ties: ds4 CPU/CUDA, attention.md §10.3). transformers
                 uses torch.topk (unspecified on ties; exact ties happen when all ReLU terms
                 are 0). Always on.
  P6 capture     Pure recording hooks for the intermediates (no numeric effect).

Everything else is transformers' code unchanged: embedding, HC pre (Sinkhorn) / post, RMSNorms,
Q/KV projections and RoPE/YaRN, sliding-window mask, compressor pooling, indexer scoring, sink
attention, grouped output projection, shared expert, HC head, LM head. The script checks the
result of every stage against an independent float64 NumPy transcription of the spec fed with the
captured stage inputs (RoPE/YaRN frequencies, Q path, KV rows, compressor emission by the streaming
frontier definition, sliding-window + compressed-row sink attention, indexer weights/scores/
selection, grouped output projection, HC pre and post, router, routed and shared experts, head,
embedding); runs the whole model end to end in float64 NumPy from the spec alone
(``spec_forward``) and compares the logits; and checks that transformers' cached path (chunked
prefill, token by token) reproduces the one-shot logits.

Activation quantization of the official FP8/FP4 matmuls (act_quant of linear inputs) and ds4's
Q8_0/Q8_K activation quantization are NOT applied: this is the f32 reference ("f32 mode").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import struct
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

import transformers
from transformers.models.deepseek_v4 import modeling_deepseek_v4 as M
from transformers.models.deepseek_v4.configuration_deepseek_v4 import DeepseekV4Config

FORMAT_VERSION = 1

# --------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------

COMMON = dict(
    num_key_value_heads=1,
    qk_rope_head_dim=64,
    n_shared_experts=1,
    scoring_func="sqrtsoftplus",
    norm_topk_prob=True,
    routed_scaling_factor=1.5,
    swiglu_limit=10.0,
    hc_mult=4,
    hc_sinkhorn_iters=20,
    hc_eps=1e-6,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    compress_rope_theta=160000.0,
    max_position_embeddings=1048576,
    rope_scaling=dict(type="yarn", factor=16.0, original_max_position_embeddings=65536,
                      beta_fast=32.0, beta_slow=1.0),
)

CONFIGS = OrderedDict()

# Flash-like schedule in miniature. Every dimension that ds4's GGUF layout constrains is honoured
# (FP8 dims multiples of 128, routed-expert input dims multiples of 256 so the q2/q4 K-quant and
# IQ2_XXS recipes can encode the experts).
CONFIGS["flash_mini"] = dict(
    COMMON,
    seed=1001,
    seq_len=144,
    vocab_size=256,
    hidden_size=256,
    num_hidden_layers=3,
    compress_ratios=[0, 4, 128],
    num_hash_layers=2,
    num_attention_heads=4,
    head_dim=256,
    q_lora_rank=128,
    o_groups=2,
    o_lora_rank=128,
    n_routed_experts=8,
    num_experts_per_tok=3,
    moe_intermediate_size=256,
    sliding_window=32,
    index_n_heads=4,
    index_head_dim=128,
    index_topk=8,
    sample_positions=[0, 1, 3, 4, 7, 31, 32, 33, 64, 126, 127, 128, 143],
)

# Smaller shapes, more layers, HCA at ratio 16 so several heavily-compressed rows are emitted in a
# short sequence (the engine is metadata-driven; ds4 itself only accepts 0/4/128). Dims are
# multiples of 128 (FP8 blocks) but the routed experts' 128-wide inputs are NOT multiples of 256:
# this checkpoint converts to f32/f16/q8_0 GGUFs only, not to the K-quant/IQ2 recipes.
CONFIGS["small_hca16"] = dict(
    COMMON,
    seed=2002,
    seq_len=96,
    vocab_size=256,
    hidden_size=128,
    num_hidden_layers=4,
    compress_ratios=[0, 16, 4, 16],
    num_hash_layers=1,
    num_attention_heads=4,
    head_dim=128,
    q_lora_rank=128,
    o_groups=2,
    o_lora_rank=64,
    n_routed_experts=8,
    num_experts_per_tok=2,
    moe_intermediate_size=128,
    sliding_window=8,
    index_n_heads=2,
    index_head_dim=128,
    index_topk=4,
    sample_positions=[0, 1, 3, 4, 7, 8, 9, 15, 16, 31, 47, 64, 95],
)

# Logit modes: (fp8_kv, fp4_indexer, f16_rows)
MODES = OrderedDict(
    exact=(False, False, False),   # QAT round trips off: the exact-comparison mode
    qat=(True, True, False),       # official graph as shipped (FP8 KV + FP4 indexer), f32 rows
    qat_f16=(True, True, True),    # + ds4 CPU f16 row storage
)
# Intermediates: every stage in "exact"; in "qat" only the attention-side stages (the ones the
# round trips act on and everything downstream of them inside attention), to keep fixtures small.
INTERMEDIATE_MODES = ("exact", "qat")
QAT_INTERMEDIATE_STAGES = (".attn.", ".compressor.", ".indexer.")

# --------------------------------------------------------------------------------------------
# Low-level number formats
# --------------------------------------------------------------------------------------------

E2M1_VALUES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=np.float32)
F16_MIN_NORMAL = 2.0 ** -14


def e4m3_decode(codes: np.ndarray) -> np.ndarray:
    """gguf-and-quants.md §6.1 E4M3FN decoding (0x7F -> 0, as ds4's quantizer)."""
    v = codes.astype(np.uint8)
    a = v & 0x7F
    e = (v >> 3) & 15
    m = (v & 7).astype(np.float32)
    mag = np.where(e == 0, m * 2.0 ** -9, (1.0 + m / 8.0) * np.exp2(e.astype(np.float32) - 7.0))
    mag = np.where(a == 0x7F, 0.0, mag).astype(np.float32)
    return np.where(v & 0x80, -mag, mag).astype(np.float32)


def e8m0_decode(codes: np.ndarray) -> np.ndarray:
    c = codes.astype(np.int64)
    out = np.exp2((c - 127).astype(np.float64)).astype(np.float32)
    return np.where(c == 0, np.float32(2.0 ** -127), out).astype(np.float32)


def pow2_ceil_exponent(x: np.ndarray) -> np.ndarray:
    """Exact ceil(log2(x)) for x > 0 (what the official kernels' bit-level log2-ceil computes)."""
    m, e = np.frexp(x.astype(np.float64))  # x = m * 2^e, m in [0.5, 1)
    return np.where(m == 0.5, e - 1, e).astype(np.int64)


def bf16_f16_exact(x: np.ndarray) -> np.ndarray:
    """Round to BF16 (RNE), then flush |x| < 2^-14 to 0: the result is exact in BF16, F16, F32."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16).to(torch.float32)
    y = t.numpy().copy()
    y[np.abs(y) < F16_MIN_NORMAL] = 0.0
    assert np.all(np.abs(y) < 65504.0)
    return y


def quant_fp8_block(w: np.ndarray, blk: int = 128):
    """Official FP8 weight: E4M3FN codes [out, in] + E8M0 scales [out/128, in/128].

    Returns (codes u8, scale codes u8, dequantized f32)."""
    out_f, in_f = w.shape
    assert out_f % blk == 0 and in_f % blk == 0, (w.shape, "FP8 dims must be multiples of 128")
    wb = w.reshape(out_f // blk, blk, in_f // blk, blk).astype(np.float32)
    amax = np.abs(wb).max(axis=(1, 3))
    amax = np.maximum(amax, 1e-30)
    exp = pow2_ceil_exponent(amax / np.float32(448.0))
    assert np.all(exp >= -126) and np.all(exp <= 127)
    scale = np.exp2(exp.astype(np.float64)).astype(np.float32)
    y = wb / scale[:, None, :, None]
    assert np.all(np.abs(y) <= 448.0)
    codes = torch.from_numpy(np.ascontiguousarray(y.reshape(out_f, in_f))).to(torch.float8_e4m3fn)
    codes = codes.view(torch.uint8).numpy().copy()
    scodes = (exp + 127).astype(np.uint8)
    deq = e4m3_decode(codes).reshape(out_f // blk, blk, in_f // blk, blk) * e8m0_decode(scodes)[:, None, :, None]
    return codes, scodes, deq.reshape(out_f, in_f).astype(np.float32)


def e2m1_round_codes(y: np.ndarray) -> np.ndarray:
    """Nearest E2M1 code (0..15) of y (|y| <= 6), ties to the even index of the magnitude table."""
    a = np.abs(y)
    d = np.abs(a[..., None] - E2M1_VALUES)
    dmin = d.min(axis=-1, keepdims=True)
    cand = d == dmin
    pref = cand * (2 + (np.arange(8) % 2 == 0))
    idx = pref.argmax(axis=-1).astype(np.uint8)
    sign = ((y < 0) & (idx != 0)).astype(np.uint8)
    return idx | (sign << 3)


def e2m1_decode(codes: np.ndarray) -> np.ndarray:
    mag = E2M1_VALUES[codes & 7]
    return np.where(codes & 8, -mag, mag).astype(np.float32)


def quant_fp4_expert(w: np.ndarray):
    """Official FP4 routed-expert weight: I8 [out, in/2] (element 2j low nibble, 2j+1 high
    nibble) + E8M0 scales [out, in/32]. Returns (packed i8, scale codes u8, dequantized f32)."""
    out_f, in_f = w.shape
    assert in_f % 32 == 0
    wb = w.reshape(out_f, in_f // 32, 32).astype(np.float32)
    amax = np.maximum(np.abs(wb).max(axis=2), 1e-30)
    exp = pow2_ceil_exponent(amax / np.float32(6.0))
    scale = np.exp2(exp.astype(np.float64)).astype(np.float32)
    y = wb / scale[:, :, None]
    assert np.all(np.abs(y) <= 6.0)
    codes = e2m1_round_codes(y).reshape(out_f, in_f)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    scodes = (exp + 127).astype(np.uint8)
    # decode from the packed bytes (what a reader of the checkpoint does)
    lo, hi = packed & 15, packed >> 4
    dec = np.empty((out_f, in_f), dtype=np.float32)
    dec[:, 0::2] = e2m1_decode(lo)
    dec[:, 1::2] = e2m1_decode(hi)
    deq = dec.reshape(out_f, in_f // 32, 32) * e8m0_decode(scodes)[:, :, None]
    return packed.view(np.int8), scodes, deq.reshape(out_f, in_f).astype(np.float32)


# --------------------------------------------------------------------------------------------
# QAT round trips (torch, f32) — attention.md §6
# --------------------------------------------------------------------------------------------

def _pow2_ceil_t(x: torch.Tensor) -> torch.Tensor:
    """2^ceil(log2(x)) exactly, for positive finite f32 x."""
    m, e = torch.frexp(x)
    e = torch.where(m == 0.5, e - 1, e)
    return torch.ldexp(torch.ones_like(x), e)


def fp8_sim_nope(v: torch.Tensor, n_rope: int) -> torch.Tensor:
    """attention.md §6.1 on dims [0, d - n_rope) in blocks of 64; rope dims untouched."""
    d = v.shape[-1]
    n_nope = d - n_rope
    assert n_nope % 64 == 0
    nope = v[..., :n_nope].float()
    b = nope.reshape(*nope.shape[:-1], n_nope // 64, 64)
    amax = b.abs().amax(dim=-1, keepdim=True).clamp_min(1e-4)
    scale = _pow2_ceil_t(amax / 448.0)
    q = (b / scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).to(torch.float32) * scale
    return torch.cat([q.reshape(nope.shape).to(v.dtype), v[..., n_nope:]], dim=-1)


def hadamard(v: torch.Tensor) -> torch.Tensor:
    """(1/sqrt(n)) * H_n * v over the last dim (Sylvester order), fast butterflies."""
    n = v.shape[-1]
    assert n & (n - 1) == 0
    x = v.float()
    h = 1
    while h < n:
        x = x.reshape(*v.shape[:-1], n // (2 * h), 2, h)
        a, b = x[..., 0, :], x[..., 1, :]
        x = torch.stack((a + b, a - b), dim=-2)
        h *= 2
    return x.reshape(v.shape) * (1.0 / math.sqrt(n))


_E2M1_T = torch.tensor(E2M1_VALUES)


def fp4_sim(v: torch.Tensor) -> torch.Tensor:
    """attention.md §6.2 step 2: blocks of 32, scale 2^ceil(log2(amax/6)), E2M1 round (ties even)."""
    d = v.shape[-1]
    b = v.float().reshape(*v.shape[:-1], d // 32, 32)
    amax = b.abs().amax(dim=-1, keepdim=True).clamp_min(7.052966104933725e-38)
    scale = _pow2_ceil_t(amax / 6.0)
    y = (b / scale).clamp(-6.0, 6.0)
    dist = (y.abs().unsqueeze(-1) - _E2M1_T).abs()
    dmin = dist.amin(dim=-1, keepdim=True)
    pref = (dist == dmin).float() * (2.0 + (torch.arange(8) % 2 == 0).float())
    mag = _E2M1_T[pref.argmax(dim=-1)]
    q = torch.where(y < 0, -mag, mag) * scale
    return q.reshape(v.shape)


def indexer_qat(v: torch.Tensor) -> torch.Tensor:
    return fp4_sim(hadamard(v))


def f16_round(v: torch.Tensor) -> torch.Tensor:
    return v.to(torch.float16).to(torch.float32)


# --------------------------------------------------------------------------------------------
# Patches (see module docstring)
# --------------------------------------------------------------------------------------------

class State:
    fp8_kv = False
    fp4_indexer = False
    f16_rows = False
    cap = None          # dict name -> tensor, or None when not recording
    positions = None    # LongTensor of sampled positions
    record = False
    fragile = None      # dict tag -> [n_fragile, n_total]


def rec(name, t):
    if State.cap is None or not State.record:
        return
    assert name not in State.cap, name
    State.cap[name] = t.detach().clone().contiguous()


def rec_pos(name, t):
    """Record rows at the sampled positions; t is [S, ...]."""
    if State.cap is None or not State.record:
        return
    rec(name, t.index_select(0, State.positions))


FRAGILE_DELTA = 1e-6


def count_fragile(tag, fn, x, keep):
    """Find outputs of the quantiser fn that change when every input element moves by
    +-1e-6 x (RMS of its vector): the places where a correct implementation with a different
    summation order (noise ~1e-7 of the vector's scale) may round differently (model.md §11.10).
    Recorded in the manifest (count, total, and the indices over the last `keep` dims, i.e.
    [position or row, (head,) dim]); no effect on the values."""
    if not State.record or State.fragile is None:
        return
    d = FRAGILE_DELTA * x.float().pow(2).mean(-1, keepdim=True).sqrt()
    a = fn(x + d)
    b = fn(x - d)
    idx = torch.nonzero(a != b)[:, -keep:].tolist()
    ent = State.fragile.setdefault(tag, OrderedDict(count=0, total=0, at=[]))
    ent["count"] += len(idx)
    ent["total"] += a.numel()
    ent["at"] += idx


def count_log2f_scale_mismatch(tag, v, blk, qmax, floor):
    """Blocks where ds4's f32 exp2(ceil(log2f(amax/qmax))) scale would differ from the exact
    power-of-two ceiling used here (attention.md §6.1 note). Recorded in the manifest."""
    if not State.record or State.fragile is None:
        return
    b = v.float().reshape(*v.shape[:-1], v.shape[-1] // blk, blk)
    x = b.abs().amax(-1).clamp_min(floor) / qmax
    n = int((torch.exp2(torch.ceil(torch.log2(x))) != _pow2_ceil_t(x)).sum())
    State.fragile[f"log2f_scale_mismatch_blocks.{tag}"] = State.fragile.get(f"log2f_scale_mismatch_blocks.{tag}", 0) + n


def kv_row_qat(kv: torch.Tensor, n_rope: int, tag: str) -> torch.Tensor:
    if State.fp8_kv:                                     # PATCH P1
        count_fragile(f"fp8.{tag}", lambda v: fp8_sim_nope(v, n_rope)[..., : v.shape[-1] - n_rope], kv, 2)
        count_log2f_scale_mismatch(f"fp8.{tag}", kv[..., : kv.shape[-1] - n_rope], 64, 448.0, 1e-4)
        kv = fp8_sim_nope(kv, n_rope)
    if State.f16_rows:                                   # PATCH P3
        kv = f16_round(kv)
    return kv


def indexer_row_qat(v: torch.Tensor, tag: str) -> torch.Tensor:
    if State.fp4_indexer:                                # PATCH P2
        count_fragile(f"fp4.{tag}", indexer_qat, v, 2)
        count_log2f_scale_mismatch(f"fp4.{tag}", hadamard(v), 32, 6.0, 7.052966104933725e-38)
        v = indexer_qat(v)
    if State.f16_rows:                                   # PATCH P3
        v = f16_round(v)
    return v


def patched_attention_forward(self, hidden_states, position_embeddings, position_ids, attention_mask,
                              cache=None, **kwargs):
    # transformers' DeepseekV4Attention.forward + PATCH P1/P3 on the raw KV row + P6 capture.
    L = f"layers.{self.layer_idx}.attn"
    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.head_dim)
    cos, sin = position_embeddings[self.rope_layer_type]
    n_rope = 2 * cos.shape[-1]

    q_residual = self.q_a_norm(self.q_a_proj(hidden_states))
    q = self.q_b_proj(q_residual).view(*hidden_shape).transpose(1, 2)
    q = self.q_b_norm(q)
    q = M.apply_rotary_pos_emb(q, cos, sin)

    kv = self.kv_norm(self.kv_proj(hidden_states)).view(*hidden_shape).transpose(1, 2)
    kv = M.apply_rotary_pos_emb(kv, cos, sin)
    kv_rope = kv
    kv = kv_row_qat(kv, n_rope, f"{L}.kv")

    rec(f"{L}.input", hidden_states[0])
    rec_pos(f"{L}.q_residual", q_residual[0])
    rec_pos(f"{L}.q", q[0].transpose(0, 1))
    rec_pos(f"{L}.kv_rope", kv_rope[0, 0])
    rec(f"{L}.kv", kv[0, 0])

    if cache is not None:
        kv = cache.update(kv, kv, self.layer_idx, kwargs=kwargs)[0]

    block_bias = None
    if self.compressor is not None:
        compressed_kv, block_bias = self.compressor(hidden_states, q_residual, position_ids, cache, self.layer_idx)
        kv = torch.cat([kv, compressed_kv], dim=2)

    if isinstance(attention_mask, torch.Tensor) and kv.shape[2] > attention_mask.shape[-1]:
        if block_bias is not None:
            attention_mask = torch.cat([attention_mask, block_bias.to(attention_mask.dtype)], dim=-1)
        else:
            attention_mask = F.pad(attention_mask, (0, kv.shape[2] - attention_mask.shape[-1]), value=0.0)

    attn_output, attn_weights = M.eager_attention_forward(
        self, q, kv, kv, attention_mask, dropout=0.0, scaling=self.scaling,
        sliding_window=self.sliding_window, s_aux=self.sinks, **kwargs)

    attn_output = M.apply_rotary_pos_emb(attn_output.transpose(1, 2), cos, -sin).transpose(1, 2)
    rec_pos(f"{L}.heads", attn_output[0])  # [S, H, Dh] after inverse RoPE

    grouped = attn_output.reshape(*input_shape, self.config.o_groups, -1)
    grouped = self.o_a_proj(grouped).flatten(2)
    rec_pos(f"{L}.o_a", grouped[0])
    output = self.o_b_proj(grouped)
    rec_pos(f"{L}.output", output[0])
    return output, attn_weights


def _emit_rows(self, compressed, n_rope, name, layer_idx, kind):
    """Post-process freshly pooled+normed+roped compressed rows (PATCH P1/P2/P3) and record."""
    pre = compressed
    if kind == "attn":
        out = kv_row_qat(compressed, n_rope, f"layers.{layer_idx}.{name}.rows")
    else:
        out = indexer_row_qat(compressed, f"layers.{layer_idx}.{name}.rows")
    if compressed.shape[1] > 0:
        rec(f"layers.{layer_idx}.{name}.rows_rope", pre[0])
        rec(f"layers.{layer_idx}.{name}.rows", out[0])
    return out


def patched_hca_forward(self, hidden_states, q_residual, position_ids, cache, layer_idx):
    # transformers' DeepseekV4HCACompressor.forward + PATCH P1/P3 on emitted rows + P6.
    batch, _, _ = hidden_states.shape
    cache_layer = cache.layers[layer_idx] if cache is not None else None
    kv = self.kv_proj(hidden_states)
    gate = self.gate_proj(hidden_states)
    if cache_layer is None:
        usable = (kv.shape[1] // self.compress_rate) * self.compress_rate
        chunk_kv, chunk_gate, first_window_position = kv[:, :usable], gate[:, :usable], 0
    else:
        chunk_kv, chunk_gate, first_window_position = cache_layer.store_compression_weights("compressor", kv, gate)

    if chunk_kv.shape[1] > 0:
        n_windows = chunk_kv.shape[1] // self.compress_rate
        chunk_kv = chunk_kv.view(batch, n_windows, self.compress_rate, -1)
        chunk_gate = chunk_gate.view(batch, n_windows, self.compress_rate, -1) + self.position_bias
        pooled = (chunk_kv * chunk_gate.softmax(dim=2, dtype=torch.float32).to(chunk_kv.dtype)).sum(dim=2)
        rec(f"layers.{layer_idx}.compressor.pooled", pooled[0])
        compressed = self.kv_norm(pooled)
        positions = torch.arange(n_windows, device=compressed.device)
        positions = (positions * self.compress_rate + first_window_position).unsqueeze(0).expand(batch, -1)
        cos, sin = self.rotary_emb(compressed, position_ids=positions, layer_type=self.rope_layer_type)
        compressed = M.apply_rotary_pos_emb(compressed.unsqueeze(1), cos, sin).squeeze(1)
        compressed = _emit_rows(self, compressed, 2 * cos.shape[-1], "compressor", layer_idx, "attn")
    else:
        compressed = chunk_kv.new_zeros((batch, 0, self.head_dim))

    if cache_layer is not None:
        compressed = cache_layer.update_compressor_states("compressor", compressed)
    compressed_kv = compressed.unsqueeze(1)

    compressed_len = compressed_kv.shape[2]
    seq_len = position_ids.shape[1]
    if seq_len == 1 or compressed_len == 0:
        return compressed_kv, None
    entry_indices = torch.arange(compressed_len, device=compressed_kv.device)
    causal_threshold = (position_ids + 1) // self.compress_rate
    block_bias = compressed_kv.new_zeros((batch, 1, seq_len, compressed_len))
    block_bias = block_bias.masked_fill(
        entry_indices.view(1, 1, 1, -1) >= causal_threshold.unsqueeze(1).unsqueeze(-1), float("-inf"))
    return compressed_kv, block_bias


def _overlap_pool(self, chunk_kv, chunk_gate, cache_layer, name, batch):
    """The CSA overlapping-window layout of transformers (unchanged), returns pooled [B, W, d]."""
    n_windows = chunk_kv.shape[1] // self.compress_rate
    ratio = self.compress_rate
    chunk_kv = chunk_kv.view(batch, n_windows, ratio, -1)
    chunk_gate = chunk_gate.view(batch, n_windows, ratio, -1) + self.position_bias
    new_kv = chunk_kv.new_zeros((batch, n_windows, 2 * ratio, self.head_dim))
    new_gate = chunk_gate.new_full((batch, n_windows, 2 * ratio, self.head_dim), float("-inf"))
    new_kv[:, :, ratio:] = chunk_kv[..., self.head_dim:]
    new_gate[:, :, ratio:] = chunk_gate[..., self.head_dim:]
    if n_windows > 1:
        new_kv[:, 1:, :ratio] = chunk_kv[:, :-1, :, : self.head_dim]
        new_gate[:, 1:, :ratio] = chunk_gate[:, :-1, :, : self.head_dim]
    if cache_layer is not None:
        prior_kv, prior_gate = cache_layer.update_overlap_state(name, chunk_kv, chunk_gate, self.head_dim)
        if prior_kv is not None:
            new_kv[:, 0, :ratio] = prior_kv.to(new_kv.dtype)
            new_gate[:, 0, :ratio] = prior_gate.to(new_gate.dtype)
    return (new_kv * new_gate.softmax(dim=2, dtype=torch.float32).to(new_kv.dtype)).sum(dim=2), n_windows


def patched_indexer_forward(self, hidden_states, q_residual, position_ids, cache, layer_idx):
    # transformers' DeepseekV4Indexer.forward + PATCH P2/P3 (rows and queries) + P5 + P6.
    batch, seq_len, _ = hidden_states.shape
    cache_layer = cache.layers[layer_idx] if cache is not None else None
    kv = self.kv_proj(hidden_states)
    gate = self.gate_proj(hidden_states)
    if cache_layer is None:
        usable = (kv.shape[1] // self.compress_rate) * self.compress_rate
        chunk_kv, chunk_gate, first_window_position = kv[:, :usable], gate[:, :usable], 0
    else:
        chunk_kv, chunk_gate, first_window_position = cache_layer.store_compression_weights("indexer", kv, gate)

    if chunk_kv.shape[1] > 0:
        pooled, n_windows = _overlap_pool(self, chunk_kv, chunk_gate, cache_layer, "indexer", batch)
        rec(f"layers.{layer_idx}.indexer.pooled", pooled[0])
        compressed = self.kv_norm(pooled)
        positions = torch.arange(n_windows, device=compressed.device)
        positions = positions * self.compress_rate + first_window_position
        positions = positions.unsqueeze(0).expand(batch, -1)
        cos, sin = self.rotary_emb(compressed, position_ids=positions, layer_type=self.rope_layer_type)
        compressed = M.apply_rotary_pos_emb(compressed.unsqueeze(1), cos, sin).squeeze(1)
        compressed = _emit_rows(self, compressed, 2 * cos.shape[-1], "indexer", layer_idx, "indexer")
    else:
        compressed = chunk_kv.new_zeros((batch, 0, self.head_dim))

    compressed_kv = compressed if cache_layer is None else cache_layer.update_compressor_states("indexer", compressed)

    cos_q, sin_q = self.rotary_emb(hidden_states, position_ids=position_ids, layer_type=self.rope_layer_type)
    q = self.q_b_proj(q_residual).view(batch, seq_len, -1, self.head_dim).transpose(1, 2)
    q = M.apply_rotary_pos_emb(q, cos_q, sin_q).transpose(1, 2)   # [B, S, Hi, Di]
    rec_pos(f"layers.{layer_idx}.indexer.q_rope", q[0])
    if State.fp4_indexer:                                          # PATCH P2
        count_fragile(f"fp4.layers.{layer_idx}.indexer.q", indexer_qat, q, 3)
        count_log2f_scale_mismatch(f"fp4.layers.{layer_idx}.indexer.q", hadamard(q), 32, 6.0, 7.052966104933725e-38)
        q = indexer_qat(q)
    rec_pos(f"layers.{layer_idx}.indexer.q", q[0])

    index_scores = self.scorer(q, compressed_kv, hidden_states)  # [B, S, T]
    w = self.scorer.weights_proj(hidden_states).float() * (self.scorer.weights_scaling * self.scorer.softmax_scale)
    rec(f"layers.{layer_idx}.indexer.weights", w[0])
    compressed_len = compressed_kv.shape[1]
    top_k = min(self.index_topk, compressed_len)
    if compressed_len > 0:
        causal_threshold = (position_ids + 1) // self.compress_rate
        entry_indices = torch.arange(compressed_len, device=index_scores.device)
        future_mask = entry_indices.view(1, 1, -1) >= causal_threshold.unsqueeze(-1)
        index_scores = index_scores.masked_fill(future_mask, float("-inf"))
        # PATCH P5: deterministic top-k, higher score first, lower index on ties.
        top_k_indices = torch.sort(index_scores, dim=-1, descending=True, stable=True).indices[..., :top_k]
        invalid = top_k_indices >= causal_threshold.unsqueeze(-1)
        sel = torch.where(invalid, torch.full_like(top_k_indices, -1), top_k_indices)
        rec(f"layers.{layer_idx}.indexer.scores", index_scores[0])
        if State.record and State.cap is not None:
            full = torch.full((seq_len, self.index_topk), -1, dtype=torch.int32)
            full[:, :top_k] = sel[0].to(torch.int32)
            rec(f"layers.{layer_idx}.indexer.topk", full)
        return sel
    return index_scores.topk(top_k, dim=-1).indices


def patched_csa_forward(self, hidden_states, q_residual, position_ids, cache, layer_idx):
    # transformers' DeepseekV4CSACompressor.forward + PATCH P1/P3 on emitted rows + P6.
    batch, seq_len, _ = hidden_states.shape
    cache_layer = cache.layers[layer_idx] if cache is not None else None
    kv = self.kv_proj(hidden_states)
    gate = self.gate_proj(hidden_states)
    if cache_layer is None:
        usable = (kv.shape[1] // self.compress_rate) * self.compress_rate
        chunk_kv, chunk_gate, first_window_position = kv[:, :usable], gate[:, :usable], 0
    else:
        chunk_kv, chunk_gate, first_window_position = cache_layer.store_compression_weights("compressor", kv, gate)

    if chunk_kv.shape[1] > 0:
        pooled, n_windows = _overlap_pool(self, chunk_kv, chunk_gate, cache_layer, "compressor", batch)
        rec(f"layers.{layer_idx}.compressor.pooled", pooled[0])
        compressed = self.kv_norm(pooled)
        positions = torch.arange(n_windows, device=compressed.device)
        positions = positions * self.compress_rate + first_window_position
        positions = positions.unsqueeze(0).expand(batch, -1)
        cos, sin = self.rotary_emb(compressed, position_ids=positions, layer_type=self.rope_layer_type)
        compressed = M.apply_rotary_pos_emb(compressed.unsqueeze(1), cos, sin).squeeze(1)
        compressed = _emit_rows(self, compressed, 2 * cos.shape[-1], "compressor", layer_idx, "attn")
    else:
        compressed = chunk_kv.new_zeros((batch, 0, self.head_dim))

    if cache_layer is not None:
        compressed = cache_layer.update_compressor_states("compressor", compressed)
    compressed_kv = compressed.unsqueeze(1)

    top_k_indices = self.indexer(hidden_states, q_residual, position_ids, cache, layer_idx)
    compressed_len = compressed_kv.shape[2]
    valid = top_k_indices >= 0
    safe_indices = torch.where(valid, top_k_indices, torch.full_like(top_k_indices, compressed_len))
    block_bias = compressed_kv.new_full((batch, 1, seq_len, compressed_len + 1), float("-inf"))
    block_bias.scatter_(-1, safe_indices.unsqueeze(1), 0.0)
    return compressed_kv, block_bias[..., :compressed_len]


def patched_moe_forward(self, hidden_states, input_ids=None):
    # Replaces DeepseekV4SparseMoeBlock.forward: PATCH P4 (official/ds4 evaluation) + P6.
    L = f"layers.{self._layer_idx}.moe"
    batch, seq_len, hidden_dim = hidden_states.shape
    x = hidden_states.reshape(-1, hidden_dim)
    gate = self.gate
    logits = F.linear(x, gate.weight)
    scores = gate.score_fn(logits)                      # sqrt(softplus(logit))
    k = gate.top_k
    if self.is_hash:
        idx = gate.tid2eid[input_ids.reshape(-1)].long()
    else:
        sel_score = scores + gate.e_score_correction_bias
        srt = torch.sort(sel_score, dim=-1, descending=True, stable=True)   # PATCH P4: sorted, ties low id
        idx = srt.indices[:, :k]
        if State.record and State.fragile is not None:
            gap = ((srt.values[:, k - 1] - srt.values[:, k]) / srt.values[:, 0].abs()).min().item()
            State.fragile[f"router_gap.layers.{self._layer_idx}"] = float(f"{gap:.3e}")
    w = scores.gather(1, idx)
    wsum = w[:, 0].clone()                              # PATCH P4: floor normalisation
    for j in range(1, k):                               # summed in slot order
        wsum = wsum + w[:, j]
    w = (w / wsum.clamp_min(2.0 ** -14).unsqueeze(-1)) * gate.routed_scaling_factor

    ex = self.experts
    routed = torch.zeros_like(x)
    for slot in range(k):
        contrib = torch.zeros_like(x)
        for e in torch.unique(idx[:, slot]).tolist():
            tok = (idx[:, slot] == e).nonzero().squeeze(-1)
            gu = F.linear(x[tok], ex.gate_up_proj[e])
            g, u = gu.chunk(2, dim=-1)
            if State.record and State.fragile is not None:
                c = State.fragile.setdefault(f"swiglu_clamped.layers.{self._layer_idx}", [0, 0, 0])
                c[0] += int((g > ex.limit).sum())
                c[1] += int((u.abs() > ex.limit).sum())
                c[2] += g.numel()
            g = g.clamp(max=ex.limit)
            u = u.clamp(min=-ex.limit, max=ex.limit)
            mid = ex.act_fn(g) * u * w[tok, slot].unsqueeze(-1)      # PATCH P4: weight before down
            contrib[tok] = F.linear(mid, ex.down_proj[e])
        routed = routed + contrib                        # acc += out_k, k = 0, 1, ...
    shared = self.shared_experts(hidden_states.reshape(-1, hidden_dim))

    rec_pos(f"{L}.input", x)
    rec_pos(f"{L}.router_logits", logits)
    rec(f"{L}.experts", idx.to(torch.int32))
    rec(f"{L}.weights", w)
    rec_pos(f"{L}.routed", routed)
    rec_pos(f"{L}.shared", shared)
    return (routed + shared).view(batch, seq_len, hidden_dim)


def patched_hc_forward(self, hidden_streams):
    # transformers' DeepseekV4HyperConnection.forward, unchanged math; records pre/post/comb (P6).
    batch_size, seq_len = hidden_streams.shape[:2]
    hc = self.hc_mult
    flattened = hidden_streams.view(batch_size, seq_len, -1).float()
    flattened = self.input_norm(flattened)
    flattened = F.linear(flattened, self.fn.float())
    pre_w, post_w, comb_w = flattened.split([hc, hc, hc * hc], dim=-1)
    pre_b, post_b, comb_b = self.base.split([hc, hc, hc * hc])
    pre_scale, post_scale, comb_scale = self.scale.unbind(0)
    comb_w = comb_w.view(*comb_w.shape[:-1], hc, hc)
    comb_b = comb_b.view(hc, hc)
    pre = torch.sigmoid(pre_w * pre_scale + pre_b) + self.hc_eps
    post = 2 * torch.sigmoid(post_w * post_scale + post_b)
    comb = torch.softmax(comb_w * comb_scale + comb_b, dim=-1) + self.hc_eps
    comb = comb / (comb.sum(dim=-2, keepdim=True) + self.hc_eps)
    for _ in range(self.hc_sinkhorn_iters - 1):
        comb = comb / (comb.sum(dim=-1, keepdim=True) + self.hc_eps)
        comb = comb / (comb.sum(dim=-2, keepdim=True) + self.hc_eps)
    collapsed = (pre.unsqueeze(-1) * hidden_streams).sum(dim=2).to(hidden_streams.dtype)
    n = self._cap_name                                   # PATCH P6: capture only
    rec_pos(f"{n}.input", hidden_streams[0])
    rec_pos(f"{n}.mix", flattened[0])
    rec_pos(f"{n}.pre", pre[0])
    rec_pos(f"{n}.post", post[0])
    rec_pos(f"{n}.comb", comb[0])
    rec_pos(f"{n}.collapsed", collapsed[0])
    return post, comb, collapsed


def patched_hyperhead_forward(self, x):
    # transformers' DeepseekV4HyperHead.forward, unchanged math; records (P6).
    flat = self.input_norm(x.flatten(2).float())
    mixes = F.linear(flat, self.hc_fn.float())
    pre = torch.sigmoid(mixes * self.hc_scale.float() + self.hc_base.float()) + self.eps
    out = (pre.unsqueeze(-1) * x).sum(dim=2).to(x.dtype)
    rec_pos("head.input", x[0])                          # PATCH P6: capture only
    rec_pos("head.pre", pre[0])
    rec_pos("head.collapsed", out[0])
    return out


def install_patches():
    M.DeepseekV4Attention.forward = patched_attention_forward
    M.DeepseekV4HCACompressor.forward = patched_hca_forward
    M.DeepseekV4CSACompressor.forward = patched_csa_forward
    M.DeepseekV4Indexer.forward = patched_indexer_forward
    M.DeepseekV4SparseMoeBlock.forward = patched_moe_forward
    M.DeepseekV4HyperConnection.forward = patched_hc_forward
    M.DeepseekV4HyperHead.forward = patched_hyperhead_forward


# --------------------------------------------------------------------------------------------
# Official checkpoint: names, dtypes, generation
# --------------------------------------------------------------------------------------------

def layer_ratio(cfg, l):
    return cfg["compress_ratios"][l]


def tensor_seed(cfg_seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{cfg_seed}:{name}".encode()).digest()[:8], "little")


def build_official(cfg):
    """Returns (official: OrderedDict name -> (st_dtype, np array payload), hf: dict name -> f32
    torch tensor). Generation is keyed per tensor name, independent of order."""
    D = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    Dh = cfg["head_dim"]
    Rq = cfg["q_lora_rank"]
    G = cfg["o_groups"]
    Ro = cfg["o_lora_rank"]
    E = cfg["n_routed_experts"]
    K = cfg["num_experts_per_tok"]
    I = cfg["moe_intermediate_size"]
    V = cfg["vocab_size"]
    Hi = cfg["index_n_heads"]
    Di = cfg["index_head_dim"]
    hc = cfg["hc_mult"]
    mix = (2 + hc) * hc
    seed = cfg["seed"]

    off = OrderedDict()
    hf = {}

    def rng(name):
        return np.random.default_rng(tensor_seed(seed, name))

    def normal(name, shape, std, mean=0.0):
        return (rng(name).standard_normal(shape) * std + mean).astype(np.float32)

    def dense(official, hfname, shape, std, dtype="BF16", mean=0.0):
        w = bf16_f16_exact(normal(official, shape, std, mean))
        if dtype == "BF16":
            payload = torch.from_numpy(w).to(torch.bfloat16).view(torch.uint16).numpy()
        else:
            payload = w
        off[official] = (dtype, payload)
        hf[hfname] = torch.from_numpy(w.copy())

    def fp8(official, hfname, shape, std):
        w = normal(official, shape, std)
        codes, scodes, deq = quant_fp8_block(w)
        off[official] = ("F8_E4M3", codes)
        off[official.replace(".weight", ".scale")] = ("F8_E8M0", scodes)
        hf[hfname] = torch.from_numpy(deq)

    # global
    dense("embed.weight", "model.embed_tokens.weight", (V, D), 1.0)
    dense("head.weight", "lm_head.weight", (V, D), 2.0 / math.sqrt(D))
    dense("norm.weight", "model.norm.weight", (D,), 0.2, "BF16", mean=1.0)
    dense("hc_head_fn", "model.hc_head.hc_fn", (hc, hc * D), 1.0 / math.sqrt(hc * D), "F32")
    dense("hc_head_base", "model.hc_head.hc_base", (hc,), 0.5, "F32")
    dense("hc_head_scale", "model.hc_head.hc_scale", (1,), 0.25, "F32", mean=1.0)

    for l in range(cfg["num_hidden_layers"]):
        p, hp = f"layers.{l}.", f"model.layers.{l}."
        r = layer_ratio(cfg, l)
        for o, h in (("hc_attn", "attn_hc"), ("hc_ffn", "ffn_hc")):
            dense(f"{p}{o}_fn", f"{hp}{h}.fn", (mix, hc * D), 1.0 / math.sqrt(hc * D), "F32")
            dense(f"{p}{o}_base", f"{hp}{h}.base", (mix,), 0.5, "F32")
            dense(f"{p}{o}_scale", f"{hp}{h}.scale", (3,), 0.25, "F32", mean=1.0)
        dense(f"{p}attn_norm.weight", f"{hp}input_layernorm.weight", (D,), 0.2, "BF16", mean=1.0)
        dense(f"{p}ffn_norm.weight", f"{hp}post_attention_layernorm.weight", (D,), 0.2, "BF16", mean=1.0)
        # attention
        a, ha = f"{p}attn.", f"{hp}self_attn."
        fp8(f"{a}wq_a.weight", f"{ha}q_a_proj.weight", (Rq, D), 1.0 / math.sqrt(D))
        dense(f"{a}q_norm.weight", f"{ha}q_a_norm.weight", (Rq,), 0.2, "BF16", mean=1.0)
        fp8(f"{a}wq_b.weight", f"{ha}q_b_proj.weight", (H * Dh, Rq), 1.0 / math.sqrt(Rq))
        fp8(f"{a}wkv.weight", f"{ha}kv_proj.weight", (Dh, D), 1.0 / math.sqrt(D))
        dense(f"{a}kv_norm.weight", f"{ha}kv_norm.weight", (Dh,), 0.3, "BF16", mean=1.5)
        dense(f"{a}attn_sink", f"{ha}sinks", (H,), 1.0, "F32")
        fp8(f"{a}wo_a.weight", f"{ha}o_a_proj.weight", (G * Ro, H * Dh // G), 1.0 / math.sqrt(H * Dh // G))
        fp8(f"{a}wo_b.weight", f"{ha}o_b_proj.weight", (D, G * Ro), 2.0 / math.sqrt(G * Ro))
        if r != 0:
            c = 2 if r == 4 else 1
            cp, hcp = f"{a}compressor.", f"{ha}compressor."
            dense(f"{cp}ape", f"{hcp}position_bias", (r, c * Dh), 0.5, "F32")
            dense(f"{cp}wkv.weight", f"{hcp}kv_proj.weight", (c * Dh, D), 1.0 / math.sqrt(D))
            dense(f"{cp}wgate.weight", f"{hcp}gate_proj.weight", (c * Dh, D), 1.0 / math.sqrt(D))
            dense(f"{cp}norm.weight", f"{hcp}kv_norm.weight", (Dh,), 0.2, "BF16", mean=1.0)
            if r == 4:
                ip, hip = f"{a}indexer.", f"{hcp}indexer."
                fp8(f"{ip}wq_b.weight", f"{hip}q_b_proj.weight", (Hi * Di, Rq), 1.0 / math.sqrt(Rq))
                dense(f"{ip}weights_proj.weight", f"{hip}scorer.weights_proj.weight", (Hi, D), 1.0 / math.sqrt(D))
                dense(f"{ip}compressor.ape", f"{hip}position_bias", (r, 2 * Di), 0.5, "F32")
                dense(f"{ip}compressor.wkv.weight", f"{hip}kv_proj.weight", (2 * Di, D), 1.0 / math.sqrt(D))
                dense(f"{ip}compressor.wgate.weight", f"{hip}gate_proj.weight", (2 * Di, D), 1.0 / math.sqrt(D))
                dense(f"{ip}compressor.norm.weight", f"{hip}kv_norm.weight", (Di,), 0.2, "BF16", mean=1.0)
        # MoE
        f_, hf_ = f"{p}ffn.", f"{hp}mlp."
        dense(f"{f_}gate.weight", f"{hf_}gate.weight", (E, D), 1.0 / math.sqrt(D))
        if l < cfg["num_hash_layers"]:
            g = rng(f"{f_}gate.tid2eid")
            t2e = np.stack([g.permutation(E)[:K] for _ in range(V)]).astype(np.int64)
            off[f"{f_}gate.tid2eid"] = ("I64", t2e)
            hf[f"{hf_}gate.tid2eid"] = torch.from_numpy(t2e.copy())
        else:
            dense(f"{f_}gate.bias", f"{hf_}gate.e_score_correction_bias", (E,), 0.1, "F32")
        gate_up = np.zeros((E, 2 * I, D), dtype=np.float32)
        down = np.zeros((E, D, I), dtype=np.float32)
        for e in range(E):
            for wn, shape, std in (("w1", (I, D), 4.0 / math.sqrt(D)), ("w3", (I, D), 4.0 / math.sqrt(D)),
                                   ("w2", (D, I), 0.15 / math.sqrt(I))):
                name = f"{f_}experts.{e}.{wn}.weight"
                packed, scodes, deq = quant_fp4_expert(normal(name, shape, std))
                off[name] = ("I8", packed)
                off[name.replace(".weight", ".scale")] = ("F8_E8M0", scodes)
                if wn == "w1":
                    gate_up[e, :I] = deq
                elif wn == "w3":
                    gate_up[e, I:] = deq
                else:
                    down[e] = deq
        hf[f"{hf_}experts.gate_up_proj"] = torch.from_numpy(gate_up)
        hf[f"{hf_}experts.down_proj"] = torch.from_numpy(down)
        fp8(f"{f_}shared_experts.w1.weight", f"{hf_}shared_experts.gate_proj.weight", (I, D), 2.0 / math.sqrt(D))
        fp8(f"{f_}shared_experts.w3.weight", f"{hf_}shared_experts.up_proj.weight", (I, D), 2.0 / math.sqrt(D))
        fp8(f"{f_}shared_experts.w2.weight", f"{hf_}shared_experts.down_proj.weight", (D, I), 0.4 / math.sqrt(I))
    return off, hf


# --------------------------------------------------------------------------------------------
# Reading an official-format checkpoint back (for --from-checkpoint)
# --------------------------------------------------------------------------------------------

OFFICIAL_TO_HF = [
    (r"embed\.weight", "model.embed_tokens.weight"),
    (r"head\.weight", "lm_head.weight"),
    (r"norm\.weight", "model.norm.weight"),
    (r"hc_head_(fn|base|scale)", r"model.hc_head.hc_\1"),
    (r"layers\.(\d+)\.hc_attn_(fn|base|scale)", r"model.layers.\1.attn_hc.\2"),
    (r"layers\.(\d+)\.hc_ffn_(fn|base|scale)", r"model.layers.\1.ffn_hc.\2"),
    (r"layers\.(\d+)\.attn_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"layers\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"layers\.(\d+)\.attn\.wq_a\.weight", r"model.layers.\1.self_attn.q_a_proj.weight"),
    (r"layers\.(\d+)\.attn\.q_norm\.weight", r"model.layers.\1.self_attn.q_a_norm.weight"),
    (r"layers\.(\d+)\.attn\.wq_b\.weight", r"model.layers.\1.self_attn.q_b_proj.weight"),
    (r"layers\.(\d+)\.attn\.wkv\.weight", r"model.layers.\1.self_attn.kv_proj.weight"),
    (r"layers\.(\d+)\.attn\.kv_norm\.weight", r"model.layers.\1.self_attn.kv_norm.weight"),
    (r"layers\.(\d+)\.attn\.attn_sink", r"model.layers.\1.self_attn.sinks"),
    (r"layers\.(\d+)\.attn\.wo_a\.weight", r"model.layers.\1.self_attn.o_a_proj.weight"),
    (r"layers\.(\d+)\.attn\.wo_b\.weight", r"model.layers.\1.self_attn.o_b_proj.weight"),
    (r"layers\.(\d+)\.attn\.compressor\.ape", r"model.layers.\1.self_attn.compressor.position_bias"),
    (r"layers\.(\d+)\.attn\.compressor\.wkv\.weight", r"model.layers.\1.self_attn.compressor.kv_proj.weight"),
    (r"layers\.(\d+)\.attn\.compressor\.wgate\.weight", r"model.layers.\1.self_attn.compressor.gate_proj.weight"),
    (r"layers\.(\d+)\.attn\.compressor\.norm\.weight", r"model.layers.\1.self_attn.compressor.kv_norm.weight"),
    (r"layers\.(\d+)\.attn\.indexer\.wq_b\.weight", r"model.layers.\1.self_attn.compressor.indexer.q_b_proj.weight"),
    (r"layers\.(\d+)\.attn\.indexer\.weights_proj\.weight",
     r"model.layers.\1.self_attn.compressor.indexer.scorer.weights_proj.weight"),
    (r"layers\.(\d+)\.attn\.indexer\.compressor\.ape", r"model.layers.\1.self_attn.compressor.indexer.position_bias"),
    (r"layers\.(\d+)\.attn\.indexer\.compressor\.wkv\.weight", r"model.layers.\1.self_attn.compressor.indexer.kv_proj.weight"),
    (r"layers\.(\d+)\.attn\.indexer\.compressor\.wgate\.weight",
     r"model.layers.\1.self_attn.compressor.indexer.gate_proj.weight"),
    (r"layers\.(\d+)\.attn\.indexer\.compressor\.norm\.weight", r"model.layers.\1.self_attn.compressor.indexer.kv_norm.weight"),
    (r"layers\.(\d+)\.ffn\.gate\.weight", r"model.layers.\1.mlp.gate.weight"),
    (r"layers\.(\d+)\.ffn\.gate\.bias", r"model.layers.\1.mlp.gate.e_score_correction_bias"),
    (r"layers\.(\d+)\.ffn\.gate\.tid2eid", r"model.layers.\1.mlp.gate.tid2eid"),
    (r"layers\.(\d+)\.ffn\.shared_experts\.w1\.weight", r"model.layers.\1.mlp.shared_experts.gate_proj.weight"),
    (r"layers\.(\d+)\.ffn\.shared_experts\.w3\.weight", r"model.layers.\1.mlp.shared_experts.up_proj.weight"),
    (r"layers\.(\d+)\.ffn\.shared_experts\.w2\.weight", r"model.layers.\1.mlp.shared_experts.down_proj.weight"),
]


def load_official_dir(path, cfg):
    """Read an official-format checkpoint (any of F8_E4M3+scale, I8 FP4+scale, BF16, F16, F32,
    I64/I32) and return the HF state dict of dequantized f32 weights."""
    import re
    from safetensors import safe_open
    with open(os.path.join(path, "model.safetensors.index.json")) as f:
        wmap = json.load(f)["weight_map"]
    raw = {}
    for shard in sorted(set(wmap.values())):
        with safe_open(os.path.join(path, shard), framework="pt") as sf:
            for k in sf.keys():
                raw[k] = sf.get_tensor(k)

    def u8(t):
        return t.contiguous().view(torch.uint8).numpy()

    def deq(name):
        t = raw[name]
        sname = name[: -len(".weight")] + ".scale" if name.endswith(".weight") else None
        if t.dtype == torch.float8_e4m3fn:
            w = e4m3_decode(u8(t))
            sc = e8m0_decode(u8(raw[sname]))
            bo, bi = w.shape[0] // sc.shape[0], w.shape[1] // sc.shape[1]
            return w * np.repeat(np.repeat(sc, bo, 0), bi, 1)
        if t.dtype == torch.int8:
            b = u8(t)
            w = np.empty((b.shape[0], b.shape[1] * 2), np.float32)
            w[:, 0::2] = e2m1_decode(b & 15)
            w[:, 1::2] = e2m1_decode(b >> 4)
            sc = e8m0_decode(u8(raw[sname]))
            return w * np.repeat(sc, w.shape[1] // sc.shape[1], 1)
        if t.dtype in (torch.int64, torch.int32):
            return t.to(torch.int64).numpy()
        return t.float().numpy()

    hf = {}
    E = cfg["n_routed_experts"]
    experts = {}
    for name in raw:
        if name.endswith(".scale"):
            continue
        m = re.fullmatch(r"layers\.(\d+)\.ffn\.experts\.(\d+)\.(w[123])\.weight", name)
        if m:
            experts[(int(m.group(1)), int(m.group(2)), m.group(3))] = deq(name)
            continue
        for pat, rep in OFFICIAL_TO_HF:
            if re.fullmatch(pat, name):
                hf[re.sub(pat, rep, name)] = torch.from_numpy(np.ascontiguousarray(deq(name)))
                break
        else:
            raise KeyError(f"unknown official tensor {name}")
    for l in range(cfg["num_hidden_layers"]):
        gu = np.stack([np.concatenate([experts[(l, e, "w1")], experts[(l, e, "w3")]]) for e in range(E)])
        dn = np.stack([experts[(l, e, "w2")] for e in range(E)])
        hf[f"model.layers.{l}.mlp.experts.gate_up_proj"] = torch.from_numpy(gu.astype(np.float32))
        hf[f"model.layers.{l}.mlp.experts.down_proj"] = torch.from_numpy(dn.astype(np.float32))
    return hf


def official_config_json(cfg):
    keys = ["vocab_size", "hidden_size", "moe_intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "qk_rope_head_dim", "q_lora_rank", "o_lora_rank", "o_groups",
            "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "num_hash_layers", "scoring_func",
            "norm_topk_prob", "routed_scaling_factor", "swiglu_limit", "sliding_window", "compress_ratios",
            "compress_rope_theta", "index_n_heads", "index_head_dim", "index_topk", "hc_mult",
            "hc_sinkhorn_iters", "hc_eps", "rms_norm_eps", "rope_theta", "max_position_embeddings",
            "rope_scaling"]
    out = OrderedDict(architectures=["DeepseekV4ForCausalLM"], model_type="deepseek_v4")
    for k in keys:
        out[k] = cfg[k]
    out.update(topk_method="noaux_tc", hidden_act="silu", num_nextn_predict_layers=0, tie_word_embeddings=False,
               bos_token_id=0, eos_token_id=1, torch_dtype="bfloat16",
               quantization_config=OrderedDict(activation_scheme="dynamic", fmt="e4m3", quant_method="fp8",
                                               scale_fmt="ue8m0", weight_block_size=[128, 128]),
               expert_dtype="fp4")
    return out


def hf_config(cfg):
    ratios = cfg["compress_ratios"]
    type_of = {0: "sliding_attention", 4: "compressed_sparse_attention"}
    hca = sorted({r for r in ratios if r not in (0, 4)})
    assert len(hca) <= 1, "transformers supports one HCA ratio per model"
    hca_rate = hca[0] if hca else 128
    layer_types = [type_of.get(r, "heavily_compressed_attention") for r in ratios]
    rs = cfg["rope_scaling"]
    c = DeepseekV4Config(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
        moe_intermediate_size=cfg["moe_intermediate_size"], num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"], num_key_value_heads=1, head_dim=cfg["head_dim"],
        q_lora_rank=cfg["q_lora_rank"], num_experts_per_tok=cfg["num_experts_per_tok"],
        n_routed_experts=cfg["n_routed_experts"], n_shared_experts=cfg["n_shared_experts"],
        scoring_func=cfg["scoring_func"], norm_topk_prob=True, routed_scaling_factor=cfg["routed_scaling_factor"],
        max_position_embeddings=cfg["max_position_embeddings"], rope_theta=cfg["rope_theta"],
        layer_types=layer_types,
        compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": hca_rate},
        compress_rope_theta=cfg["compress_rope_theta"], hc_mult=cfg["hc_mult"],
        hc_sinkhorn_iters=cfg["hc_sinkhorn_iters"], hc_eps=cfg["hc_eps"],
        mlp_layer_types=["hash_moe" if l < cfg["num_hash_layers"] else "moe" for l in range(len(ratios))],
        swiglu_limit=cfg["swiglu_limit"], sliding_window=cfg["sliding_window"], o_groups=cfg["o_groups"],
        o_lora_rank=cfg["o_lora_rank"], index_n_heads=cfg["index_n_heads"], index_head_dim=cfg["index_head_dim"],
        index_topk=cfg["index_topk"], num_nextn_predict_layers=0, rms_norm_eps=cfg["rms_norm_eps"],
        partial_rotary_factor=cfg["qk_rope_head_dim"] / cfg["head_dim"],
        rope_parameters=dict(rope_type="yarn", factor=rs["factor"],
                             original_max_position_embeddings=rs["original_max_position_embeddings"],
                             beta_fast=rs["beta_fast"], beta_slow=rs["beta_slow"]),
        tie_word_embeddings=False, attn_implementation="eager",
    )
    return c


# --------------------------------------------------------------------------------------------
# safetensors writer (deterministic; header keys sorted, 8-byte aligned)
# --------------------------------------------------------------------------------------------

ST_DTYPES = {"F32": np.float32, "I32": np.int32, "I64": np.int64, "I8": np.int8, "BF16": np.uint16,
             "F8_E4M3": np.uint8, "F8_E8M0": np.uint8, "U8": np.uint8}


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> (dtype string, np array). Writes little-endian raw data."""
    header = OrderedDict()
    if metadata:
        header["__metadata__"] = OrderedDict(sorted(metadata.items()))
    blobs = []
    off = 0
    for name in sorted(tensors):
        dt, arr = tensors[name]
        arr = np.ascontiguousarray(arr)
        assert arr.dtype == ST_DTYPES[dt], (name, dt, arr.dtype)
        b = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = OrderedDict(dtype=dt, shape=list(arr.shape), data_offsets=[off, off + len(b)])
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def torch_to_st(t):
    t = t.detach().contiguous()
    if t.dtype == torch.float32:
        return ("F32", t.numpy())
    if t.dtype in (torch.int32,):
        return ("I32", t.numpy())
    if t.dtype == torch.int64:
        return ("I32", t.to(torch.int32).numpy())
    raise TypeError(t.dtype)


# --------------------------------------------------------------------------------------------
# Independent NumPy checks of the HF run against the spec (attention.md / model.md)
# --------------------------------------------------------------------------------------------

def spec_rope_angles(pos, n_rope, compressed, cfg):
    k = np.arange(n_rope // 2, dtype=np.float64)
    if not compressed:
        return pos[:, None] * cfg["rope_theta"] ** (-2 * k / n_rope)[None, :]
    base = cfg["compress_rope_theta"]
    rs = cfg["rope_scaling"]
    s, L0 = rs["factor"], rs["original_max_position_embeddings"]

    def corr(beta):
        return n_rope * math.log(L0 / (2 * math.pi * beta)) / (2 * math.log(base))
    low = max(0, math.floor(corr(rs["beta_fast"])))
    high = min(n_rope - 1, math.ceil(corr(rs["beta_slow"])))
    gamma = 1 - np.clip((k - low) / max(0.001, high - low), 0, 1)
    w = base ** (-2 * k / n_rope)
    return pos[:, None] * (w * ((1 - gamma) / s + gamma))[None, :]


def spec_rope(v, ang, inverse=False):
    """Interleaved-pair RoPE on the last 2*len(ang) dims of v [N, ..., d]; ang [N, n/2]."""
    v = v.astype(np.float64).copy()
    n = 2 * ang.shape[-1]
    t = v[..., -n:]
    c, s = np.cos(ang), np.sin(ang)
    if inverse:
        s = -s
    shape = (ang.shape[0],) + (1,) * (t.ndim - 2) + (ang.shape[1],)
    c, s = c.reshape(shape), s.reshape(shape)
    a, b = t[..., 0::2].copy(), t[..., 1::2].copy()
    t[..., 0::2] = a * c - b * s
    t[..., 1::2] = a * s + b * c
    v[..., -n:] = t
    return v


def rel_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    den = max(np.abs(b).max(), 1e-30)
    return float(np.abs(a - b).max() / den)


def spec_checks(cfg, hfcfg, model, cap, mode, log):
    """Re-derive selected stages from the captured inputs with a direct transcription of the spec
    and compare with what transformers (+patches) computed. Returns dict of max relative errors."""
    res = {}
    flips = {}
    S = cfg["seq_len"]
    W = cfg["sliding_window"]
    n_rope = cfg["qk_rope_head_dim"]
    pos_all = np.arange(S, dtype=np.float64)
    P = State.positions.numpy()
    sd = {k: v.detach().numpy().astype(np.float64) for k, v in model.state_dict().items()}
    fp8_on, fp4_on, _ = MODES[mode]

    # RoPE inverse frequencies (both kinds) vs the spec formula.
    rot = model.model.rotary_emb
    for kind, compressed in (("main", False), ("compress", True)):
        inv = getattr(rot, f"{kind}_inv_freq").numpy().astype(np.float64)
        ref = spec_rope_angles(np.array([1.0]), n_rope, compressed, cfg)[0]
        res[f"rope_inv_freq.{kind}"] = rel_err(inv, ref)

    for l in range(cfg["num_hidden_layers"]):
        r = cfg["compress_ratios"][l]
        pre = f"model.layers.{l}.self_attn."
        x = cap[f"layers.{l}.attn.input"].numpy().astype(np.float64)
        # raw KV row: kv_norm(W x) then rope
        kv = x @ sd[pre + "kv_proj.weight"].T
        kv = kv / np.sqrt((kv ** 2).mean(-1, keepdims=True) + 1e-6) * sd[pre + "kv_norm.weight"]
        kv = spec_rope(kv, spec_rope_angles(pos_all, n_rope, r != 0, cfg))
        res[f"L{l}.kv_rope"] = rel_err(cap[f"layers.{l}.attn.kv_rope"].numpy(), kv[P])
        rows_final = cap[f"layers.{l}.attn.kv"].numpy().astype(np.float64)
        # Q path at the sampled positions (attention.md §4.1)
        qa = x[P] @ sd[pre + "q_a_proj.weight"].T
        qr = qa / np.sqrt((qa ** 2).mean(-1, keepdims=True) + 1e-6) * sd[pre + "q_a_norm.weight"]
        res[f"L{l}.q_residual"] = rel_err(cap[f"layers.{l}.attn.q_residual"].numpy(), qr)
        qh = (qr @ sd[pre + "q_b_proj.weight"].T).reshape(len(P), cfg["num_attention_heads"], cfg["head_dim"])
        qh = qh / np.sqrt((qh ** 2).mean(-1, keepdims=True) + 1e-6)
        qh = spec_rope(qh, spec_rope_angles(P.astype(np.float64), n_rope, r != 0, cfg))
        res[f"L{l}.q"] = rel_err(cap[f"layers.{l}.attn.q"].numpy(), qh)
        if fp8_on:
            # FP8 of the spec-computed row: equal except isolated whole-step flips where the input
            # lies within rounding noise of a rounding boundary (model.md §11.10); count them.
            re = fp8_sim_nope(torch.from_numpy(kv.astype(np.float32)), n_rope).numpy()
            bad = np.abs(rows_final - re) > 1e-5 * np.abs(re).max()
            flips[f"L{l}.kv_fp8_flips_vs_spec"] = int(bad.sum())
        else:
            res[f"L{l}.kv"] = rel_err(rows_final, kv)
        # compressor rows (streaming definition, attention.md §8.3/§8.4)
        comp_rows = None
        if r != 0:
            cp = pre + "compressor."
            comp_rows = cap[f"layers.{l}.compressor.rows"].numpy().astype(np.float64)
            ref_rows = spec_compressor(x, sd[cp + "kv_proj.weight"], sd[cp + "gate_proj.weight"],
                                       sd[cp + "position_bias"], sd[cp + "kv_norm.weight"], r,
                                       cfg["head_dim"], n_rope, cfg)
            res[f"L{l}.compressor.rows_rope"] = rel_err(cap[f"layers.{l}.compressor.rows_rope"].numpy(), ref_rows)
        # attention over raw window + selected compressed rows (attention.md §9), teacher-forced
        # from the captured q / rows / selection
        q = cap[f"layers.{l}.attn.q"].numpy().astype(np.float64)  # [P, H, Dh]
        sinks = sd[pre + "sinks"]
        heads = np.zeros_like(q)
        for i, p in enumerate(P):
            keys = [rows_final[j] for j in range(max(0, p - W + 1), p + 1)]
            if r != 0:
                nvis = (p + 1) // r
                if r == 4:
                    sel = cap[f"layers.{l}.indexer.topk"].numpy()[p]
                    sel = sel[sel >= 0]
                    assert len(sel) == min(nvis, cfg["index_topk"]), (l, p, sel, nvis)
                    assert np.all(sel < nvis)
                else:
                    sel = np.arange(nvis)
                keys += [comp_rows[j] for j in sel]
            Kmat = np.stack(keys)
            s = q[i] @ Kmat.T / math.sqrt(cfg["head_dim"])  # [H, nk]
            m = np.maximum(s.max(-1), sinks)
            e = np.exp(s - m[:, None])
            den = e.sum(-1) + np.exp(sinks - m)
            heads[i] = (e @ Kmat) / den[:, None]
        heads = spec_rope(heads, spec_rope_angles(P.astype(np.float64), n_rope, r != 0, cfg), inverse=True)
        res[f"L{l}.attn.heads"] = rel_err(cap[f"layers.{l}.attn.heads"].numpy(), heads)
        # indexer scores (attention.md §10.2) and selection rule
        if r == 4:
            iq = cap[f"layers.{l}.indexer.q"].numpy().astype(np.float64)   # [P, Hi, Di]
            irows = cap[f"layers.{l}.indexer.rows"].numpy().astype(np.float64)
            w = cap[f"layers.{l}.indexer.weights"].numpy().astype(np.float64)
            ip = pre + "compressor.indexer."
            w_ref = x @ sd[ip + "scorer.weights_proj.weight"].T / math.sqrt(cfg["index_head_dim"] * cfg["index_n_heads"])
            res[f"L{l}.indexer.weights"] = rel_err(w, w_ref)
            sc = np.einsum("phd,td->pht", iq, irows)
            sc = (np.maximum(sc, 0) * w[P][:, :, None]).sum(1)
            got = cap[f"layers.{l}.indexer.scores"].numpy()[P]
            vis = np.isfinite(got)
            for i, p in enumerate(P):
                assert vis[i].sum() == (p + 1) // 4
            res[f"L{l}.indexer.scores"] = rel_err(got[vis], sc[vis])
            ref_iq = spec_rope(iq_pre_from(x, sd, ip, cap, l, cfg), spec_rope_angles(P.astype(np.float64), n_rope, True, cfg))
            res[f"L{l}.indexer.q_rope"] = rel_err(cap[f"layers.{l}.indexer.q_rope"].numpy(), ref_iq)
            # selection: top-k of the captured scores with the tie rule
            scores_all = cap[f"layers.{l}.indexer.scores"].numpy()
            topk = cap[f"layers.{l}.indexer.topk"].numpy()
            for p in range(S):
                nvis = (p + 1) // 4
                kk = min(nvis, cfg["index_topk"])
                order = sorted(range(nvis), key=lambda j: (-scores_all[p, j], j))[:kk]
                assert list(topk[p, :kk]) == order, (l, p)
        # HC pre (model.md §5.2) on sampled positions
        for hcn in ("attn_hc", "ffn_hc"):
            cn = {"attn_hc": "hc_attn", "ffn_hc": "hc_ffn"}[hcn]
            Hs = cap[f"layers.{l}.{cn}.input"].numpy().astype(np.float64)
            hp = f"model.layers.{l}.{hcn}."
            pre_, post_, comb_, coll_ = spec_hc_pre(Hs, sd[hp + "fn"], sd[hp + "scale"], sd[hp + "base"], cfg)
            res[f"L{l}.{cn}.collapsed"] = rel_err(cap[f"layers.{l}.{cn}.collapsed"].numpy(), coll_)
            res[f"L{l}.{cn}.comb"] = rel_err(cap[f"layers.{l}.{cn}.comb"].numpy(), comb_)
            res[f"L{l}.{cn}.post"] = rel_err(cap[f"layers.{l}.{cn}.post"].numpy(), post_)
        # router (model.md §7)
        mp = f"model.layers.{l}.mlp."
        xin = cap[f"layers.{l}.moe.input"].numpy().astype(np.float64)
        lg = xin @ sd[mp + "gate.weight"].T
        res[f"L{l}.moe.router_logits"] = rel_err(cap[f"layers.{l}.moe.router_logits"].numpy(), lg)
        s = np.sqrt(np.log1p(np.exp(lg)))
        k = cfg["num_experts_per_tok"]
        ex = cap[f"layers.{l}.moe.experts"].numpy()[P]
        if l < cfg["num_hash_layers"]:
            toks = State.tokens.numpy()[P]
            assert np.array_equal(ex, sd[mp + "gate.tid2eid"][toks].astype(np.int64))
        else:
            ss = s + sd[mp + "gate.e_score_correction_bias"]
            for i in range(len(P)):
                order = sorted(range(ss.shape[1]), key=lambda e: (-ss[i, e], e))[:k]
                assert list(ex[i]) == order, (l, i, ex[i], order)
        wr = np.take_along_axis(s, ex, 1)
        wr = wr / np.maximum(wr.sum(1, keepdims=True), 2 ** -14) * cfg["routed_scaling_factor"]
        res[f"L{l}.moe.weights"] = rel_err(cap[f"layers.{l}.moe.weights"].numpy()[P], wr)
        # routed experts (model.md §7.4) and shared expert (§7.5)
        lim = cfg["swiglu_limit"]
        silu = lambda z: z / (1 + np.exp(-z))
        gu_all, dn_all = sd[mp + "experts.gate_up_proj"], sd[mp + "experts.down_proj"]
        I = cfg["moe_intermediate_size"]
        routed = np.zeros_like(xin)
        for i in range(len(P)):
            for j in range(k):
                e = ex[i, j]
                g = np.minimum(gu_all[e, :I] @ xin[i], lim)
                u = np.clip(gu_all[e, I:] @ xin[i], -lim, lim)
                routed[i] += dn_all[e] @ (silu(g) * u * wr[i, j])
        res[f"L{l}.moe.routed"] = rel_err(cap[f"layers.{l}.moe.routed"].numpy(), routed)
        g = np.minimum(xin @ sd[mp + "shared_experts.gate_proj.weight"].T, lim)
        u = np.clip(xin @ sd[mp + "shared_experts.up_proj.weight"].T, -lim, lim)
        shared = (silu(g) * u) @ sd[mp + "shared_experts.down_proj.weight"].T
        res[f"L{l}.moe.shared"] = rel_err(cap[f"layers.{l}.moe.shared"].numpy(), shared)
        # grouped output projection (attention.md §11) from the captured heads
        hd = cap[f"layers.{l}.attn.heads"].numpy().astype(np.float64)   # [P, H, Dh]
        G, Ro = cfg["o_groups"], cfg["o_lora_rank"]
        grp = hd.reshape(len(P), G, -1)
        woa = sd[pre + "o_a_proj.weight"].reshape(G, Ro, -1)
        low = np.einsum("pgi,gri->pgr", grp, woa).reshape(len(P), -1)
        res[f"L{l}.attn.o_a"] = rel_err(cap[f"layers.{l}.attn.o_a"].numpy(), low)
        res[f"L{l}.attn.output"] = rel_err(cap[f"layers.{l}.attn.output"].numpy(), low @ sd[pre + "o_b_proj.weight"].T)
        # HC post (model.md §5.3): H' = post (x) y + P^T H, for both sublayers
        h_in = cap[f"layers.{l}.hc_attn.input"].numpy().astype(np.float64)
        post = cap[f"layers.{l}.hc_attn.post"].numpy().astype(np.float64)
        comb = cap[f"layers.{l}.hc_attn.comb"].numpy().astype(np.float64)
        y = cap[f"layers.{l}.attn.output"].numpy().astype(np.float64)
        h_mid = post[:, :, None] * y[:, None, :] + np.einsum("prc,prd->pcd", comb, h_in)
        res[f"L{l}.hc_attn.post_mix"] = rel_err(cap[f"layers.{l}.hc_ffn.input"].numpy(), h_mid)
        post = cap[f"layers.{l}.hc_ffn.post"].numpy().astype(np.float64)
        comb = cap[f"layers.{l}.hc_ffn.comb"].numpy().astype(np.float64)
        y = cap[f"layers.{l}.moe.routed"].numpy().astype(np.float64) + cap[f"layers.{l}.moe.shared"].numpy()
        h_out = post[:, :, None] * y[:, None, :] + np.einsum("prc,prd->pcd", comb, h_mid)
        nxt = (f"layers.{l + 1}.hc_attn.input" if l + 1 < cfg["num_hidden_layers"] else "head.input")
        res[f"L{l}.hc_ffn.post_mix"] = rel_err(cap[nxt].numpy(), h_out)
    # output head (model.md §8)
    Hh = cap["head.input"].numpy().astype(np.float64)
    flat = Hh.reshape(len(P), -1)
    nrm = flat / np.sqrt((flat ** 2).mean(-1, keepdims=True) + 1e-6)
    mh = nrm @ sd["model.hc_head.hc_fn"].T
    wh = 1 / (1 + np.exp(-(mh * sd["model.hc_head.hc_scale"][0] + sd["model.hc_head.hc_base"]))) + cfg["hc_eps"]
    z = (wh[:, :, None] * Hh).sum(1)
    res["head.collapsed"] = rel_err(cap["head.collapsed"].numpy(), z)
    z = z / np.sqrt((z ** 2).mean(-1, keepdims=True) + 1e-6) * sd["model.norm.weight"]
    res["head.logits"] = rel_err(State.last_logits.numpy()[P], z @ sd["lm_head.weight"].T)
    # embedding: every stream of the first HC input equals the token's embedding row
    res["embed"] = rel_err(cap["layers.0.hc_attn.input"].numpy(),
                           np.repeat(sd["model.embed_tokens.weight"][State.tokens.numpy()[P]][:, None], cfg["hc_mult"], 1))
    return res, flips


def iq_pre_from(x, sd, ip, cap, l, cfg):
    qr = cap[f"layers.{l}.attn.q_residual"].numpy().astype(np.float64)
    q = qr @ sd[ip + "q_b_proj.weight"].T
    return q.reshape(q.shape[0], cfg["index_n_heads"], cfg["index_head_dim"])


def spec_compressor(x, wkv, wgate, ape, norm_w, r, d, n_rope, cfg):
    """attention.md §8.3 streaming definition (frontier state), rows after norm + RoPE (before QAT)."""
    S = x.shape[0]
    c = 2 if r == 4 else 1
    kvp = x @ wkv.T
    scp = x @ wgate.T
    st_kv = np.zeros((c * r, c * d))
    st_sc = np.full((c * r, c * d), -np.inf)
    rows = []
    for p in range(S):
        ph = p % r
        row = (4 + ph) if r == 4 else ph
        st_kv[row] = kvp[p]
        st_sc[row] = scp[p] + ape[ph]
        if (p + 1) % r == 0:
            if r == 4:
                cv = np.concatenate([st_kv[0:4, :d], st_kv[4:8, d:]])
                cs = np.concatenate([st_sc[0:4, :d], st_sc[4:8, d:]])
            else:
                cv, cs = st_kv, st_sc
            m = cs.max(0)
            e = np.exp(cs - m)
            pooled = (e * cv).sum(0) / e.sum(0)
            out = pooled / np.sqrt((pooled ** 2).mean() + 1e-6) * norm_w
            out = spec_rope(out[None], spec_rope_angles(np.array([float(p + 1 - r)]), n_rope, True, cfg))[0]
            rows.append(out)
            if r == 4:
                st_kv[0:4] = st_kv[4:8]
                st_sc[0:4] = st_sc[4:8]
    return np.stack(rows)


def spec_hc_pre(Hs, fn, scale, base, cfg):
    """model.md §5.2 on H [N, hc, D]."""
    hc = cfg["hc_mult"]
    eps = cfg["hc_eps"]
    N = Hs.shape[0]
    flat = Hs.reshape(N, -1)
    n = flat / np.sqrt((flat ** 2).mean(-1, keepdims=True) + 1e-6)
    m = n @ fn.T
    sig = lambda z: 1 / (1 + np.exp(-z))
    pre = sig(m[:, :hc] * scale[0] + base[:hc]) + eps
    post = 2 * sig(m[:, hc:2 * hc] * scale[1] + base[hc:2 * hc])
    A = (m[:, 2 * hc:] * scale[2] + base[2 * hc:]).reshape(N, hc, hc)
    Pm = np.exp(A - A.max(-1, keepdims=True))
    Pm = Pm / Pm.sum(-1, keepdims=True) + eps
    Pm = Pm / (Pm.sum(-2, keepdims=True) + eps)
    for _ in range(cfg["hc_sinkhorn_iters"] - 1):
        Pm = Pm / (Pm.sum(-1, keepdims=True) + eps)
        Pm = Pm / (Pm.sum(-2, keepdims=True) + eps)
    coll = (pre[:, :, None] * Hs).sum(1)
    return pre, post, Pm, coll


def spec_forward(cfg, sd, tokens, qat=False):
    """The whole model, end to end, in float64 NumPy, written from model.md / attention.md only
    (no transformers code, no captured values): the independent check of the logits.
    sd: HF state dict as float64 numpy arrays. qat: apply the FP8 / Hadamard+FP4 round trips
    (the quantisers themselves run in f32 on the f64 values rounded to f32). Returns [S, V]."""
    def fp8(v):
        return fp8_sim_nope(torch.from_numpy(v.astype(np.float32)), n_rope).numpy().astype(np.float64) if qat else v

    def fp4(v):
        return indexer_qat(torch.from_numpy(v.astype(np.float32))).numpy().astype(np.float64) if qat else v

    S = len(tokens)
    D, hc = cfg["hidden_size"], cfg["hc_mult"]
    Hn, Dh, n_rope = cfg["num_attention_heads"], cfg["head_dim"], cfg["qk_rope_head_dim"]
    Hi, Di, K = cfg["index_n_heads"], cfg["index_head_dim"], cfg["index_topk"]
    G, Ro, W = cfg["o_groups"], cfg["o_lora_rank"], cfg["sliding_window"]
    k, I, lim = cfg["num_experts_per_tok"], cfg["moe_intermediate_size"], cfg["swiglu_limit"]
    pos = np.arange(S, dtype=np.float64)

    def rms(x, w=None):
        y = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6)
        return y if w is None else y * w

    def silu(z):
        return z / (1 + np.exp(-z))

    def hc_post(y, Hs, post, comb):
        return post[:, :, None] * y[:, None, :] + np.einsum("prc,prd->pcd", comb, Hs)

    Hs = np.repeat(sd["model.embed_tokens.weight"][tokens][:, None, :], hc, 1)
    for l in range(cfg["num_hidden_layers"]):
        r = cfg["compress_ratios"][l]
        lp = f"model.layers.{l}."
        a = lp + "self_attn."
        # ---- attention sublayer
        _, post, comb, coll = spec_hc_pre(Hs, sd[lp + "attn_hc.fn"], sd[lp + "attn_hc.scale"], sd[lp + "attn_hc.base"], cfg)
        x = rms(coll, sd[lp + "input_layernorm.weight"])
        ang = spec_rope_angles(pos, n_rope, r != 0, cfg)
        qr = rms(x @ sd[a + "q_a_proj.weight"].T, sd[a + "q_a_norm.weight"])
        q = spec_rope(rms((qr @ sd[a + "q_b_proj.weight"].T).reshape(S, Hn, Dh)), ang)
        kv = fp8(spec_rope(rms(x @ sd[a + "kv_proj.weight"].T, sd[a + "kv_norm.weight"]), ang))
        comp = sel = None
        if r != 0:
            c = a + "compressor."
            comp = fp8(spec_compressor(x, sd[c + "kv_proj.weight"], sd[c + "gate_proj.weight"], sd[c + "position_bias"],
                                       sd[c + "kv_norm.weight"], r, Dh, n_rope, cfg))
            if r == 4:
                ip = c + "indexer."
                irows = fp4(spec_compressor(x, sd[ip + "kv_proj.weight"], sd[ip + "gate_proj.weight"],
                                            sd[ip + "position_bias"], sd[ip + "kv_norm.weight"], 4, Di, n_rope, cfg))
                iq = fp4(spec_rope((qr @ sd[ip + "q_b_proj.weight"].T).reshape(S, Hi, Di), ang))
                wts = x @ sd[ip + "scorer.weights_proj.weight"].T / math.sqrt(Hi * Di)
                sc = (np.maximum(np.einsum("phd,td->pht", iq, irows), 0) * wts[:, :, None]).sum(1)
                sel = [sorted(range((p + 1) // 4), key=lambda j: (-sc[p, j], j))[:K] for p in range(S)]
        heads = np.zeros((S, Hn, Dh))
        sinks = sd[a + "sinks"]
        for p in range(S):
            keys = [kv[j] for j in range(max(0, p - W + 1), p + 1)]
            if r != 0:
                keys += [comp[j] for j in (sel[p] if r == 4 else range((p + 1) // r))]
            Km = np.stack(keys)
            s_ = q[p] @ Km.T / math.sqrt(Dh)
            m = np.maximum(s_.max(-1), sinks)
            e = np.exp(s_ - m[:, None])
            heads[p] = (e @ Km) / (e.sum(-1) + np.exp(sinks - m))[:, None]
        heads = spec_rope(heads, ang, inverse=True)
        low = np.einsum("pgi,gri->pgr", heads.reshape(S, G, -1), sd[a + "o_a_proj.weight"].reshape(G, Ro, -1))
        y = low.reshape(S, -1) @ sd[a + "o_b_proj.weight"].T
        Hs = hc_post(y, Hs, post, comb)
        # ---- FFN sublayer
        _, post, comb, coll = spec_hc_pre(Hs, sd[lp + "ffn_hc.fn"], sd[lp + "ffn_hc.scale"], sd[lp + "ffn_hc.base"], cfg)
        x = rms(coll, sd[lp + "post_attention_layernorm.weight"])
        mp = lp + "mlp."
        s_ = np.sqrt(np.log1p(np.exp(x @ sd[mp + "gate.weight"].T)))
        if l < cfg["num_hash_layers"]:
            ex = sd[mp + "gate.tid2eid"][tokens].astype(np.int64)
        else:
            ss = s_ + sd[mp + "gate.e_score_correction_bias"]
            ex = np.array([sorted(range(ss.shape[1]), key=lambda e: (-ss[p, e], e))[:k] for p in range(S)])
        w = np.take_along_axis(s_, ex, 1)
        w = w / np.maximum(w.sum(1, keepdims=True), 2 ** -14) * cfg["routed_scaling_factor"]
        gu, dn = sd[mp + "experts.gate_up_proj"], sd[mp + "experts.down_proj"]
        y = np.zeros((S, D))
        for p in range(S):
            for j in range(k):
                e = ex[p, j]
                g = np.minimum(gu[e, :I] @ x[p], lim)
                u = np.clip(gu[e, I:] @ x[p], -lim, lim)
                y[p] += dn[e] @ (silu(g) * u * w[p, j])
        g = np.minimum(x @ sd[mp + "shared_experts.gate_proj.weight"].T, lim)
        u = np.clip(x @ sd[mp + "shared_experts.up_proj.weight"].T, -lim, lim)
        y += (silu(g) * u) @ sd[mp + "shared_experts.down_proj.weight"].T
        Hs = hc_post(y, Hs, post, comb)
    flat = Hs.reshape(S, -1)
    mh = rms(flat) @ sd["model.hc_head.hc_fn"].T
    wh = 1 / (1 + np.exp(-(mh * sd["model.hc_head.hc_scale"][0] + sd["model.hc_head.hc_base"]))) + cfg["hc_eps"]
    z = rms((wh[:, :, None] * Hs).sum(1), sd["model.norm.weight"])
    return z @ sd["lm_head.weight"].T


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

def set_mode(mode):
    State.fp8_kv, State.fp4_indexer, State.f16_rows = MODES[mode]


@torch.no_grad()
def run_oneshot(model, tokens, record):
    State.cap = {} if record else None
    State.fragile = {} if record else None
    State.record = record
    out = model(input_ids=tokens[None], use_cache=False)
    State.record = False
    cap = State.cap
    State.cap = None
    return out.logits[0].float(), cap


@torch.no_grad()
def run_chunked(model, tokens, chunks):
    """transformers' cached path: prefill in chunks, then token by token. Returns logits [S, V]."""
    from transformers.cache_utils import DynamicCache
    cache = DynamicCache(config=model.config)
    outs = []
    p = 0
    for n in chunks:
        ids = tokens[p:p + n][None]
        pos = torch.arange(p, p + n)[None]
        o = model(input_ids=ids, position_ids=pos, cache=cache, use_cache=True)
        outs.append(o.logits[0])
        p += n
    assert p == len(tokens)
    return torch.cat(outs, 0)


def max_rel_per_row(a, b):
    a = a.double()
    b = b.double()
    return ((a - b).abs().amax(-1) / b.abs().amax(-1)).max().item()


def qat_selfchecks():
    """Worked examples of attention.md §6 and exactness of the Hadamard."""
    ex = torch.tensor([1.0, -0.3, 0.123, 2.9, -7.25, 2.0 ** -10], dtype=torch.float32)
    blk = torch.zeros(64)
    blk[:6] = ex
    blk[6] = 100.0
    v = torch.cat([blk, torch.zeros(64)])  # 64 nope + 64 rope dims
    got = fp8_sim_nope(v[None], 64)[0, :7].tolist()
    want = [1.0, -0.3125, 0.125, 3.0, -7.0, 2.0 ** -10, 96.0]
    assert got == want, (got, want)
    y = torch.zeros(32)
    y[:8] = torch.tensor([0.25, 0.75, 1.25, 2.5, 5.0, -3.3, 6.0, 1.75])
    got = fp4_sim(y[None])[0, :8].tolist()
    assert got == [0.0, 1.0, 1.0, 2.0, 4.0, -3.0, 6.0, 2.0], got
    Hm = np.array([[(-1) ** bin(i & j).count("1") for j in range(128)] for i in range(128)], np.float64)
    xv = torch.randn(3, 128, generator=torch.Generator().manual_seed(0))
    ref = xv.double().numpy() @ Hm.T / math.sqrt(128)
    assert np.abs(hadamard(xv).numpy() - ref).max() < 1e-5
    # FP8 codes: torch RNE vs brute-force nearest, ties to even code
    grid = e4m3_decode(np.arange(0, 127, dtype=np.uint8))
    ys = np.random.default_rng(0).uniform(-448, 448, 20000).astype(np.float32)
    ys = np.concatenate([ys, ((grid[1:] + grid[:-1]) / 2).astype(np.float32)])
    got = torch.from_numpy(ys).to(torch.float8_e4m3fn).to(torch.float32).numpy()
    d = np.abs(np.abs(ys)[:, None] - grid[None, :])
    dm = d.min(1, keepdims=True)
    cand = d == dm
    code = np.where(cand.sum(1) > 1, np.argmax(cand * (np.arange(127) % 2 == 0), 1), np.argmin(d, 1))
    want = np.sign(ys) * grid[code]
    assert np.array_equal(got, want.astype(np.float32))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def generate(name, cfg, outdir, log, skip_checks=False, from_checkpoint=None):
    os.makedirs(outdir, exist_ok=True)
    S = cfg["seq_len"]
    tok_rng = np.random.default_rng(tensor_seed(cfg["seed"], "tokens"))
    tokens = torch.from_numpy(tok_rng.integers(0, cfg["vocab_size"], S).astype(np.int64))
    State.tokens = tokens
    State.positions = torch.tensor(sorted(set(p for p in cfg["sample_positions"] if p < S)), dtype=torch.long)

    off, hfw = build_official(cfg)
    if from_checkpoint:
        # Run the oracle on other weights (e.g. a checkpoint dequantized from a q2 GGUF and
        # written back in official naming, any float dtype). Shapes must match the config.
        other = load_official_dir(from_checkpoint, cfg)
        assert sorted(other) == sorted(hfw), set(other) ^ set(hfw)
        for k in hfw:
            assert other[k].shape == hfw[k].shape, (k, other[k].shape, hfw[k].shape)
        hfw = other
    else:
        # The checkpoint written below must read back to exactly the weights the oracle runs.
        pass
    hfc = hf_config(cfg)
    torch.manual_seed(0)
    model = M.DeepseekV4ForCausalLM(hfc).float().eval()
    for l, layer in enumerate(model.model.layers):
        layer.attn_hc._cap_name = f"layers.{l}.hc_attn"
        layer.ffn_hc._cap_name = f"layers.{l}.hc_ffn"
        layer.mlp._layer_idx = l
    model.model.norm.register_forward_hook(lambda mod, inp, out: rec_pos("head.normed", out[0]))  # P6
    missing, unexpected = model.load_state_dict(hfw, strict=False)
    missing = [m for m in missing if "inv_freq" not in m]
    assert not missing and not unexpected, (missing, unexpected)
    n_params = sum(v.numel() for v in hfw.values())

    # ---- official checkpoint
    shard = "model-00001-of-00001.safetensors"
    if from_checkpoint:
        return generate_outputs(name, cfg, outdir, log, skip_checks, model, hfc, tokens, n_params, None,
                                source=os.path.abspath(from_checkpoint))
    write_safetensors(os.path.join(outdir, shard), off, metadata={"format": "pt"})
    total = sum(np.ascontiguousarray(a).nbytes for _, a in off.values())
    index = OrderedDict(metadata=OrderedDict(total_size=total),
                        weight_map=OrderedDict((k, shard) for k in sorted(off)))
    with open(os.path.join(outdir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(official_config_json(cfg), f, indent=2)
        f.write("\n")
    with open(os.path.join(outdir, "tokens.txt"), "w") as f:
        f.write(",".join(str(int(t)) for t in tokens) + "\n")

    # verify the checkpoint round-trips through the reference safetensors reader
    from safetensors import safe_open
    with safe_open(os.path.join(outdir, shard), framework="pt") as sf:
        assert sorted(sf.keys()) == sorted(off.keys())
        for k in list(off)[:50]:
            t = sf.get_tensor(k)
            assert list(t.shape) == list(off[k][1].shape), k

    back = load_official_dir(outdir, cfg)
    for k in hfw:
        assert torch.equal(back[k].to(hfw[k].dtype), hfw[k]), f"checkpoint read-back differs: {k}"
    return generate_outputs(name, cfg, outdir, log, skip_checks, model, hfc, tokens, n_params, total)


def generate_outputs(name, cfg, outdir, log, skip_checks, model, hfc, tokens, n_params, total, source=None):
    S = cfg["seq_len"]
    manifest = OrderedDict(format_version=FORMAT_VERSION, config=name, seq_len=S,
                           generator=dict(torch=torch.__version__, transformers=transformers.__version__,
                                          numpy=np.__version__),
                           n_params=n_params, checkpoint_bytes=total,
                           sample_positions=State.positions.tolist(), modes={}, checks={})
    if source:
        manifest["weights_from"] = source

    logits_by_mode = {}
    for mode in MODES:
        set_mode(mode)
        record = mode in INTERMEDIATE_MODES
        logits, cap = run_oneshot(model, tokens, record)
        State.last_logits = logits
        logits_by_mode[mode] = logits
        write_safetensors(os.path.join(outdir, f"logits_{mode}.safetensors"),
                          {"logits": ("F32", logits.numpy()), "tokens": ("I32", tokens.to(torch.int32).numpy())},
                          metadata={"mode": mode, "config": name})
        info = OrderedDict(fp8_kv=MODES[mode][0], fp4_indexer=MODES[mode][1], f16_rows=MODES[mode][2],
                           logits_absmax=float(logits.abs().max()),
                           top1=logits.argmax(-1).tolist())
        if record:
            # checks against an independent transcription of the spec
            if not skip_checks:
                chk, flips = spec_checks(cfg, hfc, model, cap, mode, log)
                worst = max(chk.values())
                log(f"  [{name}/{mode}] spec checks: worst rel err {worst:.2e}")
                for k, v in chk.items():
                    if v > 1e-5:
                        log(f"    WARNING {k}: {v:.2e}")
                manifest["checks"][f"spec_vs_hf.{mode}"] = OrderedDict((k, float(f"{v:.3e}")) for k, v in chk.items())
                if flips:
                    manifest["checks"][f"spec_vs_hf.{mode}.quantiser_flips"] = flips
                    log(f"  [{name}/{mode}] quantiser flips vs spec recomputation: {flips}")
            tensors = OrderedDict()
            tensors["tokens"] = ("I32", tokens.to(torch.int32).numpy())
            tensors["positions"] = ("I32", State.positions.to(torch.int32).numpy())
            for k, v in cap.items():
                if k.startswith("_"):
                    continue
                if mode != "exact" and not any(st in k for st in QAT_INTERMEDIATE_STAGES):
                    continue
                tensors[k] = torch_to_st(v)
            stats = OrderedDict()
            for k in sorted(cap):
                if k.startswith("_") or cap[k].dtype != torch.float32:
                    continue
                fin = cap[k][torch.isfinite(cap[k])]
                stats[k] = float(f"{fin.pow(2).mean().sqrt().item():.4g}") if fin.numel() else 0.0
            info["activation_rms"] = stats
            info["margins"] = selection_margins(cfg, cap)
            for k, v in sorted(State.fragile.items()):
                if k.startswith("router_gap."):
                    info["margins"][k[len("router_gap."):] + ".moe.router_topk_gap"] = v
            info["swiglu_clamped"] = OrderedDict(
                (k[len("swiglu_clamped."):], dict(gate_above=v[0], up_outside=v[1], total=v[2]))
                for k, v in sorted(State.fragile.items()) if k.startswith("swiglu_clamped."))
            info["fragile_roundings"] = OrderedDict(
                (k, v) for k, v in sorted(State.fragile.items()) if k.startswith("fp"))
            info["log2f_scale_mismatch_blocks"] = OrderedDict(
                (k.split(".", 1)[1], v) for k, v in sorted(State.fragile.items()) if k.startswith("log2f_scale"))
            write_safetensors(os.path.join(outdir, f"intermediates_{mode}.safetensors"), tensors,
                              metadata={"mode": mode, "config": name, "format_version": str(FORMAT_VERSION)})
        manifest["modes"][mode] = info

    # differences between modes (how much the QAT round trips move the logits)
    for a, b in (("qat", "exact"), ("qat_f16", "qat")):
        manifest["checks"][f"logits_rel_diff.{a}_vs_{b}"] = float(f"{max_rel_per_row(logits_by_mode[a], logits_by_mode[b]):.3e}")
        manifest["checks"][f"top1_agree.{a}_vs_{b}"] = float(
            (logits_by_mode[a].argmax(-1) == logits_by_mode[b].argmax(-1)).float().mean())

    # an end-to-end float64 NumPy forward written from the spec alone must reproduce the exact logits
    if not skip_checks:
        sd = {k: v.detach().numpy().astype(np.float64) for k, v in model.state_dict().items()}
        for mode, q in (("exact", False), ("qat", True)):
            ref = spec_forward(cfg, sd, tokens.numpy(), qat=q)
            d = max_rel_per_row(logits_by_mode[mode], torch.from_numpy(ref))
            same = float((logits_by_mode[mode].argmax(-1).numpy() == ref.argmax(-1)).mean())
            manifest["checks"][f"spec_forward_f64_vs_{mode}"] = float(f"{d:.3e}")
            manifest["checks"][f"spec_forward_f64_top1_agree_{mode}"] = same
            log(f"  [{name}] spec forward (float64 NumPy) vs {mode} logits: {d:.2e}, top-1 agreement {same:.3f}")

    # transformers' cached path must reproduce the one-shot logits (validates the patches under
    # chunked prefill and token-by-token decode)
    if not skip_checks:
        for mode in ("exact", "qat"):
            set_mode(mode)
            for chunks in ([S], [5, 27, S - 32], [4, 60, S - 64], [3] + [1] * 20 + [S - 23]):
                if sum(chunks) != S or min(chunks) <= 0:
                    continue
                lg = run_chunked(model, tokens, chunks)
                d = max_rel_per_row(lg, logits_by_mode[mode])
                key = f"cached_vs_oneshot.{mode}.chunks_{'_'.join(map(str, chunks[:4]))}{'_etc' if len(chunks) > 4 else ''}"
                manifest["checks"][key] = float(f"{d:.3e}")
                log(f"  [{name}/{mode}] {key}: {d:.2e}")

    files = sorted(f for f in os.listdir(outdir) if f != "manifest.json")
    manifest["files"] = OrderedDict((f, OrderedDict(bytes=os.path.getsize(os.path.join(outdir, f)),
                                                    sha256=sha256(os.path.join(outdir, f)))) for f in files)
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    log(f"  [{name}] {n_params} params, checkpoint {total} bytes, "
        f"dir {sum(os.path.getsize(os.path.join(outdir, f)) for f in os.listdir(outdir))} bytes")


def selection_margins(cfg, cap):
    """Smallest gaps at the top-k boundaries (router and indexer): a Rust implementation whose
    summation order differs could flip a selection only where these are ~1e-6 relative."""
    out = OrderedDict()
    for l in range(cfg["num_hidden_layers"]):
        if cfg["compress_ratios"][l] == 4 and f"layers.{l}.indexer.scores" in cap:
            sc = cap[f"layers.{l}.indexer.scores"].double()
            k = cfg["index_topk"]
            worst = math.inf
            exact_ties = 0
            for p in range(sc.shape[0]):
                v = sc[p][torch.isfinite(sc[p])]
                if v.numel() <= k:
                    continue
                s = torch.sort(v, descending=True).values
                gap = (s[k - 1] - s[k]).item() / max(s.abs().max().item(), 1e-30)
                if gap == 0:
                    exact_ties += 1   # resolved by the lower-index rule; robust if the tie is exact
                else:
                    worst = min(worst, gap)
            out[f"layers.{l}.indexer.topk_gap"] = float(f"{worst:.3e}") if worst < math.inf else None
            out[f"layers.{l}.indexer.positions_with_exact_tie_at_boundary"] = exact_ties
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output root, e.g. crates/model/tests/fixtures/oracle")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    ap.add_argument("--skip-checks", action="store_true", help="skip the spec cross-checks and cached-path checks")
    ap.add_argument("--from-checkpoint", metavar="DIR",
                    help="run the oracle on the weights of an official-format checkpoint DIR (one config "
                         "given with --configs) instead of the generated ones; writes logits/intermediates/"
                         "manifest only")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    install_patches()
    qat_selfchecks()
    names = args.configs.split(",")
    if args.from_checkpoint:
        assert len(names) == 1, "--from-checkpoint takes exactly one --configs name"
    for name in names:
        print(f"config {name}", flush=True)
        out = args.out if args.from_checkpoint else os.path.join(args.out, name)
        generate(name, CONFIGS[name], out, lambda s: print(s, flush=True),
                 skip_checks=args.skip_checks, from_checkpoint=args.from_checkpoint)


if __name__ == "__main__":
    main()
