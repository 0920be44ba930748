//! The Responses API's `input` items to the renderer's messages (spec §6.2,
//! §6.3). Strict where ds4 is: an item that is not `completed`, an unknown
//! item type or a content part that is not text fails the request instead of
//! silently dropping context the model would then never see; a tool output
//! must answer a call replayed earlier in the same input (this server keeps
//! no response store to resume from).

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use text::render::{Message, Role, ToolCall};

use crate::error::ApiError;
use crate::responses_tools::Tools;

type R<T> = Result<T, ApiError>;

/// One input item; only the fields some item type reads.
#[derive(Deserialize)]
struct Item {
    #[serde(rename = "type")]
    kind: Option<String>,
    role: Option<String>,
    status: Option<String>,
    content: Option<Value>,
    summary: Option<Value>,
    id: Option<String>,
    call_id: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    arguments: Option<Box<RawValue>>,
    input: Option<Box<RawValue>>,
    action: Option<Box<RawValue>>,
    output: Option<Box<RawValue>>,
    result: Option<Box<RawValue>>,
    tools: Option<Box<RawValue>>,
}

/// Content part types that carry text.
const TEXT_PARTS: [&str; 5] = [
    "input_text",
    "output_text",
    "text",
    "summary_text",
    "reasoning_text",
];

/// Folds items into messages, carrying reasoning to the assistant turn it
/// belongs to.
struct Builder<'t> {
    out: Vec<Message>,
    /// Reasoning items not yet attached to an assistant turn.
    pending: Option<String>,
    /// The previous item was an assistant message or a call, which the next
    /// call joins.
    in_assistant: bool,
    tools: &'t mut Tools,
}

/// The messages of `input` (a string or an array of items); the tools of
/// `tool_search_output` items are added to `tools`.
pub fn messages(input: &RawValue, tools: &mut Tools) -> R<Vec<Message>> {
    let text = input.get().trim_start();
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|_| ApiError::invalid_json())?;
        return Ok(vec![Message::new(Role::User, s)]);
    }
    let items: Vec<Box<RawValue>> =
        serde_json::from_str(text).map_err(|_| ApiError::invalid_json())?;
    let mut b = Builder {
        out: Vec::new(),
        pending: None,
        in_assistant: false,
        tools,
    };
    for raw in &items {
        let item: Item = serde_json::from_str(raw.get()).map_err(|_| ApiError::invalid_json())?;
        b.item(item)?;
    }
    b.flush();
    check_continuation(&b.out)?;
    Ok(b.out)
}

