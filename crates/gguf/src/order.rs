//! The summation order every backend uses, so the CPU and the GPU produce
//! the same bits.
//!
//! A float sum depends on its order, and the model amplifies a last-bit
//! difference into a different token within a few layers (model.md §11.10).
//! The engine therefore fixes one order per kind of reduction, chosen to be
//! the natural one on a GPU, and the CPU reproduces it:
//!
//! - **Lane order** ([`LaneSum`], [`lane_dot`]): term `i` goes to lane
//!   `i % 32` (each lane adds its terms in increasing `i`), then the 32 lane
//!   sums meet in an xor butterfly (`v += shfl_xor(v, o)` for o = 16, 8, 4,
//!   2, 1) and lane 0's value is the result. This is one warp walking a row.
//! - **Block order** ([`block_sum`]): `threads` (a multiple of 32) lanes
//!   take terms `i % threads`, each warp of 32 meets in the butterfly, and
//!   the warps' sums meet in one more butterfly (padded with zeros). This
//!   is one thread block walking a long row. For `n <= threads` terms every
//!   such `threads` gives the same result (the extra warps add only zeros),
//!   which lets a kernel launch fewer threads for short rows.
//!
//! Integer parts of the quantized dot products are exact and need no order;
//! their per-block float terms are summed in lane order.

use std::ops::Add;

/// Lanes of a warp.
pub const WARP: usize = 32;

/// Threads of the block-order sums of RMSNorm.
pub const NORM_THREADS: usize = 1024;

/// Matrices of at most this many rows and at least `WARP` times as many
/// columns are "wide": their F16/F32 rows are summed in block order over
/// [`WIDE_THREADS`] (one thread block per row) instead of lane order (one
/// warp per row), because a warp per row leaves the GPU idle on them (the
/// HC mixes: 24 rows of 16384).
pub const WIDE_ROWS: usize = 64;

/// Threads of the block-order sums of wide rows.
pub const WIDE_THREADS: usize = 1024;

/// Whether a `rows x cols` F16/F32 matrix takes the block order.
pub fn is_wide(rows: usize, cols: usize) -> bool {
    rows <= WIDE_ROWS && cols >= WARP * WIDE_ROWS
}

/// A sum of terms in lane order.
#[derive(Clone, Copy, Debug)]
pub struct LaneSum {
    lanes: [f32; WARP],
    next: usize,
}

impl Default for LaneSum {
    fn default() -> Self {
        LaneSum {
            lanes: [0.0; WARP],
            next: 0,
        }
    }
}

impl LaneSum {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next term (term `i` of the sum goes to lane `i % 32`).
    #[inline]
    pub fn add(&mut self, term: f32) {
        self.lanes[self.next] += term;
        self.next = (self.next + 1) % WARP;
    }

    /// Adds eight consecutive terms; `self` must be at a multiple of 8 terms
    /// (element-wise adds: the same IEEE results as eight `add` calls).
    #[inline]
    pub fn add8(&mut self, terms: [f32; 8]) {
        debug_assert_eq!(self.next % 8, 0);
        for (l, t) in self.lanes[self.next..self.next + 8].iter_mut().zip(terms) {
            *l += t;
        }
        self.next = (self.next + 8) % WARP;
    }

    /// The butterfly of the lane sums.
    pub fn finish(self) -> f32 {
        butterfly(self.lanes)
    }
}

/// Lane 0 after `v += shfl_xor(v, o)` for o = 16, 8, 4, 2, 1.
pub fn butterfly<T: Copy + Add<Output = T>>(mut v: [T; WARP]) -> T {
    let mut o = WARP / 2;
    while o > 0 {
        let prev = v;
        for (l, x) in v.iter_mut().enumerate() {
            *x = prev[l] + prev[l ^ o];
        }
        o /= 2;
    }
    v[0]
}

/// `Σ a[i]·b[i]` with f32 products, in lane order.
pub fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [0f32; WARP];
    let (ca, cb) = (a.chunks_exact(WARP), b.chunks_exact(WARP));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for l in 0..WARP {
            lanes[l] += xa[l] * xb[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        lanes[l] += x * y;
    }
    butterfly(lanes)
}

