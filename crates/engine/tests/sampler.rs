//! Sampler statistics: filtered tokens are never drawn, kept tokens are
//! drawn in proportion to their tempered probability, seeds reproduce.

use engine::sampler::{argmax, top_logprobs};
use engine::{Sampler, SamplerConfig};

/// Deterministic logits with a spread of magnitudes and a few exact ties.
fn logits(n: usize, salt: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let h = (i ^ salt).wrapping_mul(2_654_435_761) >> 8;
            (h % 1000) as f32 / 250.0 - 2.0
        })
        .collect()
}

fn softmax(z: &[f32], t: f32) -> Vec<f64> {
    let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f64> = z.iter().map(|&v| f64::from((v - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn draws(cfg: SamplerConfig, z: &[f32], n: usize) -> Vec<usize> {
    let mut s = Sampler::new(cfg).unwrap();
    let mut counts = vec![0; z.len()];
    for _ in 0..n {
        counts[s.sample(z, false) as usize] += 1;
    }
    counts
}

/// Ids by descending logit, lower id first on ties.
fn order(z: &[f32]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..z.len()).collect();
    ids.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
    ids
}

fn cfg(temperature: f32, top_k: usize, top_p: f32, min_p: f32, seed: u64) -> SamplerConfig {
    SamplerConfig {
        temperature,
        top_k,
        top_p,
        min_p,
        seed,
    }
}

#[test]
fn unfiltered_draws_follow_the_tempered_softmax() {
    let z = logits(12, 7);
    let n = 200_000;
    for t in [1.0f32, 0.5, 2.0] {
        let counts = draws(cfg(t, 0, 1.0, 0.0, 42), &z, n);
        for (i, p) in softmax(&z, t).iter().enumerate() {
            let f = counts[i] as f64 / n as f64;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                (f - p).abs() <= 5.0 * sd + 1e-4,
                "t {t}: token {i}: {f} vs {p}"
            );
        }
    }
}

#[test]
fn top_k_never_draws_outside_the_k_largest() {
    let z = logits(500, 3);
    let n = 50_000;
    for k in [1, 2, 10, 40] {
        let counts = draws(cfg(1.5, k, 1.0, 0.0, 9), &z, n);
        let kept = &order(&z)[..k];
        for (i, &c) in counts.iter().enumerate() {
            if !kept.contains(&i) {
                assert_eq!(c, 0, "k {k}: token {i} drawn {c} times");
            }
        }
        // The kept set is sampled, not collapsed to its head.
        let hit = kept.iter().filter(|&&i| counts[i] > 0).count();
        assert_eq!(hit, k, "k {k}: every kept token appears");
    }
}

#[test]
fn top_p_never_draws_outside_the_nucleus() {
    let z = logits(300, 11);
    let n = 50_000;
    for p in [0.1f32, 0.5, 0.9] {
        let probs = softmax(&z, 1.0);
        let mut cum = 0.0;
        let mut kept = Vec::new();
        for i in order(&z) {
            kept.push(i);
            cum += probs[i];
            if cum >= f64::from(p) {
                break;
            }
        }
        let counts = draws(cfg(1.0, 0, p, 0.0, 5), &z, n);
        for (i, &c) in counts.iter().enumerate() {
            assert!(
                kept.contains(&i) || c == 0,
                "p {p}: token {i} drawn {c} times"
            );
        }
        assert!(
            kept.iter().all(|&i| counts[i] > 0),
            "p {p}: nucleus sampled"
        );
    }
}

#[test]
fn min_p_never_draws_a_token_below_the_threshold() {
    let z = logits(400, 21);
    let n = 50_000;
    for (t, m) in [(1.0f32, 0.05f32), (1.0, 0.5), (0.7, 0.2)] {
        let probs = softmax(&z, t);
        let pmax = probs.iter().cloned().fold(0.0, f64::max);
        let counts = draws(cfg(t, 0, 1.0, m, 77), &z, n);
        let mut allowed = 0;
        for (i, &c) in counts.iter().enumerate() {
            if probs[i] < f64::from(m) * pmax * (1.0 - 1e-9) {
                assert_eq!(c, 0, "t {t} min_p {m}: token {i} drawn");
            } else {
                allowed += 1;
            }
        }
        assert!(allowed > 1);
    }
}

#[test]
fn filters_combine_to_the_smallest_kept_set() {
    let z = logits(300, 5);
    let counts = draws(cfg(1.0, 50, 0.95, 0.3, 1), &z, 20_000);
    let probs = softmax(&z, 1.0);
    let pmax = probs.iter().cloned().fold(0.0, f64::max);
    let top: Vec<usize> = order(&z)[..50].to_vec();
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 {
            assert!(top.contains(&i) && probs[i] >= 0.3 * pmax * (1.0 - 1e-9));
        }
    }
}

#[test]
fn same_seed_same_tokens_and_temperature_zero_is_greedy() {
    let z = logits(1000, 2);
    let run = |seed| {
        let mut s = Sampler::new(SamplerConfig {
            seed,
            ..SamplerConfig::default()
        })
        .unwrap();
        (0..200).map(|_| s.sample(&z, false)).collect::<Vec<_>>()
    };
    assert_eq!(run(1234), run(1234));
    assert_ne!(run(1234), run(1235));
    let mut g = Sampler::new(cfg(0.0, 0, 1.0, 0.0, 3)).unwrap();
    let mut s = Sampler::new(SamplerConfig::default()).unwrap();
    for salt in 0..50 {
        let z = logits(777, salt);
        assert_eq!(g.sample(&z, false), argmax(&z));
        // The DSML override forces the argmax whatever the settings.
        assert_eq!(s.sample(&z, true), argmax(&z));
    }
}

#[test]
fn argmax_prefers_the_lower_id_on_ties_and_skips_nan() {
    assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    assert_eq!(argmax(&[f32::NAN, 0.5, f32::NAN]), 1);
    let top = top_logprobs(&[0.0, 2.0, 1.0, 2.0], 3);
    assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
    let total: f32 = [0.0f32, 2.0, 1.0, 2.0].iter().map(|v| v.exp()).sum();
    assert!((top[0].1 - (2.0 - total.ln())).abs() < 1e-6);
}

#[test]
fn defaults_and_invalid_settings() {
    let d = SamplerConfig::default();
    assert_eq!(
        (d.temperature, d.top_k, d.top_p, d.min_p),
        (1.0, 0, 1.0, 0.05)
    );
    assert_eq!(SamplerConfig::thinking(9), SamplerConfig { seed: 9, ..d });
    for bad in [
        cfg(-1.0, 0, 1.0, 0.0, 0),
        cfg(f32::NAN, 0, 1.0, 0.0, 0),
        cfg(1.0, 0, 0.0, 0.0, 0),
        cfg(1.0, 0, 1.5, 0.0, 0),
        cfg(1.0, 0, 1.0, -0.1, 0),
        cfg(1.0, 0, 1.0, 1.1, 0),
    ] {
        let e = Sampler::new(bad).err().expect("rejected").to_string();
        assert!(e.starts_with("sampler: "), "{e}");
    }
}
