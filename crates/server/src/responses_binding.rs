//! The Responses visible-transcript binding (kv-cache.md §3.1, step A1 of
//! §2). Codex replays a tool loop without the model's reasoning (it never
//! asked for summaries), so the replayed prompt differs from the live
//! session right after the previous turn's `<think>`, and every turn would
//! prefill everything after it again. After each Responses turn the server
//! remembers the live tokens (prompt + everything generated + EOS) together
//! with the *visible* transcript: the prompt text the client's replay of
//! that turn renders to. A later request whose rendered prompt starts with
//! that text continues the live tokens with only what it adds; the worker
//! takes this continuation when it still extends the live session.

use std::sync::{Arc, Mutex};

use text::dsml::ParsedMessage;
use text::render::{
    render_replaying, Message, RenderOptions, Rendered, Role, Segment, Thinking, ToolCall,
    ToolSchema,
};
use text::Tokenizer;

use crate::tool_memory::ToolMemory;
use crate::turn::compact_arguments;

/// The last Responses turn's live tokens and visible transcript.
struct Bound {
    live: Vec<u32>,
    visible: String,
}

/// Shared by the Responses handlers; one binding, as there is one session.
#[derive(Default)]
pub struct ResponsesBinding(Mutex<Option<Bound>>);

impl ResponsesBinding {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Bound>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token sequence continuing the bound live tokens for a request
    /// rendered as `rendered`, when its text starts with the bound visible
    /// transcript.
    pub fn continuation(&self, rendered: &Rendered, tokenizer: &Tokenizer) -> Option<Vec<u32>> {
        let bound = self.lock();
        let b = bound.as_ref()?;
        if !rendered.text().starts_with(&b.visible) {
            return None;
        }
        let mut out = b.live.clone();
        out.extend(suffix_tokens(rendered, b.visible.len(), tokenizer)?);
        Some(out)
    }

    fn set(&self, bound: Option<Bound>) {
        *self.lock() = bound;
    }
}

/// Token ids of `rendered` from byte `from` of its text on; text cut at
/// `from` is tokenized from there (the session keeps its own tokens for what
/// precedes). `None` when `from` falls inside a control token.
pub fn suffix_tokens(rendered: &Rendered, from: usize, tokenizer: &Tokenizer) -> Option<Vec<u32>> {
    let mut ids = Vec::new();
    let mut at = 0;
    for seg in rendered.segments() {
        let (text, control) = match seg {
            Segment::Text(t) => (t.as_str(), false),
            Segment::Control(c) => (c.as_str(), true),
        };
        let end = at + text.len();
        if end > from {
            if control {
                if at < from {
                    return None;
                }
                ids.push(tokenizer.token_to_id(text)?);
            } else {
                let cut = from.saturating_sub(at);
                tokenizer.encode_into(text.get(cut..)?, &mut ids);
            }
        }
        at = end;
    }
    Some(ids)
}

/// What is needed after a turn to bind it: the request as rendered.
pub struct Binder {
    pub binding: Arc<ResponsesBinding>,
    pub memory: Arc<ToolMemory>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSchema>,
    pub thinking: Thinking,
    pub ctx: usize,
    pub summary: bool,
    pub eos: u32,
}

impl Binder {
    /// Binds a finished turn (`ok`: it ended normally, not by length or
    /// error), whose calls got `call_ids`; anything else clears the binding.
    pub fn bind(&self, ok: bool, message: &ParsedMessage, call_ids: &[String], mut live: Vec<u32>) {
        let replayed = !message.content.is_empty() || !message.tool_calls.is_empty();
        if !ok || !replayed {
            self.binding.set(None);
            return;
        }
        // The assistant turn as the client replays it: reasoning only when
        // it asked for summaries and the turn called tools (ds4's rule).
        let mut m = Message::new(Role::Assistant, message.content.clone());
        if self.summary && !message.tool_calls.is_empty() {
            m.reasoning = message.reasoning.clone();
        }
        m.tool_calls = message
            .tool_calls
            .iter()
            .zip(call_ids)
            .map(|(c, id)| ToolCall {
                id: Some(id.clone()),
                name: c.name.clone(),
                arguments: compact_arguments(&c.arguments),
            })
            .collect();
        let mut messages = self.messages.clone();
        messages.push(m);
        let options = RenderOptions {
            thinking: self.thinking,
            context_size: Some(self.ctx as u64),
        };
        // Looked up without counting: this rendering is bookkeeping, not a prompt.
        let replay = |calls: &[ToolCall]| self.memory.lookup(calls);
        let Ok(visible) = render_replaying(&messages, &self.tools, &options, &replay) else {
            self.binding.set(None);
            return;
        };
        live.push(self.eos);
        self.binding.set(Some(Bound {
            live,
            visible: visible.text(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use text::render::render;

    #[test]
    fn suffix_tokens_follow_the_segments() {
        let tok =
            Tokenizer::from_tokenizer_json(model::convert::tokenizer::V4_TOKENIZER_JSON).unwrap();
        let messages = [
            Message::new(Role::User, "hello there"),
            Message::new(Role::Assistant, "hi"),
            Message::new(Role::User, "again"),
        ];
        let options = RenderOptions {
            thinking: Thinking::Off,
            context_size: None,
        };
        let r = render(&messages, &[], &options).unwrap();
        let all = r.token_ids(&tok).unwrap();
        assert_eq!(suffix_tokens(&r, 0, &tok).unwrap(), all);
        // From the end of the first turn (a control-token boundary) on.
        let head = render(&messages[..2], &[], &options).unwrap();
        let n = head.token_ids(&tok).unwrap().len();
        assert!(r.text().starts_with(&head.text()));
        assert_eq!(
            suffix_tokens(&r, head.text().len(), &tok).unwrap(),
            all[n..]
        );
        // Inside a control token's text there is no boundary.
        let bos = "<｜begin▁of▁sentence｜>".len();
        assert_eq!(suffix_tokens(&r, bos - 1, &tok), None);
        // Inside text: the rest of it is tokenized on its own.
        let cut = bos + "<｜User｜>".len() + "hello ".len();
        let rest = suffix_tokens(&r, cut, &tok).unwrap();
        assert_eq!(tok.decode(&rest), r.text().as_bytes()[cut..].to_vec());
    }
}
