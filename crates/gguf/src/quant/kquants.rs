//! Weight quantizers for Q8_0, Q4_K and Q2_K (spec §4.1-§4.5), ports of
//! gguf-tools' quants.c (= ggml's reference quantizers).
//!
//! Byte-identity with a strict C build is the contract (§4.8), so every f32
//! expression is written in the C evaluation order: `a*b*c` is `(a*b)*c`,
//! sums are sequential, and nothing is fused (Rust never contracts to FMA).
//! Loops look C-like on purpose; reordering them would change the bytes.

// Index loops mirror the C reference and the spec's pseudocode line by
// line, which is how their evaluation order is reviewed.
#![allow(clippy::needless_range_loop)]

use super::dequant::q4_k_scale_min;
use super::float::{f16_to_f32, f32_to_f16, nearest_int};

/// `GROUP_MAX_EPS` of ggml: below this a group counts as all zero.
pub(crate) const MAXEPS: f32 = 1e-15;

/// ggml's `MAX(a, b)` (`a > b ? a : b`); differs from `f32::max` for signed
/// zeros and NaN, which matters for bit-exactness of degenerate blocks.
#[inline]
pub(crate) fn cmax(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// Which early-exit test `make_qkx` uses: ggml's `make_qkx2_quants` tests
/// `max == min`, `make_qkx3_quants` tests `max <= min` (§4.1).
#[derive(Clone, Copy)]
enum Early {
    Eq,
    Le,
}

/// Parameters of one `make_qkx` call (§4.1).
struct Qkx {
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
    early: Early,
}

/// §4.1: affine (scale, min) fit of `x` to levels 0..nmax, searching
/// `nstep + 1` candidate scales. Returns `(scale, -min)`; `l` gets the levels.
fn make_qkx(p: &Qkx, x: &[f32], w: &[f32], l: &mut [u8]) -> (f32, f32) {
    let n = x.len();
    // Equal lengths up front let the compiler drop the per-index checks.
    let (w, l) = (&w[..n], &mut l[..n]);
    let err = |d: f32| if p.use_mad { d.abs() } else { d * d };
    let mut mn = x[0];
    let mut mx = x[0];
    let mut sw = w[0];
    let mut sx = sw * x[0];
    for i in 1..n {
        if x[i] < mn {
            mn = x[i];
        }
        if x[i] > mx {
            mx = x[i];
        }
        sw += w[i];
        sx += w[i] * x[i];
    }
    if mn > 0.0 {
        mn = 0.0;
    }
    let stop = match p.early {
        Early::Eq => mx == mn,
        Early::Le => mx <= mn,
    };
    if stop {
        l.fill(0);
        return (0.0, -mn);
    }
    let nmax = p.nmax as f32;
    let mut iscale = nmax / (mx - mn);
    let mut scale = 1.0 / iscale;
    let mut best = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - mn)).clamp(0, p.nmax);
        l[i] = q as u8;
        let e = scale * q as f32 + mn - x[i];
        best += w[i] * err(e);
    }
    if p.nstep < 1 {
        return (scale, -mn);
    }
    let mut la = [0u8; 32];
    let la = &mut la[..n];
    for s in 0..=p.nstep {
        iscale = (p.rmin + p.rdelta * s as f32 + nmax) / (mx - mn);
        let (mut sl, mut sl2, mut sxl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - mn)).clamp(0, p.nmax);
            la[i] = q as u8;
            let qf = q as f32;
            sl += w[i] * qf;
            sl2 += w[i] * qf * qf;
            sxl += w[i] * qf * x[i];
        }
        let d = sw * sl2 - sl * sl;
        if d > 0.0 {
            let mut ts = (sw * sxl - sx * sl) / d;
            let mut tm = (sl2 * sx - sl * sxl) / d;
            if tm > 0.0 {
                tm = 0.0;
                ts = sxl / sl2;
            }
            let mut cur = 0.0f32;
            for i in 0..n {
                let e = ts * la[i] as f32 + tm - x[i];
                cur += w[i] * err(e);
            }
            if cur < best {
                l.copy_from_slice(la);
                best = cur;
                scale = ts;
                mn = tm;
            }
        }
    }
    (scale, -mn)
}

