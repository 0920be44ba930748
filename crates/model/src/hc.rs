//! Hyper-Connections (model.md §5, §8): the 4-stream residual state, the
//! Sinkhorn split before each sublayer, the mix after it, and the output
//! head's collapse of the streams.

use crate::error::Result;
use crate::linear::Numerics;
use crate::math;
use crate::norm::rms_norm_plain_inplace;
use crate::weights::HcWeights;

/// What HC-pre hands to HC-post besides the sublayer input.
#[derive(Clone, Debug, PartialEq)]
pub struct HcSplit {
    /// Stream weights of the sublayer input (`pre`, with its +eps).
    pub pre: Vec<f32>,
    /// Per-stream weights of the sublayer output (`post`).
    pub post: Vec<f32>,
    /// Mixing matrix `P[r][c]`, row-major, `r` the source stream.
    pub comb: Vec<f32>,
}

/// The CPU's direct sigmoid, used by the split (§5.2 details).
fn sigmoid_direct(z: f32) -> f32 {
    1.0 / (1.0 + math::exp(-z))
}

/// The two-branch stable sigmoid of the output head and silu (§7.4, §8).
pub fn sigmoid_stable(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + math::exp(-z))
    } else {
        let e = math::exp(z);
        e / (1.0 + e)
    }
}

/// Steps 3–8 of §5.2: the split of a mix vector into pre, post and the
/// Sinkhorn-normalized comb matrix.
pub fn split(
    mix: &[f32],
    scale: &[f32],
    base: &[f32],
    n_hc: usize,
    iters: usize,
    eps: f32,
) -> HcSplit {
    let pre = (0..n_hc)
        .map(|i| sigmoid_direct(mix[i] * scale[0] + base[i]) + eps)
        .collect();
    let post = (0..n_hc)
        .map(|i| 2.0 * sigmoid_direct(mix[n_hc + i] * scale[1] + base[n_hc + i]))
        .collect();
    let off = 2 * n_hc;
    let mut p = vec![0f32; n_hc * n_hc];
    for r in 0..n_hc {
        let a: Vec<f32> = (0..n_hc)
            .map(|c| mix[off + n_hc * r + c] * scale[2] + base[off + n_hc * r + c])
            .collect();
        let max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = a.iter().map(|&v| math::exp(v - max)).collect();
        let mut sum = 0f32;
        for &v in &e {
            sum += v;
        }
        let inv = 1.0 / sum;
        for c in 0..n_hc {
            p[n_hc * r + c] = e[c] * inv + eps;
        }
    }
    let col_norm = |p: &mut [f32]| {
        for c in 0..n_hc {
            let mut s = 0f32;
            for r in 0..n_hc {
                s += p[n_hc * r + c];
            }
            let inv = 1.0 / (s + eps);
            for r in 0..n_hc {
                p[n_hc * r + c] *= inv;
            }
        }
    };
    let row_norm = |p: &mut [f32]| {
        for r in 0..n_hc {
            let mut s = 0f32;
            for c in 0..n_hc {
                s += p[n_hc * r + c];
            }
            let inv = 1.0 / (s + eps);
            for c in 0..n_hc {
                p[n_hc * r + c] *= inv;
            }
        }
    };
    col_norm(&mut p);
    for _ in 1..iters {
        row_norm(&mut p);
        col_norm(&mut p);
    }
    HcSplit { pre, post, comb: p }
}

/// The mix vector `fn · rms_norm_plain(H)` (§5.2 steps 1–2).
pub fn mix(h: &[f32], w: &HcWeights<'_>, eps: f32, numerics: Numerics) -> Result<Vec<f32>> {
    let mut n = h.to_vec();
    rms_norm_plain_inplace(&mut n, eps);
    let mut m = vec![0f32; w.func.rows];
    w.func.matvec(&n, &mut m, numerics)?;
    Ok(m)
}

