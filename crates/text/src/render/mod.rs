//! Conversation → prompt, byte for byte what DeepSeek's reference encoder
//! (`encoding_dsv4.py`) produces, so the model sees the format it was trained on.
//!
//! Request-level tools are attached to a leading system/developer message (or to a new empty
//! system message), the vLLM convention DeepSeek's own fixtures follow. Think Max needs a
//! context of at least 384K tokens; below that the request renders as thinking "high".

mod encoder;
mod input;
mod replay;
mod segments;
mod tools_block;

pub use encoder::{render, render_replaying};
pub use input::{parse_messages, parse_tools};
pub use replay::{DsmlReplay, NoReplay};
pub use segments::{Control, Rendered, Segment};

use crate::json;

/// Contexts below this many tokens downgrade Think Max to high (DeepSeek recommends Think
/// Max only with at least a 384K-token window).
pub const THINK_MAX_MIN_CONTEXT: u64 = 384 * 1024;

/// Message author.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    /// A tool result (`tool_call_id` names the call).
    Tool,
    /// DeepSeek's `latest_reminder` role (date, locale and similar context).
    LatestReminder,
}

/// One conversation message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// Assistant reasoning (`reasoning_content`, or its `reasoning` alias).
    pub reasoning: Option<String>,
    /// Assistant tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// For tool results: the call they answer.
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A message with only a role and content.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            reasoning: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: Option<String>,
    pub name: String,
    /// The arguments as JSON text (an object); other text renders as a single
    /// `arguments` string parameter, as the reference encoder does.
    pub arguments: String,
}

/// Thinking mode requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thinking {
    /// Non-thinking: the prompt ends with `<｜Assistant｜></think>`.
    Off,
    /// Thinking: the prompt ends with `<｜Assistant｜><think>`.
    High,
    /// Think Max: thinking plus the "Reasoning Effort: Absolute maximum" prefix.
    Max,
}

/// How to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    pub thinking: Thinking,
    /// The serving context size in tokens; `None` when unknown (Think Max is then kept).
    pub context_size: Option<u64>,
}

impl RenderOptions {
    /// The thinking mode actually rendered: Max becomes High below
    /// [`THINK_MAX_MIN_CONTEXT`].
    pub fn resolved_thinking(&self) -> Thinking {
        match (self.thinking, self.context_size) {
            (Thinking::Max, Some(ctx)) if ctx < THINK_MAX_MIN_CONTEXT => Thinking::High,
            (t, _) => t,
        }
    }
}

/// A tool definition: the OpenAI `function` object (name, description, parameters).
pub type ToolSchema = json::Value;
