//! Block decoders (spec §3). `super::dequantize` checks sizes first, so the
//! decoders only see whole blocks and a matching output slice.
//!
//! The float expressions keep the exact operation order of §3 (which is
//! ggml's), so the output is bit-identical to gguf's quants.py and to ds4.

use super::float::{bf16_to_f32, e8m0_to_f32_half, le_f16, le_u16, le_u32};
use super::tables::{IQ2XXS_GRID, KSIGNS, KVALUES_MXFP4};
use crate::GgmlType;

/// Decodes whole blocks of raw bytes into `blocks * block_elems` floats.
pub(crate) type Decoder = fn(&[u8], &mut [f32]);

/// The decoder for `ty`, or `None` for types this crate cannot decode.
pub(crate) fn decoder(ty: GgmlType) -> Option<Decoder> {
    Some(match ty {
        GgmlType::F32 => |src, dst| {
            for (b, y) in src.chunks_exact(4).zip(dst) {
                *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        },
        GgmlType::F16 => f16_slice,
        GgmlType::Bf16 => |src, dst| {
            for (b, y) in src.chunks_exact(2).zip(dst) {
                *y = bf16_to_f32(le_u16(b, 0));
            }
        },
        // Values, not bit patterns: I32 tensors hold indices/counts and
        // callers want them as numbers (rounded above 2^24).
        GgmlType::I32 => |src, dst| {
            for (b, y) in src.chunks_exact(4).zip(dst) {
                *y = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32;
            }
        },
        GgmlType::Q8_0 => |src, dst| each_block(src, dst, 34, 32, q8_0),
        GgmlType::Q2K => |src, dst| each_block(src, dst, 84, 256, q2_k),
        GgmlType::Q4K => |src, dst| each_block(src, dst, 144, 256, q4_k),
        GgmlType::Iq2Xxs => |src, dst| each_block(src, dst, 66, 256, iq2_xxs),
        GgmlType::Mxfp4 => |src, dst| each_block(src, dst, 17, 32, mxfp4),
        GgmlType::Q8K => |src, dst| each_block(src, dst, 292, 256, q8_k),
        _ => return None,
    })
}

/// F16 -> f32 for a whole slice; uses the F16C conversion instruction
/// when the CPU has it (exact, like `f16_to_f32`; checked over all 65536
/// inputs in the tests).
fn f16_slice(src: &[u8], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("f16c") && is_x86_feature_detected!("avx") {
        // SAFETY: the features `f16c_slice` enables were just detected.
        unsafe { f16c_slice(src, dst) };
        return;
    }
    for (b, y) in src.chunks_exact(2).zip(dst) {
        *y = le_f16(b, 0);
    }
}

/// Eight halves per `vcvtph2ps`; unaligned loads/stores of in-bounds
/// ranges (`n` is limited by both slices), scalar tail.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn f16c_slice(src: &[u8], dst: &mut [f32]) {
    use std::arch::x86_64::{_mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
    let n = (src.len() / 2).min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm_loadu_si128(src.as_ptr().add(2 * i).cast());
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        i += 8;
    }
    for (b, y) in src[2 * i..].chunks_exact(2).zip(&mut dst[i..n]) {
        *y = le_f16(b, 0);
    }
}

fn each_block(src: &[u8], dst: &mut [f32], bb: usize, be: usize, f: fn(&[u8], &mut [f32])) {
    for (b, y) in src.chunks_exact(bb).zip(dst.chunks_exact_mut(be)) {
        f(b, y);
    }
}

/// §3.2: `d * q`.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = d * (q as i8) as f32;
    }
}

/// §3.3: sub-block `s` of 16 uses `scales[s]`; byte `qs[32h + l]` carries
/// elements 128h + l + 32j in bit pair j.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 80);
    let dmin = le_f16(b, 82);
    let (scales, qs) = (&b[0..16], &b[16..80]);
    for (s, ys) in y.chunks_exact_mut(16).enumerate() {
        let sc = scales[s];
        let dl = d * (sc & 15) as f32;
        let ml = dmin * (sc >> 4) as f32;
        let (h, j, half) = (s / 8, (s % 8) / 2, s % 2);
        let q = &qs[32 * h + 16 * half..32 * h + 16 * half + 16];
        for (y, &q) in ys.iter_mut().zip(q) {
            *y = dl * ((q >> (2 * j)) & 3) as f32 - ml;
        }
    }
}

