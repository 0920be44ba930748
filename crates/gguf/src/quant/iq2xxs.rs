//! IQ2_XXS weight quantizer (spec §4.6), a port of gguf-tools' quants.c.
//!
//! As in `kquants`, every f32 expression keeps the C order so that the
//! output is byte-identical with a strict C build (§4.8, §8.2).

// Index loops mirror the C reference and the spec's pseudocode line by
// line, which is how their evaluation order is reviewed.
#![allow(clippy::needless_range_loop)]

use std::sync::OnceLock;

use super::float::{f32_to_f16, nearest_int};
use super::kquants::{cmax, make_qp, MAXEPS};
use super::tables::KGRID;

/// Number of 16-bit patterns of eight 2-bit levels the quantizer can form
/// (`0xAAAA + 1`; patterns are built from levels 0..2 only).
const MAP_SIZE: usize = 43692;

/// One-time tables of §4.6: grid coordinates in odd units, the pattern ->
/// grid-index map and the neighbour lists of off-grid patterns.
struct Tables {
    /// `G[k][i] = 2 * level + 1` (1, 3, 5).
    grid: [[u8; 8]; 256],
    /// `grid` as f32 (exact), for the neighbour search's inner loop.
    grid_f: [[f32; 8]; 256],
    /// `>= 0`: grid index of an on-grid pattern; `< 0`: `-(offset + 1)` of
    /// the pattern's list in `neighbours` (`[count, k0, k1, ...]`).
    map: Vec<i32>,
    neighbours: Vec<u16>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(build_tables)
}

fn build_tables() -> Tables {
    let mut grid = [[0u8; 8]; 256];
    for (k, g) in grid.iter_mut().enumerate() {
        for (i, c) in g.iter_mut().enumerate() {
            *c = 2 * ((KGRID[k] >> (2 * i)) & 3) as u8 + 1;
        }
    }
    let mut map = vec![-1i32; MAP_SIZE];
    for (k, &u) in KGRID.iter().enumerate() {
        map[u as usize] = k as i32;
    }
    let mut neighbours = Vec::new();
    let mut dist = [0i32; 256];
    for (u, m) in map.iter_mut().enumerate() {
        if *m >= 0 {
            continue;
        }
        for (d2, g) in dist.iter_mut().zip(&grid) {
            *d2 = (0..8)
                .map(|i| {
                    let p = 2 * ((u >> (2 * i)) & 3) as i32 + 1;
                    let diff = g[i] as i32 - p;
                    diff * diff
                })
                .sum();
        }
        // Sorted by (distance, index), keeping the nearest and the second-
        // nearest distance shells: each shell in ascending index order.
        let d0 = *dist.iter().min().expect("256 grid points");
        let d1 = dist.iter().copied().filter(|&d| d > d0).min();
        *m = -(neighbours.len() as i32) - 1;
        let start = neighbours.len();
        neighbours.push(0);
        for shell in [Some(d0), d1].into_iter().flatten() {
            neighbours.extend((0..256u16).filter(|&k| dist[k as usize] == shell));
        }
        neighbours[start] = (neighbours.len() - start - 1) as u16;
    }
    let grid_f = grid.map(|g| g.map(f32::from));
    Tables {
        grid,
        grid_f,
        map,
        neighbours,
    }
}

impl Tables {
    /// The grid index of pattern `u`, or the neighbour list to search.
    fn lookup(&self, u: usize) -> Result<usize, &[u16]> {
        let m = self.map[u];
        if m >= 0 {
            Ok(m as usize)
        } else {
            let off = (-m - 1) as usize;
            let n = self.neighbours[off] as usize;
            Err(&self.neighbours[off + 1..off + 1 + n])
        }
    }