/// `Σ term(i)` for i in 0..n in block order over `threads` lanes (a
/// multiple of 32, at most 1024).
pub fn block_sum<T, F>(n: usize, threads: usize, term: F) -> T
where
    T: Copy + Default + Add<Output = T>,
    F: Fn(usize) -> T,
{
    assert!(
        threads.is_multiple_of(WARP) && (WARP..=WARP * WARP).contains(&threads),
        "block order needs 32..=1024 threads in whole warps, got {threads}"
    );
    let zero = T::default();
    let mut parts = [zero; WARP];
    for (w, part) in parts.iter_mut().enumerate().take(threads / WARP) {
        let mut lanes = [zero; WARP];
        for (l, lane) in lanes.iter_mut().enumerate() {
            let mut i = w * WARP + l;
            while i < n {
                *lane = *lane + term(i);
                i += threads;
            }
        }
        *part = butterfly(lanes);
    }
    butterfly(parts)
}

/// `Σ a[i]·b[i]` with f32 products in block order over `threads`.
pub fn block_dot(a: &[f32], b: &[f32], threads: usize) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    block_sum(a.len(), threads, |i| a[i] * b[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal warp: 32 lanes, each with its own running sum, then the
    /// shuffle steps, written as the GPU executes them.
    fn warp(terms: &[f32]) -> f32 {
        let mut v = [0f32; 32];
        for (i, &t) in terms.iter().enumerate() {
            v[i % 32] += t;
        }
        for o in [16, 8, 4, 2, 1] {
            let shfl: Vec<f32> = (0..32).map(|l| v[l ^ o]).collect();
            for l in 0..32 {
                v[l] += shfl[l];
            }
        }
        assert!(v.iter().all(|x| x.to_bits() == v[0].to_bits()));
        v[0]
    }

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * 1e3f32.powf((s % 7) as f32 / 6.0)
            })
            .collect()
    }

    #[test]
    fn lane_order_is_one_warp() {
        for n in [0, 1, 7, 31, 32, 33, 100, 4096, 4101] {
            let (a, b) = (noise(n, 1), noise(n, 2));
            let terms: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
            let want = warp(&terms);
            assert_eq!(lane_dot(&a, &b).to_bits(), want.to_bits(), "n={n}");
            let mut s = LaneSum::new();
            terms.iter().for_each(|&t| s.add(t));
            assert_eq!(s.finish().to_bits(), want.to_bits(), "n={n}");
            assert_eq!(block_dot(&a, &b, 32).to_bits(), want.to_bits(), "n={n}");
        }
    }

    #[test]
    fn add8_equals_eight_adds() {
        let t = noise(200, 3);
        let (mut one, mut eight) = (LaneSum::new(), LaneSum::new());
        t.iter().for_each(|&x| one.add(x));
        for c in t.chunks_exact(8) {
            eight.add8(c.try_into().unwrap());
        }
        assert_eq!(one.finish().to_bits(), eight.finish().to_bits());
    }

    #[test]
    fn block_order_is_warps_then_a_warp_of_parts() {
        let x = noise(16384, 4);
        for threads in [64, 256, 1024] {
            let parts: Vec<f32> = (0..threads / 32)
                .map(|w| {
                    let terms: Vec<f32> = (0..32)
                        .map(|l| {
                            let mut acc = 0f32;
                            let mut i = w * 32 + l;
                            while i < x.len() {
                                acc += x[i];
                                i += threads;
                            }
                            acc
                        })
                        .collect();
                    warp(&terms)
                })
                .collect();
            let want = warp(&parts);
            let got = block_sum(x.len(), threads, |i| x[i]);
            assert_eq!(got.to_bits(), want.to_bits(), "threads {threads}");
        }
    }

    #[test]
    fn short_rows_do_not_depend_on_the_thread_count() {
        let x = noise(500, 5);
        let want = block_sum(x.len(), 1024, |i| f64::from(x[i]));
        for threads in [512, 544] {
            assert_eq!(block_sum(x.len(), threads, |i| f64::from(x[i])), want);
        }
    }

    #[test]
    fn wide_rule() {
        assert!(is_wide(24, 16384));
        assert!(is_wide(64, 4096));
        assert!(!is_wide(65, 4096));
        assert!(!is_wide(24, 512));
    }
}
