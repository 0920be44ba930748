//! The generation loop every front end (CLI, server, agent, bench) runs:
//! prompt tokens in, a stream of events out, stats at the end.
//!
//! Per step: ask the session for the next token (argmax while the DSML
//! tracker is inside tool-call structure, the configured sampler otherwise;
//! chosen where the backend keeps the logits, so on the GPU only the id and
//! any requested log-probabilities cross the bus), stop on
//! a stop token without evaluating it, decode the token's text (UTF-8 safe),
//! cut at stop strings, split the text into reasoning, content and tool
//! calls with the text crate's streaming parser. A sampled token is
//! evaluated only when another one is needed, so the session ends holding
//! exactly the tokens that produced its logits and no forward pass is spent
//! on a token nothing will read; the next turn's `sync` re-feeds it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use text::dsml::{self, ParseOptions, SamplingTracker, StreamParser};
use text::{IncrementalDecoder, Tokenizer};

use crate::backend::Backend;
use crate::error::Result;
use crate::sampler::Sampler;
use crate::session::Session;
use crate::stop::StopMatcher;

/// What a generation is asked to do.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most tokens to sample.
    pub max_tokens: usize,
    /// Tokens that end the turn (EOS); never evaluated nor shown.
    pub stop_tokens: Vec<u32>,
    pub stop_strings: Vec<String>,
    /// The prompt ended with `<think>`: output starts with reasoning.
    pub thinking: bool,
    /// Tools were offered: parse tool calls, stop after the tool block, and
    /// sample DSML structure greedily.
    pub tools: bool,
    /// Alternatives to report per token (0: no log-probabilities).
    pub logprobs: usize,
}

/// One sampled token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenInfo {
    pub id: u32,
    /// Text this token completed (may be empty inside a UTF-8 character).
    pub text: String,
    /// Whether it was forced to the argmax by the DSML tracker.
    pub greedy: bool,
    /// Log-probability under the model's plain softmax (with `logprobs`).
    pub logprob: Option<f32>,
    /// Most probable alternatives, with `logprobs`.
    pub top: Vec<(u32, f32)>,
}

/// Streamed to the front end as generation goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Token(TokenInfo),
    /// Reasoning, content and tool-call pieces, stop strings removed.
    Text(dsml::Event),
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// A stop token was sampled.
    Stop,
    /// A stop string matched.
    StopString,
    /// The token budget is spent.
    Length,
    /// The context is full.
    ContextFull,
    /// The tool block closed.
    ToolCalls,
    /// The cancel flag was set.
    Cancelled,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Prompt tokens evaluated (the part not already in the session).
    pub prompt_tokens: usize,
    pub prefill_time: Duration,
    pub generated_tokens: usize,
    pub gen_time: Duration,
}

impl Stats {
    pub fn prefill_tps(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_time)
    }

    pub fn gen_tps(&self) -> f64 {
        rate(self.generated_tokens, self.gen_time)
    }
}

fn rate(n: usize, t: Duration) -> f64 {
    let s = t.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub finish: Finish,
    /// Sampled tokens, stop token excluded.
    pub tokens: Vec<u32>,
    pub stats: Stats,
}

/// Runs one turn: brings `session` to `prompt` (reusing a common prefix),
/// then samples until a stop condition. `progress(done, total)` reports
/// prefill; `on_event` receives the stream; `cancel` is honoured at chunk
/// and token boundaries.
#[allow(clippy::too_many_arguments)]
pub fn generate<B: Backend>(
    session: &mut Session<B>,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    opts: &GenerateOptions,
    sampler: &mut Sampler,
    progress: &mut dyn FnMut(usize, usize),
    on_event: &mut dyn FnMut(Event),
    cancel: &AtomicBool,
) -> Result<Generation> {
    let mut stats = Stats::default();
    let t0 = Instant::now();
    stats.prompt_tokens = session.sync(prompt, progress, cancel)?;
    stats.prefill_time = t0.elapsed();
    let mut out = Generation {
        finish: Finish::Cancelled,
        tokens: Vec::new(),
        stats,
    };
    if session.tokens() != prompt {
        // Cancelled inside the prefill (sync never stops short otherwise).
        return Ok(out);
    }

    let t1 = Instant::now();
    let mut decoder = IncrementalDecoder::new();
    let mut tracker = SamplingTracker::new();
    let mut stops = StopMatcher::new(&opts.stop_strings);
    let mut parser = StreamParser::new(ParseOptions {
        thinking: opts.thinking,
        tools: opts.tools,
    });
    let emit = |parser: &mut StreamParser, text: &str, on_event: &mut dyn FnMut(Event)| {
        let mut tool_end = false;
        for e in parser.push(text) {
            tool_end |= matches!(e, dsml::Event::ToolCallsEnd { .. });
            on_event(Event::Text(e));
        }
        tool_end
    };
    let mut pending: Option<u32> = None;
    out.finish = loop {
        if cancel.load(Ordering::Relaxed) {
            break Finish::Cancelled;
        }
        if out.tokens.len() >= opts.max_tokens {
            break Finish::Length;
        }
        if let Some(tok) = pending.take() {
            if session.len() >= session.ctx() {
                break Finish::ContextFull;
            }
            session.decode(tok)?;
        }
        let greedy = opts.tools && tracker.state().greedy();
        let id = session.sample(sampler, greedy)?;
        if opts.stop_tokens.contains(&id) {
            break Finish::Stop;
        }
        let (logprob, top) = if opts.logprobs > 0 {
            let t = session.top_logits(Some(id), opts.logprobs)?;
            (t.logprob(), t.top_logprobs())
        } else {
            (None, Vec::new())
        };
        let text = decoder.push(tokenizer, id);
        out.tokens.push(id);
        on_event(Event::Token(TokenInfo {
            id,
            text: text.clone(),
            greedy,
            logprob,
            top,
        }));
        tracker.push(&text);
        let visible = stops.push(&text);
        let tool_end = emit(&mut parser, &visible, on_event);
        if stops.hit() {
            break Finish::StopString;
        }
        if opts.tools && tool_end {
            break Finish::ToolCalls;
        }
        pending = Some(id);
    };
    if !stops.hit() {
        let tail = stops.push(&decoder.finish());
        let tail = tail + &stops.finish();
        emit(&mut parser, &tail, on_event);
    }
    for e in parser.finish() {
        on_event(Event::Text(e));
    }
    out.stats.generated_tokens = out.tokens.len();
    out.stats.gen_time = t1.elapsed();
    Ok(out)
}
