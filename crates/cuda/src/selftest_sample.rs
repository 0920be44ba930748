//! Device sampling against the host rules it implements (the `sampling`
//! crate, which the engine's CPU path runs): on random logits of Flash's
//! vocabulary (flat, so min-p keeps thousands of tokens, and peaked like a
//! language model's, so it keeps a few), with exact ties, NaN and infinities
//! at odd sizes, the device must pick the host's token for every (filters,
//! uniform number) pair, greedy included, and report the host's top logits
//! bit for bit with the log-sum-exp within f32 rounding.

use std::time::Instant;

use sampling::{Filters, Pick};

use crate::error::Result;
use crate::ops::Gpu;
use crate::sample::{DeviceLogits, DeviceSampler};
use crate::selftest::{Check, Rng};

/// Flash's vocabulary.
const N_VOCAB: usize = 129_280;

/// (temperature, top_k, top_p, min_p): the default, its temperatures, each
/// filter alone (top-k 1/40/1000, top-p 0.9, nothing: the draw over the
/// whole vocabulary) and combinations.
const FILTERS: [(f32, usize, f32, f32); 11] = [
    (1.0, 0, 1.0, 0.05),
    (0.7, 0, 1.0, 0.05),
    (1.5, 0, 1.0, 0.05),
    (1.0, 1, 1.0, 0.0),
    (1.0, 40, 1.0, 0.0),
    (0.7, 1000, 1.0, 0.0),
    (1.0, 0, 0.9, 0.0),
    (1.0, 0, 1.0, 0.0),
    (1.5, 0, 1.0, 0.0),
    (1.5, 40, 0.9, 0.05),
    (0.7, 1000, 0.9, 0.05),
];

