//! Device checks of every kernel against the CPU definition, on random
//! inputs at Flash dimensions and at odd sizes. Run on a GPU machine by
//! `ds4rs selftest` (the GPU machine has no Rust toolchain, so these are not
//! `cargo test`s).

use gguf::order;
use gguf::quant::{self, ActQ8_0};
use gguf::GgmlType;

use crate::error::Result;
use crate::ops::Gpu;

/// One comparison's outcome.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    /// Largest |gpu - cpu| divided by its allowed bound (≤ 1 passes).
    pub worst: f64,
    pub pass: bool,
}

/// xorshift64*: reproducible inputs without a dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub(crate) fn normalish(&mut self) -> f32 {
        (self.unit() + self.unit() + self.unit()) * 0.8
    }
}

pub(crate) fn random_q8_0(rng: &mut Rng, rows: usize, cols: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * cols / 32 * 34);
    for _ in 0..rows * cols / 32 {
        let d = 1e-3 + 0.05 * (rng.unit() + 1.0);
        out.extend_from_slice(&quant::f32_to_f16(d).to_le_bytes());
        out.extend((0..32).map(|_| rng.next() as u8));
    }
    out
}

fn random_f16(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|_| quant::f32_to_f16(rng.normalish() * 0.05).to_le_bytes())
        .collect()
}

/// Whether two vectors hold the same bits: the kernels sum in the CPU's
/// order (`gguf::order`) and use its transcendental functions, so the
/// results are identical, not merely close.
/// NaNs match any NaN: their payloads are not specified across devices.
pub(crate) fn identical(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && first_difference(a, b).is_none()
}

/// The first index where `a` and `b` differ in bits (NaNs match NaNs).
pub(crate) fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits() && !(x.is_nan() && y.is_nan()))
}

/// `max_i |a_i - b_i| / bound_i`.
pub(crate) fn worst_ratio(a: &[f32], b: &[f32], bound: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .zip(bound)
        .map(|((x, y), m)| f64::from((x - y).abs()) / m)
        .fold(0.0, f64::max)
}

/// Σ_i |w_i x_i| per row, times the relative tolerance: what summation
/// order alone can change.
pub(crate) fn order_bound(w: &[f32], x: &[f32], rows: usize, rel: f64) -> Vec<f64> {
    let cols = x.len();
    (0..rows)
        .map(|r| {
            let s: f64 = w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| f64::from(a.abs()) * f64::from(b.abs()))
                .sum();
            s * rel + 1e-30
        })
        .collect()
}

fn check_q8_0(gpu: &Gpu, rng: &mut Rng, rows: usize, cols: usize) -> Result<Vec<Check>> {
    let w = random_q8_0(rng, rows, cols);
    let x: Vec<f32> = (0..cols).map(|_| rng.normalish() * 3.0).collect();
    let act = ActQ8_0::quantize(&x);
    let mut cpu = vec![0f32; rows];
    quant::matvec(GgmlType::Q8_0, &w, rows, cols, &act, &mut cpu).expect("CPU matvec");

    let s = &gpu.stream;
    let dx = s.clone_htod(&x)?;
    let dact = gpu.quantize_q8_0_act(&dx)?;
    let qs = s.clone_dtoh(&dact.qs)?;
    let scales = s.clone_dtoh(&dact.scales)?;
    let same_codes = qs[..cols] == *act.qs()
        && scales
            .iter()
            .zip(act.scales())
            .all(|(a, b)| a.to_bits() == b.to_bits());
    let dw = s.clone_htod(&w)?;
    let mut dy = s.alloc_zeros::<f32>(rows)?;
    gpu.matvec_q8_0(&dw, rows, cols, &dact, &mut dy)?;
    let got = s.clone_dtoh(&dy)?;

    let mut wf = vec![0f32; rows * cols];
    quant::dequantize(GgmlType::Q8_0, &w, &mut wf).expect("CPU dequantize");
    let worst = worst_ratio(&got, &cpu, &order_bound(&wf, &act.dequantize(), rows, 1e-5));
    Ok(vec![
        Check {
            name: format!("quantize_q8_0_act n={cols} (codes and scales bit-exact)"),
            worst: if same_codes { 0.0 } else { f64::INFINITY },
            pass: same_codes,
        },
        Check {
            name: format!("matvec_q8_0 {rows}x{cols} (bit-identical)"),
            worst,
            pass: identical(&got, &cpu),
        },
    ])
}

