//! Scalar reference kernels (spec §5.3-§5.6 and the MXFP4 analogue of §5.3).
//!
//! These define the engine's results: integer parts exact, each block's
//! float term formed as in §5, and the terms summed in lane order
//! (`crate::order`), the order the GPU kernels use, so both backends give
//! the same bits (ds4's scalar kernels sum the terms sequentially instead).
//! The AVX2 kernels are tested to be bit-identical to them.
//! Callers (`super`) have validated that `row` holds exactly one weight block
//! per activation block.

// Index loops mirror the C reference and the spec's pseudocode line by
// line, which is how their evaluation order is reviewed.
#![allow(clippy::needless_range_loop)]

use crate::order::LaneSum;
use crate::quant::activation::BlockQ8K;
use crate::quant::dequant::q4_k_scale_min;
use crate::quant::float::{e8m0_to_f32_half, le_f16, le_u32};
use crate::quant::tables::{IQ2XXS_GRID, KSIGNS, KVALUES_MXFP4};

/// §5.3: the term `(wd * scale) * isum` per 32-block.
pub(crate) fn q8_0(row: &[u8], qs: &[i8], scales: &[f32]) -> f32 {
    let mut acc = LaneSum::new();
    for ((w, a), &s) in row.chunks_exact(34).zip(qs.chunks_exact(32)).zip(scales) {
        let isum: i32 = w[2..34]
            .iter()
            .zip(a)
            .map(|(&w, &a)| (w as i8) as i32 * a as i32)
            .sum();
        acc.add(le_f16(w, 0) * s * isum as f32);
    }
    acc.finish()
}

/// MXFP4 weights x ds4 Q8_0 activation: like §5.3 with the E8M0 half scale
/// in place of the f16 one, the term `(half_e8m0(e) * scale) * isum`.
pub(crate) fn mxfp4(row: &[u8], qs: &[i8], scales: &[f32]) -> f32 {
    let mut acc = LaneSum::new();
    for ((w, a), &s) in row.chunks_exact(17).zip(qs.chunks_exact(32)).zip(scales) {
        let mut isum = 0i32;
        for j in 0..16 {
            let q = w[1 + j];
            isum += KVALUES_MXFP4[(q & 15) as usize] as i32 * a[j] as i32;
            isum += KVALUES_MXFP4[(q >> 4) as usize] as i32 * a[j + 16] as i32;
        }
        acc.add(e8m0_to_f32_half(w[0]) * s * isum as f32);
    }
    acc.finish()
}

/// §5.4: Q2_K x Q8_K, min term through the bsums identity.
pub(crate) fn q2_k(row: &[u8], y: &[BlockQ8K]) -> f32 {
    let mut sumf = LaneSum::new();
    for (x, y) in row.chunks_exact(84).zip(y) {
        let (scales, qs) = (&x[0..16], &x[16..80]);
        let mut summs = 0i32;
        for j in 0..16 {
            summs += y.bsums[j] as i32 * (scales[j] >> 4) as i32;
        }
        let mut isum = 0i32;
        for s in 0..16 {
            let (h, j, half) = (s / 8, (s % 8) / 2, s % 2);
            let mut sub = 0i32;
            for l in 0..16 {
                let b = qs[32 * h + 16 * half + l];
                let k = 128 * h + 32 * j + 16 * half + l;
                sub += ((b >> (2 * j)) & 3) as i32 * y.qs[k] as i32;
            }
            isum += (scales[s] & 15) as i32 * sub;
        }
        let dall = y.d * le_f16(x, 80);
        let dmin = y.d * le_f16(x, 82);
        sumf.add(dall * isum as f32 - dmin * summs as f32);
    }
    sumf.finish()
}

/// §5.5: Q4_K x Q8_K. ds4 has no CPU Q4_K kernel; this uses the CUDA
/// per-block formula.
pub(crate) fn q4_k(row: &[u8], y: &[BlockQ8K]) -> f32 {
    let mut sumf = LaneSum::new();
    for (x, y) in row.chunks_exact(144).zip(y) {
        let (scales, qs) = (&x[4..16], &x[16..144]);
        let mut summs = 0i32;
        let mut isum = 0i32;
        for j in 0..8 {
            let (sc, m) = q4_k_scale_min(scales, j);
            summs += m as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
            let q = &qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            let mut sub = 0i32;
            for i in 0..32 {
                sub += ((q[i] >> shift) & 15) as i32 * y.qs[32 * j + i] as i32;
            }
            isum += sc as i32 * sub;
        }
        let d = y.d * le_f16(x, 0);
        let dmin = y.d * le_f16(x, 2);
        sumf.add(d * isum as f32 - dmin * summs as f32);
    }
    sumf.finish()
}

/// §5.6 (x86 scalar structure): integer `bsum` per block, one float
/// term per block, the 1/8 of `(2ls+1)/8` applied once at the end.
pub(crate) fn iq2_xxs(row: &[u8], y: &[BlockQ8K]) -> f32 {
    let mut sumf = LaneSum::new();
    for (x, y) in row.chunks_exact(66).zip(y) {
        let d = le_f16(x, 0) * y.d;
        let mut bsum = 0i32;
        for g in 0..8 {
            let a = le_u32(x, 2 + 8 * g);
            let b = le_u32(x, 6 + 8 * g);
            let ls = 2 * (b >> 28) as i32 + 1;
            let mut sumi = 0i32;
            for i in 0..4 {
                let grid = IQ2XXS_GRID[((a >> (8 * i)) & 0xFF) as usize];
                let signs = KSIGNS[((b >> (7 * i)) & 127) as usize];
                for j in 0..8 {
                    let gv = ((grid >> (8 * j)) & 0xFF) as i32;
                    let v = if (signs >> j) & 1 == 1 { -gv } else { gv };
                    sumi += v * y.qs[32 * g + 8 * i + j] as i32;
                }
            }
            bsum += sumi * ls;
        }
        sumf.add(d * bsum as f32);
    }
    0.125 * sumf.finish()
}
