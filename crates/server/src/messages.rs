//! `POST /v1/messages` (Anthropic Messages, spec §7): request parsing and the
//! non-streaming response; [`crate::messages_stream`] has the SSE one.
//! Errors use Anthropic's shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use text::render::parse_tools;

use crate::error::{ApiError, Flavor};
use crate::metrics::Metrics;
use crate::models::MODEL_ID;
use crate::params::{count, present, resolve_thinking, Sampling, Stops, ThinkingInputs};
use crate::request::{self, Parsed};
use crate::state::AppState;
use crate::turn::{self, anthropic_stop, compact_arguments, Usage};
use crate::{http, ids, json_body, messages_input, messages_stream, sse};

#[derive(Deserialize)]
struct MessagesRequest {
    messages: Option<Value>,
    system: Option<Value>,
    model: Option<String>,
    tools: Option<Box<RawValue>>,
    tool_choice: Option<Value>,
    max_tokens: Option<f64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<f64>,
    stream: Option<bool>,
    stop_sequences: Option<Stops>,
    #[serde(default, deserialize_with = "present")]
    thinking: Option<Value>,
    reasoning_effort: Option<String>,
    output_config: Option<OutputConfig>,
}

#[derive(Deserialize)]
struct OutputConfig {
    effort: Option<String>,
}

pub async fn handle(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let metrics = state.metrics.clone();
    Metrics::counted(
        metrics,
        |m| &m.messages_requests,
        Flavor::Anthropic,
        run(state, body),
    )
    .await
}

/// A Messages request body to a validated request, or the 400 it gets.
pub fn parse(body: &[u8]) -> Result<Parsed, ApiError> {
    let req: MessagesRequest = json_body::parse(body)?;
    let raw = req
        .messages
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("missing messages"))?;
    let mut messages = messages_input::messages(raw)?;
    if let Some(sys) = messages_input::system(req.system.as_ref())? {
        messages.insert(0, sys);
    }
    let mut tools = match &req.tools {
        Some(t) => parse_tools(t.get()).map_err(|_| ApiError::invalid_json())?,
        None => Vec::new(),
    };
    let none = req
        .tool_choice
        .as_ref()
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str)
        == Some("none");
    if none {
        tools.clear();
    }
    let model = req.model.unwrap_or_else(|| MODEL_ID.to_string());
    let thinking = resolve_thinking(&ThinkingInputs {
        model: &model,
        thinking: req.thinking.as_ref(),
        think: None,
        efforts: vec![
            req.reasoning_effort.as_deref(),
            req.output_config.as_ref().and_then(|o| o.effort.as_deref()),
        ],
    })?;
    Ok(Parsed {
        tools,
        thinking,
        sampling: Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            ..Sampling::default()
        },
        max_tokens: count(req.max_tokens),
        stop: req.stop_sequences.unwrap_or_default().0,
        stream: req.stream == Some(true),
        ..Parsed::new(messages, model)
    })
}

async fn run(state: AppState, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = http::body(body, Flavor::Anthropic)?;
    let req = parse(&body)?;
    let id = state.next_id();
    let mut job = request::submit(&state, &req, id.clone(), "messages")?;
    if req.stream {
        let s = messages_stream::MessagesStream::new(id, req.model, state.tool_memory.clone());
        return Ok(sse::respond(
            job.replies,
            job.guard,
            s,
            state.config.keepalive,
        ));
    }
    let turn = turn::collect(&mut job.replies, job.parse).await?;
    drop(job.guard);
    let ids: Vec<String> = turn
        .message
        .tool_calls
        .iter()
        .map(|_| ids::random_id("toolu_"))
        .collect();
    turn::remember_calls(&state.tool_memory, &ids, &turn.message);
    let mut content = Vec::new();
    let reasoning = turn.message.reasoning.unwrap_or_default();
    if !reasoning.is_empty() {
        content.push(Block::Thinking {
            thinking: reasoning,
            signature: id.clone(),
        });
    }
    if !turn.message.content.is_empty() {
        content.push(Block::Text {
            text: turn.message.content,
        });
    }
    for (c, call_id) in turn.message.tool_calls.iter().zip(ids) {
        content.push(Block::ToolUse {
            id: call_id,
            name: c.name.clone(),
            input: raw_json(&compact_arguments(&c.arguments)),
        });
    }
    if content.iter().all(|b| matches!(b, Block::Thinking { .. })) {
        content.push(Block::Text {
            text: String::new(),
        });
    }
    let has_calls = !turn.message.tool_calls.is_empty();
    let stop_reason = anthropic_stop(turn.finish, has_calls);
    Ok(Json(MessageJson {
        id,
        kind: "message",
        role: "assistant",
        model: req.model,
        content,
        stop_reason,
        stop_sequence: turn.stop.filter(|_| stop_reason == "stop_sequence"),
        usage: UsageJson::from(turn.usage),
    })
    .into_response())
}

/// A compact JSON object as an embeddable raw value (`{}` if it is not one).
pub fn raw_json(object: &str) -> Box<RawValue> {
    RawValue::from_string(object.to_owned())
        .unwrap_or_else(|_| RawValue::from_string("{}".into()).unwrap_or_default())
}

#[derive(Serialize)]
struct MessageJson {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: String,
    content: Vec<Block>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: UsageJson,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Thinking {
        thinking: String,
        signature: String,
    },
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Box<RawValue>,
    },
}

/// Anthropic usage; every uncached prompt token counts as a cache write,
/// so `input_tokens` is normally 0 (spec §7.3).
#[derive(Serialize, Clone, Copy)]
pub struct UsageJson {
    input_tokens: usize,
    output_tokens: usize,
    cache_read_input_tokens: usize,
    cache_creation_input_tokens: usize,
}

impl From<Usage> for UsageJson {
    fn from(u: Usage) -> Self {
        let read = u.cached.min(u.prompt);
        let write = u.written();
        UsageJson {
            input_tokens: u.prompt - read - write,
            output_tokens: u.completion,
            cache_read_input_tokens: read,
            cache_creation_input_tokens: write,
        }
    }
}