fn check_f16(gpu: &Gpu, rng: &mut Rng, rows: usize, cols: usize) -> Result<Check> {
    let w = random_f16(rng, rows * cols);
    let x: Vec<f32> = (0..cols).map(|_| rng.normalish()).collect();
    let mut wf = vec![0f32; rows * cols];
    quant::dequantize(GgmlType::F16, &w, &mut wf).expect("CPU dequantize");
    let cpu: Vec<f32> = wf
        .chunks_exact(cols)
        .map(|row| {
            if order::is_wide(rows, cols) {
                order::block_dot(row, &x, order::WIDE_THREADS)
            } else {
                order::lane_dot(row, &x)
            }
        })
        .collect();
    let s = &gpu.stream;
    let (dw, dx) = (s.clone_htod(&w)?, s.clone_htod(&x)?);
    let mut dy = s.alloc_zeros::<f32>(rows)?;
    gpu.matvec_f16(&dw, rows, cols, &dx, &mut dy)?;
    let got = s.clone_dtoh(&dy)?;
    let worst = worst_ratio(&got, &cpu, &order_bound(&wf, &x, rows, 1e-5));
    Ok(Check {
        name: format!("matvec_f16 {rows}x{cols} (bit-identical)"),
        worst,
        pass: identical(&got, &cpu),
    })
}

/// Random blocks of a K-quant type with scales that keep values O(1e-2).
pub(crate) fn random_kquant(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let (bb, n) = (ty.block_bytes(), rows * cols / 256);
    let mut out = Vec::with_capacity(n * bb);
    for _ in 0..n {
        let mut blk: Vec<u8> = (0..bb).map(|_| rng.next() as u8).collect();
        let d = quant::f32_to_f16(1e-3 + 2e-3 * (rng.unit() + 1.0)).to_le_bytes();
        let dmin = quant::f32_to_f16(1e-3 * (rng.unit() + 1.0)).to_le_bytes();
        match ty {
            GgmlType::Q2K => {
                blk[80..82].copy_from_slice(&d);
                blk[82..84].copy_from_slice(&dmin);
            }
            GgmlType::Q4K => {
                blk[0..2].copy_from_slice(&d);
                blk[2..4].copy_from_slice(&dmin);
            }
            _ => blk[0..2].copy_from_slice(&d),
        }
        out.extend(blk);
    }
    out
}

fn check_kquant(
    gpu: &Gpu,
    rng: &mut Rng,
    ty: GgmlType,
    rows: usize,
    cols: usize,
) -> Result<Vec<Check>> {
    let w = random_kquant(rng, ty, rows, cols);
    let mut x: Vec<f32> = (0..cols).map(|_| rng.normalish() * 2.0).collect();
    // A tie in |x| between opposite signs: the lower index must set d's sign.
    x[5] = 10.0;
    x[9] = -10.0;
    let act = quant::quantize_q8_k(&x).expect("CPU Q8_K");
    let mut cpu = vec![0f32; rows];
    quant::matvec(ty, &w, rows, cols, act.as_slice(), &mut cpu).expect("CPU matvec");

    let s = &gpu.stream;
    let dx = s.clone_htod(&x)?;
    let dact = gpu.quantize_q8_k(&dx)?;
    let bytes = s.clone_dtoh(&dact.data)?;
    let same = bytes
        .chunks_exact(292)
        .zip(&act)
        .all(|(g, c)| g == c.to_bytes().as_slice());
    let dw = s.clone_htod(&w)?;
    let mut dy = s.alloc_zeros::<f32>(rows)?;
    gpu.matvec_kquant(ty, &dw, rows, cols, &dact, &mut dy)?;
    let got = s.clone_dtoh(&dy)?;
    let mut wf = vec![0f32; rows * cols];
    quant::dequantize(ty, &w, &mut wf).expect("CPU dequantize");
    let xq: Vec<f32> = act
        .iter()
        .flat_map(|b| b.qs.iter().map(move |&q| b.d * f32::from(q)))
        .collect();
    let worst = worst_ratio(&got, &cpu, &order_bound(&wf, &xq, rows, 1e-5));
    Ok(vec![
        Check {
            name: format!("quantize_q8_k n={cols} (blocks bit-exact)"),
            worst: if same { 0.0 } else { f64::INFINITY },
            pass: same,
        },
        Check {
            name: format!("matvec {ty} {rows}x{cols} (bit-identical)"),
            worst,
            pass: identical(&got, &cpu),
        },
    ])
}

