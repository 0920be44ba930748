//! Anthropic request content to the renderer's messages (spec §7.1): the
//! `system` field, text / thinking / tool_use / tool_result blocks, and the
//! check that each tool result answers a replayed call (§7.2). Tool
//! results become tool messages ahead of the user's text so the renderer
//! merges them into the user turn the way DeepSeek's encoder expects.

use serde_json::Value;
use text::render::{Message, Role, ToolCall};

use crate::error::ApiError;
use crate::turn::compact_arguments;

type R<T> = Result<T, ApiError>;

/// The `system` field as one system message (`None` when empty). Parts
/// starting with `x-anthropic-` (Claude Code's billing header) are dropped:
/// they change per request and would defeat prefix reuse.
pub fn system(v: Option<&Value>) -> R<Option<Message>> {
    let parts: Vec<&str> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|p| match p {
                Value::String(s) => Ok(s.as_str()),
                Value::Object(o) => Ok(o.get("text").and_then(Value::as_str).unwrap_or("")),
                _ => Err(ApiError::invalid_json()),
            })
            .collect::<R<_>>()?,
        Some(_) => return Err(ApiError::invalid_json()),
    };
    let mut text = String::new();
    for p in parts {
        if p.is_empty() || p.starts_with("x-anthropic-") {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(p);
    }
    Ok((!text.is_empty()).then(|| Message::new(Role::System, text)))
}

/// The `messages` array.
pub fn messages(v: &Value) -> R<Vec<Message>> {
    let Value::Array(items) = v else {
        return Err(ApiError::invalid_json());
    };
    let mut out = Vec::new();
    for m in items {
        message(m, &mut out)?;
    }
    check_continuation(&out)?;
    Ok(out)
}

/// Every tool result must answer a `tool_use` earlier in the request (spec
/// §7.2). This server keeps no live Anthropic binding to resume from, so a
/// result whose call was not replayed would render as a naked tool result
/// the model never asked for; the client is told to replay instead.
fn check_continuation(messages: &[Message]) -> R<()> {
    let mut calls = std::collections::HashSet::new();
    for m in messages {
        calls.extend(m.tool_calls.iter().filter_map(|c| c.id.as_deref()));
        if m.role != Role::Tool {
            continue;
        }
        let id = m
            .tool_call_id
            .as_deref()
            .ok_or_else(ApiError::invalid_json)?;
        if !calls.contains(id) {
            return Err(ApiError::bad_request(format!(
                "Anthropic continuation state is not available for tool_use_id {id}; \
                 retry by replaying the full messages history"
            )));
        }
    }
    Ok(())
}

fn message(m: &Value, out: &mut Vec<Message>) -> R<()> {
    let Value::Object(o) = m else {
        return Err(ApiError::invalid_json());
    };
    let role = match o.get("role") {
        None | Some(Value::Null) => Role::User,
        Some(Value::String(r)) if r == "user" => Role::User,
        Some(Value::String(r)) if r == "assistant" => Role::Assistant,
        // Anthropic has no other roles; an unknown one is dropped, as ds4 does.
        Some(Value::String(_)) => return Ok(()),
        Some(_) => return Err(ApiError::invalid_json()),
    };
    let mut msg = Message::new(role, "");
    let mut results = Vec::new();
    match o.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => msg.content.push_str(s),
        Some(Value::Array(blocks)) => {
            for b in blocks {
                block(b, &mut msg, &mut results)?;
            }
        }
        Some(_) => return Err(ApiError::invalid_json()),
    }
    let has_text = !msg.content.is_empty() || results.is_empty();
    out.extend(results);
    if has_text || !msg.tool_calls.is_empty() || msg.reasoning.is_some() {
        out.push(msg);
    }
    Ok(())
}

fn block(b: &Value, msg: &mut Message, results: &mut Vec<Message>) -> R<()> {
    let o = match b {
        Value::String(s) => {
            msg.content.push_str(s);
            return Ok(());
        }
        Value::Object(o) => o,
        _ => return Err(ApiError::invalid_json()),
    };
    let str_of = |k: &str| -> R<Option<&str>> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid_json()),
        }
    };
    match str_of("type")? {
        Some("thinking") => {
            let t = str_of("thinking")?.unwrap_or("");
            msg.reasoning.get_or_insert_with(String::new).push_str(t);
        }
        Some("tool_use") => {
            let name = str_of("name")?.ok_or_else(ApiError::invalid_json)?;
            let input = o
                .get("input")
                .map_or_else(|| "{}".into(), |v| v.to_string());
            msg.tool_calls.push(ToolCall {
                id: str_of("id")?.map(str::to_owned),
                name: name.to_owned(),
                arguments: compact_arguments(&input),
            });
        }
        Some("tool_result") => {
            let mut r = Message::new(Role::Tool, tool_result_text(o.get("content"))?);
            r.tool_call_id = str_of("tool_use_id")?.map(str::to_owned);
            results.push(r);
        }
        Some("image" | "document") => {}
        _ => msg.content.push_str(str_of("text")?.unwrap_or("")),
    }
    Ok(())
}

fn tool_result_text(v: Option<&Value>) -> R<String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("text").and_then(Value::as_str),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n\n")),
        Some(_) => Err(ApiError::invalid_json()),
    }
}