/// HC-pre: the sublayer input `x[d] = Σ_h pre[h] · H[h][d]` and the split.
pub fn pre(
    h: &[f32],
    w: &HcWeights<'_>,
    n_hc: usize,
    iters: usize,
    eps: f32,
    numerics: Numerics,
) -> Result<(Vec<f32>, HcSplit)> {
    let m = mix(h, w, eps, numerics)?;
    let s = split(&m, &w.scale, &w.base, n_hc, iters, eps);
    Ok((weighted_sum(h, &s.pre), s))
}

/// `x[d] = Σ_h w[h] · H[h][d]`, in h order from 0 (§5.2 step 9, §8).
pub fn weighted_sum(h: &[f32], w: &[f32]) -> Vec<f32> {
    let d = h.len() / w.len();
    (0..d)
        .map(|i| {
            let mut acc = 0f32;
            for (k, &wk) in w.iter().enumerate() {
                acc += wk * h[k * d + i];
            }
            acc
        })
        .collect()
}

/// HC-post (§5.3): `H'[c][d] = y[d]·post[c] + Σ_r P[r][c]·H[r][d]`.
pub fn post(y: &[f32], residual: &[f32], s: &HcSplit) -> Vec<f32> {
    let n_hc = s.post.len();
    let d = y.len();
    let mut out = vec![0f32; n_hc * d];
    for c in 0..n_hc {
        for i in 0..d {
            let mut acc = y[i] * s.post[c];
            for r in 0..n_hc {
                acc += s.comb[n_hc * r + c] * residual[r * d + i];
            }
            out[c * d + i] = acc;
        }
    }
    out
}

/// The output head's collapse of the streams (§8, before `output_norm`).
pub fn head(h: &[f32], w: &HcWeights<'_>, eps: f32, numerics: Numerics) -> Result<Vec<f32>> {
    let m = mix(h, w, eps, numerics)?;
    let wts: Vec<f32> = m
        .iter()
        .zip(&w.base)
        .map(|(&mi, &b)| sigmoid_stable(mi * w.scale[0] + b) + eps)
        .collect();
    Ok(weighted_sum(h, &wts))
}

// The spec's test vectors are quoted with the digits it prints.
#[cfg(test)]
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, ulps: f32) -> bool {
        (a - b).abs() <= ulps * f32::EPSILON * b.abs().max(1e-3)
    }

    /// model.md §13.1.
    #[test]
    fn split_and_post_vectors() {
        let mix: Vec<f32> = (0..24)
            .map(|k| (((7 * k) % 11) as f32 - 5.0) / 4.0)
            .collect();
        let base: Vec<f32> = (0..24)
            .map(|k| (((5 * k) % 9) as f32 - 4.0) / 8.0)
            .collect();
        let s = split(&mix, &[0.75, 1.25, 2.0], &base, 4, 20, 1e-6);
        let pre = [0.19193378, 0.62246037, 0.3208223, 0.76629466];
        let post_want = [1.0312399, 0.72593838, 1.50983, 1.2449187];
        let p = [
            0.15990822,
            0.43391788,
            0.31424409,
            0.091928847,
            0.28159913,
            0.0031231372,
            0.5533942,
            0.16188253,
            0.20298645,
            0.55081403,
            0.1295052,
            0.11669328,
            0.35550523,
            0.012143904,
            0.002855513,
            0.62949437,
        ];
        for i in 0..4 {
            assert!(
                close(s.pre[i], pre[i], 8.0),
                "pre {i}: {} vs {}",
                s.pre[i],
                pre[i]
            );
            assert!(close(s.post[i], post_want[i], 8.0), "post {i}");
        }
        for (i, (&got, &want)) in s.comb.iter().zip(&p).enumerate() {
            assert!(close(got, want, 64.0), "P {i}: {got} vs {want}");
        }
        let d = 3;
        let y = vec![0.5f32; d];
        let residual: Vec<f32> = (0..4).flat_map(|r| vec![(r + 1) as f32; d]).collect();
        let h = post(&y, &residual, &s);
        let want = [3.2697067, 2.5041511, 2.5758853, 3.9062107];
        for c in 0..4 {
            for i in 0..d {
                assert!(
                    close(h[c * d + i], want[c], 16.0),
                    "H' {c}: {}",
                    h[c * d + i]
                );
            }
        }
    }
}