impl Builder<'_> {
    fn item(&mut self, it: Item) -> R<()> {
        // Partial model state must not be replayed.
        if it.status.as_deref().is_some_and(|s| s != "completed") {
            return Err(ApiError::invalid_json());
        }
        let kind = it.kind.clone().unwrap_or_else(|| "message".into());
        match kind.as_str() {
            "message" => self.message(&it),
            "reasoning" => {
                let parts = [text_of(it.summary.as_ref())?, text_of(it.content.as_ref())?];
                let text = parts
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
                match &mut self.pending {
                    Some(p) if !text.is_empty() => {
                        p.push('\n');
                        p.push_str(&text);
                    }
                    Some(_) => {}
                    None => self.pending = Some(text),
                }
                Ok(())
            }
            "function_call" | "custom_tool_call" => {
                let name = it.name.clone().ok_or_else(ApiError::invalid_json)?;
                let name = match &it.namespace {
                    Some(ns) if kind == "function_call" => format!("{ns}{name}"),
                    _ => name,
                };
                let args = if kind == "custom_tool_call" {
                    it.input.as_deref()
                } else {
                    it.arguments.as_deref()
                };
                self.call(&it, name, args)
            }
            "local_shell_call" => self.hosted_call(&it, "local_shell"),
            "web_search_call" => self.hosted_call(&it, "web_search_call"),
            "tool_search_call" => self.hosted_call(&it, "tool_search"),
            "image_generation_call" => self.hosted_call(&it, "image_generation_call"),
            "function_call_output"
            | "custom_tool_call_output"
            | "local_shell_call_output"
            | "web_search_call_output"
            | "tool_search_call_output"
            | "image_generation_call_output" => {
                let body = it.output.as_deref().or(it.result.as_deref());
                self.result(&it, output_text(body)?)
            }
            "tool_search_output" => {
                let tools = it.tools.as_deref().ok_or_else(ApiError::invalid_json)?;
                self.tools.extend(tools.get())?;
                self.result(&it, tools.get().to_string())
            }
            // Client-side bookkeeping with nothing to render.
            "compaction" | "context_compaction" => Ok(()),
            _ => Err(ApiError::invalid_json()),
        }
    }

    fn message(&mut self, it: &Item) -> R<()> {
        let text = text_of(it.content.as_ref())?;
        let role = match it.role.as_deref() {
            None | Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("system" | "developer") => Role::System,
            Some(_) => return Err(ApiError::invalid_json()),
        };
        if role == Role::Assistant {
            let mut m = Message::new(Role::Assistant, text);
            m.reasoning = self.pending.take();
            self.out.push(m);
            self.in_assistant = true;
        } else {
            self.flush();
            self.out.push(Message::new(role, text));
        }
        Ok(())
    }

    /// A call joins the assistant message or call right before it, else
    /// opens an assistant turn of its own; pending reasoning attaches to it.
    fn call(&mut self, it: &Item, name: String, args: Option<&RawValue>) -> R<()> {
        let id = it.call_id.clone().or_else(|| it.id.clone());
        let arguments = match args {
            None => "{}".to_string(),
            Some(a) if a.get().trim_start().starts_with('"') => {
                serde_json::from_str::<String>(a.get()).map_err(|_| ApiError::invalid_json())?
            }
            Some(a) if a.get().trim() == "null" => "{}".to_string(),
            Some(a) => a.get().to_string(),
        };
        let call = ToolCall {
            id,
            name,
            arguments,
        };
        match self.out.last_mut() {
            Some(m) if self.in_assistant && m.role == Role::Assistant => {
                if let Some(p) = self.pending.take() {
                    m.reasoning.get_or_insert_with(String::new).push_str(&p);
                }
                m.tool_calls.push(call);
            }
            _ => {
                let mut m = Message::new(Role::Assistant, "");
                m.reasoning = self.pending.take();
                m.tool_calls.push(call);
                self.out.push(m);
            }
        }
        self.in_assistant = true;
        Ok(())
    }

    /// Calls of hosted tools, replayed as function calls of their names.
    fn hosted_call(&mut self, it: &Item, name: &str) -> R<()> {
        let args = it
            .action
            .as_deref()
            .or(it.arguments.as_deref())
            .or(it.input.as_deref());
        self.call(it, name.to_string(), args)
    }

    fn result(&mut self, it: &Item, content: String) -> R<()> {
        self.flush();
        let mut m = Message::new(Role::Tool, content);
        m.tool_call_id = Some(
            it.call_id
                .clone()
                .or_else(|| it.id.clone())
                .ok_or_else(ApiError::invalid_json)?,
        );
        self.out.push(m);
        Ok(())
    }

    /// Reasoning that no assistant turn took becomes an empty assistant
    /// turn carrying it.
    fn flush(&mut self) {
        if let Some(r) = self.pending.take() {
            let mut m = Message::new(Role::Assistant, "");
            m.reasoning = Some(r);
            self.out.push(m);
        }
        self.in_assistant = false;
    }
}

/// Text of a content field: a string, null, or an array of strings and
/// text parts; anything else fails the request (spec §6.2).
fn text_of(v: Option<&Value>) -> R<String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                match p {
                    Value::String(s) => out.push_str(s),
                    Value::Object(o) => {
                        let ty = o.get("type").and_then(Value::as_str);
                        if !ty.is_some_and(|t| TEXT_PARTS.contains(&t)) {
                            return Err(ApiError::invalid_json());
                        }
                        match o.get("text") {
                            None | Some(Value::Null) => {}
                            Some(Value::String(t)) => out.push_str(t),
                            Some(_) => return Err(ApiError::invalid_json()),
                        }
                    }
                    _ => return Err(ApiError::invalid_json()),
                }
            }
            Ok(out)
        }
        Some(_) => Err(ApiError::invalid_json()),
    }
}

/// A tool output's body: a string, a text-part array, or any other JSON
/// as its raw text.
fn output_text(v: Option<&RawValue>) -> R<String> {
    let Some(v) = v else {
        return Ok(String::new());
    };
    let t = v.get().trim_start();
    if t.starts_with('"') || t.starts_with('[') || t == "null" {
        let parsed: Value = serde_json::from_str(t).map_err(|_| ApiError::invalid_json())?;
        return text_of(Some(&parsed));
    }
    Ok(v.get().to_string())
}

