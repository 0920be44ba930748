//! The next-token rules of ds4rs on host logits: the definition that the
//! engine's CPU path runs and the CUDA kernels (`cuda::sample`) reproduce.
//! It lives in its own crate because both `engine` and `cuda` need it and
//! `engine` depends on `cuda`: the device selftest compares the kernels with
//! these functions, not with a copy of them.
//!
//! Order: logits are divided by the temperature; top-k keeps the k largest;
//! top-p keeps the smallest most-probable prefix whose probability (softmax
//! over the top-k set) reaches p; min-p keeps tokens whose probability is at
//! least `min_p` times the most probable one's. The draw is over what all
//! three keep, renormalized. Every filter keeps a most-probable prefix, so
//! the kept set is never empty for finite logits. Ties order by lower token
//! id and NaN logits are never drawn, so a given draw gives the same token
//! on every run and platform.
//!
//! The randomness is not here: a [`Pick::Draw`] carries one uniform number
//! in [0, 1) (the engine's seeded ChaCha8 stream makes it), so the same
//! number picks the same token on the host and on the device.

/// What the filters keep before the draw. Values are the engine's
/// validated sampler settings (temperature > 0 for a draw, top-p in (0, 1],
/// min-p in [0, 1]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Filters {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means off.
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
}

/// How to choose the next token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pick {
    /// The largest logit ([`argmax`]).
    Greedy,
    /// A draw from what `filters` keep, at `unit` ∈ [0, 1) of their total
    /// weight.
    Draw { filters: Filters, unit: f64 },
}

impl Pick {
    /// Whether the choice is the argmax: greedy, or a draw at temperature 0.
    pub fn is_greedy(&self) -> bool {
        match self {
            Pick::Greedy => true,
            Pick::Draw { filters, .. } => filters.temperature == 0.0,
        }
    }
}

/// Index of the largest logit, lower id on ties; NaN never wins; 0 when
/// nothing beats -inf.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > bv {
            best = i;
            bv = v;
        }
    }
    best as u32
}

/// The token `pick` chooses from `logits`.
pub fn pick(logits: &[f32], pick: &Pick) -> u32 {
    let (filters, unit) = match *pick {
        Pick::Draw { filters, unit } if !pick.is_greedy() => (filters, unit),
        _ => return argmax(logits),
    };
    let kept = candidates(logits, &filters);
    let total: f64 = kept.iter().map(|&(_, p)| p).sum();
    let u = unit * total;
    let mut acc = 0.0;
    for &(id, p) in &kept {
        acc += p;
        if u < acc {
            return id;
        }
    }
    kept.last().map_or_else(|| argmax(logits), |&(id, _)| id)
}

/// The tokens the filters keep with their unnormalized weights
/// `exp(l/T - max l/T)` (f64), most probable first. The draw walks this
/// list, so its order and its sums (sequential, in this order) are part of
/// the definition.
pub fn candidates(logits: &[f32], filters: &Filters) -> Vec<(u32, f64)> {
    let t = f64::from(filters.temperature);
    let mut ids: Vec<u32> = (0..logits.len() as u32)
        .filter(|&i| !logits[i as usize].is_nan())
        .collect();
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    if filters.top_k > 0 && filters.top_k < ids.len() {
        ids.select_nth_unstable_by(filters.top_k - 1, by_logit);
        ids.truncate(filters.top_k);
    }
    let Some(zmax) = ids
        .iter()
        .map(|&i| f64::from(logits[i as usize]) / t)
        .reduce(f64::max)
    else {
        return Vec::new();
    };
    // One exp per candidate: weights relative to the most probable (1).
    let mut kept: Vec<(u32, f64)> = ids
        .into_iter()
        .map(|i| (i, (f64::from(logits[i as usize]) / t - zmax).exp()))
        .collect();
    let denom: f64 = kept.iter().map(|&(_, w)| w).sum();
    // min-p: p_i >= min_p * p_max  <=>  w_i >= min_p.
    let min_w = f64::from(filters.min_p);
    kept.retain(|&(_, w)| w >= min_w);
    kept.sort_by(|a, b| by_logit(&a.0, &b.0));
    if filters.top_p < 1.0 {
        let target = f64::from(filters.top_p) * denom;
        let mut cum = 0.0;
        let n = kept
            .iter()
            .position(|&(_, w)| {
                cum += w;
                cum >= target
            })
            .map_or(kept.len(), |i| i + 1);
        kept.truncate(n);
    }
    kept
}

/// `ln Σ exp(x)`, stable: the max in f32, the sum of `exp(x - max)` in f64.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if !m.is_finite() {
        return m;
    }
    let s: f64 = x.iter().map(|&v| f64::from(v - m).exp()).sum();
    m + s.ln() as f32
}