fn check_stages(gpu: &Gpu, rng: &mut Rng) -> Result<Vec<Check>> {
    use model::{qat, rope::Rope, ModelConfig};
    let s = &gpu.stream;
    let mut out = Vec::new();
    // The transcendental functions (kernels/math.cu vs model::math).
    let mut xs: Vec<f32> = (0..20_000).map(|_| rng.unit() * 110.0).collect();
    xs.extend((0..20_000).map(|_| rng.unit() * 1.05e6));
    xs.extend((0..5_000).map(|_| rng.unit() * 1e-6));
    xs.extend([
        0.0,
        -0.0,
        20.0,
        -20.0,
        88.7,
        88.8,
        -104.0,
        -103.9,
        f32::INFINITY,
        f32::NAN,
    ]);
    let probe = gpu.math_probe(&s.clone_htod(&xs)?)?;
    let cpu: Vec<f32> = xs
        .iter()
        .flat_map(|&x| {
            let (sn, cs) = model::math::sin_cos(x);
            [model::math::exp(x), model::math::softplus(x), sn, cs]
        })
        .collect();
    let diff = first_difference(&probe, &cpu).map(|i| {
        let f = ["exp", "softplus", "sin", "cos"][i % 4];
        format!(
            ": first differs at {f}({:e}) = {:e}, CPU {:e}",
            xs[i / 4],
            probe[i],
            cpu[i]
        )
    });
    out.push(Check {
        name: format!(
            "exp, softplus, sin, cos of {} values (bit-identical){}",
            xs.len(),
            diff.clone().unwrap_or_default()
        ),
        worst: 0.0,
        pass: diff.is_none() && probe.len() == cpu.len(),
    });
    // RMSNorm: f64 sums of squares in block order on both sides.
    for (count, n) in [(4, 4096), (1, 16384), (3, 100)] {
        let x: Vec<f32> = (0..count * n).map(|_| rng.normalish() * 3.0).collect();
        let w: Vec<f32> = (0..n).map(|_| 1.0 + rng.unit() * 0.5).collect();
        let mut cpu = vec![0f32; count * n];
        for (o, v) in cpu.chunks_mut(n).zip(x.chunks(n)) {
            model::norm::rms_norm(v, &w, 1e-6, o);
        }
        let (dx, dw) = (s.clone_htod(&x)?, s.clone_htod(&w)?);
        let mut dy = s.alloc_zeros::<f32>(count * n)?;
        gpu.rms_norm(&dx, Some(&dw), n, 1e-6, &mut dy)?;
        let got = s.clone_dtoh(&dy)?;
        let bound: Vec<f64> = cpu
            .iter()
            .map(|v| f64::from(v.abs()) * 1e-6 + 1e-30)
            .collect();
        let worst = worst_ratio(&got, &cpu, &bound);
        out.push(Check {
            name: format!("rms_norm {count}x{n} (bit-identical)"),
            worst,
            pass: identical(&got, &cpu),
        });
    }
    // RoPE (plain and YaRN) forward and inverse at short and long positions.
    let cfg = ModelConfig::flash();
    for (layer, pos, inverse) in [(0, 7, false), (2, 1_000_003, false), (3, 65_537, true)] {
        let rope = Rope::for_layer(&cfg, layer);
        let (count, dim) = (64, 512);
        let v: Vec<f32> = (0..count * dim).map(|_| rng.normalish()).collect();
        let mut cpu = v.clone();
        for h in cpu.chunks_mut(dim) {
            rope.apply(h, pos, inverse);
        }
        let mut dv = s.clone_htod(&v)?;
        let freqs = s.clone_htod(rope.inv_freq())?;
        gpu.rope(&mut dv, dim, &freqs, pos, inverse)?;
        let got = s.clone_dtoh(&dv)?;
        let bound = vec![2e-6; got.len()];
        let worst = worst_ratio(&got, &cpu, &bound);
        out.push(Check {
            name: format!(
                "rope layer {layer} pos {pos}{} (bit-identical)",
                if inverse { " inverse" } else { "" }
            ),
            worst,
            pass: identical(&got, &cpu),
        });
    }
    // FP8 round trip and f16 rounding: exact.
    for (count, dim, nope) in [(32, 512, 448), (5, 256, 192)] {
        let v: Vec<f32> = (0..count * dim)
            .map(|i| rng.normalish() * if i % 97 == 0 { 300.0 } else { 1.0 })
            .collect();
        let mut cpu = v.clone();
        for r in cpu.chunks_mut(dim) {
            qat::fp8_round_trip(r, nope);
        }
        let mut dv = s.clone_htod(&v)?;
        gpu.fp8_round_trip(&mut dv, dim, nope)?;
        let same = s
            .clone_dtoh(&dv)?
            .iter()
            .zip(&cpu)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        out.push(Check {
            name: format!("fp8_round_trip {count}x{dim} (bit-exact)"),
            worst: if same { 0.0 } else { f64::INFINITY },
            pass: same,
        });
        let mut cpu16 = v.clone();
        qat::f16_round(&mut cpu16);
        let mut dv = s.clone_htod(&v)?;
        gpu.f16_round(&mut dv)?;
        let same = s
            .clone_dtoh(&dv)?
            .iter()
            .zip(&cpu16)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        out.push(Check {
            name: format!("f16_round {} values (bit-exact)", v.len()),
            worst: if same { 0.0 } else { f64::INFINITY },
            pass: same,
        });
    }
    Ok(out)
}