    /// `best_neighbour` of §4.6: first neighbour with the strictly smallest
    /// weighted error; writes its levels into `l`.
    ///
    /// The C code starts from `FLT_MAX` and would index out of bounds if
    /// every error were inf/NaN; starting from the first neighbour instead
    /// gives the same answer whenever C has one and never fails.
    fn best_neighbour(
        &self,
        nb: &[u16],
        xv: &[f32; 8],
        wa: &[f32; 8],
        scale: f32,
        l: &mut [u8],
    ) -> usize {
        let mut best = f32::INFINITY;
        let mut best_k = nb[0] as usize;
        for &k in nb {
            let g = &self.grid_f[k as usize];
            let mut e = 0.0f32;
            for i in 0..8 {
                let diff = scale * g[i] - xv[i];
                e += wa[i] * diff * diff;
            }
            if e < best {
                best = e;
                best_k = k as usize;
            }
        }
        for (l, &g) in l.iter_mut().zip(&self.grid[best_k]) {
            *l = (g - 1) / 2;
        }
        best_k
    }
}

/// The 2-bit pattern of sub-group `k` at inverse scale `id` (§4.6 e/f).
#[inline]
fn pattern(id: f32, xv: &[f32], l: &mut [u8]) -> usize {
    let mut u = 0usize;
    for i in 0..8 {
        let q = nearest_int(0.5 * (id * xv[i] - 1.0)).clamp(0, 2);
        l[i] = q as u8;
        u |= (q as usize) << (2 * i);
    }
    u
}

/// `(sum w*xv*q, sum w*q*q)` with `q = 2L + 1`, sequential.
#[inline]
fn sums(w: &[f32], xv: &[f32], l: &[u8]) -> (f32, f32) {
    let (mut sqx, mut sq2) = (0.0f32, 0.0f32);
    for i in 0..32 {
        let q = (2 * l[i] as i32 + 1) as f32;
        sqx += w[i] * xv[i] * q;
        sq2 += w[i] * q * q;
    }
    (sqx, sq2)
}

