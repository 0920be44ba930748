//! Scalar conversions and rounding helpers of spec §1.
//!
//! Every quantizer and kernel in this module tree builds on these, so they
//! are written to reproduce the C reference exactly: a 1-ulp difference in a
//! scale changes whole blocks of quantizer output (§4.8).

use half::f16;

/// f32 -> IEEE binary16 bits, round-to-nearest-even, subnormals produced,
/// overflow to ±inf (§1).
///
/// NaN becomes `sign | 0x7E00` (ggml's canonical quiet NaN) rather than the
/// payload-preserving pattern of the `half` crate, so quantized files do not
/// depend on NaN payloads.
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    if x.is_nan() {
        let sign = ((x.to_bits() >> 16) & 0x8000) as u16;
        return sign | 0x7E00;
    }
    f16::from_f32(x).to_bits()
}

/// Exact binary16 -> f32 (subnormals, infinities; NaN payloads kept and
/// quieted, as F16C and the `half` crate do).
///
/// Hand-written rather than `half::f16::to_f32`, which checks for F16C at
/// run time on every call; that dominated the F16 decoder and the per-block
/// scale loads of the kernels. Normal halves are rebiased with integer ops;
/// subnormal halves (common for Q4_K/Q2_K `dmin`) are converted as
/// `m * 2^-24` from a normal f32, because a float op on an f32 subnormal
/// costs a ~100-cycle microcode assist on x86.
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let em = (h & 0x7FFF) as u32;
    // All three candidates are computed unconditionally so the selects
    // vectorize in slice loops.
    let man = (em & 0x3FF) << 13;
    let special = 0x7F80_0000 | man | (((man != 0) as u32) << 22);
    let normal = (em << 13) + ((127 - 15) << 23);
    let subnormal = (em as f32 * f32::from_bits(0x3380_0000)).to_bits();
    let bits = if em >= 0x7C00 {
        special
    } else if em >= 0x0400 {
        normal
    } else {
        subnormal
    };
    f32::from_bits(sign | bits)
}

/// f32 -> bf16 bits with ggml's rounding (§1): RNE via the `0x7FFF + lsb`
/// trick, NaN quieted by setting bit 6 of the result.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if (bits & 0x7FFF_FFFF) > 0x7F80_0000 {
        return ((bits >> 16) | 0x0040) as u16;
    }
    (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

/// Exact bf16 -> f32.
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// ggml's `nearest_int` (§1): round half to even through the 1.5·2^23 trick.
///
/// Kept in this form instead of `round_ties_even` so that out-of-range input
/// (|v| > 4194303, NaN) yields the same garbage as the C code instead of a
/// saturated value; within range both agree.
#[inline]
pub fn nearest_int(v: f32) -> i32 {
    let t = v + 12_582_912.0f32;
    (t.to_bits() & 0x007F_FFFF) as i32 - 0x0040_0000
}

/// `ggml_e8m0_to_fp32_half`: 2^(e-128) as f32, the MXFP4 block scale halved
/// because the E2M1 value table is stored doubled (ggml-impl.h).
#[inline]
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

/// Little-endian u16 at `off`; the mapped file gives no alignment guarantee,
/// so fields are always decoded from bytes.
#[inline]
pub(crate) fn le_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

#[inline]
pub(crate) fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The f16 at byte offset `off`, widened exactly.
#[inline]
pub(crate) fn le_f16(b: &[u8], off: usize) -> f32 {
    f16_to_f32(le_u16(b, off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_edge_cases() {
        assert_eq!(f32_to_f16(0.0), 0x0000);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
        assert_eq!(f32_to_f16(65504.0), 0x7BFF);
        // Halfway between 65504 and 65536 rounds to even, i.e. overflows.
        assert_eq!(f32_to_f16(65520.0), 0x7C00);
        assert_eq!(f32_to_f16(f32::INFINITY), 0x7C00);
        assert_eq!(f32_to_f16(f32::NEG_INFINITY), 0xFC00);
        assert_eq!(f32_to_f16(f32::NAN), 0x7E00);
        assert_eq!(f32_to_f16(f32::from_bits(0xFFC0_1234)), 0xFE00);
        // Smallest subnormal and the tie just below it.
        assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001);
        assert_eq!(f32_to_f16(2.980_232_2e-8), 0x0000);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert!(f16_to_f32(0x7E00).is_nan());
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            assert_eq!(
                f.to_bits(),
                f16::from_bits(h).to_f32().to_bits(),
                "{h:#06x}"
            );
            if !f.is_nan() {
                assert_eq!(f32_to_f16(f), h, "round trip of {h:#06x}");
            }
        }
    }

    #[test]
    fn bf16_rounding() {
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 is a tie: rounds to even (down); 1 + 3*2^-8 rounds up.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7F80_0001)), 0x7FC0);
        assert_eq!(f32_to_bf16(f32::from_bits(0xFF80_0001)), 0xFFC0);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7F80);
        assert_eq!(bf16_to_f32(0x3F80), 1.0);
    }

    #[test]
    fn nearest_int_is_half_even() {
        for (v, want) in [
            (0.5f32, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-2.5, -2),
            (3.49, 3),
            (-4194303.0, -4194303),
            (4194303.0, 4194303),
        ] {
            assert_eq!(nearest_int(v), want, "{v}");
            assert_eq!(v.round_ties_even() as i32, want);
        }
    }

    #[test]
    fn e8m0_half_is_two_to_e_minus_128() {
        for e in 0..=255u8 {
            let want = 2f64.powi(e as i32 - 128);
            assert_eq!(e8m0_to_f32_half(e) as f64, want, "e={e}");
        }
    }
}