fn check_hc_router_attention(gpu: &Gpu, rng: &mut Rng) -> Result<Vec<Check>> {
    let s = &gpu.stream;
    let mut out = Vec::new();
    let tol = |got: &[f32], want: &[f32], rel: f64| {
        let bound: Vec<f64> = want
            .iter()
            .map(|v| f64::from(v.abs()) * rel + rel)
            .collect();
        worst_ratio(got, want, &bound)
    };
    // HC split and post, n_hc = 4, 20 iterations, 16 tokens.
    let (n, count, d) = (4, 16, 4096);
    let m = 2 * n + n * n;
    let mix: Vec<f32> = (0..count * m).map(|_| rng.normalish()).collect();
    let scale: Vec<f32> = (0..3).map(|_| 0.5 + rng.unit().abs()).collect();
    let base: Vec<f32> = (0..m).map(|_| rng.normalish() * 0.5).collect();
    let (dm, dsc, dba) = (
        s.clone_htod(&mix)?,
        s.clone_htod(&scale)?,
        s.clone_htod(&base)?,
    );
    let mut dpre = s.alloc_zeros::<f32>(count * n)?;
    let mut dpost = s.alloc_zeros::<f32>(count * n)?;
    let mut dcomb = s.alloc_zeros::<f32>(count * n * n)?;
    gpu.hc_split(
        &dm, n, &dsc, &dba, 20, 1e-6, &mut dpre, &mut dpost, &mut dcomb,
    )?;
    let (gpre, gpost, gcomb) = (
        s.clone_dtoh(&dpre)?,
        s.clone_dtoh(&dpost)?,
        s.clone_dtoh(&dcomb)?,
    );
    let mut worst = 0f64;
    let mut same = true;
    for t in 0..count {
        let cpu = model::hc::split(&mix[t * m..(t + 1) * m], &scale, &base, n, 20, 1e-6);
        let (gp, gq, gc) = (
            &gpre[t * n..(t + 1) * n],
            &gpost[t * n..(t + 1) * n],
            &gcomb[t * n * n..(t + 1) * n * n],
        );
        worst = worst
            .max(tol(gp, &cpu.pre, 1e-5))
            .max(tol(gq, &cpu.post, 1e-5))
            .max(tol(gc, &cpu.comb, 1e-5));
        same &= identical(gp, &cpu.pre) && identical(gq, &cpu.post) && identical(gc, &cpu.comb);
    }
    out.push(Check {
        name: format!("hc_split {count} tokens (bit-identical)"),
        worst,
        pass: same,
    });
    let cpu_split = model::hc::split(&mix[..m], &scale, &base, n, 20, 1e-6);
    let y: Vec<f32> = (0..d).map(|_| rng.normalish()).collect();
    let h: Vec<f32> = (0..n * d).map(|_| rng.normalish() * 3.0).collect();
    let cpu = model::hc::post(&y, &h, &cpu_split);
    let (dy, dh) = (s.clone_htod(&y)?, s.clone_htod(&h)?);
    let (dp, dc) = (
        s.clone_htod(&cpu_split.post)?,
        s.clone_htod(&cpu_split.comb)?,
    );
    let mut dout = s.alloc_zeros::<f32>(n * d)?;
    gpu.hc_post(&dy, &dh, &dp, &dc, &mut dout)?;
    let same = s
        .clone_dtoh(&dout)?
        .iter()
        .zip(&cpu)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    out.push(Check {
        name: format!("hc_post {n}x{d} (bit-exact)"),
        worst: if same { 0.0 } else { f64::INFINITY },
        pass: same,
    });

    // Router: biased top-6 of 256 with forced ties, and a hash layer.
    let n_e = 256;
    let mut logits: Vec<f32> = (0..n_e).map(|_| rng.normalish() * 4.0).collect();
    logits[17] = 9.0;
    logits[200] = 9.0;
    let bias: Vec<f32> = (0..n_e).map(|_| rng.unit() * 0.05).collect();
    let mut bias_tied = bias.clone();
    bias_tied[200] = bias[17];
    let scores: Vec<f32> = logits
        .iter()
        .map(|&z| model::math::softplus(z).sqrt())
        .collect();
    for (label, hash) in [
        ("biased top-6 with a tie", None),
        ("hash ids", Some(vec![3i32, 77, 128, 200, 5, 254])),
    ] {
        let sel: Vec<usize> = match &hash {
            Some(ids) => ids.iter().map(|&e| e as usize).collect(),
            None => {
                let biased: Vec<f32> = scores.iter().zip(&bias_tied).map(|(a, b)| a + b).collect();
                model::moe::top_k_desc(&biased, 6)
            }
        };
        let cpu_w = model::moe::weigh(&scores, &sel, 1.5);
        let (dl, db) = (s.clone_htod(&logits)?, s.clone_htod(&bias_tied)?);
        let dh = match &hash {
            Some(ids) => Some(s.clone_htod(ids)?),
            None => None,
        };
        let mut de = s.alloc_zeros::<i32>(6)?;
        let mut dw = s.alloc_zeros::<f32>(6)?;
        gpu.router(
            &dl,
            hash.is_none().then_some(&db),
            dh.as_ref(),
            6,
            1.5,
            &mut de,
            &mut dw,
        )?;
        let ge: Vec<usize> = s.clone_dtoh(&de)?.iter().map(|&e| e as usize).collect();
        let worst = if ge == sel {
            tol(&s.clone_dtoh(&dw)?, &cpu_w, 1e-6)
        } else {
            f64::INFINITY
        };
        out.push(Check {
            name: format!("router {label} (same experts, same order)"),
            worst,
            pass: worst <= 1.0,
        });
    }

    // Sink attention: 64 heads of 512 over 128 raw + 512 compressed rows.
    for (heads, dim, n_keys) in [(64, 512, 640), (4, 256, 1), (3, 128, 77)] {
        let q: Vec<f32> = (0..heads * dim).map(|_| rng.normalish()).collect();
        let keys: Vec<f32> = (0..n_keys * dim).map(|_| rng.normalish() * 2.0).collect();
        let sinks: Vec<f32> = (0..heads).map(|_| rng.normalish()).collect();
        let rows: Vec<&[f32]> = keys.chunks(dim).collect();
        let scale = 1.0 / (dim as f32).sqrt();
        let mut cpu = vec![0f32; heads * dim];
        for ((o, qh), &sink) in cpu.chunks_mut(dim).zip(q.chunks(dim)).zip(&sinks) {
            model::attention::sink_attention(qh, &rows, sink, scale, o);
        }
        let (dq, dk, ds) = (
            s.clone_htod(&q)?,
            s.clone_htod(&keys)?,
            s.clone_htod(&sinks)?,
        );
        let mut dout = s.alloc_zeros::<f32>(heads * dim)?;
        gpu.sink_attention(&dq, &dk, dim, &ds, &mut dout)?;
        let got = s.clone_dtoh(&dout)?;
        let scale_max = cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
        let bound = vec![f64::from(scale_max) * 1e-5 + 1e-30; cpu.len()];
        let worst = worst_ratio(&got, &cpu, &bound);
        out.push(Check {
            name: format!("sink_attention {heads} heads x {dim}, {n_keys} keys"),
            worst,
            pass: worst <= 1.0,
        });
    }
    Ok(out)
}

