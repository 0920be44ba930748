//! A session: the tokens a model state has consumed, that state, and the
//! logits for the next token — ds4's "checkpoint" (kv-cache.md §1.1). The
//! logits stay where the backend computed them; the session asks the
//! backend for the next token ([`Session::sample`]), for log-probabilities
//! ([`Session::top_logits`]) or, only when a caller reads it, for the whole
//! vector ([`Session::logits`]).
//!
//! Rewind. A state cannot drop its last rows: the raw ring has overwritten
//! older positions, and compressed rows and compressor frontiers fold tokens
//! in irreversibly. Keeping a snapshot per token would cost a full state copy
//! per token. So a session keeps a few *anchors* — in-memory checkpoints
//! taken automatically where a rewind usually lands: the end of each prefill
//! (the prompt boundary, where "regenerate" and "edit the last turn" go back
//! to). A rewind restores the newest anchor at or before the target and
//! re-prefills the remainder, or re-prefills from scratch when no anchor
//! fits. Results are bit-identical to never having gone further, because the
//! forward pass is chunking-invariant.

use std::borrow::Cow;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{EngineError, Result};
use crate::sampler::{Pick, Sampler, TopLogits};

/// Anchors a session keeps by default. Each is a full state copy (76 MiB at
/// 4096 tokens for Flash), so few.
pub const DEFAULT_ANCHORS: usize = 1;

/// An in-memory copy of a session's checkpoint.
pub struct Checkpoint<B: Backend> {
    tokens: Vec<u32>,
    state: B::State,
    logits: Option<B::Logits>,
}

impl<B: Backend> Clone for Checkpoint<B> {
    fn clone(&self) -> Self {
        Checkpoint {
            tokens: self.tokens.clone(),
            state: self.state.clone(),
            logits: self.logits.clone(),
        }
    }
}

impl<B: Backend> Checkpoint<B> {
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

pub struct Session<B: Backend> {
    backend: Arc<B>,
    tokens: Vec<u32>,
    state: B::State,
    logits: Option<B::Logits>,
    anchors: Vec<Checkpoint<B>>,
    max_anchors: usize,
}

impl<B: Backend> Session<B> {
    pub fn new(backend: Arc<B>, ctx: usize) -> Self {
        let state = backend.new_state(ctx);
        Session {
            backend,
            tokens: Vec::new(),
            state,
            logits: None,
            anchors: Vec::new(),
            max_anchors: DEFAULT_ANCHORS,
        }
    }

    /// Keeps at most `n` rewind anchors (0: rewinds always re-prefill).
    pub fn set_max_anchors(&mut self, n: usize) {
        self.max_anchors = n;
        let excess = self.anchors.len().saturating_sub(n);
        self.anchors.drain(..excess);
    }

    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn ctx(&self) -> usize {
        self.backend.ctx(&self.state)
    }

    pub(crate) fn state(&self) -> &B::State {
        &self.state
    }

    /// Whether the session has logits (it has evaluated a token).
    pub fn has_logits(&self) -> bool {
        self.logits.is_some()
    }

    fn held_logits(&self) -> Result<&B::Logits> {
        self.logits.as_ref().ok_or(EngineError::NoLogits)
    }

    /// Logits for the token after the last consumed one, on the host (a
    /// copy of the whole vector from a device backend: for callers that
    /// read it, not for choosing a token).
    pub fn logits(&self) -> Result<Cow<'_, [f32]>> {
        self.backend.logits_to_host(self.held_logits()?)
    }

    /// The next token as `pick` says, chosen where the logits are.
    pub fn pick(&self, pick: &Pick) -> Result<u32> {
        self.backend.pick(self.held_logits()?, pick)
    }

    /// Draws the next token with `sampler` (the argmax when `greedy`).
    pub fn sample(&self, sampler: &mut Sampler, greedy: bool) -> Result<u32> {
        let logits = self.held_logits()?;
        self.backend.pick(logits, &sampler.next_pick(greedy))
    }

    /// The log-sum-exp, `token`'s logit (`token` below `n_vocab`) and the
    /// `n` largest logits of the next token's distribution.
    pub fn top_logits(&self, token: Option<u32>, n: usize) -> Result<TopLogits> {
        self.backend.top_logits(self.held_logits()?, token, n)
    }