/// §4.6: one IQ2_XXS block (66 bytes) from 256 values and their importance.
pub(crate) fn quantize_iq2_xxs_block(x: &[f32], qw: &[f32], out: &mut [u8]) {
    let t = tables();
    let mut q2 = [0u32; 16];
    let mut s2 = 0.0f32;
    for &v in x {
        s2 += v * v;
    }
    let sigma2 = s2 / 256.0;
    let mut max_scale = 0.0f32;
    let mut scales = [0.0f32; 8];
    for g in 0..8 {
        let xb = &x[32 * g..32 * g + 32];
        let qg = &qw[32 * g..32 * g + 32];
        let mut w = [0.0f32; 32];
        let mut wa = [0.0f32; 32];
        for i in 0..32 {
            w[i] = qg[i] * (sigma2 + xb[i] * xb[i]).sqrt();
        }
        for i in 0..32 {
            wa[i] = w[i].sqrt();
        }
        let mut xv = [0.0f32; 32];
        let mut signs = [0u32; 4];
        for k in 0..4 {
            let mut s = 0u32;
            let mut neg = 0;
            for i in 0..8 {
                let v = xb[8 * k + i];
                if v >= 0.0 {
                    xv[8 * k + i] = v;
                } else {
                    xv[8 * k + i] = -v;
                    neg += 1;
                    s |= 1 << i;
                }
            }
            if neg % 2 == 1 {
                let mut imin = 0;
                let mut min = w[8 * k] * xb[8 * k] * xb[8 * k];
                for i in 1..8 {
                    let ax = w[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                    if ax < min {
                        min = ax;
                        imin = i;
                    }
                }
                xv[8 * k + imin] = -xv[8 * k + imin];
                s ^= 1 << imin;
            }
            signs[k] = s & 127;
        }
        let mut mx = xv[0];
        for &v in &xv[1..] {
            mx = cmax(mx, v);
        }
        if mx < MAXEPS {
            continue;
        }
        let (xv8, _) = xv.as_chunks::<8>();
        let (wa8, _) = wa.as_chunks::<8>();
        let mut l = [0u8; 32];
        let mut scale = make_qp(4, &xv, &w, &mut l);
        let eff = scale * 3.0;
        if eff <= 0.0 {
            continue;
        }
        let mut la = [0u8; 32];
        let mut best = 0.0f32;
        for s in -6i32..=6 {
            let id = (5.0 + s as f32 * 0.1) / eff;
            let ts = 1.0 / id;
            for k in 0..4 {
                let r = 8 * k..8 * k + 8;
                let u = pattern(id, &xv[r.clone()], &mut la[r.clone()]);
                if let Err(nb) = t.lookup(u) {
                    t.best_neighbour(nb, &xv8[k], &wa8[k], ts, &mut la[r]);
                }
            }
            let (sqx, sq2) = sums(&w, &xv, &la);
            if sq2 > 0.0 && sqx * sqx > best * sq2 {
                scale = sqx / sq2;
                best = scale * sqx;
                l = la;
            }
        }
        if scale > 0.0 {
            let id = 1.0 / scale;
            for k in 0..4 {
                let r = 8 * k..8 * k + 8;
                let mut lk = [0u8; 8];
                let u = pattern(id, &xv[r.clone()], &mut lk);
                let kk = match t.lookup(u) {
                    Ok(kk) => kk,
                    Err(nb) => t.best_neighbour(nb, &xv8[k], &wa8[k], scale, &mut lk),
                };
                for (l, &g) in l[r].iter_mut().zip(&t.grid[kk]) {
                    *l = (g - 1) / 2;
                }
            }
            let (sqx, sq2) = sums(&w, &xv, &l);
            if sq2 > 0.0 {
                scale = sqx / sq2;
            }
        }
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s & 127;
            }
        }
        for k in 0..4 {
            // Steps e/f leave every sub-group on the grid (§4.6) for finite
            // input. NaN/inf input can leave make_qp's raw bytes here; the
            // `min` and the neighbour fallback keep that from indexing out
            // of the tables (the block is garbage then, as in C, but no
            // panic).
            let mut u = 0usize;
            for i in 0..8 {
                u |= (l[8 * k + i].min(2) as usize) << (2 * i);
            }
            let kk = match t.lookup(u) {
                Ok(kk) => kk,
                Err(nb) => {
                    let mut lk = [0u8; 8];
                    t.best_neighbour(nb, &xv8[k], &wa8[k], scale, &mut lk)
                }
            };
            q2[2 * g] |= (kk as u32) << (8 * k);
            q2[2 * g + 1] |= signs[k] << (7 * k);
        }
        scales[g] = scale;
        max_scale = cmax(max_scale, scale);
    }
    out[..66].fill(0);
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    let id = 1.0 / d;
    for g in 0..8 {
        let l = nearest_int(0.5 * (id * scales[g] - 1.0)).clamp(0, 15);
        q2[2 * g + 1] |= (l as u32) << 28;
    }
    out[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for (o, q) in out[2..66].chunks_exact_mut(4).zip(q2) {
        o.copy_from_slice(&q.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_tables_have_spec_sizes() {
        let t = tables();
        let off_grid = t.map.iter().filter(|&&m| m < 0).count();
        assert_eq!(off_grid, 43436);
        let mut entries = 0;
        let (mut lo, mut hi) = (usize::MAX, 0);
        for u in 0..MAP_SIZE {
            if let Err(nb) = t.lookup(u) {
                entries += nb.len();
                lo = lo.min(nb.len());
                hi = hi.max(nb.len());
            }
        }
        assert_eq!(entries, 373_964);
        assert_eq!((lo, hi), (2, 150));
    }

    #[test]
    fn zero_block_is_all_zero_bytes() {
        let mut out = [0xAAu8; 66];
        quantize_iq2_xxs_block(&[0.0; 256], &[1.0; 256], &mut out);
        assert_eq!(out, [0u8; 66]);
    }
}
