//! The MoE FFN (model.md §7): sqrt-softplus router, hash or biased top-k
//! selection, clamped SwiGLU experts with the route weight applied before
//! the down projection, and the shared expert.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::forward::{Options, Trace};
use crate::hc::sigmoid_stable;
use crate::linear::Input;
use crate::weights::{LayerWeights, Mat};

/// Lower bound of the selected weights' sum, 2^-14 (model.md §0).
const ROUTER_SUM_FLOOR: f32 = 1.0 / 16384.0;

use crate::math::softplus;

/// `(silu(min(g, c)) · clamp(u, -c, c)) · weight`, the clamp applied only
/// when `c > 1e-6` (§7.4, §7.5).
pub fn swiglu(g: f32, u: f32, clamp: f32, weight: f32) -> f32 {
    let (g, u) = if clamp > 1e-6 {
        (g.min(clamp), u.clamp(-clamp, clamp))
    } else {
        (g, u)
    };
    (g * sigmoid_stable(g)) * u * weight
}

/// Chosen experts and their weights, in slot order.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub experts: Vec<usize>,
    pub weights: Vec<f32>,
}

/// Biased top-k by stable insertion: descending score, lower index first on
/// ties (§7.2).
pub fn top_k_desc(scores: &[f32], k: usize) -> Vec<usize> {
    let mut sel: Vec<usize> = Vec::with_capacity(k + 1);
    for (e, &s) in scores.iter().enumerate() {
        let at = sel.iter().position(|&o| s > scores[o]).unwrap_or(sel.len());
        if at < k {
            sel.insert(at, e);
            sel.truncate(k);
        }
    }
    sel
}

/// Weights of the selected experts from their unbiased scores.
pub fn weigh(scores: &[f32], sel: &[usize], scale: f32) -> Vec<f32> {
    let mut sum = 0f32;
    for &e in sel {
        sum += scores[e];
    }
    let sum = sum.max(ROUTER_SUM_FLOOR);
    sel.iter().map(|&e| scores[e] / sum * scale).collect()
}

pub struct Moe<'a> {
    pub cfg: &'a ModelConfig,
    pub layer: usize,
    pub w: &'a LayerWeights<'a>,
    pub opts: Options,
}

