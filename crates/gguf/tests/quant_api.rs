//! Error handling and cross-cutting behaviour of the public `gguf::quant`
//! API: malformed sizes are errors (never panics), parallel paths equal
//! serial ones, and the plain types round-trip.

use gguf::quant::{
    dequantize, quantize, quantize_q8_k, synthetic_importance, Activation, QuantError,
};
use gguf::GgmlType;

fn xs(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + 13) % 2001) as f32 - 1000.0) * 1e-3)
        .collect()
}

#[test]
fn dequantize_rejects_bad_input() {
    let mut out = vec![0.0f32; 256];
    assert!(matches!(
        dequantize(GgmlType::Q3K, &[0; 110], &mut out),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(matches!(
        dequantize(GgmlType::Q2K, &[0; 83], &mut out),
        Err(QuantError::SizeMismatch { .. })
    ));
    assert!(matches!(
        dequantize(GgmlType::Q2K, &[0; 84], &mut out[..255]),
        Err(QuantError::NotBlockMultiple { .. })
    ));
    assert!(matches!(
        dequantize(GgmlType::F32, &[0; 3], &mut out[..1]),
        Err(QuantError::SizeMismatch { .. })
    ));
    assert!(dequantize(GgmlType::Q2K, &[], &mut []).is_ok());
}

#[test]
fn quantize_rejects_bad_input() {
    let x = xs(512);
    assert!(matches!(
        quantize(GgmlType::Mxfp4, &x, 512, None),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(matches!(
        quantize(GgmlType::Q4K, &x, 0, None),
        Err(QuantError::NotBlockMultiple { .. })
    ));
    assert!(matches!(
        quantize(GgmlType::Q4K, &x, 128, None),
        Err(QuantError::NotBlockMultiple { .. })
    ));
    assert!(matches!(
        quantize(GgmlType::Q8_0, &x[..500], 64, None),
        Err(QuantError::SizeMismatch { .. })
    ));
    assert!(matches!(
        quantize(GgmlType::Q2K, &x, 256, Some(&[1.0; 255])),
        Err(QuantError::SizeMismatch { .. })
    ));
}

#[test]
fn iq2_xxs_default_importance_is_synthetic() {
    let x = xs(4 * 512);
    let imp = synthetic_importance(&x, 512);
    assert_eq!(imp.len(), 512);
    let mut c0 = 0.0f32;
    for r in 0..4 {
        c0 += x[r * 512] * x[r * 512];
    }
    assert_eq!(imp[0], c0);
    assert_eq!(
        quantize(GgmlType::Iq2Xxs, &x, 512, None).unwrap(),
        quantize(GgmlType::Iq2Xxs, &x, 512, Some(&imp)).unwrap()
    );
}

#[test]
fn parallel_dequantize_equals_blockwise() {
    // Large enough for the parallel path; compare with block-by-block calls.
    let x = xs(1 << 18);
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q4K,
        GgmlType::Iq2Xxs,
    ] {
        let q = quantize(ty, &x, 4096, None).unwrap();
        let mut all = vec![0.0f32; x.len()];
        dequantize(ty, &q, &mut all).unwrap();
        let (be, bb) = (ty.block_elems(), ty.block_bytes());
        let mut one = vec![0.0f32; be];
        for (b, blk) in q.chunks_exact(bb).enumerate().step_by(97) {
            dequantize(ty, blk, &mut one).unwrap();
            assert_eq!(&all[b * be..(b + 1) * be], &one[..], "{ty} block {b}");
        }
    }
}

#[test]
fn plain_types_round_trip() {
    let x = xs(64);
    let mut y = vec![0.0f32; 64];
    let q = quantize(GgmlType::F32, &x, 64, None).unwrap();
    dequantize(GgmlType::F32, &q, &mut y).unwrap();
    assert_eq!(x, y);
    for ty in [GgmlType::F16, GgmlType::Bf16] {
        let q = quantize(ty, &x, 32, None).unwrap();
        assert_eq!(q.len(), 128);
        dequantize(ty, &q, &mut y).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= a.abs() * 4e-3, "{ty}: {a} vs {b}");
        }
    }
    let ints: Vec<u8> = [-3i32, 0, 1 << 30]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut y = [0.0f32; 3];
    dequantize(GgmlType::I32, &ints, &mut y).unwrap();
    assert_eq!(y, [-3.0, 0.0, (1u32 << 30) as f32]);
}

#[test]
fn q8_k_bytes_decode_to_activation_values() {
    let x = xs(512);
    let blocks = quantize_q8_k(&x).unwrap();
    let bytes: Vec<u8> = blocks.iter().flat_map(|b| b.to_bytes()).collect();
    let mut y = vec![0.0f32; 512];
    dequantize(GgmlType::Q8K, &bytes, &mut y).unwrap();
    assert_eq!(y, Activation::Q8K(blocks).dequantize());
}

/// Non-finite input gives unspecified blocks (as in C) but never a panic.
#[test]
fn non_finite_input_does_not_panic() {
    let mut x = xs(512);
    x[3] = f32::NAN;
    x[300] = f32::INFINITY;
    x[301] = f32::NEG_INFINITY;
    let mut all_nan = vec![f32::NAN; 512];
    all_nan[0] = 1.0;
    let imp = vec![1.0f32; 512];
    for input in [&x, &all_nan] {
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4K,
            GgmlType::Q2K,
            GgmlType::Iq2Xxs,
            GgmlType::F16,
            GgmlType::Bf16,
        ] {
            for w in [None, Some(&imp[..])] {
                let q = quantize(ty, input, 512, w).unwrap();
                let mut y = vec![0.0f32; 512];
                dequantize(ty, &q, &mut y).unwrap();
            }
        }
        let _ = Activation::quantize_for(GgmlType::Q2K, input).unwrap();
        let _ = Activation::quantize_for(GgmlType::Q8_0, input).unwrap();
    }
}
