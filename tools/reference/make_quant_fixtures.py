#!/usr/bin/env python3
"""Generate the gguf crate's block-format fixtures from PyPI `gguf`'s numpy codecs.

Oracle: gguf==0.19.0 (gguf/quants.py, a numpy port of ggml's dequantizers and
of its Q8_0/BF16 quantizers) and numpy's float16 conversion.

  python3 -m venv /tmp/qvenv && /tmp/qvenv/bin/pip install gguf==0.19.0 numpy
  /tmp/qvenv/bin/python tools/reference/make_quant_fixtures.py

Writes into crates/gguf/tests/fixtures/quant/ (seeded: re-running gives
identical files):
  <name>.blocks   raw block bytes, as stored in a GGUF tensor
  <name>.f32      gguf's dequantization of them, little-endian f32
  q8_0_quant.in.f32 / q8_0_quant.blocks    f32 input and gguf.quants.quantize(Q8_0)
  bf16_quant.in.f32 / bf16_quant.blocks    same for BF16
  f16_quant.in.f32  / f16_quant.blocks     numpy astype(float16) (IEEE RNE)
  manifest.json   per fixture: type name, element count, files

Decode fixtures cover Q8_0, Q2_K, Q4_K, IQ2_XXS, MXFP4, F16 and BF16 with
random payloads plus edge blocks: all-zero, max-magnitude scales and codes,
subnormal f16 scales, extreme E8M0 exponents (0, 1, 254, 255). No NaN is
generated (scales are finite, F16/BF16 values skip NaN encodings), so the
Rust tests can compare f32 bits exactly.
"""

import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                   "crates", "gguf", "tests", "fixtures", "quant")
rng = np.random.default_rng(20260511)


