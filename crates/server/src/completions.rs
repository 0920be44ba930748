//! `POST /v1/completions` (legacy OpenAI Completions, spec §5): the prompt
//! is wrapped in the chat template with ds4's fixed system line, so the
//! model sees the format it was trained on; the output is returned raw
//! (reasoning and `</think>` included, no split), as ds4 does.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use text::render::{Message, Role};

use crate::chat::UsageJson;
use crate::error::{ApiError, Flavor};
use crate::metrics::Metrics;
use crate::models::MODEL_ID;
use crate::params::{
    count, present, resolve_thinking, Sampling, Stops, StreamOptions, ThinkingInputs,
};
use crate::request::{self, Parsed};
use crate::state::AppState;
use crate::turn::{self, openai_finish};
use crate::{completions_stream, http, ids, json_body, sse};

/// The system line ds4 puts before a completions prompt.
const SYSTEM: &str = "You are a helpful assistant";

#[derive(Deserialize)]
struct CompletionRequest {
    prompt: Option<Value>,
    model: Option<String>,
    max_tokens: Option<f64>,
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
        |m| &m.completions_requests,
        Flavor::OpenAi,
        run(state, body),
    )
    .await
}

/// The prompt text: a string, or the first element of an array when it is
/// one; anything else is an empty prompt (ds4's rule).
fn prompt_text(v: &Value) -> &str {
    match v {
        Value::String(s) => s,
        Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or(""),
        _ => "",
    }
}

/// A completions request body to a validated request, or the 400 it gets.
pub fn parse(body: &[u8]) -> Result<Parsed, ApiError> {
    let req: CompletionRequest = json_body::parse(body)?;
    let text = match &req.prompt {
        None | Some(Value::Null) => return Err(ApiError::bad_request("missing prompt")),
        Some(p) => prompt_text(p),
    };
    let messages = vec![
        Message::new(Role::System, SYSTEM),
        Message::new(Role::User, text),
    ];
    let model = req.model.unwrap_or_else(|| MODEL_ID.to_string());
    let thinking = resolve_thinking(&ThinkingInputs {
        model: &model,
        thinking: req.thinking.as_ref(),
        think: req.think,
        efforts: vec![req.reasoning_effort.as_deref()],
    })?;
    Ok(Parsed {
        thinking,
        sampling: Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            min_p: req.min_p,
            seed: req.seed,
        },
        max_tokens: count(req.max_tokens),
        stop: req.stop.unwrap_or_default().0,
        stream: req.stream == Some(true),
        include_usage: req.stream_options.and_then(|o| o.include_usage) == Some(true),
        // Everything the model writes is the completion text.
        raw_output: true,
        ..Parsed::new(messages, model)
    })
}

async fn run(state: AppState, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = http::body(body, Flavor::OpenAi)?;
    let req = parse(&body)?;
    let id = state.next_id_with("cmpl-");
    let mut job = request::submit(&state, &req, id.clone(), "prompt")?;
    if req.stream {
        let s = completions_stream::CompletionStream::new(id, req.model, req.include_usage);
        return Ok(sse::respond(
            job.replies,
            job.guard,
            s,
            state.config.keepalive,
        ));
    }
    let turn = turn::collect(&mut job.replies, job.parse).await?;
    drop(job.guard);
    Ok(Json(Completion {
        id,
        object: "text_completion",
        created: ids::now(),
        model: req.model,
        choices: vec![Choice {
            text: turn.message.content,
            index: 0,
            finish_reason: Some(openai_finish(turn.finish, false)),
        }],
        usage: Some(UsageJson::from(turn.usage)),
    })
    .into_response())
}

/// A completion, whole or (streaming) one chunk of it.
#[derive(Serialize)]
pub struct Completion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageJson>,
}

#[derive(Serialize)]
pub struct Choice {
    pub text: String,
    pub index: usize,
    pub finish_reason: Option<&'static str>,
}
