//! A parsed request to prompt tokens: rendered by `text::render` exactly as
//! DeepSeek's reference encoder does (tool schemas included, past tool calls
//! replayed from [`crate::tool_memory`]), tokenized, and checked against the
//! context before it is queued (spec §2.8).

use text::render::{render_replaying, Message, RenderOptions, Rendered, Thinking, ToolSchema};

use crate::error::ApiError;
use crate::state::AppState;

/// A prompt ready for the worker.
pub struct Prompt {
    pub tokens: Vec<u32>,
    /// The rendered text the tokens came from.
    pub rendered: Rendered,
    /// The mode actually rendered (Think Max gated by the context size).
    pub thinking: Thinking,
    /// Tools were offered and not disabled by `tool_choice`.
    pub tools: bool,
}

/// Renders and tokenizes; `param` names the request field an overflow
/// error blames.
pub fn build(
    state: &AppState,
    messages: &[Message],
    tools: &[ToolSchema],
    thinking: Thinking,
    param: &'static str,
) -> Result<Prompt, ApiError> {
    let options = RenderOptions {
        thinking,
        context_size: Some(state.config.ctx as u64),
    };
    // Past tool calls render as the DSML the model sampled when it is
    // remembered, so the prompt extends the live session token for token.
    let rendered = render_replaying(messages, tools, &options, &*state.tool_memory)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let tokens = rendered
        .token_ids(&state.tokenizer)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if tokens.len() >= state.config.ctx {
        return Err(ApiError::context_overflow(
            tokens.len(),
            state.config.ctx,
            param,
        ));
    }
    Ok(Prompt {
        tokens,
        rendered,
        thinking: options.resolved_thinking(),
        tools: !tools.is_empty(),
    })
}