/// The `n` largest logits as (id, logit), by `f32::total_cmp` descending,
/// lower id first on ties.
pub fn largest(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let n = n.min(ids.len());
    if n > 0 && n < ids.len() {
        ids.select_nth_unstable_by(n - 1, by_logit);
    }
    ids.truncate(n);
    ids.sort_by(by_logit);
    ids.into_iter().map(|i| (i, logits[i as usize])).collect()
}

/// `k` most probable tokens with their log-probabilities under the plain
/// softmax of `logits`, most probable first.
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    top_logits(logits, None, k).top_logprobs()
}

/// What log-probability reports need from one position's logits: the plain
/// softmax's normalizer, one token's logit and the largest logits. A device
/// backend returns exactly this instead of the whole vector.
#[derive(Clone, Debug, PartialEq)]
pub struct TopLogits {
    /// `ln Σ exp(logit)` over the vocabulary ([`log_sum_exp`]).
    pub lse: f32,
    /// The logit of the token asked about, if any.
    pub token: Option<f32>,
    /// The largest logits as (id, logit), most probable first ([`largest`]).
    pub top: Vec<(u32, f32)>,
}

impl TopLogits {
    /// The asked token's log-probability.
    pub fn logprob(&self) -> Option<f32> {
        self.token.map(|l| l - self.lse)
    }

    /// The largest logits as (id, log-probability).
    pub fn top_logprobs(&self) -> Vec<(u32, f32)> {
        self.top.iter().map(|&(i, l)| (i, l - self.lse)).collect()
    }
}

/// [`TopLogits`] of `logits` for `token` (which must be an index of
/// `logits`) and the `n` largest.
pub fn top_logits(logits: &[f32], token: Option<u32>, n: usize) -> TopLogits {
    TopLogits {
        lse: log_sum_exp(logits),
        token: token.map(|t| logits[t as usize]),
        top: largest(logits, n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(temperature: f32, top_k: usize, top_p: f32, min_p: f32, unit: f64) -> Pick {
        Pick::Draw {
            filters: Filters {
                temperature,
                top_k,
                top_p,
                min_p,
            },
            unit,
        }
    }

    #[test]
    fn the_draw_walks_the_kept_tokens_in_order() {
        // Kept order at T=1: ids 2, 0, 3 (tie: lower id first), 1, 5 with
        // weights 1, e^-1, e^-1, e^-2, e^-3 relative to the max.
        let z = [2.0, 1.0, 3.0, 2.0, f32::NAN, 0.0];
        let w: Vec<f64> = [0.0, -1.0, -1.0, -2.0, -3.0]
            .iter()
            .map(|x: &f64| x.exp())
            .collect();
        let total: f64 = w.iter().sum();
        let at = |u: f64| pick(&z, &draw(1.0, 0, 1.0, 0.0, u / total));
        assert_eq!(at(0.5), 2);
        assert_eq!(at(w[0] + 0.1), 0);
        assert_eq!(at(w[0] + w[1] + 0.1), 3);
        assert_eq!(at(w[0] + w[1] + w[2] + 0.1), 1);
        assert_eq!(at(total - 0.01), 5);
        // min-p 0.1 drops e^-3; top-k 1 keeps the max; top-p 0.5 keeps the max only.
        assert_eq!(pick(&z, &draw(1.0, 0, 1.0, 0.1, 0.999_999)), 1);
        assert_eq!(pick(&z, &draw(1.0, 1, 1.0, 0.0, 0.999)), 2);
        assert_eq!(pick(&z, &draw(1.0, 0, 0.5, 0.0, 0.999)), 2);
        // Temperature 0 and greedy are the argmax; NaN is never chosen.
        assert_eq!(pick(&z, &draw(0.0, 0, 1.0, 0.0, 0.9)), 2);
        assert_eq!(pick(&[f32::NAN, 1.0], &Pick::Greedy), 1);
        assert!(draw(0.0, 5, 0.5, 0.1, 0.0).is_greedy());
    }

    #[test]
    fn nothing_kept_falls_back_to_the_argmax() {
        assert_eq!(pick(&[f32::NAN; 3], &draw(1.0, 0, 1.0, 0.05, 0.5)), 0);
        // +inf makes every weight NaN or 0: min-p keeps nothing.
        let z = [0.0, f32::INFINITY, 1.0];
        assert_eq!(pick(&z, &draw(1.0, 0, 1.0, 0.05, 0.5)), 1);
    }

    #[test]
    fn top_logits_report_the_plain_softmax() {
        let z = [0.0, 2.0, 1.0, 2.0];
        let t = top_logits(&z, Some(2), 3);
        assert_eq!(t.top, vec![(1, 2.0), (3, 2.0), (2, 1.0)]);
        assert_eq!(t.lse, log_sum_exp(&z));
        assert_eq!(t.logprob(), Some(1.0 - t.lse));
        assert_eq!(top_logprobs(&z, 3), t.top_logprobs());
        assert_eq!(top_logits(&z, None, 9).top.len(), 4);
    }
}
