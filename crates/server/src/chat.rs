//! `POST /v1/chat/completions` (spec §4): request parsing, and the
//! non-streaming response; [`crate::chat_stream`] has the SSE one.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use text::render::{parse_messages, parse_tools};

use crate::error::{ApiError, Flavor};
use crate::metrics::Metrics;
use crate::models::MODEL_ID;
use crate::params::{
    count, present, resolve_thinking, Sampling, Stops, StreamOptions, ThinkingInputs,
};
use crate::request::{self, Parsed};
use crate::state::AppState;
use crate::turn::{self, compact_arguments, openai_finish, Usage};
use crate::{chat_roles, chat_stream, http, ids, json_body, sse};

#[derive(Deserialize)]
struct ChatRequest {
    messages: Option<Box<RawValue>>,
    model: Option<String>,
    tools: Option<Box<RawValue>>,
    tool_choice: Option<Value>,
    max_tokens: Option<f64>,
    max_completion_tokens: Option<f64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<f64>,
    min_p: Option<f64>,
    seed: Option<f64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(default, deserialize_with = "present")]
    thinking: Option<Value>,
    think: Option<bool>,
    reasoning_effort: Option<String>,
    stop: Option<Stops>,
}

pub async fn handle(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let metrics = state.metrics.clone();
    Metrics::counted(
        metrics,
        |m| &m.chat_requests,
        Flavor::OpenAi,
        run(state, body),
    )
    .await
}

/// A chat request body to a validated request, or the 400 it gets.
pub fn parse(body: &[u8]) -> Result<Parsed, ApiError> {
    let req: ChatRequest = json_body::parse(body)?;
    let raw = req
        .messages
        .ok_or_else(|| ApiError::bad_request("missing messages"))?;
    let messages =
        parse_messages(&chat_roles::normalize(&raw)?).map_err(|_| ApiError::invalid_json())?;
    let mut tools = match &req.tools {
        Some(t) => parse_tools(t.get()).map_err(|_| ApiError::invalid_json())?,
        None => Vec::new(),
    };
    if matches!(&req.tool_choice, Some(Value::String(s)) if s == "none") {
        tools.clear();
    }
    let model = req.model.unwrap_or_else(|| MODEL_ID.to_string());
    let thinking = resolve_thinking(&ThinkingInputs {
        model: &model,
        thinking: req.thinking.as_ref(),
        think: req.think,
        efforts: vec![req.reasoning_effort.as_deref()],
    })?;
    Ok(Parsed {
        tools,
        thinking,
        sampling: Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            min_p: req.min_p,
            seed: req.seed,
        },
        max_tokens: count(req.max_completion_tokens.or(req.max_tokens)),
        stop: req.stop.unwrap_or_default().0,
        stream: req.stream == Some(true),
        include_usage: req.stream_options.and_then(|o| o.include_usage) == Some(true),
        ..Parsed::new(messages, model)
    })
}

async fn run(state: AppState, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = http::body(body, Flavor::OpenAi)?;
    let req = parse(&body)?;
    let id = state.next_id();
    let mut job = request::submit(&state, &req, id.clone(), "messages")?;
    if req.stream {
        let s = chat_stream::ChatStream::new(
            id,
            req.model,
            req.include_usage,
            state.tool_memory.clone(),
        );
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
        .map(|_| ids::random_id("call_"))
        .collect();
    turn::remember_calls(&state.tool_memory, &ids, &turn.message);
    let calls: Vec<ToolCall> = turn
        .message
        .tool_calls
        .iter()
        .zip(ids)
        .map(|(c, id)| ToolCall {
            id,
            kind: "function",
            function: Function {
                name: c.name.clone(),
                arguments: compact_arguments(&c.arguments),
            },
        })
        .collect();
    let finish = openai_finish(turn.finish, !calls.is_empty());
    Ok(Json(Completion {
        id,
        object: "chat.completion",
        created: ids::now(),
        model: req.model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: turn.message.content,
                reasoning_content: turn.message.reasoning.filter(|r| !r.is_empty()),
                tool_calls: calls,
            },
            finish_reason: finish,
        }],
        usage: UsageJson::from(turn.usage),
    })
    .into_response())
}

#[derive(Serialize)]
struct Completion {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    choices: [Choice; 1],
    usage: UsageJson,
}

#[derive(Serialize)]
struct Choice {
    index: usize,
    message: AssistantMessage,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage {
    role: &'static str,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall>,
}

/// An OpenAI tool call of a non-streaming response.
#[derive(Serialize)]
struct ToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function,
}

#[derive(Serialize)]
pub struct Function {
    pub name: String,
    pub arguments: String,
}

/// OpenAI usage with ds4's cache fields (spec §8.5).
#[derive(Serialize)]
pub struct UsageJson {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
    prompt_tokens_details: Details,
}

#[derive(Serialize)]
struct Details {
    cached_tokens: usize,
    cache_write_tokens: usize,
}

impl From<Usage> for UsageJson {
    fn from(u: Usage) -> Self {
        UsageJson {
            prompt_tokens: u.prompt,
            completion_tokens: u.completion,
            total_tokens: u.prompt + u.completion,
            prompt_tokens_details: Details {
                cached_tokens: u.cached.min(u.prompt),
                cache_write_tokens: u.written(),
            },
        }
    }
}
