//! `POST /v1/responses` (OpenAI Responses, spec §6; Codex CLI and Pi use
//! it): request parsing and the non-streaming response;
//! [`crate::responses_input`] maps the input items,
//! [`crate::responses_tools`] the tools, [`crate::responses_items`] the
//! output shapes and [`crate::responses_stream`] the event stream. There is
//! no response store: clients replay the full input each turn, and exact
//! DSML replay plus live-session reuse make that cheap.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use text::render::{Message, Role};

use crate::error::{ApiError, Flavor};
use crate::metrics::Metrics;
use crate::models::MODEL_ID;
use crate::params::{count, present, resolve_thinking, Sampling, ThinkingInputs};
use crate::request::{self, Parsed};
use crate::responses_binding::Binder;
use crate::responses_items::{
    call_ids, call_item, item_status, reasoning_status, status, Item, Part, ResponseObject,
};
use crate::responses_tools::Tools;
use crate::state::AppState;
use crate::{http, ids, json_body, responses_input, responses_stream, sse, turn};

#[derive(Deserialize)]
struct ResponsesRequest {
    input: Option<Box<RawValue>>,
    instructions: Option<String>,
    model: Option<String>,
    tools: Option<Box<RawValue>>,
    tool_choice: Option<Value>,
    max_output_tokens: Option<f64>,
    max_tokens: Option<f64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stream: Option<bool>,
    reasoning: Option<Reasoning>,
    #[serde(default, deserialize_with = "present")]
    previous_response_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    conversation: Option<Value>,
}

#[derive(Deserialize)]
struct Reasoning {
    effort: Option<String>,
    summary: Option<Value>,
}

/// A parsed Responses request: the common part plus what only this API has.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponsesParsed {
    pub request: Parsed,
    /// The client opted in to reasoning summaries (`reasoning.summary`).
    pub summary: bool,
    /// The tools and how output call names map back to them.
    pub tools: Tools,
}

pub async fn handle(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let metrics = state.metrics.clone();
    Metrics::counted(
        metrics,
        |m| &m.responses_requests,
        Flavor::OpenAi,
        run(state, body),
    )
    .await
}

/// A Responses request body to a validated request, or the 400 it gets.
pub fn parse(body: &[u8]) -> Result<ResponsesParsed, ApiError> {
    let req: ResponsesRequest = json_body::parse(body)?;
    // ds4 keeps no response store: continuing one needs the full input.
    if req
        .previous_response_id
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::bad_request(
            "previous_response_id is not supported; replay full input instead",
        ));
    }
    if req.conversation.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "conversation is not supported; replay full input instead",
        ));
    }
    let input = match &req.input {
        Some(i) if i.get().trim() != "null" => i,
        _ => return Err(ApiError::bad_request("missing input")),
    };
    let mut tools = Tools::default();
    if let Some(t) = req.tools.as_ref().filter(|t| t.get().trim() != "null") {
        tools.extend(t.get())?;
    }
    let mut messages = responses_input::messages(input, &mut tools)?;
    match &req.tool_choice {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "none" => {
            tools.schemas.clear();
        }
        Some(Value::String(s)) if s == "auto" => {}
        Some(Value::String(s)) => {
            return Err(ApiError::bad_request(format!(
                "tool_choice={s} not supported"
            )))
        }
        Some(_) => return Err(ApiError::bad_request("forced tool_choice not supported")),
    }
    if let Some(text) = req.instructions.filter(|i| !i.is_empty()) {
        messages.insert(0, Message::new(Role::System, text));
    }
    let model = req.model.unwrap_or_else(|| MODEL_ID.to_string());
    // A non-null effort is an explicit switch here ("none" turns thinking
    // off), unlike the other APIs (spec §2.3).
    let effort = req.reasoning.as_ref().and_then(|r| r.effort.as_deref());
    let thinking = resolve_thinking(&ThinkingInputs {
        model: &model,
        thinking: None,
        think: effort.map(|e| e != "none"),
        efforts: vec![effort],
    })?;
    let summary = req
        .reasoning
        .as_ref()
        .and_then(|r| r.summary.as_ref())
        .and_then(Value::as_str)
        .is_some_and(|s| matches!(s, "auto" | "concise" | "detailed"));
    Ok(ResponsesParsed {
        request: Parsed {
            tools: tools.schemas.clone(),
            thinking,
            sampling: Sampling {
                temperature: req.temperature,
                top_p: req.top_p,
                ..Sampling::default()
            },
            max_tokens: count(req.max_output_tokens.or(req.max_tokens)),
            stream: req.stream == Some(true),
            ..Parsed::new(messages, model)
        },
        summary,
        tools,
    })
}

