//! RMSNorm (model.md §4): sum of squares in f64, the rest in f32, as ds4's
//! CPU reference does; the sum in the block order of `gguf::order` over
//! `NORM_THREADS`, as the GPU kernel sums.

use gguf::order::{block_sum, NORM_THREADS};

/// `1 / sqrt(mean(x²) + eps)`.
pub fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let ss: f64 = block_sum(x.len(), NORM_THREADS, |i| f64::from(x[i]) * f64::from(x[i]));
    let mean = (ss / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// `out[i] = (x[i] · scale) · w[i]`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let s = rms_scale(x, eps);
    for ((o, &v), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = (v * s) * wi;
    }
}

/// The unweighted norm, in place.
pub fn rms_norm_plain_inplace(x: &mut [f32], eps: f32) {
    let s = rms_scale(x, eps);
    for v in x {
        *v *= s;
    }
}

/// The weighted norm, in place.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let s = rms_scale(x, eps);
    for (v, &wi) in x.iter_mut().zip(w) {
        *v = (*v * s) * wi;
    }
}
