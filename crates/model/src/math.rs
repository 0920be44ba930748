//! The transcendental functions of the forward pass, written with IEEE
//! additions, multiplications, divisions and bit operations only, so the
//! CUDA kernels (`kernels/math.cu`, the same operations in the same order)
//! produce the same bits as the CPU. Library `exp`, `log1p` and `sin`
//! differ between libm and CUDA in the last bit, and the model amplifies a
//! last-bit difference into a different token (model.md §11.10).
//!
//! Accuracy: `exp` and `softplus` within 2 ulp of the exact value, `sin_cos`
//! correctly rounded except in rare near-halfway cases (it runs in f64);
//! the tests check these bounds against f64 references.

/// `e^x` in f32: `x = n·ln2 + r` with Cody–Waite ln2 (`n·LN2_HI` exact for
/// |n| <= 255), `e^r` by its degree-7 Taylor polynomial on |r| <= ln2/2
/// (truncation below 2^-27), scaled by `2^n` in two exact power-of-two
/// factors so that only the last multiplication rounds.
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75; // 0x3f317200: 16 significant bits
    const LN2_LO: f32 = 1.428_606_8e-6; // ln2 - LN2_HI
    const C: [f32; 8] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
    ];
    if x.is_nan() {
        return x;
    }
    if x > 88.8 {
        return f32::INFINITY;
    }
    if x < -104.0 {
        return 0.0;
    }
    let n = (x * LOG2E).round_ties_even();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = C[7];
    for &c in C[..7].iter().rev() {
        p = p * r + c;
    }
    let n = n as i32;
    let n1 = n / 2;
    p * pow2(n1) * pow2(n - n1)
}

/// `2^e` for e in [-126, 127], exactly.
fn pow2(e: i32) -> f32 {
    f32::from_bits(((e + 127) as u32) << 23)
}

/// `ln(1 + e^z)`, the router's softplus (model.md §7.1): `z` itself above
/// 20, `e^z` below -20, else `ln(u)·(y/(u-1))` with `y = e^z`, `u = 1+y`
/// (the classic accurate log1p).
pub fn softplus(z: f32) -> f32 {
    if z > 20.0 {
        return z;
    }
    let y = exp(z);
    if z < -20.0 {
        return y;
    }
    let u = 1.0 + y;
    if u == 1.0 {
        return y;
    }
    ln(u) * (y / (u - 1.0))
}

/// `ln(u)` for finite u >= 1 (what softplus needs): `u = 2^e·(1+f)` with
/// 1+f in [√½, √2), then fdlibm's form `ln(1+f) = f - (f²/2 - s·(f²/2 +
/// R))`, `s = f/(2+f)`, R the atanh series in s² to s^10 (|s| <= 0.172:
/// truncation below 2^-30), which keeps small results accurate.
fn ln(u: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let bits = u.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let mut r = 2.0 / 11.0;
    for c in [2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0] {
        r = r * z + c;
    }
    let r = z * r;
    let hfsq = 0.5 * f * f;
    let ln_m = f - (hfsq - s * (hfsq + r));
    let e = e as f32;
    e * LN2_HI + (ln_m + e * LN2_LO)
}