/// The 6-bit (scale, min) codes of Q4_K sub-block `j` (§3.4).
#[inline]
pub(crate) fn q4_k_scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// §3.4: 64-element chunk `c` holds sub-blocks 2c (low nibbles) and 2c+1
/// (high nibbles) of bytes `qs[32c..32c+32]`.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let d = le_f16(b, 0);
    let dmin = le_f16(b, 2);
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (j, ys) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = q4_k_scale_min(scales, j);
        let d1 = d * sc as f32;
        let m1 = dmin * m as f32;
        let q = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        let shift = 4 * (j % 2);
        for (y, &q) in ys.iter_mut().zip(q) {
            *y = d1 * ((q >> shift) & 15) as f32 - m1;
        }
    }
}

/// §3.5: `((d * (0.5 + ls)) * 0.25) * grid * sign`. Multiplying by ±1 is
/// exact, so the sign is applied to the bits (identical for every non-NaN
/// result). Grid values and sign bits come from small precomputed tables so
/// the 8-element inner loop is branch-free and vectorizes.
fn iq2_xxs(b: &[u8], y: &mut [f32]) {
    const GRID_F32: [[f32; 8]; 256] = {
        let mut t = [[0.0f32; 8]; 256];
        let mut k = 0;
        while k < 256 {
            let mut j = 0;
            while j < 8 {
                t[k][j] = ((IQ2XXS_GRID[k] >> (8 * j)) & 0xFF) as f32;
                j += 1;
            }
            k += 1;
        }
        t
    };
    const SIGN_BITS: [[u32; 8]; 128] = {
        let mut t = [[0u32; 8]; 128];
        let mut i = 0;
        while i < 128 {
            let mut j = 0;
            while j < 8 {
                t[i][j] = ((KSIGNS[i] as u32 >> j) & 1) << 31;
                j += 1;
            }
            i += 1;
        }
        t
    };
    let d = le_f16(b, 0);
    for (g, yg) in y.chunks_exact_mut(32).enumerate() {
        let a = le_u32(b, 2 + 8 * g);
        let s = le_u32(b, 6 + 8 * g);
        let db = d * (0.5 + (s >> 28) as f32) * 0.25;
        for (i, ys) in yg.chunks_exact_mut(8).enumerate() {
            let grid = &GRID_F32[((a >> (8 * i)) & 0xFF) as usize];
            let signs = &SIGN_BITS[((s >> (7 * i)) & 127) as usize];
            for ((y, &gv), &neg) in ys.iter_mut().zip(grid).zip(signs) {
                *y = f32::from_bits((db * gv).to_bits() ^ neg);
            }
        }
    }
}

/// ggml MXFP4 (type 39): byte 0 = E8M0 exponent, element j / j+16 = low /
/// high nibble of `qs[j]`, value `kvalues[nibble] * 2^(e-128)`. Layout as in
/// ggml's `dequantize_row_mxfp4` and gguf 0.19's quants.py (the fixtures
/// compare bit for bit, including e = 0, 1, 254, 255).
fn mxfp4(b: &[u8], y: &mut [f32]) {
    const KV: [f32; 16] = {
        let mut t = [0.0f32; 16];
        let mut i = 0;
        while i < 16 {
            t[i] = KVALUES_MXFP4[i] as f32;
            i += 1;
        }
        t
    };
    let d = e8m0_to_f32_half(b[0]);
    let (lo, hi) = y.split_at_mut(16);
    for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(&b[1..17]) {
        *lo = KV[(q & 15) as usize] * d;
        *hi = KV[(q >> 4) as usize] * d;
    }
}

/// §3.6: `d * qs`, d an f32 (the bsums are redundant for decoding).
fn q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_bits(le_u32(b, 0));
    for (y, &q) in y.iter_mut().zip(&b[4..260]) {
        *y = d * (q as i8) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_slice_equals_scalar_for_every_half() {
        let src: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        let mut fast = vec![0.0f32; 65536];
        f16_slice(&src, &mut fast);
        for (h, v) in fast.iter().enumerate() {
            assert_eq!(v.to_bits(), le_f16(&src, 2 * h).to_bits(), "{h:#06x}");
        }
    }
}
