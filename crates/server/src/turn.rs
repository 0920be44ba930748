//! A finished turn: the worker's replies folded into reasoning, content,
//! tool calls, finish and usage — what non-streaming responses report — plus
//! the finish-reason and usage rules both APIs share (spec §8.4, §8.5).

use engine::Finish;
use text::dsml::{self, ParseOptions, ParsedMessage};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::error::ApiError;
use crate::tool_memory::ToolMemory;
use crate::worker::Reply;

/// Token counts of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Prompt tokens in the session after the sync.
    pub prompt: usize,
    /// Of those, reused from the live session.
    pub cached: usize,
    pub completion: usize,
}

impl Usage {
    /// Prompt tokens written into the live KV by this request.
    pub fn written(&self) -> usize {
        self.prompt - self.cached.min(self.prompt)
    }
}

pub struct Turn {
    pub message: ParsedMessage,
    pub finish: Finish,
    /// The matched stop string, for a stop-string finish.
    pub stop: Option<String>,
    pub usage: Usage,
    /// The prompt used and every generated token (see [`Reply::Done`]).
    pub live: Vec<u32>,
}

/// Waits for the prompt to be in the session: the moment streaming
/// responses start (so a prefill failure can still be a plain HTTP error).
pub async fn prefilled(rx: &mut UnboundedReceiver<Reply>) -> Result<Usage, ApiError> {
    match rx.recv().await {
        Some(Reply::Prefilled { prompt, cached }) => Ok(Usage {
            prompt,
            cached,
            completion: 0,
        }),
        Some(Reply::Failed(msg)) => Err(engine_failure(msg)),
        Some(Reply::ShuttingDown) => Err(crate::request::shutting_down()),
        _ => Err(engine_failure("generation stopped".into())),
    }
}

/// Reads every reply of a job into a [`Turn`].
pub async fn collect(
    rx: &mut UnboundedReceiver<Reply>,
    options: ParseOptions,
) -> Result<Turn, ApiError> {
    let mut usage = prefilled(rx).await?;
    let mut events: Vec<dsml::Event> = Vec::new();
    loop {
        match rx.recv().await {
            Some(Reply::Text(e)) => events.push(e),
            Some(Reply::Done {
                finish,
                completion_tokens,
                stop,
                live,
            }) => {
                usage.completion = completion_tokens;
                return Ok(Turn {
                    message: ParsedMessage::from_events(options, events),
                    finish,
                    stop,
                    usage,
                    live,
                });
            }
            Some(Reply::Failed(msg)) => return Err(engine_failure(msg)),
            Some(Reply::ShuttingDown) => return Err(crate::request::shutting_down()),
            Some(Reply::Prefilled { .. }) | None => {
                return Err(engine_failure("generation stopped".into()))
            }
        }
    }
}

fn engine_failure(msg: String) -> ApiError {
    ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, msg)
}

/// Remembers the sampled DSML block of `message` under the ids its calls
/// were given (exact replay, [`crate::tool_memory`]).
pub fn remember_calls(memory: &ToolMemory, ids: &[String], message: &ParsedMessage) {
    if let Some(raw) = &message.raw_dsml {
        if !ids.is_empty() {
            memory.remember(ids, raw);
        }
    }
}

/// OpenAI's `finish_reason`: tool calls win whenever some were parsed.
pub fn openai_finish(finish: Finish, has_calls: bool) -> &'static str {
    match finish {
        _ if has_calls => "tool_calls",
        Finish::Stop | Finish::StopString => "stop",
        Finish::Length | Finish::ContextFull => "length",
        Finish::ToolCalls => "tool_calls",
        Finish::Cancelled => "error",
    }
}

/// Anthropic's `stop_reason`.
pub fn anthropic_stop(finish: Finish, has_calls: bool) -> &'static str {
    match finish {
        _ if has_calls => "tool_use",
        Finish::Length | Finish::ContextFull => "max_tokens",
        Finish::StopString => "stop_sequence",
        Finish::ToolCalls => "tool_use",
        Finish::Stop | Finish::Cancelled => "end_turn",
    }
}

/// Tool-call arguments as clients get them: the parser's Python-style JSON
/// minified (key order kept), or `{}` when it is not a JSON object.
pub fn compact_arguments(args: &str) -> String {
    let is_object = args.trim_start().starts_with('{')
        && serde_json::from_str::<serde::de::IgnoredAny>(args).is_ok();
    if !is_object {
        return "{}".into();
    }
    let mut out = String::with_capacity(args.len());
    let (mut in_str, mut escaped) = (false, false);
    for c in args.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if !c.is_whitespace() {
            in_str = c == '"';
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_minified_in_order_or_empty() {
        assert_eq!(
            compact_arguments(r#"{"z": "a b", "a": [1, 2], "s": "q\" x"}"#),
            r#"{"z":"a b","a":[1,2],"s":"q\" x"}"#
        );
        assert_eq!(compact_arguments("[1]"), "{}");
        assert_eq!(compact_arguments("{\"a\": "), "{}");
    }

    #[test]
    fn finish_reasons_map_per_api() {
        assert_eq!(openai_finish(Finish::Stop, true), "tool_calls");
        assert_eq!(openai_finish(Finish::ContextFull, false), "length");
        assert_eq!(anthropic_stop(Finish::StopString, false), "stop_sequence");
        assert_eq!(anthropic_stop(Finish::Length, false), "max_tokens");
    }
}
