//! AVX2 kernels, bit-identical to `scalar`.
//!
//! Identity holds because the integer sums are exact in both (every
//! product is formed in i16/i32 lanes without saturation, see each kernel)
//! and the per-block float terms are formed with the same IEEE operations
//! and summed in the same lane order (`crate::order::LaneSum`): where
//! several blocks' terms are formed in one vector the operations are
//! element-wise (no reassociation).
//!
//! Weights come from arbitrary file bytes and `BlockQ8K`/`ActQ8_0` can be
//! built by hand, so the kernels are exact for every input, -128 codes
//! included. That rules out the usual `maddubs`/`sign` trick for signed x
//! signed bytes (it wraps on -128): Q8_0 and MXFP4 widen to i16 and use
//! `_mm256_madd_epi16`; the K-quants' codes are unsigned, where `maddubs`
//! cannot saturate; IQ2_XXS biases the activation (see `iq2_xxs`).
//!
//! Every function here is `unsafe` only because of `#[target_feature]`:
//! callers must have checked `is_x86_feature_detected!("avx2")` (`super`
//! does so through `Isa`). Pointer reads are unaligned loads of ranges the
//! caller's size checks (`super::check`) guarantee to be in bounds.

use std::arch::x86_64::*;

use crate::order::LaneSum;
use crate::quant::activation::BlockQ8K;
use crate::quant::dequant::q4_k_scale_min;
use crate::quant::float::{e8m0_to_f32_half, le_f16, le_u32};
use crate::quant::tables::{IQ2XXS_GRID, KSIGNS_MASK64, KVALUES_MXFP4};

/// Sum of the eight i32 lanes.
#[target_feature(enable = "avx2")]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// Exact dot of 32 signed bytes with 32 signed bytes as 8 i32 partial sums
/// (|each| <= 4 * 128 * 128).
#[target_feature(enable = "avx2")]
unsafe fn dot_i8x32(a: __m256i, b: __m256i) -> __m256i {
    let a0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(a));
    let a1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(a, 1));
    let b0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(b));
    let b1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(b, 1));
    _mm256_add_epi32(_mm256_madd_epi16(a0, b0), _mm256_madd_epi16(a1, b1))
}

/// Reduces eight vectors of partial sums to one vector of their eight
/// totals, in order (`hadd` tree; integer, so exact).
#[target_feature(enable = "avx2")]
unsafe fn hsum8(p: &[__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(p[0], p[1]);
    let h23 = _mm256_hadd_epi32(p[2], p[3]);
    let h45 = _mm256_hadd_epi32(p[4], p[5]);
    let h67 = _mm256_hadd_epi32(p[6], p[7]);
    // Per 128-bit lane: [s0 s1 s2 s3] for the lane's four elements.
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    let lo = _mm256_permute2x128_si256(h0123, h4567, 0x20);
    let hi = _mm256_permute2x128_si256(h0123, h4567, 0x31);
    _mm256_add_epi32(lo, hi)
}

/// Shared float tail of the 32-block kernels: the terms `(d[i] * s[i]) *
/// isum[i]` of eight blocks, formed element-wise (the same IEEE results as
/// scalar) and added to eight consecutive lanes.
#[target_feature(enable = "avx2")]
unsafe fn accumulate8(acc: &mut LaneSum, d: &[f32; 8], s: &[f32], isums: __m256i) {
    let prod = _mm256_mul_ps(
        _mm256_mul_ps(_mm256_loadu_ps(d.as_ptr()), _mm256_loadu_ps(s.as_ptr())),
        _mm256_cvtepi32_ps(isums),
    );
    let mut t = [0.0f32; 8];
    _mm256_storeu_ps(t.as_mut_ptr(), prod);
    acc.add8(t);
}

/// Q8_0 weights x Q8_0 activation (scalar: `scalar::q8_0`).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q8_0(row: &[u8], qs: &[i8], scales: &[f32]) -> f32 {
    let nb = scales.len();
    let w = row.as_ptr();
    let a = qs.as_ptr();
    let mut acc = LaneSum::new();
    let mut b = 0;
    while b + 8 <= nb {
        let mut p = [_mm256_setzero_si256(); 8];
        let mut d = [0.0f32; 8];
        for (i, (p, d)) in p.iter_mut().zip(&mut d).enumerate() {
            let blk = w.add(34 * (b + i));
            let wv = _mm256_loadu_si256(blk.add(2) as *const __m256i);
            let av = _mm256_loadu_si256(a.add(32 * (b + i)) as *const __m256i);
            *p = dot_i8x32(wv, av);
            *d = le_f16(&row[34 * (b + i)..], 0);
        }
        accumulate8(&mut acc, &d, &scales[b..b + 8], hsum8(&p));
        b += 8;
    }
    while b < nb {
        let blk = w.add(34 * b);
        let wv = _mm256_loadu_si256(blk.add(2) as *const __m256i);
        let av = _mm256_loadu_si256(a.add(32 * b) as *const __m256i);
        let isum = hsum_i32(dot_i8x32(wv, av));
        acc.add(le_f16(&row[34 * b..], 0) * scales[b] * isum as f32);
        b += 1;
    }
    acc.finish()
}

