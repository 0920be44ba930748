//! Dot kernels: AVX2 == scalar bit for bit on arbitrary inputs, and every
//! kernel == dequantize(weights) . dequantize(activation) within a rounding
//! bound (spec §5.7).

use gguf::quant::{
    dequantize, matvec_with, quantize, quantize_q8_k, vec_dot_with, ActQ8_0, Activation, BlockQ8K,
    Isa, QuantError,
};
use gguf::GgmlType;
use proptest::prelude::*;

const KERNEL_TYPES: [GgmlType; 5] = [
    GgmlType::Q8_0,
    GgmlType::Mxfp4,
    GgmlType::Q2K,
    GgmlType::Q4K,
    GgmlType::Iq2Xxs,
];

/// Deterministic pseudo-random numbers (xorshift) so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Roughly normal (sum of uniforms), scaled.
    fn normal(&mut self, scale: f32) -> f32 {
        let s: f32 = (0..4)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32)
            .sum();
        (s - 2.0) * scale
    }
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Arbitrary weight bytes with finite f16/E8M0 scales patched in, so the
/// comparison exercises every code pattern (including -128 codes, which
/// the common `maddubs`+`sign` trick gets wrong).
fn random_row(ty: GgmlType, blocks: usize, bytes: &[u8], scale_bits: &[u16]) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut row: Vec<u8> = bytes.iter().cycle().take(blocks * bb).copied().collect();
    let offs: &[usize] = match ty {
        GgmlType::Q8_0 | GgmlType::Iq2Xxs => &[0],
        GgmlType::Q4K => &[0, 2],
        GgmlType::Q2K => &[80, 82],
        _ => &[],
    };
    for (b, blk) in row.chunks_exact_mut(bb).enumerate() {
        for (k, &off) in offs.iter().enumerate() {
            // Clear the f16 exponent's top bit: finite and at most 2.
            let h = scale_bits[(b * 2 + k) % scale_bits.len()] & 0xBFFF;
            blk[off..off + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    row
}

fn random_q8k(blocks: usize, qs: &[i8], bsums: &[i16], d: &[f32]) -> Vec<BlockQ8K> {
    (0..blocks)
        .map(|b| {
            let mut blk = BlockQ8K::ZERO;
            for (i, q) in blk.qs.iter_mut().enumerate() {
                *q = qs[(b * 256 + i) % qs.len()];
            }
            for (i, s) in blk.bsums.iter_mut().enumerate() {
                *s = bsums[(b * 16 + i) % bsums.len()];
            }
            blk.d = d[b % d.len()];
            blk
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn avx2_equals_scalar(
        blocks in 1usize..20,
        bytes in prop::collection::vec(any::<u8>(), 1..600),
        scale_bits in prop::collection::vec(any::<u16>(), 1..64),
        qs in prop::collection::vec(any::<i8>(), 1..700),
        bsums in prop::collection::vec(any::<i16>(), 1..40),
        d in prop::collection::vec(-1e3f32..1e3, 1..8),
    ) {
        prop_assume!(Isa::Avx2.is_available());
        for ty in KERNEL_TYPES {
            let per = ty.block_elems();
            let (act, nb) = if per == 32 {
                let nb = blocks * 8;
                let codes: Vec<i8> = qs.iter().cycle().take(nb * 32).copied().collect();
                let scales: Vec<f32> = d.iter().cycle().take(nb).copied().collect();
                (Activation::Q8_0(ActQ8_0::from_parts(nb * 32, codes, scales).unwrap()), nb)
            } else {
                (Activation::Q8K(random_q8k(blocks, &qs, &bsums, &d)), blocks)
            };
            let row = random_row(ty, nb, &bytes, &scale_bits);
            let s = vec_dot_with(Isa::Scalar, ty, &row, &act).unwrap();
            let v = vec_dot_with(Isa::Avx2, ty, &row, &act).unwrap();
            prop_assert!(same(s, v), "{}: scalar {:e} ({:#x}) avx2 {:e} ({:#x})", ty, s, s.to_bits(), v, v.to_bits());
        }
    }

    /// The block-count tail of the 8-block AVX2 batching (Q8_0, MXFP4).
    #[test]
    fn avx2_equals_scalar_odd_block_counts(
        nb in 1usize..40,
        bytes in prop::collection::vec(any::<u8>(), 17..300),
        x in prop::collection::vec(-10f32..10.0, 32..64),
    ) {
        prop_assume!(Isa::Avx2.is_available());
        let xs: Vec<f32> = x.iter().cycle().take(nb * 32).copied().collect();
        let act = ActQ8_0::quantize(&xs);
        for ty in [GgmlType::Q8_0, GgmlType::Mxfp4] {
            let row = random_row(ty, nb, &bytes, &[0x3C00, 0x1234, 0x0001]);
            let s = vec_dot_with(Isa::Scalar, ty, &row, &act).unwrap();
            let v = vec_dot_with(Isa::Avx2, ty, &row, &act).unwrap();
            prop_assert!(same(s, v), "{} nb={}: {} vs {}", ty, nb, s, v);
        }
    }
}

/// Realistic weights: quantized from random values (MXFP4 has no quantizer
/// here, so random nibbles with a spread of exponents).
fn weights(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    if ty == GgmlType::Mxfp4 {
        let mut w = vec![0u8; rows * cols / 32 * 17];
        for blk in w.chunks_exact_mut(17) {
            blk[0] = 118 + (rng.next() % 12) as u8;
            for b in &mut blk[1..] {
                *b = rng.next() as u8;
            }
        }
        return w;
    }
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.normal(0.02)).collect();
    quantize(ty, &x, cols, None).unwrap()
}

/// f64 reference and the magnitude that bounds its rounding error. For the
/// K types the min term cancels against the scale term, so the magnitude
/// includes `sum |min_k * a_k|` (obtained by decoding with d = 0).
fn reference(ty: GgmlType, row: &[u8], a: &[f32]) -> (f64, f64) {
    let n = a.len();
    let mut w = vec![0.0f32; n];
    dequantize(ty, row, &mut w).unwrap();
    let dot: f64 = w.iter().zip(a).map(|(&w, &a)| w as f64 * a as f64).sum();
    let mut mag: f64 = w
        .iter()
        .zip(a)
        .map(|(&w, &a)| (w as f64 * a as f64).abs())
        .sum();
    let d_off = match ty {
        GgmlType::Q2K => Some(80),
        GgmlType::Q4K => Some(0),
        _ => None,
    };
    if let Some(off) = d_off {
        let mut r = row.to_vec();
        for blk in r.chunks_exact_mut(ty.block_bytes()) {
            blk[off..off + 2].fill(0);
        }
        dequantize(ty, &r, &mut w).unwrap();
        mag += w
            .iter()
            .zip(a)
            .map(|(&w, &a)| (w as f64 * a as f64).abs())
            .sum::<f64>();
    }
    (dot, mag)
}

#[test]
fn kernels_match_dequantized_dot() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let cols = 4096;
    for ty in KERNEL_TYPES {
        let rows = 24;
        let w = weights(ty, rows, cols, &mut rng);
        let row_bytes = w.len() / rows;
        for r in 0..rows {
            let x: Vec<f32> = (0..cols).map(|_| rng.normal(1.0 + r as f32)).collect();
            let act = Activation::quantize_for(ty, &x).unwrap();
            let a = act.dequantize();
            let row = &w[r * row_bytes..(r + 1) * row_bytes];
            let (want, mag) = reference(ty, row, &a);
            for isa in [Isa::Scalar, Isa::Avx2] {
                if !isa.is_available() {
                    continue;
                }
                let got = vec_dot_with(isa, ty, row, &act).unwrap() as f64;
                let bound = 1e-5 * mag + 1e-30;
                assert!(
                    (got - want).abs() <= bound,
                    "{ty} {isa:?} row {r}: got {got:e} want {want:e} (bound {bound:e})"
                );
            }
        }
    }
}

/// Row counts below, at and beyond one rayon task's minimum length.
#[test]
fn matvec_equals_rowwise_dot() {
    let mut rng = Rng(42);
    let cols = 512;
    for rows in [1, 6, 67, 70] {
        for ty in KERNEL_TYPES {
            let w = weights(ty, rows, cols, &mut rng);
            let x: Vec<f32> = (0..cols).map(|_| rng.normal(1.0)).collect();
            let act = Activation::quantize_for(ty, &x).unwrap();
            let row_bytes = w.len() / rows;
            for isa in [Isa::Scalar, Isa::Avx2] {
                if !isa.is_available() {
                    continue;
                }
                let mut out = vec![0.0f32; rows];
                matvec_with(isa, ty, &w, rows, cols, &act, &mut out).unwrap();
                for (r, &o) in out.iter().enumerate() {
                    let d = vec_dot_with(isa, ty, &w[r * row_bytes..(r + 1) * row_bytes], &act)
                        .unwrap();
                    assert_eq!(o.to_bits(), d.to_bits(), "{ty} {isa:?} rows {rows} row {r}");
                }
            }
        }
    }
}

#[test]
fn bad_sizes_are_errors() {
    let act = Activation::quantize_for(GgmlType::Q2K, &[0.5; 512]).unwrap();
    let row = vec![0u8; 2 * 84];
    assert!(vec_dot_with(Isa::Scalar, GgmlType::Q2K, &row, &act).is_ok());
    assert!(matches!(
        vec_dot_with(Isa::Scalar, GgmlType::Q2K, &row[..100], &act),
        Err(QuantError::SizeMismatch { .. })
    ));
    assert!(matches!(
        vec_dot_with(Isa::Scalar, GgmlType::Q8_0, &row, &act),
        Err(QuantError::ActivationMismatch { .. })
    ));
    assert!(matches!(
        vec_dot_with(Isa::Scalar, GgmlType::F16, &row, &act),
        Err(QuantError::Unsupported { .. })
    ));
    let mut out = vec![0.0; 3];
    assert!(matvec_with(
        Isa::Scalar,
        GgmlType::Q2K,
        &row,
        1,
        512,
        &act,
        &mut out[..1]
    )
    .is_ok());
    assert!(matches!(
        matvec_with(Isa::Scalar, GgmlType::Q2K, &row, 2, 512, &act, &mut out),
        Err(QuantError::SizeMismatch { .. })
    ));
    assert!(matches!(
        matvec_with(
            Isa::Scalar,
            GgmlType::Q2K,
            &row,
            2,
            512,
            &act,
            &mut out[..2]
        ),
        Err(QuantError::SizeMismatch { .. })
    ));
    assert!(matches!(
        matvec_with(
            Isa::Scalar,
            GgmlType::Q2K,
            &row,
            2,
            256,
            &act,
            &mut out[..2]
        ),
        Err(QuantError::SizeMismatch { .. })
    ));
    assert!(matches!(
        matvec_with(
            Isa::Scalar,
            GgmlType::Q2K,
            &row,
            2,
            300,
            &act,
            &mut out[..2]
        ),
        Err(QuantError::NotBlockMultiple { .. })
    ));
    assert!(quantize_q8_k(&[0.0; 100]).is_err());
    if !Isa::Avx2.is_available() {
        assert_eq!(
            vec_dot_with(Isa::Avx2, GgmlType::Q2K, &row, &act),
            Err(QuantError::IsaUnavailable(Isa::Avx2))
        );
    }
}