/// §4.2: non-negative weighted fit of `x` to levels 0..nmax.
///
/// `l` is a byte array with C `uint8_t` store semantics: stores wrap mod
/// 256 and later reads see the wrapped byte, while the running sums use the
/// unwrapped value. IQ2_XXS feeds negative values here, and reproducing the
/// wrap is required for byte-identical output (§8.2).
pub(crate) fn make_qp(nmax: i32, x: &[f32], qw: &[f32], l: &mut [u8]) -> f32 {
    let n = x.len();
    let (qw, l) = (&qw[..n], &mut l[..n]);
    let mut mx = 0.0f32;
    for &v in x {
        mx = cmax(mx, v);
    }
    if mx < MAXEPS {
        l.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / mx;
    for i in 0..n {
        l[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best = 0.0f32;
    for i in 0..n {
        let e = x[i] - scale * l[i] as f32;
        best += qw[i] * e * e;
    }
    for s in -4i32..=4 {
        if s == 0 {
            continue;
        }
        let isc = (0.1 * s as f32 + nmaxf) / mx;
        let sc = 1.0 / isc;
        let mut mse = 0.0f32;
        for i in 0..n {
            let q = nearest_int(isc * x[i]).min(nmax);
            let e = x[i] - sc * q as f32;
            mse += qw[i] * e * e;
        }
        if mse < best {
            best = mse;
            iscale = isc;
        }
    }
    let (mut slx, mut sl2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let q = nearest_int(iscale * x[i]).min(nmax);
        l[i] = q as u8;
        let qf = q as f32;
        slx += qw[i] * x[i] * qf;
        sl2 += qw[i] * qf * qf;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..n {
            let w = qw[i];
            let li = l[i] as i32;
            let lf = li as f32;
            let mut a = slx - w * x[i] * lf;
            let mut b = sl2 - w * lf * lf;
            if a > 0.0 && b > 0.0 {
                let nl = nearest_int(x[i] * b / a).min(nmax);
                if nl != li {
                    let nf = nl as f32;
                    a += w * x[i] * nf;
                    b += w * nf * nf;
                    if a * a * sl2 > slx * slx * b {
                        l[i] = nl as u8;
                        slx = a;
                        sl2 = b;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    if sl2 > 0.0 {
        slx / sl2
    } else {
        0.0
    }
}

/// §4.3: one Q8_0 block (34 bytes) from 32 values. `roundf` (half away from
/// zero) is deliberate: it is what ggml and gguf's quants.py use here.
pub(crate) fn quantize_q8_0_block(x: &[f32], out: &mut [u8]) {
    let mut amax = 0.0f32;
    for &v in x {
        amax = cmax(amax, v.abs());
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for (o, &v) in out[2..34].iter_mut().zip(x) {
        *o = (v * id).round() as i8 as u8;
    }
}

/// §4.4: one Q4_K block (144 bytes) from 256 values, weighted by `qw` when
/// an importance vector is given.
pub(crate) fn quantize_q4_k_block(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0u8; 256];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut w = [0.0f32; 32];
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let (d_bits, dmin_bits);
    match qw {
        None => {
            let p = Qkx {
                nmax: 15,
                rmin: -1.0,
                rdelta: 0.1,
                nstep: 20,
                use_mad: false,
                early: Early::Eq,
            };
            let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
            for j in 0..8 {
                let xs = &x[32 * j..32 * j + 32];
                let mut s2 = 0.0f32;
                for &v in xs {
                    s2 += v * v;
                }
                let av = (s2 / 32.0).sqrt();
                for (w, &v) in w.iter_mut().zip(xs) {
                    *w = av + v.abs();
                }
                let (sc, m) = make_qkx(&p, xs, &w, &mut l[32 * j..32 * j + 32]);
                scales[j] = sc;
                mins[j] = m;
                if sc > max_scale {
                    max_scale = sc;
                }
                if m > max_min {
                    max_min = m;
                }
            }
            let inv_s = if max_scale > 0.0 {
                63.0 / max_scale
            } else {
                0.0
            };
            let inv_m = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
            for j in 0..8 {
                ls[j] = (nearest_int(inv_s * scales[j]) as u8).min(63);
                lm[j] = (nearest_int(inv_m * mins[j]) as u8).min(63);
            }
            d_bits = f32_to_f16(max_scale / 63.0);
            dmin_bits = f32_to_f16(max_min / 63.0);
        }
        Some(qw) => {
            let p = Qkx {
                nmax: 15,
                rmin: -0.9,
                rdelta: 0.05,
                nstep: 36,
                use_mad: false,
                early: Early::Le,
            };
            let mut s2 = 0.0f32;
            for &v in x {
                s2 += v * v;
            }
            let sigma2 = 2.0 * s2 / 256.0;
            let mut sw = [0.0f32; 8];
            for j in 0..8 {
                let xs = &x[32 * j..32 * j + 32];
                for i in 0..32 {
                    w[i] = qw[32 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt();
                }
                let mut sum = 0.0f32;
                for &v in &w {
                    sum += v;
                }
                sw[j] = sum;
                let (sc, m) = make_qkx(&p, xs, &w, &mut l[32 * j..32 * j + 32]);
                scales[j] = sc;
                mins[j] = m;
            }
            let d_blk = make_qp(63, &scales, &sw, &mut ls);
            let m_blk = make_qp(63, &mins, &sw, &mut lm);
            d_bits = f32_to_f16(d_blk);
            dmin_bits = f32_to_f16(m_blk);
        }
    }
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 15) | ((lm[j] & 15) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    let d = f16_to_f32(d_bits);
    let dmin = f16_to_f32(dmin_bits);
    for j in 0..8 {
        let (sc, m) = q4_k_scale_min(&s, j);
        let dd = d * sc as f32;
        if dd == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dd).clamp(0, 15) as u8;
        }
    }
    out[0..2].copy_from_slice(&d_bits.to_le_bytes());
    out[2..4].copy_from_slice(&dmin_bits.to_le_bytes());
    out[4..16].copy_from_slice(&s);
    for c in 0..4 {
        for i in 0..32 {
            out[16 + 32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
        }
    }
}

/// §4.5: one Q2_K block (84 bytes) from 256 values.
pub(crate) fn quantize_q2_k_block(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
    let mut l = [0u8; 256];
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    let mut w = [0.0f32; 16];
    let mut sc = [0u8; 16];
    let (d_bits, dmin_bits);
    match qw {
        None => {
            let p = Qkx {
                nmax: 3,
                rmin: -0.5,
                rdelta: 0.1,
                nstep: 15,
                use_mad: true,
                early: Early::Eq,
            };
            let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
            for j in 0..16 {
                let xs = &x[16 * j..16 * j + 16];
                for (w, &v) in w.iter_mut().zip(xs) {
                    *w = v.abs();
                }
                let (s, m) = make_qkx(&p, xs, &w, &mut l[16 * j..16 * j + 16]);
                scales[j] = s;
                mins[j] = m;
                if s > max_scale {
                    max_scale = s;
                }
                if m > max_min {
                    max_min = m;
                }
            }
            if max_scale > 0.0 {
                let isc = 15.0 / max_scale;
                for j in 0..16 {
                    sc[j] = nearest_int(isc * scales[j]) as u8;
                }
                d_bits = f32_to_f16(max_scale / 15.0);
            } else {
                d_bits = f32_to_f16(0.0);
            }
            if max_min > 0.0 {
                let isc = 15.0 / max_min;
                for j in 0..16 {
                    sc[j] |= (nearest_int(isc * mins[j]) << 4) as u8;
                }
                dmin_bits = f32_to_f16(max_min / 15.0);
            } else {
                dmin_bits = f32_to_f16(0.0);
            }
        }
        Some(qw) => {
            let p = Qkx {
                nmax: 3,
                rmin: -0.9,
                rdelta: 0.05,
                nstep: 36,
                use_mad: false,
                early: Early::Le,
            };
            let mut s2 = 0.0f32;
            for &v in x {
                s2 += v * v;
            }
            let sigma2 = s2 / 256.0;
            let mut sw = [0.0f32; 16];
            for j in 0..16 {
                let xs = &x[16 * j..16 * j + 16];
                for i in 0..16 {
                    w[i] = qw[16 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt();
                }
                let mut sum = 0.0f32;
                for &v in &w {
                    sum += v;
                }
                sw[j] = sum;
                let (s, m) = make_qkx(&p, xs, &w, &mut l[16 * j..16 * j + 16]);
                scales[j] = s;
                mins[j] = m;
            }
            let mut lsc = [0u8; 16];
            let mut lmn = [0u8; 16];
            let dm = make_qp(15, &scales, &sw, &mut lsc);
            let mm = make_qp(15, &mins, &sw, &mut lmn);
            d_bits = f32_to_f16(dm);
            dmin_bits = f32_to_f16(mm);
            for j in 0..16 {
                sc[j] = lsc[j] | (lmn[j] << 4);
            }
        }
    }
    let d = f16_to_f32(d_bits);
    let dmin = f16_to_f32(dmin_bits);
    for j in 0..16 {
        let dd = d * (sc[j] & 15) as f32;
        if dd == 0.0 {
            continue;
        }
        let m = dmin * (sc[j] >> 4) as f32;
        for i in 0..16 {
            l[16 * j + i] = nearest_int((x[16 * j + i] + m) / dd).clamp(0, 3) as u8;
        }
    }
    out[0..16].copy_from_slice(&sc);
    for h in 0..2 {
        for i in 0..32 {
            let b = 128 * h + i;
            out[16 + 32 * h + i] = l[b] | (l[b + 32] << 2) | (l[b + 64] << 4) | (l[b + 96] << 6);
        }
    }
    out[80..82].copy_from_slice(&d_bits.to_le_bytes());
    out[82..84].copy_from_slice(&dmin_bits.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_qp_keeps_the_byte_wrap() {
        // A negative input quantizes to a negative level whose byte store
        // wraps to 255; the refinement loop then reads 255 back.
        let x = [1.0f32, -0.3, 0.5, 0.9];
        let w = [1.0f32; 4];
        let mut l = [0u8; 4];
        make_qp(4, &x, &w, &mut l);
        assert_eq!(l[1], 255, "{l:?}");
    }

    #[test]
    fn make_qp_all_zero() {
        let mut l = [7u8; 8];
        assert_eq!(make_qp(63, &[0.0; 8], &[1.0; 8], &mut l), 0.0);
        assert_eq!(l, [0; 8]);
    }

    #[test]
    fn q8_0_rounds_half_away() {
        let mut x = [0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        let mut out = [0u8; 34];
        quantize_q8_0_block(&x, &mut out);
        assert_eq!(out[2] as i8, 127);
        assert_eq!(out[3] as i8, 3);
        assert_eq!(out[4] as i8, -3);
    }
}