async fn run(state: AppState, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = http::body(body, Flavor::OpenAi)?;
    let req = parse(&body)?;
    let id = ids::item_id("resp_");
    let binding = &state.responses_binding;
    let mut job = request::submit_with(&state, &req.request, id.clone(), "input", |p| {
        binding.continuation(&p.rendered, &state.tokenizer)
    })?;
    let binder = Binder {
        binding: binding.clone(),
        memory: state.tool_memory.clone(),
        messages: req.request.messages.clone(),
        tools: req.request.tools.clone(),
        thinking: req.request.thinking,
        ctx: state.config.ctx,
        summary: req.summary,
        eos: state.eos,
    };
    let created_at = ids::now();
    if req.request.stream {
        let s = responses_stream::ResponsesStream::new(
            ResponseObject::in_progress(&id, &req.request.model, created_at),
            req.summary,
            req.tools,
            job.parse,
            binder,
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
    let m = &turn.message;
    let mut output = Vec::new();
    let visible = !m.content.is_empty() || !m.tool_calls.is_empty();
    let reasoning = m.reasoning.as_deref().unwrap_or("");
    if req.summary && !reasoning.is_empty() {
        output.push(Item::Reasoning {
            id: ids::item_id("rs_"),
            status: reasoning_status(turn.finish, visible),
            summary: vec![Part::SummaryText {
                text: reasoning.to_string(),
            }],
        });
    }
    let item_st = item_status(turn.finish);
    if !m.content.is_empty() {
        output.push(Item::Message {
            id: ids::item_id("msg_"),
            status: item_st,
            role: "assistant",
            content: vec![Part::output_text(&m.content)],
        });
    }
    let ids = call_ids(&state.tool_memory, m);
    for (call, (fc, call_id)) in m.tool_calls.iter().zip(&ids) {
        output.push(call_item(&req.tools, fc, call_id, call, item_st, true));
    }
    let st = status(turn.finish, !m.tool_calls.is_empty());
    let call_ids: Vec<String> = ids.into_iter().map(|(_, c)| c).collect();
    binder.bind(st == "completed", m, &call_ids, turn.live);
    let mut response = ResponseObject::in_progress(&id, &req.request.model, created_at);
    response.finish(st, output, turn.usage);
    Ok(Json(response).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use text::render::Thinking;

    #[test]
    fn fields_map_to_the_common_request() {
        let r = parse(
            br#"{"input":"hi","instructions":"terse","model":"m","max_output_tokens":7,
                 "temperature":0.5,"reasoning":{"effort":"none","summary":"auto"},
                 "stream":true,"store":false,"include":["reasoning.encrypted_content"]}"#,
        )
        .unwrap();
        assert_eq!(r.request.messages[0], Message::new(Role::System, "terse"));
        assert_eq!(r.request.messages[1], Message::new(Role::User, "hi"));
        assert_eq!(r.request.thinking, Thinking::Off);
        assert_eq!(r.request.max_tokens, Some(7));
        assert_eq!(r.request.sampling.temperature, Some(0.5));
        assert!(r.request.stream && r.summary);
        // Effort alone is explicit here: the chat alias does not turn it off.
        let r = parse(br#"{"input":"hi","model":"deepseek-chat","reasoning":{"effort":"max"}}"#)
            .unwrap();
        assert_eq!(r.request.thinking, Thinking::Max);
        let r = parse(br#"{"input":"hi","model":"deepseek-chat","reasoning":null}"#).unwrap();
        assert_eq!(r.request.thinking, Thinking::Off);
        assert!(!r.summary);
    }

    #[test]
    fn unsupported_state_and_tool_choices_are_refused() {
        let msg = |b: &[u8]| parse(b).unwrap_err().message;
        assert_eq!(msg(br#"{"model":"x"}"#), "missing input");
        assert_eq!(msg(br#"{"input":null}"#), "missing input");
        assert_eq!(
            msg(br#"{"input":"x","previous_response_id":"resp_1"}"#),
            "previous_response_id is not supported; replay full input instead"
        );
        assert_eq!(
            msg(br#"{"input":"x","conversation":{"id":"c"}}"#),
            "conversation is not supported; replay full input instead"
        );
        assert!(parse(br#"{"input":"x","previous_response_id":null}"#).is_ok());
        assert_eq!(
            msg(br#"{"input":"x","tool_choice":"required"}"#),
            "tool_choice=required not supported"
        );
        assert_eq!(
            msg(br#"{"input":"x","tool_choice":{"type":"function","name":"f"}}"#),
            "forced tool_choice not supported"
        );
        assert_eq!(
            msg(br#"{"input":"x","reasoning":{"effort":"huge"}}"#),
            "invalid JSON request"
        );
        assert_eq!(msg(br#"{"input":5}"#), "invalid JSON request");
        let none = parse(
            br#"{"input":"x","tool_choice":"none","tools":[{"type":"function","name":"f","parameters":{}}]}"#,
        )
        .unwrap();
        assert!(none.request.tools.is_empty());
    }
}