    /// Evaluates `tokens` after the current ones, chunked; `progress(done,
    /// total)` after each chunk. With `cancel` set the session stops at a
    /// chunk boundary, consistent, and the count consumed is returned.
    pub fn prefill(
        &mut self,
        tokens: &[u32],
        progress: &mut dyn FnMut(usize, usize),
        cancel: &AtomicBool,
    ) -> Result<usize> {
        let ctx = self.ctx();
        if self.tokens.len() + tokens.len() > ctx {
            return Err(EngineError::PromptTooLong {
                tokens: self.tokens.len() + tokens.len(),
                ctx,
            });
        }
        let total = tokens.len();
        let out =
            self.backend
                .prefill(&mut self.state, tokens, &mut |d| progress(d, total), cancel)?;
        self.tokens.extend_from_slice(&tokens[..out.consumed]);
        if let Some(logits) = out.logits.filter(|_| out.consumed > 0) {
            self.logits = Some(logits);
            self.push_anchor();
        }
        Ok(out.consumed)
    }

    /// Evaluates one token; returns the logits for the next one, where the
    /// backend keeps them.
    pub fn decode(&mut self, token: u32) -> Result<&B::Logits> {
        let logits = self.backend.decode(&mut self.state, token)?;
        self.tokens.push(token);
        Ok(self.logits.insert(logits))
    }

    /// A copy of the current checkpoint.
    pub fn checkpoint(&self) -> Checkpoint<B> {
        Checkpoint {
            tokens: self.tokens.clone(),
            state: self.state.clone(),
            logits: self.logits.clone(),
        }
    }

    /// Goes back (or forward) to `cp`, which must come from a session of the
    /// same context size.
    pub fn restore(&mut self, cp: &Checkpoint<B>) -> Result<()> {
        let (have, want) = (self.ctx(), self.backend.ctx(&cp.state));
        if have != want {
            return Err(EngineError::StateMismatch(format!(
                "checkpoint of a {want}-token context restored into a {have}-token session"
            )));
        }
        self.tokens.clone_from(&cp.tokens);
        self.state = cp.state.clone();
        self.logits.clone_from(&cp.logits);
        self.anchors.retain(|a| cp.tokens.starts_with(&a.tokens));
        Ok(())
    }

    /// Keeps the first `n` tokens: restores the newest anchor at or before
    /// `n` and re-prefills the rest (module docs say why). Returns the
    /// tokens re-evaluated; with `cancel` set the session stops consistent
    /// at a shorter prefix.
    pub fn rewind(
        &mut self,
        n: usize,
        progress: &mut dyn FnMut(usize, usize),
        cancel: &AtomicBool,
    ) -> Result<usize> {
        if n > self.tokens.len() {
            return Err(EngineError::RewindPastEnd {
                target: n,
                len: self.tokens.len(),
            });
        }
        if n == self.tokens.len() {
            return Ok(0);
        }
        let tokens = std::mem::take(&mut self.tokens);
        self.anchors.retain(|a| a.tokens.len() <= n);
        match self.anchors.last() {
            Some(a) => {
                self.state = a.state.clone();
                self.logits.clone_from(&a.logits);
                self.tokens.clone_from(&a.tokens);
            }
            None => {
                self.state = self.backend.new_state(self.ctx());
                self.logits = None;
            }
        }
        let from = self.tokens.len();
        self.prefill(&tokens[from..n], progress, cancel)
    }

    /// Brings the session to `prompt`: keeps the common prefix (rewinding
    /// when the session went past it) and prefills the rest, as ds4's
    /// `sync` does but without discarding a reusable prefix. Returns the
    /// tokens evaluated, re-evaluations of a rewind included; the session
    /// holds all of `prompt` unless `cancel` was set.
    pub fn sync(
        &mut self,
        prompt: &[u32],
        progress: &mut dyn FnMut(usize, usize),
        cancel: &AtomicBool,
    ) -> Result<usize> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if self.tokens == prompt && self.logits.is_some() {
            return Ok(0);
        }
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // Logits come from evaluating at least one token: a prompt that is
        // exactly the session re-evaluates its last token.
        let keep = common.min(prompt.len() - 1);
        let redone = self.rewind(keep, progress, cancel)?;
        if self.tokens.len() < keep {
            return Ok(redone);
        }
        Ok(redone + self.prefill(&prompt[keep..], progress, cancel)?)
    }

    /// Replaces the session content with `image`-derived state (snapshots).
    pub(crate) fn replace(&mut self, tokens: Vec<u32>, state: B::State, logits: B::Logits) {
        self.tokens = tokens;
        self.state = state;
        self.logits = Some(logits);
        self.anchors.clear();
        self.push_anchor();
    }

    fn push_anchor(&mut self) {
        if self.max_anchors == 0 {
            return;
        }
        if self.anchors.len() == self.max_anchors {
            self.anchors.remove(0);
        }
        let cp = self.checkpoint();
        self.anchors.push(cp);
    }
}