/// The 32 MXFP4 values of a block as i8 (`KVALUES_MXFP4` looked up with
/// `pshufb`), low nibbles first as in ggml's layout.
#[target_feature(enable = "avx2")]
unsafe fn mxfp4_values(blk: *const u8, table: __m256i) -> __m256i {
    let q = _mm_loadu_si128(blk.add(1) as *const __m128i);
    let m = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(q, m);
    let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
    _mm256_shuffle_epi8(table, _mm256_set_m128i(hi, lo))
}

/// MXFP4 weights x Q8_0 activation (scalar: `scalar::mxfp4`).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn mxfp4(row: &[u8], qs: &[i8], scales: &[f32]) -> f32 {
    let nb = scales.len();
    let w = row.as_ptr();
    let a = qs.as_ptr();
    let table =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_MXFP4.as_ptr() as *const __m128i));
    let mut acc = LaneSum::new();
    let mut b = 0;
    while b + 8 <= nb {
        let mut p = [_mm256_setzero_si256(); 8];
        let mut d = [0.0f32; 8];
        for (i, (p, d)) in p.iter_mut().zip(&mut d).enumerate() {
            let blk = w.add(17 * (b + i));
            let av = _mm256_loadu_si256(a.add(32 * (b + i)) as *const __m256i);
            *p = dot_i8x32(mxfp4_values(blk, table), av);
            *d = e8m0_to_f32_half(*blk);
        }
        accumulate8(&mut acc, &d, &scales[b..b + 8], hsum8(&p));
        b += 8;
    }
    while b < nb {
        let blk = w.add(17 * b);
        let av = _mm256_loadu_si256(a.add(32 * b) as *const __m256i);
        let isum = hsum_i32(dot_i8x32(mxfp4_values(blk, table), av));
        acc.add(e8m0_to_f32_half(*blk) * scales[b] * isum as f32);
        b += 1;
    }
    acc.finish()
}

/// Q2_K x Q8_K (scalar: `scalar::q2_k`). Codes (0..3) are unsigned, so
/// `maddubs` is exact here: a pair sum is at most 2 * 3 * 128.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q2_k(row: &[u8], y: &[BlockQ8K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0x0F);
    // Picks i16 scale 2j into the low 128-bit lane and 2j+1 into the high
    // one, for j = 0..3 (each lane then multiplies one 16-element sub-block).
    let shuf: [__m256i; 4] = [
        _mm256_setr_epi8(
            0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2,
            3, 2, 3,
        ),
        _mm256_setr_epi8(
            4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6,
            7, 6, 7,
        ),
        _mm256_setr_epi8(
            8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11,
            10, 11, 10, 11, 10, 11,
        ),
        _mm256_setr_epi8(
            12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 14, 15, 14, 15, 14, 15,
            14, 15, 14, 15, 14, 15, 14, 15, 14, 15,
        ),
    ];
    let mut sumf = LaneSum::new();
    for (bi, y) in y.iter().enumerate() {
        let x = row.as_ptr().add(84 * bi);
        let sc8 = _mm_loadu_si128(x as *const __m128i);
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), m4));
        let bsums = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
        let summs = hsum_i32(_mm256_madd_epi16(mins, bsums));
        let scales = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, m4));
        let mut acc = _mm256_setzero_si256();
        for h in 0..2 {
            let q = _mm256_loadu_si256(x.add(16 + 32 * h) as *const __m256i);
            let sc_h = if h == 0 {
                _mm256_permute2x128_si256(scales, scales, 0x00)
            } else {
                _mm256_permute2x128_si256(scales, scales, 0x11)
            };
            for (j, shuf) in shuf.iter().enumerate() {
                let codes =
                    _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)), m3);
                let yq = _mm256_loadu_si256(y.qs.as_ptr().add(128 * h + 32 * j) as *const __m256i);
                let p = _mm256_maddubs_epi16(codes, yq);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc_h, *shuf)));
            }
        }
        let isum = hsum_i32(acc);
        let dall = y.d * le_f16(&row[84 * bi..], 80);
        let dmin = y.d * le_f16(&row[84 * bi..], 82);
        sumf.add(dall * isum as f32 - dmin * summs as f32);
    }
    sumf.finish()
}