def finite_f16(n, subnormal_share=0.15):
    """Random finite f16 bit patterns, a share of them subnormal."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    exp = (bits >> 10) & 0x1F
    bits = np.where(exp == 0x1F, bits & ~np.uint16(0x4000), bits).astype(np.uint16)
    sub = rng.random(n) < subnormal_share
    bits = np.where(sub, bits & np.uint16(0x83FF), bits).astype(np.uint16)
    return bits


def f16_bytes(bits):
    return np.asarray(bits, dtype=np.uint16).astype("<u2").view(np.uint8)


def random_bytes(n_blocks, size):
    return rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)


EDGE_F16 = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x0400, 0x7BFF, 0xFBFF, 0x3C00]


def q8_0_blocks():
    b = random_bytes(120, 34)
    b[:, 0:2] = f16_bytes(finite_f16(120)).reshape(120, 2)
    extra = []
    for d in EDGE_F16:
        for qs in (np.zeros(32), np.full(32, -128), np.full(32, 127), np.arange(-16, 16)):
            blk = np.zeros(34, dtype=np.uint8)
            blk[0:2] = f16_bytes([d])
            blk[2:] = np.asarray(qs, dtype=np.int8).view(np.uint8)
            extra.append(blk)
    return np.concatenate([b, np.array(extra)])


def kquant_blocks(size, d_offsets):
    b = random_bytes(40, size)
    for off in d_offsets:
        b[:, off:off + 2] = f16_bytes(finite_f16(40)).reshape(40, 2)
    extra = []
    for d in EDGE_F16:
        for payload in (0x00, 0xFF, None):
            blk = np.zeros(size, dtype=np.uint8) if payload is not None else random_bytes(1, size)[0]
            if payload is not None:
                blk[:] = payload
            for off in d_offsets:
                blk[off:off + 2] = f16_bytes([d])
            extra.append(blk)
    return np.concatenate([b, np.array(extra)])


def mxfp4_blocks():
    b = random_bytes(200, 17)
    extra = []
    for e in (0, 1, 2, 126, 127, 128, 253, 254, 255):
        for payload in (0x00, 0xFF, 0x77, 0x88, None):
            blk = random_bytes(1, 17)[0] if payload is None else np.full(17, payload, dtype=np.uint8)
            blk[0] = e
            extra.append(blk)
    return np.concatenate([b, np.array(extra)])


def half_words(kind):
    """All-ish 16-bit patterns for F16/BF16, NaN encodings removed."""
    words = np.concatenate([
        rng.integers(0, 1 << 16, size=3000, dtype=np.uint32),
        np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x7BFF, 0x7C00, 0xFC00,
                  0x7F80, 0xFF80, 0x7F7F, 0x0080, 0x007F, 0x3C00, 0x3F80]),
    ]).astype(np.uint16)
    if kind == "f16":
        nan = ((words >> 10) & 0x1F == 0x1F) & (words & 0x3FF != 0)
    else:
        nan = ((words >> 7) & 0xFF == 0xFF) & (words & 0x7F != 0)
    words = words[~nan]
    return words[: len(words) // 32 * 32]


def dequant(raw, qtype):
    if qtype == T.F16:
        return raw.view("<f2").astype(np.float32)
    return quants.dequantize(raw, qtype).astype(np.float32).reshape(-1)


def write(name, ty, raw_bytes, values, manifest, kind="decode"):
    raw_bytes = np.ascontiguousarray(raw_bytes).view(np.uint8).reshape(-1)
    values = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
    with open(os.path.join(OUT, name + ".blocks"), "wb") as f:
        f.write(raw_bytes.tobytes())
    suffix = ".f32" if kind == "decode" else ".in.f32"
    with open(os.path.join(OUT, name + suffix), "wb") as f:
        f.write(values.tobytes())
    manifest.append({"name": name, "type": ty, "kind": kind, "elements": int(values.size)})


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = []
    with np.errstate(over="ignore", invalid="ignore"):
        for name, ty, qtype, blocks in [
            ("q8_0", "Q8_0", T.Q8_0, q8_0_blocks()),
            ("q2_k", "Q2_K", T.Q2_K, kquant_blocks(84, [80, 82])),
            ("q4_k", "Q4_K", T.Q4_K, kquant_blocks(144, [0, 2])),
            ("iq2_xxs", "IQ2_XXS", T.IQ2_XXS, kquant_blocks(66, [0])),
            ("mxfp4", "MXFP4", T.MXFP4, mxfp4_blocks()),
        ]:
            raw = np.ascontiguousarray(blocks, dtype=np.uint8)
            write(name, ty, raw, dequant(raw.reshape(-1), qtype), manifest)
        for name, ty, qtype in [("f16", "F16", T.F16), ("bf16", "BF16", T.BF16)]:
            words = half_words(name).astype("<u2")
            write(name, ty, words, dequant(words.view(np.uint8), qtype), manifest)

        # Quantizer fixtures: NaN-free f32 input of mixed scales, 32-multiple.
        x = np.concatenate([
            rng.standard_normal(4096).astype(np.float32),
            (rng.standard_normal(1024) * 1e4).astype(np.float32),
            (rng.standard_normal(1024) * 1e-6).astype(np.float32),
            np.zeros(64, dtype=np.float32),
            np.full(32, 3.0, dtype=np.float32),
            np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5] * 5 + [127.0, -127.0], dtype=np.float32),
        ])
        q8 = quants.quantize(x.reshape(-1, 32), T.Q8_0)
        write("q8_0_quant", "Q8_0", q8, x, manifest, kind="quantize")
        bf = quants.quantize(x, T.BF16)
        write("bf16_quant", "BF16", bf, x, manifest, kind="quantize")
        xh = np.concatenate([x, np.array([65504.0, 65519.0, 65520.0, 1e-8, -3e-8, 6e-8] + [0.0] * 26,
                                         dtype=np.float32)])
        write("f16_quant", "F16", xh.astype("<f2"), xh, manifest, kind="quantize")

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "tools/reference/make_quant_fixtures.py", "oracle": "gguf==0.19.0",
                   "fixtures": manifest}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(manifest)} fixtures, {total} bytes, to {os.path.normpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