fn check_moe_compressor_indexer(gpu: &Gpu, rng: &mut Rng) -> Result<Vec<Check>> {
    use model::state::{Frontier, EMPTY_SCORE};
    let s = &gpu.stream;
    let mut out = Vec::new();
    let exact = |name: String, got: &[f32], want: &[f32]| {
        let same = got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        Check {
            name,
            worst: if same { 0.0 } else { f64::INFINITY },
            pass: same,
        }
    };
    let close = |name: String, got: &[f32], want: &[f32], rel: f64| {
        let bound: Vec<f64> = want
            .iter()
            .map(|v| f64::from(v.abs()) * rel + rel)
            .collect();
        let worst = worst_ratio(got, want, &bound);
        Check {
            name,
            worst,
            pass: worst <= 1.0,
        }
    };
    // SwiGLU with the clamp active on some values.
    let n = 2048;
    let g: Vec<f32> = (0..n).map(|_| rng.normalish() * 6.0).collect();
    let u: Vec<f32> = (0..n).map(|_| rng.normalish() * 6.0).collect();
    let cpu: Vec<f32> = g
        .iter()
        .zip(&u)
        .map(|(&a, &b)| model::moe::swiglu(a, b, 10.0, 0.37))
        .collect();
    let (dg, du) = (s.clone_htod(&g)?, s.clone_htod(&u)?);
    let mut dm = s.alloc_zeros::<f32>(n)?;
    gpu.swiglu(&dg, &du, 10.0, 0.37, &mut dm)?;
    out.push(close(
        format!("swiglu {n} (expf differs by ulps)"),
        &s.clone_dtoh(&dm)?,
        &cpu,
        1e-6,
    ));
    // HC collapse.
    let (n_hc, d) = (4, 4096);
    let h: Vec<f32> = (0..n_hc * d).map(|_| rng.normalish()).collect();
    let w: Vec<f32> = (0..n_hc).map(|_| rng.unit().abs()).collect();
    let cpu = model::hc::weighted_sum(&h, &w);
    let (dh, dw) = (s.clone_htod(&h)?, s.clone_htod(&w)?);
    let mut dx = s.alloc_zeros::<f32>(d)?;
    gpu.hc_weighted_sum(&dh, &dw, &mut dx)?;
    out.push(exact(
        format!("hc_weighted_sum {n_hc}x{d} (bit-exact)"),
        &s.clone_dtoh(&dx)?,
        &cpu,
    ));
    // Compressor pooling: ratio 4 (overlapping, previous window empty and
    // full) and ratio 128.
    for (ratio, d, empty_prev) in [(4, 512, true), (4, 128, false), (128, 512, false)] {
        let mut f = Frontier::new(ratio, d);
        for (i, (k, sc)) in f.kv.iter_mut().zip(f.score.iter_mut()).enumerate() {
            *k = rng.normalish();
            let row = i / f.width;
            *sc = if empty_prev && ratio == 4 && row < 4 {
                EMPTY_SCORE
            } else {
                rng.normalish() * 3.0
            };
        }
        let cpu = model::compressor::pool(&f, ratio, d);
        let (dk, dsc) = (s.clone_htod(&f.kv)?, s.clone_htod(&f.score)?);
        let mut dout = s.alloc_zeros::<f32>(d)?;
        gpu.compressor_pool(&dk, &dsc, ratio, d, &mut dout)?;
        out.push(close(
            format!("compressor_pool ratio {ratio} d {d}"),
            &s.clone_dtoh(&dout)?,
            &cpu,
            1e-6,
        ));
    }
    // Indexer round trip: Hadamard butterflies in the CPU's order, then FP4.
    for (count, dim) in [(64, 128), (3, 256)] {
        let v: Vec<f32> = (0..count * dim).map(|_| rng.normalish()).collect();
        let mut cpu = v.clone();
        for r in cpu.chunks_mut(dim) {
            model::qat::indexer_round_trip(r);
        }
        let mut dv = s.clone_htod(&v)?;
        gpu.indexer_round_trip(&mut dv, dim)?;
        out.push(exact(
            format!("indexer_round_trip {count}x{dim} (bit-exact)"),
            &s.clone_dtoh(&dv)?,
            &cpu,
        ));
    }
    Ok(out)
}