/// `(sin θ, cos θ)` rounded to f32, computed in f64: θ reduced by π/2 in
/// three Cody–Waite parts (fdlibm's 33-bit splits, so `k·PIO2_1` and
/// `k·PIO2_2` are exact for |k| < 2^20, i.e. every RoPE angle of a 1M
/// context), then degree-13/14 Taylor polynomials on |r| <= π/4.
pub fn sin_cos(theta: f32) -> (f32, f32) {
    const TWO_OVER_PI: f64 = std::f64::consts::FRAC_2_PI;
    const PIO2_1: f64 = 1.570_796_326_734_125_6; // first 33 bits of π/2
    const PIO2_2: f64 = 6.077_100_506_303_966e-11; // next 33 bits
    const PIO2_3: f64 = 2.022_266_248_795_950_6e-21; // the rest
    if !theta.is_finite() {
        return (f32::NAN, f32::NAN);
    }
    let t = f64::from(theta);
    let k = (t * TWO_OVER_PI).round_ties_even();
    let r = ((t - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    let r2 = r * r;
    let sin_r = sin_poly(r, r2);
    let cos_r = cos_poly(r2);
    let (sin, cos) = match (k as i64).rem_euclid(4) {
        0 => (sin_r, cos_r),
        1 => (cos_r, -sin_r),
        2 => (-sin_r, -cos_r),
        _ => (-cos_r, sin_r),
    };
    (sin as f32, cos as f32)
}

/// `sin r` for |r| <= π/4: `r + r·r²·(-1/3! + r²/5! - ... - r¹²/15!)`.
fn sin_poly(r: f64, r2: f64) -> f64 {
    const C: [f64; 7] = [
        -1.0 / 6.0,
        1.0 / 120.0,
        -1.0 / 5040.0,
        1.0 / 362_880.0,
        -1.0 / 39_916_800.0,
        1.0 / 6_227_020_800.0,
        -1.0 / 1_307_674_368_000.0,
    ];
    let mut p = C[6];
    for &c in C[..6].iter().rev() {
        p = p * r2 + c;
    }
    r + r * r2 * p
}

/// `cos r` for |r| <= π/4: `1 + r²·(-1/2! + r²/4! - ... + r¹⁴/16!)`.
fn cos_poly(r2: f64) -> f64 {
    const C: [f64; 8] = [
        -0.5,
        1.0 / 24.0,
        -1.0 / 720.0,
        1.0 / 40_320.0,
        -1.0 / 3_628_800.0,
        1.0 / 479_001_600.0,
        -1.0 / 87_178_291_200.0,
        1.0 / 20_922_789_888_000.0,
    ];
    let mut p = C[7];
    for &c in C[..7].iter().rev() {
        p = p * r2 + c;
    }
    1.0 + r2 * p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    fn grid(lo: f32, hi: f32, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |i| lo + (hi - lo) * (i as f32 / n as f32))
    }

    #[test]
    fn exp_within_2_ulp() {
        for x in grid(-87.0, 88.0, 200_000).chain([0.0, -0.0, 1.0, -1.0, 1e-8]) {
            let want = f64::from(x).exp() as f32;
            assert!(ulps(exp(x), want) <= 2, "exp({x}) = {} want {want}", exp(x));
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        // Subnormal results: within one subnormal step.
        for x in grid(-103.0, -88.0, 1000) {
            let want = f64::from(x).exp() as f32;
            assert!(ulps(exp(x), want) <= 2, "exp({x})");
        }
    }

    #[test]
    fn softplus_within_2_ulp() {
        for z in grid(-30.0, 30.0, 100_000) {
            let want = f64::from(z).exp().ln_1p() as f32;
            assert!(
                ulps(softplus(z), want) <= 2,
                "softplus({z}) = {} want {want}",
                softplus(z)
            );
        }
    }

    #[test]
    fn sin_cos_within_1_ulp_up_to_a_million_radians() {
        let mut x = 0x1234_5678u32;
        let angles = (0..200_000).map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mag = [1.0f32, 10.0, 1e3, 1e5, 1.05e6][i % 5];
            (x as f32 / u32::MAX as f32 * 2.0 - 1.0) * mag
        });
        for t in angles.chain([0.0, 1.0, std::f32::consts::FRAC_PI_2, 1e6]) {
            let (s, c) = sin_cos(t);
            let (ws, wc) = f64::from(t).sin_cos();
            assert!(ulps(s, ws as f32) <= 1, "sin({t}) = {s} want {ws}");
            assert!(ulps(c, wc as f32) <= 1, "cos({t}) = {c} want {wc}");
        }
    }
}