impl Moe<'_> {
    pub fn route(&self, x: &[f32], token: u32) -> Result<Route> {
        let cfg = self.cfg;
        let mut logits = vec![0f32; cfg.n_expert];
        self.w.router.matvec(x, &mut logits, self.opts.numerics)?;
        let scores: Vec<f32> = logits.iter().map(|&z| softplus(z).sqrt()).collect();
        let k = cfg.n_expert_used;
        let experts = match &self.w.tid2eid {
            Some(table) => {
                let t = token as usize;
                let ids = table
                    .get(t * k..(t + 1) * k)
                    .ok_or(ModelError::TokenOutOfRange {
                        token,
                        n_vocab: table.len() / k,
                    })?;
                ids.iter()
                    .map(|&id| {
                        usize::try_from(id)
                            .ok()
                            .filter(|&e| e < cfg.n_expert)
                            .ok_or(ModelError::BadHashEntry {
                                layer: self.layer,
                                token,
                                id,
                                n_expert: cfg.n_expert,
                            })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
            None => {
                let biased: Vec<f32> = match &self.w.router_bias {
                    Some(b) => scores.iter().zip(b).map(|(s, b)| s + b).collect(),
                    None => scores.clone(),
                };
                top_k_desc(&biased, k)
            }
        };
        let weights = weigh(&scores, &experts, cfg.expert_weights_scale);
        Ok(Route { experts, weights })
    }

    /// `routed + shared` for input `x` (the `ffn_norm` output).
    pub fn run(
        &self,
        x: &[f32],
        token: u32,
        pos: usize,
        trace: &mut dyn Trace,
    ) -> Result<Vec<f32>> {
        let route = self.route(x, token)?;
        let ids: Vec<f32> = route.experts.iter().map(|&e| e as f32).collect();
        trace.record("moe_experts", self.layer, pos, &ids);
        trace.record("moe_weights", self.layer, pos, &route.weights);
        let routed = self.routed(x, &route)?;
        trace.record("moe_routed", self.layer, pos, &routed);
        let shared = self.shared(x)?;
        trace.record("moe_shared", self.layer, pos, &shared);
        let out: Vec<f32> = routed.iter().zip(&shared).map(|(a, b)| a + b).collect();
        trace.record("ffn_out", self.layer, pos, &out);
        Ok(out)
    }

    pub fn routed(&self, x: &[f32], route: &Route) -> Result<Vec<f32>> {
        let (w, num) = (self.w, self.opts.numerics);
        let xin = Input::new(w.gate_exps.ty, x, num)?;
        let mut out = vec![0f32; self.cfg.n_embd];
        let mut down = vec![0f32; self.cfg.n_embd];
        for (&e, &rw) in route.experts.iter().zip(&route.weights) {
            let mid = self.mid(&w.gate_exps.expert(e), &w.up_exps.expert(e), &xin, rw)?;
            w.down_exps.expert(e).matvec(&mid, &mut down, num)?;
            for (o, d) in out.iter_mut().zip(&down) {
                *o += d;
            }
        }
        Ok(out)
    }

    pub fn shared(&self, x: &[f32]) -> Result<Vec<f32>> {
        let (w, num) = (self.w, self.opts.numerics);
        let xin = Input::new(w.gate_shexp.ty, x, num)?;
        let mid = self.mid(&w.gate_shexp, &w.up_shexp, &xin, 1.0)?;
        let mut out = vec![0f32; self.cfg.n_embd];
        w.down_shexp.matvec(&mid, &mut out, num)?;
        Ok(out)
    }

    /// `(silu(min(g, c)) · clamp(u, -c, c)) · weight` (§7.4, §7.5).
    fn mid(&self, gate: &Mat<'_>, up: &Mat<'_>, x: &Input<'_>, weight: f32) -> Result<Vec<f32>> {
        let num = self.opts.numerics;
        let n = gate.rows;
        let (mut g, mut u) = (vec![0f32; n], vec![0f32; n]);
        gate.matvec_input(x, &mut g, num)?;
        up.matvec_input(x, &mut u, num)?;
        let clamp = self.cfg.swiglu_clamp[self.layer];
        Ok(g.iter()
            .zip(&u)
            .map(|(&g, &u)| swiglu(g, u, clamp, weight))
            .collect())
    }
}

// The spec's test vectors are quoted with the digits it prints.
#[cfg(test)]
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 8.0 * f32::EPSILON * b.abs()
    }

    /// model.md §13.2.
    #[test]
    fn router_vectors() {
        let logits: Vec<f32> = (0..256)
            .map(|e| (((37 * e) % 101) as f32 - 50.0) / 8.0)
            .collect();
        let bias: Vec<f32> = (0..256)
            .map(|e| (((13 * e) % 17) as f32 - 8.0) / 256.0)
            .collect();
        let s: Vec<f32> = logits.iter().map(|&z| softplus(z).sqrt()).collect();
        assert!(close(s[30], 2.5003858));
        let biased: Vec<f32> = s.iter().zip(&bias).map(|(a, b)| a + b).collect();
        let sel = top_k_desc(&biased, 6);
        assert_eq!(sel, [30, 60, 232, 131, 90, 161]);
        let w = weigh(&s, &sel, 1.5);
        let want = [
            0.25168657, 0.24916297, 0.25168657, 0.25168657, 0.24661428, 0.24916297,
        ];
        for (a, b) in w.iter().zip(want) {
            assert!(close(*a, b), "{a} {b}");
        }
        assert_eq!(top_k_desc(&s, 6), [30, 131, 232, 60, 161, 90]);
        let hash = [3, 77, 128, 200, 5, 254];
        let w = weigh(&s, &hash, 1.5);
        let want = [
            0.025391914,
            0.05025053,
            0.69332623,
            0.072590008,
            0.63984984,
            0.018591607,
        ];
        for (a, b) in w.iter().zip(want) {
            assert!(close(*a, b), "{a} {b}");
        }
    }
}