/// Runs every check; the shapes are Flash's (attention and shared-expert
/// projections, HC mix, router, routed experts) and odd ones.
pub fn run(gpu: &Gpu) -> Result<Vec<Check>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    for (rows, cols) in [
        (1024, 4096),
        (512, 4096),
        (4096, 8192),
        (2048, 4096),
        (7, 96),
        (1, 32),
    ] {
        out.extend(check_q8_0(gpu, &mut rng, rows, cols)?);
    }
    for (rows, cols) in [(24, 16384), (256, 4096), (1024, 4096), (5, 33), (3, 1)] {
        out.push(check_f16(gpu, &mut rng, rows, cols)?);
    }
    // Routed experts: gate/up 2048x4096, down 4096x2048, and odd sizes.
    for ty in [GgmlType::Iq2Xxs, GgmlType::Q2K, GgmlType::Q4K] {
        for (rows, cols) in [(2048, 4096), (4096, 2048), (3, 256), (33, 768)] {
            out.extend(check_kquant(gpu, &mut rng, ty, rows, cols)?);
        }
    }
    out.extend(check_stages(gpu, &mut rng)?);
    out.extend(check_hc_router_attention(gpu, &mut rng)?);
    out.extend(check_moe_compressor_indexer(gpu, &mut rng)?);
    out.extend(crate::selftest_batch::run(gpu, &mut rng)?);
    out.extend(crate::selftest_sample::run(gpu, &mut rng)?);
    Ok(out)
}
