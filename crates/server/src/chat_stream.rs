//! The Chat Completions SSE grammar (spec §4.3): role chunk, reasoning and
//! content deltas, tool-call headers and argument fragments as the DSML
//! arrives, the finish chunk, the optional usage chunk, `[DONE]`.

use std::sync::Arc;

use axum::response::sse::Event;
use serde::Serialize;
use text::dsml;

use crate::chat::{Function, UsageJson};
use crate::ids;
use crate::sse::{data, Projector};
use crate::tool_memory::ToolMemory;
use crate::turn::{openai_finish, Usage};
use crate::worker::Reply;

pub struct ChatStream {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Usage,
    /// Ids of the calls streamed so far, by index.
    calls: Vec<String>,
    /// The tool block turned out malformed after calls were streamed.
    aborted: bool,
    memory: Arc<ToolMemory>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageJson>,
}

#[derive(Serialize)]
struct ChunkChoice {
    index: usize,
    delta: Delta,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[CallDelta; 1]>,
}

#[derive(Serialize)]
struct CallDelta {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta,
}

#[derive(Serialize)]
#[serde(untagged)]
enum FunctionDelta {
    Header(Function),
    Arguments { arguments: String },
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl ChatStream {
    pub fn new(id: String, model: String, include_usage: bool, memory: Arc<ToolMemory>) -> Self {
        ChatStream {
            id,
            model,
            created: ids::now(),
            include_usage,
            usage: Usage::default(),
            calls: Vec::new(),
            aborted: false,
            memory,
        }
    }

    /// The opening `{"role":"assistant"}` chunk.
    fn role(&self) -> Event {
        self.delta(
            Delta {
                role: Some("assistant"),
                ..Delta::default()
            },
            None,
        )
    }

    fn delta(&self, delta: Delta, finish_reason: Option<&'static str>) -> Event {
        data(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
            }],
            usage: None,
        })
    }

    fn call(&self, index: usize, id: Option<String>, function: FunctionDelta) -> Event {
        self.delta(
            Delta {
                tool_calls: Some([CallDelta {
                    index,
                    kind: id.as_ref().map(|_| "function"),
                    id,
                    function,
                }]),
                ..Delta::default()
            },
            None,
        )
    }

    fn text(&mut self, e: dsml::Event) -> Option<Event> {
        match e {
            dsml::Event::Reasoning(t) if !t.is_empty() => Some(self.delta(
                Delta {
                    reasoning_content: Some(t),
                    ..Delta::default()
                },
                None,
            )),
            dsml::Event::Content(t) if !t.is_empty() => Some(self.delta(
                Delta {
                    content: Some(t),
                    ..Delta::default()
                },
                None,
            )),
            dsml::Event::ToolCallStart { index, name } => {
                let id = ids::random_id("call_");
                self.calls.push(id.clone());
                Some(self.call(
                    index,
                    Some(id),
                    FunctionDelta::Header(Function {
                        name,
                        arguments: String::new(),
                    }),
                ))
            }
            dsml::Event::ToolCallArguments { index, delta } if !delta.is_empty() => {
                Some(self.call(index, None, FunctionDelta::Arguments { arguments: delta }))
            }
            dsml::Event::ToolCallsAborted => {
                self.aborted = !self.calls.is_empty();
                None
            }
            dsml::Event::ToolCallsEnd { raw } => {
                self.memory.remember(&self.calls, &raw);
                None
            }
            _ => None,
        }
    }

    fn finish(&mut self, finish: engine::Finish, completion: usize) -> Vec<Event> {
        self.usage.completion = completion;
        // Streamed calls cannot be retracted: a block that then failed to
        // parse fails the turn (spec §8.4).
        let reason = if self.aborted {
            "error"
        } else {
            openai_finish(finish, !self.calls.is_empty())
        };
        let mut out = vec![self.delta(Delta::default(), Some(reason))];
        if self.include_usage {
            out.push(data(&Chunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: Vec::new(),
                usage: Some(UsageJson::from(self.usage)),
            }));
        }
        out.push(Event::default().data("[DONE]"));
        out
    }
}

impl Projector for ChatStream {
    fn on(&mut self, reply: Reply) -> (Vec<Event>, bool) {
        match reply {
            Reply::Text(e) => (self.text(e).into_iter().collect(), false),
            Reply::Done {
                finish,
                completion_tokens,
                ..
            } => (self.finish(finish, completion_tokens), true),
            Reply::Failed(msg) => (vec![error_event(&msg)], true),
            Reply::ShuttingDown => (vec![error_event("server shutting down")], true),
            Reply::Prefilled { prompt, cached } => {
                self.usage = Usage {
                    prompt,
                    cached,
                    completion: 0,
                };
                (vec![self.role()], false)
            }
        }
    }

    fn lost(&mut self) -> Vec<Event> {
        vec![error_event("generation stopped")]
    }
}

/// The in-band error event of the OpenAI streams (spec §8.3).
pub fn error_event(message: &str) -> Event {
    data(&ErrorEvent {
        error: ErrorBody {
            message,
            kind: "server_error",
        },
    })
    .event("error")
}
