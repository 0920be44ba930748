//! The activation round trips that are part of the model's graph
//! (attention.md §6, §12): FP8 E4M3 on the non-RoPE KV dims, Hadamard-128 +
//! FP4 E2M1 on indexer vectors, f16 storage of attention rows.

/// Smallest power of two `>= x` (x > 0, finite): the "ue8m0" scale. Exact,
/// where ds4's `exp2(ceil(log2f(x)))` can land one power low just above a
/// power of two (§6.1 note).
fn pow2_ceil(x: f32) -> f32 {
    let bits = x.to_bits();
    let exp = (bits >> 23) & 0xff;
    let mant = bits & 0x7f_ffff;
    if exp == 0 {
        // Subnormal (or zero): powers of two here are single mantissa bits.
        if mant == 0 || mant.is_power_of_two() {
            return x;
        }
        return f32::from_bits(1 << (32 - mant.leading_zeros()));
    }
    if mant == 0 {
        x
    } else {
        f32::from_bits((exp + 1) << 23)
    }
}

/// Nearest E4M3FN value to `y` (|y| <= 448), ties to the even code.
pub fn e4m3_round(y: f32) -> f32 {
    let a = y.abs();
    // Below 2^-6 the format is subnormal with step 2^-9; above, the step is
    // 2^(e-3) for exponent e.
    let step = if a < 2f32.powi(-6) {
        2f32.powi(-9)
    } else {
        f32::from_bits(((a.to_bits() >> 23) - 3) << 23)
    };
    let r = ((a / step).round_ties_even() * step).min(448.0);
    r.copysign(y)
}

/// FP8 simulation of dims `[0, nope)` in blocks of 64 (§6.1).
pub fn fp8_round_trip(v: &mut [f32], nope: usize) {
    for block in v[..nope].chunks_mut(64) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-4);
        let scale = pow2_ceil(amax / 448.0);
        for x in block {
            *x = e4m3_round((*x / scale).clamp(-448.0, 448.0)) * scale;
        }
    }
}

const E2M1: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// Nearest E2M1 value to `y` (|y| <= 6), ties to the even index.
pub fn e2m1_round(y: f32) -> f32 {
    let a = y.abs();
    let mut best = 0;
    for (i, &v) in E2M1.iter().enumerate().skip(1) {
        let (d_best, d_i) = ((a - E2M1[best]).abs(), (a - v).abs());
        if d_i < d_best || (d_i == d_best && i % 2 == 0) {
            best = i;
        }
    }
    E2M1[best].copysign(y)
}

/// In-place normalized Sylvester–Hadamard transform (len a power of two).
pub fn hadamard(v: &mut [f32]) {
    let n = v.len();
    let mut stride = 1;
    while stride < n {
        for start in (0..n).step_by(2 * stride) {
            for i in start..start + stride {
                let (a, b) = (v[i], v[i + stride]);
                v[i] = a + b;
                v[i + stride] = a - b;
            }
        }
        stride *= 2;
    }
    let s = 1.0 / (n as f32).sqrt();
    for x in v {
        *x *= s;
    }
}

/// Hadamard rotation then FP4 simulation in blocks of 32 (§6.2).
pub fn indexer_round_trip(v: &mut [f32]) {
    hadamard(v);
    for block in v.chunks_mut(32) {
        let amax = block
            .iter()
            .fold(0f32, |m, x| m.max(x.abs()))
            .max(6.0 * f32::MIN_POSITIVE);
        let scale = pow2_ceil(amax / 6.0);
        for x in block {
            *x = e2m1_round((*x / scale).clamp(-6.0, 6.0)) * scale;
        }
    }
}

/// Round to f16 and back (storage precision of attention rows).
pub fn f16_round(v: &mut [f32]) {
    for x in v {
        *x = half::f16::from_f32(*x).to_f32();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow2_ceil_is_exact() {
        assert_eq!(pow2_ceil(1.0), 1.0);
        assert_eq!(pow2_ceil(1.0000001), 2.0);
        assert_eq!(pow2_ceil(0.3), 0.5);
        assert_eq!(pow2_ceil(100.0 / 448.0), 0.25);
        assert_eq!(pow2_ceil(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
        assert_eq!(pow2_ceil(6.0 * f32::MIN_POSITIVE / 6.0), f32::MIN_POSITIVE);
    }

    /// The worked examples of §6.1 (block amax 100 → scale 0.25).
    #[test]
    fn fp8_examples() {
        let mut v = vec![0f32; 64];
        let cases = [
            (1.0, 1.0),
            (-0.3, -0.3125),
            (0.123, 0.125),
            (2.9, 3.0),
            (-7.25, -7.0),
            (100.0, 96.0),
            (2f32.powi(-10), 2f32.powi(-10)),
        ];
        for (i, (x, _)) in cases.iter().enumerate() {
            v[i] = *x;
        }
        fp8_round_trip(&mut v, 64);
        for (i, (x, want)) in cases.iter().enumerate() {
            assert_eq!(v[i], *want, "{x}");
        }
    }

    #[test]
    fn fp4_examples() {
        for (x, want) in [
            (0.25, 0.0),
            (0.75, 1.0),
            (1.25, 1.0),
            (2.5, 2.0),
            (5.0, 4.0),
            (-3.3, -3.0),
            (6.0, 6.0),
        ] {
            assert_eq!(e2m1_round(x), want, "{x}");
        }
    }

    #[test]
    fn hadamard_is_an_involution() {
        let orig: Vec<f32> = (0..128)
            .map(|i| ((i * 29 % 61) as f32 - 30.0) / 7.0)
            .collect();
        let mut v = orig.clone();
        hadamard(&mut v);
        hadamard(&mut v);
        for (a, b) in v.iter().zip(&orig) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