/// Every tool output must answer a call that appears earlier in the input
/// (spec §6.3; without a response store there is no live state to resume).
fn check_continuation(messages: &[Message]) -> R<()> {
    let mut calls = HashSet::new();
    for m in messages {
        calls.extend(m.tool_calls.iter().filter_map(|c| c.id.as_deref()));
        if m.role != Role::Tool {
            continue;
        }
        let id = m.tool_call_id.as_deref().unwrap_or("");
        if !calls.contains(id) {
            return Err(ApiError::bad_request(format!(
                "Responses continuation state is not available for call_id {id}; \
                 retry by replaying the full input history"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> R<Vec<Message>> {
        let raw = RawValue::from_string(input.into()).unwrap();
        messages(&raw, &mut Tools::default())
    }

    #[test]
    fn a_string_is_one_user_message() {
        assert_eq!(parse(r#""hi""#).unwrap(), [Message::new(Role::User, "hi")]);
    }

    #[test]
    fn reasoning_and_calls_join_their_assistant_turn() {
        let m = parse(
            r#"[{"role":"developer","content":"sys"},
                {"type":"message","role":"user","content":[{"type":"input_text","text":"a"},"b"]},
                {"type":"reasoning","summary":[{"type":"summary_text","text":"s1"}],"content":[{"type":"reasoning_text","text":"c1"}],"encrypted_content":"zz"},
                {"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok"}],"status":"completed"},
                {"type":"function_call","call_id":"call_1","name":"f","arguments":"{\"x\":1}"},
                {"type":"function_call","call_id":"call_2","namespace":"mcp__","name":"g","arguments":{"y":[1, 2]}},
                {"type":"compaction"},
                {"type":"function_call_output","call_id":"call_1","output":"r1"},
                {"type":"function_call_output","call_id":"call_2","output":[{"type":"input_text","text":"r2"}]},
                {"type":"reasoning","summary":[]}]"#,
        )
        .unwrap();
        let roles: Vec<Role> = m.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Tool,
                Role::Assistant
            ]
        );
        assert_eq!(m[1].content, "ab");
        let a = &m[2];
        assert_eq!(a.content, "ok");
        assert_eq!(a.reasoning.as_deref(), Some("s1\nc1"));
        assert_eq!(a.tool_calls.len(), 2);
        assert_eq!(a.tool_calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(a.tool_calls[1].name, "mcp__g");
        assert_eq!(a.tool_calls[1].arguments, r#"{"y":[1, 2]}"#);
        assert_eq!(m[4].content, "r2");
        assert_eq!(m[5].reasoning.as_deref(), Some(""));
    }

    #[test]
    fn a_call_after_a_user_message_opens_its_own_turn() {
        let m = parse(
            r#"[{"role":"user","content":"a"},{"type":"reasoning","summary":"why"},
                {"type":"custom_tool_call","call_id":"c","name":"apply","input":"*** patch"},
                {"type":"custom_tool_call_output","call_id":"c","output":{"ok":true}}]"#,
        )
        .unwrap();
        assert_eq!(m[1].role, Role::Assistant);
        assert_eq!(m[1].reasoning.as_deref(), Some("why"));
        assert_eq!(m[1].tool_calls[0].arguments, "*** patch");
        assert_eq!(m[2].content, r#"{"ok":true}"#);
    }

    #[test]
    fn strict_where_ds4_is() {
        for bad in [
            r#"5"#,
            r#"[{"type":"message","status":"in_progress","content":"x"}]"#,
            r#"[{"type":"message","content":[{"type":"input_image","image_url":"u"}]}]"#,
            r#"[{"type":"message","content":[7]}]"#,
            r#"[{"type":"message","content":{"text":"x"}}]"#,
            r#"[{"type":"hologram"}]"#,
            r#"[{"type":"function_call","call_id":"c"}]"#,
            r#"[{"type":"tool_search_output","call_id":"c","tools":{}}]"#,
        ] {
            assert_eq!(parse(bad), Err(ApiError::invalid_json()), "{bad}");
        }
        let e = parse(r#"[{"type":"function_call_output","call_id":"call_9","output":"x"}]"#)
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "Responses continuation state is not available for call_id call_9; \
             retry by replaying the full input history"
        );
    }

    #[test]
    fn tool_search_output_adds_tools() {
        let mut tools = Tools::default();
        let raw = RawValue::from_string(
            r#"[{"type":"tool_search_call","call_id":"c","arguments":{"q":"x"}},
                {"type":"tool_search_output","call_id":"c","tools":[{"type":"function","name":"found","parameters":{}}]}]"#
                .into(),
        )
        .unwrap();
        let m = messages(&raw, &mut tools).unwrap();
        assert_eq!(tools.schemas.len(), 1);
        assert_eq!(m[0].tool_calls[0].name, "tool_search");
    }
}
