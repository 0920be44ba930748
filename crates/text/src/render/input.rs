//! OpenAI-style request JSON (`messages` and `tools` arrays) → [`Message`]s and tool schemas.
//! Parsed with Python's JSON semantics so tool schemas re-serialize exactly as the reference
//! encoder's `json.dumps` would print them.

use super::{Message, Role, ToolCall, ToolSchema};
use crate::json::{self, Value};
use crate::{Error, Result};

fn bad(what: String) -> Error {
    Error::Messages(what)
}

/// Parses an OpenAI `messages` array: `role`, `content` (string, null or an array of text
/// parts), assistant `reasoning_content` (alias `reasoning`) and `tool_calls`, tool
/// `tool_call_id`.
pub fn parse_messages(text: &str) -> Result<Vec<Message>> {
    let Value::Array(items) = json::parse(text)? else {
        return Err(bad("expected a JSON array of messages".into()));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| message(m).map_err(|e| bad(format!("message {i}: {e}"))))
        .collect()
}

/// Parses an OpenAI `tools` array into the schemas the prompt lists: each element's
/// `function` object, or the element itself when it has none (Anthropic-style tools).
pub fn parse_tools(text: &str) -> Result<Vec<ToolSchema>> {
    let Value::Array(items) = json::parse(text)? else {
        return Err(bad("expected a JSON array of tools".into()));
    };
    Ok(items
        .into_iter()
        .map(|t| match t.get("function") {
            Some(f) => f.clone(),
            None => t,
        })
        .collect())
}

fn opt_str(m: &Value, key: &str) -> std::result::Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn message(m: &Value) -> std::result::Result<Message, String> {
    if !matches!(m, Value::Object(_)) {
        return Err("not an object".into());
    }
    let role = match m.get("role").and_then(Value::as_str) {
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool" | "function") => Role::Tool,
        Some("latest_reminder") => Role::LatestReminder,
        Some(other) => return Err(format!("unknown role {other:?}")),
        None => return Err("missing role".into()),
    };
    let content = content(m.get("content"), role)?;
    let reasoning = match opt_str(m, "reasoning_content")? {
        Some(r) => Some(r),
        None => opt_str(m, "reasoning")?,
    };
    let tool_calls = match m.get("tool_calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls
            .iter()
            .map(tool_call)
            .collect::<std::result::Result<_, _>>()?,
        Some(_) => return Err("tool_calls must be an array".into()),
    };
    Ok(Message {
        role,
        content,
        reasoning,
        tool_calls,
        tool_call_id: opt_str(m, "tool_call_id")?,
    })
}

/// Content as the reference encoder sees it. Tool results given as parts join their texts
/// with blank lines and name other parts `[Unsupported <type>]` (the reference's rule); for
/// other roles, whose parts the reference cannot render, text parts are concatenated.
fn content(v: Option<&Value>, role: Role) -> std::result::Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for p in parts {
                match p {
                    Value::Str(s) => texts.push(s.clone()),
                    Value::Object(_) => {
                        match (p.get("type").and_then(Value::as_str), p.get("text")) {
                            (Some("text") | None, Some(Value::Str(t))) => texts.push(t.clone()),
                            (ty, _) if role == Role::Tool => {
                                texts.push(format!("[Unsupported {}]", ty.unwrap_or("None")))
                            }
                            _ => {}
                        }
                    }
                    _ => return Err("content parts must be strings or objects".into()),
                }
            }
            Ok(texts.join(if role == Role::Tool { "\n\n" } else { "" }))
        }
        Some(_) => Err("content must be a string, null or an array".into()),
    }
}

fn tool_call(c: &Value) -> std::result::Result<ToolCall, String> {
    let f = c.get("function").unwrap_or(c);
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or("tool call without a function name")?
        .to_string();
    // A call without arguments is kept as a call with none.
    let arguments = match f.get("arguments") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::Str(s)) => s.clone(),
        Some(v) => json::dumps(v),
    };
    Ok(ToolCall {
        id: opt_str(c, "id")?,
        name,
        arguments,
    })
}
