//! What every endpoint's pure `parse` function produces — a request checked
//! and converted to the renderer's terms, with nothing yet rendered or
//! queued — and the one path from there to a queued job. Keeping parsing
//! free of server state is what lets the fuzz target (`fuzz/`) and unit
//! tests drive it on raw bytes.

use axum::http::StatusCode;
use engine::GenerateOptions;
use text::dsml::ParseOptions;
use text::render::{Message, Thinking, ToolSchema};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::error::ApiError;
use crate::params::Sampling;
use crate::prompt;
use crate::state::AppState;
use crate::worker::{CancelOnDrop, Reply};

/// A validated request, before rendering.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub messages: Vec<Message>,
    /// Schemas offered to the model (empty when `tool_choice` disabled them).
    pub tools: Vec<ToolSchema>,
    /// The model name as sent (echoed back), or the default.
    pub model: String,
    /// The mode asked for (Think Max is gated by the context at render time).
    pub thinking: Thinking,
    pub sampling: Sampling,
    /// The request's output limit, when it gave one.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// The output is returned as raw text (legacy completions): no reasoning
    /// split, no tool parsing.
    pub raw_output: bool,
}

impl Parsed {
    /// A request with `messages` and every knob at its default.
    pub fn new(messages: Vec<Message>, model: String) -> Self {
        Parsed {
            messages,
            tools: Vec::new(),
            model,
            thinking: Thinking::High,
            sampling: Sampling::default(),
            max_tokens: None,
            stop: Vec::new(),
            stream: false,
            include_usage: false,
            raw_output: false,
        }
    }
}

/// A queued job: its replies, the guard that cancels it when dropped, and
/// how its output is to be parsed.
pub struct Queued {
    pub replies: UnboundedReceiver<Reply>,
    pub guard: CancelOnDrop,
    pub parse: ParseOptions,
    /// The prompt's token count (for errors and traces).
    pub prompt_tokens: usize,
}

/// Renders, tokenizes, checks the context (blaming `param` on overflow) and
/// queues `req` under response id `id`.
pub fn submit(
    state: &AppState,
    req: &Parsed,
    id: String,
    param: &'static str,
) -> Result<Queued, ApiError> {
    submit_with(state, req, id, param, |_| None)
}

/// [`submit`], offering the worker `alt(prompt)` as another token sequence
/// for the same request (a continuation of the live session).
pub fn submit_with(
    state: &AppState,
    req: &Parsed,
    id: String,
    param: &'static str,
    alt: impl FnOnce(&prompt::Prompt) -> Option<Vec<u32>>,
) -> Result<Queued, ApiError> {
    let prompt = prompt::build(state, &req.messages, &req.tools, req.thinking, param)?;
    let alt = alt(&prompt).filter(|a| a.len() < state.config.ctx);
    let sampler = req.sampling.resolve(prompt.thinking);
    let parse = if req.raw_output {
        ParseOptions {
            thinking: false,
            tools: false,
        }
    } else {
        ParseOptions {
            thinking: prompt.thinking != Thinking::Off,
            tools: prompt.tools,
        }
    };
    let options = GenerateOptions {
        max_tokens: req.max_tokens.unwrap_or(state.config.max_tokens),
        stop_tokens: vec![state.eos],
        stop_strings: req.stop.clone(),
        thinking: parse.thinking,
        tools: parse.tools,
        logprobs: 0,
    };
    let prompt_tokens = prompt.tokens.len();
    let (replies, guard) = state
        .worker
        .submit(id, prompt.tokens, alt, options, sampler)
        .ok_or_else(shutting_down)?;
    Ok(Queued {
        replies,
        guard,
        parse,
        prompt_tokens,
    })
}

/// ds4's answer to a request that arrives after shutdown began.
pub fn shutting_down() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server shutting down")
}