/// Q4_K x Q8_K (scalar: `scalar::q4_k`). Codes (0..15) are unsigned, so
/// `maddubs` is exact: a pair sum is at most 2 * 15 * 128.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn q4_k(row: &[u8], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut sumf = LaneSum::new();
    for (bi, y) in y.iter().enumerate() {
        let blk = &row[144 * bi..144 * bi + 144];
        let x = blk.as_ptr();
        let mut acc = _mm256_setzero_si256();
        let mut summs = 0i32;
        for c in 0..4 {
            let (sc_lo, m_lo) = q4_k_scale_min(&blk[4..16], 2 * c);
            let (sc_hi, m_hi) = q4_k_scale_min(&blk[4..16], 2 * c + 1);
            summs += m_lo as i32 * (y.bsums[4 * c] as i32 + y.bsums[4 * c + 1] as i32);
            summs += m_hi as i32 * (y.bsums[4 * c + 2] as i32 + y.bsums[4 * c + 3] as i32);
            let q = _mm256_loadu_si256(x.add(16 + 32 * c) as *const __m256i);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            let ylo = _mm256_loadu_si256(y.qs.as_ptr().add(64 * c) as *const __m256i);
            let yhi = _mm256_loadu_si256(y.qs.as_ptr().add(64 * c + 32) as *const __m256i);
            let plo = _mm256_madd_epi16(
                _mm256_maddubs_epi16(lo, ylo),
                _mm256_set1_epi16(sc_lo as i16),
            );
            let phi = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, yhi),
                _mm256_set1_epi16(sc_hi as i16),
            );
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(plo, phi));
        }
        let isum = hsum_i32(acc);
        let d = y.d * le_f16(blk, 0);
        let dmin = y.d * le_f16(blk, 2);
        sumf.add(d * isum as f32 - dmin * summs as f32);
    }
    sumf.finish()
}

/// IQ2_XXS x Q8_K (scalar: `scalar::iq2_xxs`).
///
/// The signed grid bytes `sg` (|v| <= 43) are built with xor/sub against
/// `KSIGNS_MASK64`. `maddubs` needs one unsigned operand, and negating the
/// activation instead (the usual `sign` trick) is wrong for -128 codes, so
/// the activation is biased: `(q + 128) * sg` pair sums are at most
/// 2 * 255 * 43 < 2^15 (exact), and subtracting `128 * (sg pair sums)`
/// recovers `q * sg` exactly (the true value fits i16, so wrapping i16
/// arithmetic is exact). `bsum` stays within i32 (8 * 31 * 32 * 43 * 128).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn iq2_xxs(row: &[u8], y: &[BlockQ8K]) -> f32 {
    let bias = _mm256_set1_epi8(-128);
    let ones = _mm256_set1_epi8(1);
    let mut sumf = LaneSum::new();
    for (bi, y) in y.iter().enumerate() {
        let blk = &row[66 * bi..66 * bi + 66];
        let mut acc = _mm256_setzero_si256();
        for g in 0..8 {
            let a = le_u32(blk, 2 + 8 * g);
            let b = le_u32(blk, 6 + 8 * g);
            let grid = _mm256_set_epi64x(
                IQ2XXS_GRID[(a >> 24) as usize] as i64,
                IQ2XXS_GRID[((a >> 16) & 0xFF) as usize] as i64,
                IQ2XXS_GRID[((a >> 8) & 0xFF) as usize] as i64,
                IQ2XXS_GRID[(a & 0xFF) as usize] as i64,
            );
            let mask = _mm256_set_epi64x(
                KSIGNS_MASK64[((b >> 21) & 127) as usize] as i64,
                KSIGNS_MASK64[((b >> 14) & 127) as usize] as i64,
                KSIGNS_MASK64[((b >> 7) & 127) as usize] as i64,
                KSIGNS_MASK64[(b & 127) as usize] as i64,
            );
            let sg = _mm256_sub_epi8(_mm256_xor_si256(grid, mask), mask);
            let yq = _mm256_loadu_si256(y.qs.as_ptr().add(32 * g) as *const __m256i);
            let biased = _mm256_maddubs_epi16(_mm256_xor_si256(yq, bias), sg);
            let sg_pairs = _mm256_maddubs_epi16(ones, sg);
            let p = _mm256_sub_epi16(biased, _mm256_slli_epi16(sg_pairs, 7));
            let ls = _mm256_set1_epi16(2 * (b >> 28) as i16 + 1);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ls));
        }
        let bsum = hsum_i32(acc);
        let d = le_f16(blk, 0) * y.d;
        sumf.add(d * bsum as f32);
    }
    0.125 * sumf.finish()
}
