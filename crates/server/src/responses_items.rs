//! Output items and the response object of the Responses API (spec §6.4 –
//! §6.6), shared by the non-streaming body and the stream's events so both
//! report the same ids, statuses and usage.

use engine::Finish;
use serde::Serialize;
use serde_json::value::RawValue;
use text::dsml::{ParsedMessage, ParsedToolCall};

use crate::ids;
use crate::messages::raw_json;
use crate::responses_tools::{CallKind, Tools};
use crate::tool_memory::ToolMemory;
use crate::turn::{compact_arguments, openai_finish, Usage};

/// An output item.
#[derive(Serialize, Clone, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    Reasoning {
        id: String,
        status: &'static str,
        summary: Vec<Part>,
    },
    Message {
        id: String,
        status: &'static str,
        role: &'static str,
        content: Vec<Part>,
    },
    FunctionCall {
        id: String,
        status: &'static str,
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        call_id: String,
        arguments: String,
    },
    /// A call of the hosted `tool_search` tool: arguments as an object.
    ToolSearchCall {
        id: String,
        status: &'static str,
        call_id: String,
        execution: &'static str,
        arguments: Box<RawValue>,
    },
}

/// A text part (`summary_text` of reasoning, `output_text` of a message).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    SummaryText { text: String },
    OutputText { text: String, annotations: [(); 0] },
}

impl Part {
    pub fn output_text(text: &str) -> Self {
        Part::OutputText {
            text: text.to_string(),
            annotations: [],
        }
    }
}

/// `response.status` and its detail for a finish.
pub fn status(finish: Finish, has_calls: bool) -> &'static str {
    match openai_finish(finish, has_calls) {
        "length" => "incomplete",
        "error" => "failed",
        _ => "completed",
    }
}

/// The status of a message or call item.
pub fn item_status(finish: Finish) -> &'static str {
    match finish {
        Finish::Length | Finish::ContextFull | Finish::Cancelled => "incomplete",
        _ => "completed",
    }
}

/// The reasoning item's status: `completed` only when the reasoning was
/// closed — the turn went on to visible output or ended on its own; output
/// cut off inside the reasoning is `incomplete`, so replaying it is refused.
pub fn reasoning_status(finish: Finish, visible: bool) -> &'static str {
    match finish {
        _ if visible => "completed",
        Finish::Stop | Finish::StopString | Finish::ToolCalls => "completed",
        _ => "incomplete",
    }
}

/// A call item: `in_progress` with empty arguments when `done` is false
/// (the stream's `output_item.added`), final otherwise.
pub fn call_item(
    tools: &Tools,
    id: &str,
    call_id: &str,
    call: &ParsedToolCall,
    status: &'static str,
    done: bool,
) -> Item {
    let arguments = compact_arguments(&call.arguments);
    let status = if done { status } else { "in_progress" };
    match tools.kind_of(&call.name) {
        CallKind::ToolSearch => Item::ToolSearchCall {
            id: id.to_string(),
            status,
            call_id: call_id.to_string(),
            execution: "client",
            arguments: raw_json(if done { &arguments } else { "{}" }),
        },
        CallKind::Function { name, namespace } => Item::FunctionCall {
            id: id.to_string(),
            status,
            name,
            namespace,
            call_id: call_id.to_string(),
            arguments: if done { arguments } else { String::new() },
        },
    }
}

/// Ids of one turn's calls: the `fc_` item id and the `call_` id, the
/// latter remembered with the sampled DSML for exact replay.
pub fn call_ids(memory: &ToolMemory, message: &ParsedMessage) -> Vec<(String, String)> {
    let ids: Vec<(String, String)> = message
        .tool_calls
        .iter()
        .map(|_| (ids::item_id("fc_"), ids::random_id("call_")))
        .collect();
    let call_ids: Vec<String> = ids.iter().map(|(_, c)| c.clone()).collect();
    crate::turn::remember_calls(memory, &call_ids, message);
    ids
}

/// The response object (`output` and `usage` filled in once finished).
#[derive(Serialize, Clone, Debug)]
pub struct ResponseObject {
    pub id: String,
    pub object: &'static str,
    pub created_at: u64,
    pub status: &'static str,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete_details: Option<Incomplete>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    pub output: Vec<Item>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageJson>,
}

#[derive(Serialize, Clone, Debug)]
pub struct Incomplete {
    pub reason: &'static str,
}

#[derive(Serialize, Clone, Debug)]
pub struct Failure {
    pub code: &'static str,
    pub message: &'static str,
}

impl ResponseObject {
    /// A response still being generated.
    pub fn in_progress(id: &str, model: &str, created_at: u64) -> Self {
        ResponseObject {
            id: id.to_string(),
            object: "response",
            created_at,
            status: "in_progress",
            model: model.to_string(),
            incomplete_details: None,
            error: None,
            output: Vec::new(),
            usage: None,
        }
    }

    /// The finished response: status from `finish`, the items, usage.
    pub fn finish(&mut self, status: &'static str, output: Vec<Item>, usage: Usage) {
        self.status = status;
        self.incomplete_details = (status == "incomplete").then_some(Incomplete {
            reason: "max_tokens",
        });
        self.error = (status == "failed").then_some(Failure {
            code: "server_error",
            message: "generation failed",
        });
        self.output = output;
        self.usage = Some(UsageJson::from(usage));
    }
}

/// Responses usage with ds4's cache fields (spec §6.6).
#[derive(Serialize, Clone, Copy, Debug)]
pub struct UsageJson {
    input_tokens: usize,
    input_tokens_details: InputDetails,
    output_tokens: usize,
    output_tokens_details: OutputDetails,
    total_tokens: usize,
}

#[derive(Serialize, Clone, Copy, Debug)]
struct InputDetails {
    cached_tokens: usize,
    cache_write_tokens: usize,
}

#[derive(Serialize, Clone, Copy, Debug)]
struct OutputDetails {
    /// ds4 does not count reasoning tokens apart: always 0.
    reasoning_tokens: usize,
}

impl From<Usage> for UsageJson {
    fn from(u: Usage) -> Self {
        UsageJson {
            input_tokens: u.prompt,
            input_tokens_details: InputDetails {
                cached_tokens: u.cached.min(u.prompt),
                cache_write_tokens: u.written(),
            },
            output_tokens: u.completion,
            output_tokens_details: OutputDetails {
                reasoning_tokens: 0,
            },
            total_tokens: u.prompt + u.completion,
        }
    }
}
