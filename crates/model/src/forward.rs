//! The forward pass (model.md §2, §6): embedding, per layer HC-pre →
//! attention → HC-post → HC-pre → MoE → HC-post, then the output head.
//!
//! A chunk of tokens runs layer-major, as ds4's prefill does; inside a layer
//! the tokens go in position order through exactly the per-token code that
//! decode runs. So one-shot prefill, any chunking and token-by-token decode
//! give bit-identical results, and batched kernels can replace the per-token
//! loop later without changing a single output bit as long as each row's
//! dot product is computed the same way.

use gguf::GgufFile;

use crate::attention::Attention;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::hc;
use crate::head;
use crate::linear::Numerics;
use crate::moe::Moe;
use crate::norm::rms_norm;
use crate::rope::Rope;
use crate::state::State;
use crate::weights::Weights;

/// Receives named intermediate vectors, for stage-by-stage comparisons.
pub trait Trace {
    fn record(&mut self, stage: &'static str, layer: usize, pos: usize, data: &[f32]);
}

/// The trace that keeps nothing.
pub struct NoTrace;

impl Trace for NoTrace {
    fn record(&mut self, _: &'static str, _: usize, _: usize, _: &[f32]) {}
}

/// Numerics switches of a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub numerics: Numerics,
    /// The FP8 round trip of KV rows and the Hadamard + FP4 round trip of
    /// indexer vectors (attention.md §6). Part of the model: switching them
    /// off exists for exact comparisons with a reference that omits them,
    /// never for serving.
    pub qat: bool,
    /// f16 storage of raw, compressed and indexer rows (attention.md §12),
    /// ds4's CPU precision; off only for the same comparisons.
    pub f16_rows: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            numerics: Numerics::Quantized,
            qat: true,
            f16_rows: true,
        }
    }
}

/// Which positions of a chunk get logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    None,
    Last,
    All,
}

pub struct Model<'a> {
    pub cfg: ModelConfig,
    pub weights: Weights<'a>,
    pub opts: Options,
    ropes: Vec<Rope>,
}

impl<'a> Model<'a> {
    /// Reads the configuration and binds the weights of a mapped GGUF.
    pub fn load(file: &'a GgufFile, opts: Options) -> Result<Self> {
        let cfg = ModelConfig::from_gguf(file.header())?;
        let weights = Weights::bind(file, &cfg)?;
        let ropes = (0..cfg.n_layer).map(|l| Rope::for_layer(&cfg, l)).collect();
        Ok(Model {
            cfg,
            weights,
            opts,
            ropes,
        })
    }

    pub fn new_state(&self, ctx: usize) -> State {
        State::new(&self.cfg, ctx)
    }

    /// The embedding row of `token`, copied to all HC streams (§3).
    fn embed(&self, token: u32) -> Result<Vec<f32>> {
        let d = self.cfg.n_embd;
        let mut e = vec![0f32; d];
        self.weights.token_embd.decode_row(token as usize, &mut e)?;
        Ok(e.repeat(self.cfg.n_hc))
    }

    /// Runs `tokens` at the next positions of `st` and returns the logits
    /// asked for (`n_vocab` per position, in position order). Inputs are
    /// checked before the state changes; an error after that (a malformed
    /// weight the binder could not see) leaves the state unusable.
    pub fn forward(
        &self,
        st: &mut State,
        tokens: &[u32],
        which: Logits,
        trace: &mut dyn Trace,
    ) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= cfg.n_vocab) {
            return Err(ModelError::TokenOutOfRange {
                token,
                n_vocab: cfg.n_vocab,
            });
        }
        let start = st.n_tokens;
        if start + tokens.len() > st.ctx {
            return Err(ModelError::ContextFull {
                pos: start + tokens.len() - 1,
                ctx: st.ctx,
            });
        }
        let mut hs = Vec::with_capacity(tokens.len());
        for (i, &t) in tokens.iter().enumerate() {
            let h = self.embed(t)?;
            trace.record("embed", 0, start + i, &h[..cfg.n_embd]);
            hs.push(h);
        }
        for il in 0..cfg.n_layer {
            for (i, (h, &t)) in hs.iter_mut().zip(tokens).enumerate() {
                *h = self.layer(st, il, h, t, start + i, trace)?;
            }
        }
        st.n_tokens += tokens.len();
        let rows: Vec<usize> = match which {
            Logits::None => vec![],
            Logits::Last => tokens.len().checked_sub(1).into_iter().collect(),
            Logits::All => (0..tokens.len()).collect(),
        };
        let mut out = Vec::with_capacity(rows.len() * cfg.n_vocab);
        for i in rows {
            out.extend(head::logits(
                cfg,
                &self.weights,
                self.opts.numerics,
                &hs[i],
                start + i,
                trace,
            )?);
        }
        Ok(out)
    }

    /// One decoder layer for one token (§6.1).
    fn layer(
        &self,
        st: &mut State,
        il: usize,
        h: &[f32],
        token: u32,
        pos: usize,
        trace: &mut dyn Trace,
    ) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let w = &self.weights.layers[il];
        let (eps, num) = (cfg.rms_eps, self.opts.numerics);

        let (a_in, split) = hc::pre(h, &w.hc_attn, cfg.n_hc, cfg.sinkhorn_iters, cfg.hc_eps, num)?;
        trace.record("hc_attn_pre", il, pos, &a_in);
        let mut a_n = vec![0f32; cfg.n_embd];
        rms_norm(&a_in, &w.attn_norm, eps, &mut a_n);
        trace.record("attn_norm", il, pos, &a_n);
        let attn = Attention {
            cfg,
            layer: il,
            w,
            rope: &self.ropes[il],
            opts: self.opts,
        };
        let a_out = attn.run(&mut st.layers[il], &a_n, pos, trace)?;
        let h = hc::post(&a_out, h, &split);
        trace.record("hc_attn_post", il, pos, &h);

        let (f_in, split) = hc::pre(&h, &w.hc_ffn, cfg.n_hc, cfg.sinkhorn_iters, cfg.hc_eps, num)?;
        trace.record("hc_ffn_pre", il, pos, &f_in);
        let mut f_n = vec![0f32; cfg.n_embd];
        rms_norm(&f_in, &w.ffn_norm, eps, &mut f_n);
        trace.record("ffn_norm", il, pos, &f_n);
        let moe = Moe {
            cfg,
            layer: il,
            w,
            opts: self.opts,
        };
        let y = moe.run(&f_n, token, pos, trace)?;
        let h = hc::post(&y, &h, &split);
        trace.record("hc_ffn_post", il, pos, &h);
        Ok(h)
    }
}