/// A uniform number in [0, 1) as the engine's sampler makes one.
fn unit(rng: &mut Rng) -> f64 {
    (rng.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Whether the host picks `got` when the draw's number moves by a relative
/// 1e-12: the device's sums may differ from the host's in their last bits
/// (sample.rs), which can only matter at a boundary between two tokens.
fn at_boundary(logits: &[f32], filters: Filters, u: f64, got: u32) -> bool {
    [
        u * (1.0 - 1e-12),
        (u * (1.0 + 1e-12)).min(1.0 - f64::EPSILON),
    ]
    .iter()
    .any(|&unit| sampling::pick(logits, &Pick::Draw { filters, unit }) == got)
}

/// Every filter setting (and greedy) with `draws` numbers each, on one
/// vector: one check per setting.
fn picks(
    gpu: &Gpu,
    ds: &DeviceSampler,
    rng: &mut Rng,
    what: &str,
    logits: &[f32],
    draws: usize,
) -> Result<Vec<Check>> {
    let dev = DeviceLogits::upload(gpu, logits)?;
    let mut out = Vec::new();
    let t0 = Instant::now();
    let greedy = ds.pick(gpu, &dev, &Pick::Greedy)?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let same = greedy == sampling::argmax(logits);
    out.push(Check {
        name: format!("{what}: greedy ({ms:.2} ms)"),
        worst: if same { 0.0 } else { f64::INFINITY },
        pass: same,
    });
    for &(temperature, top_k, top_p, min_p) in &FILTERS {
        let filters = Filters {
            temperature,
            top_k,
            top_p,
            min_p,
        };
        let (mut bad, mut boundary, mut secs) = (0usize, 0usize, 0f64);
        // The extremes of the range, then random numbers.
        let units = [0.0, 1.0 - f64::EPSILON / 2.0]
            .into_iter()
            .chain((0..draws).map(|_| unit(rng)))
            .collect::<Vec<_>>();
        for &u in &units {
            let pick = Pick::Draw { filters, unit: u };
            let t = Instant::now();
            let got = ds.pick(gpu, &dev, &pick)?;
            secs += t.elapsed().as_secs_f64();
            let want = sampling::pick(logits, &pick);
            if got != want {
                if at_boundary(logits, filters, u, got) {
                    boundary += 1;
                } else {
                    bad += 1;
                }
            }
        }
        let note = if boundary > 0 {
            format!(", {boundary} at a rounding boundary")
        } else {
            String::new()
        };
        out.push(Check {
            name: format!(
                "{what}: T={temperature} top_k={top_k} top_p={top_p} min_p={min_p}: {}/{} draws{note} ({:.2} ms/draw)",
                units.len() - bad - boundary,
                units.len(),
                secs * 1e3 / units.len() as f64
            ),
            worst: bad as f64,
            pass: bad == 0,
        });
    }
    Ok(out)
}

/// The top-n logits of one vector for several n against the host.
fn tops(gpu: &Gpu, ds: &DeviceSampler, what: &str, logits: &[f32], token: u32) -> Result<Check> {
    let dev = DeviceLogits::upload(gpu, logits)?;
    let n = logits.len();
    let mut worst = 0f64;
    let mut exact = true;
    for k in [0, 1, 5, 20, 128, 1000, n] {
        let tok = (k % 2 == 0).then_some(token);
        let got = ds.top_logits(gpu, &dev, tok, k)?;
        let want = sampling::top_logits(logits, tok, k);
        let bits = |v: &[(u32, f32)]| v.iter().map(|&(i, l)| (i, l.to_bits())).collect::<Vec<_>>();
        exact &= bits(&got.top) == bits(&want.top)
            && got.token.map(f32::to_bits) == want.token.map(f32::to_bits);
        // Within f32 rounding: the device sums exp(x - max) in another order.
        let (a, b) = (got.lse, want.lse);
        let err = if a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) {
            0.0
        } else {
            f64::from((a - b).abs()) / (2.0 * f64::from(f32::EPSILON) * f64::from(b.abs().max(1.0)))
        };
        worst = worst.max(if err.is_nan() { f64::INFINITY } else { err });
    }
    let worst = if exact { worst } else { f64::INFINITY };
    Ok(Check {
        name: format!("{what}: top logits (ids and values bit-exact, lse within f32 rounding)"),
        worst,
        pass: worst <= 1.0,
    })
}

/// Runs the sampling checks.
pub(crate) fn run(gpu: &Gpu, rng: &mut Rng) -> Result<Vec<Check>> {
    let ds = DeviceSampler::new(gpu, N_VOCAB)?;
    let mut out = Vec::new();
    let flat: Vec<f32> = (0..N_VOCAB).map(|_| rng.normalish() * 3.0).collect();
    // A language model's shape: a few tokens far above a broad floor.
    let mut peaked: Vec<f32> = (0..N_VOCAB).map(|_| rng.normalish() * 2.0).collect();
    for j in 0..6 {
        peaked[(rng.next() % N_VOCAB as u64) as usize] = 14.0 - j as f32 * 0.7;
    }
    // Values on a coarse grid: long runs of exact ties.
    let ties: Vec<f32> = flat.iter().map(|v| (v * 2.0).round() / 2.0).collect();
    let mut odd: Vec<f32> = (0..77).map(|_| rng.normalish() * 2.0).collect();
    odd[3] = f32::NAN;
    odd[40] = f32::NEG_INFINITY;
    odd[50] = odd[10];
    odd[61] = -0.0;
    odd[62] = 0.0;
    let mut with_inf = odd.clone();
    with_inf[20] = f32::INFINITY;
    let cases: [(&str, &[f32], usize); 8] = [
        ("sample n=129280 flat", &flat, 12),
        ("sample n=129280 peaked", &peaked, 24),
        ("sample n=129280 ties", &ties, 8),
        ("sample n=77 nan/-inf/ties", &odd, 64),
        ("sample n=77 +inf", &with_inf, 8),
        ("sample n=1", &[0.5], 8),
        ("sample n=5 all NaN", &[f32::NAN; 5], 4),
        ("sample n=3 all -inf", &[f32::NEG_INFINITY; 3], 4),
    ];
    for (what, logits, draws) in cases {
        out.extend(picks(gpu, &ds, rng, what, logits, draws)?);
    }
    out.push(tops(gpu, &ds, "n=129280 flat", &flat, 17)?);
    out.push(tops(gpu, &ds, "n=129280 ties", &ties, 129_279)?);
    out.push(tops(gpu, &ds, "n=77 nan/-inf/ties", &odd, 3)?);
    out.push(tops(gpu, &ds, "n=1", &[0.5], 0)?);
    Ok(out)
}
