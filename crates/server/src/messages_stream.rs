//! The Anthropic Messages SSE grammar (spec §7.4): `message_start`, a
//! thinking block closed by its `signature_delta`, a text block, one
//! tool_use block per call with `input_json_delta` fragments as the DSML
//! arrives, `message_delta`, `message_stop`. Block indexes count up in
//! emission order; raw DSML and think tags never reach a delta.

use std::sync::Arc;

use axum::response::sse::Event;
use serde::Serialize;
use serde_json::value::RawValue;
use text::dsml;

use crate::ids;
use crate::messages::{raw_json, UsageJson};
use crate::sse::{named, Projector};
use crate::tool_memory::ToolMemory;
use crate::turn::{anthropic_stop, Usage};
use crate::worker::Reply;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Thinking,
    Text,
    Tool,
}

pub struct MessagesStream {
    id: String,
    model: String,
    /// Index of the next block.
    next: usize,
    open: Open,
    thinking_sent: bool,
    text_sent: bool,
    /// Ids of the tool_use blocks streamed so far.
    calls: Vec<String>,
    aborted: bool,
    memory: Arc<ToolMemory>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Payload<'a> {
    MessageStart {
        message: StartMessage<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: BlockStart,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: StopDelta,
        usage: OutputUsage,
    },
    MessageStop,
    Error {
        error: ErrorBody<'a>,
    },
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: UsageJson,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockStart {
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    Text {
        text: &'static str,
    },
    ToolUse {
        id: String,
        name: String,
        input: Box<RawValue>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta {
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "signature_delta")]
    Signature { signature: String },
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<String>,
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: usize,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

fn ev(p: &Payload) -> Event {
    let name = match p {
        Payload::MessageStart { .. } => "message_start",
        Payload::ContentBlockStart { .. } => "content_block_start",
        Payload::ContentBlockDelta { .. } => "content_block_delta",
        Payload::ContentBlockStop { .. } => "content_block_stop",
        Payload::MessageDelta { .. } => "message_delta",
        Payload::MessageStop => "message_stop",
        Payload::Error { .. } => "error",
    };
    named(name, p)
}

impl MessagesStream {
    pub fn new(id: String, model: String, memory: Arc<ToolMemory>) -> Self {
        MessagesStream {
            id,
            model,
            next: 0,
            open: Open::None,
            thinking_sent: false,
            text_sent: false,
            calls: Vec::new(),
            aborted: false,
            memory,
        }
    }

    /// `message_start`, sent once the prompt is in the session so its cache
    /// numbers are final.
    fn start(&self, usage: Usage) -> Event {
        ev(&Payload::MessageStart {
            message: StartMessage {
                id: &self.id,
                kind: "message",
                role: "assistant",
                model: &self.model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                usage: UsageJson::from(usage),
            },
        })
    }

    fn close(&mut self, out: &mut Vec<Event>) {
        let index = self.next - 1;
        match self.open {
            Open::None => return,
            Open::Thinking => out.push(ev(&Payload::ContentBlockDelta {
                index,
                delta: Delta::Signature {
                    signature: self.id.clone(),
                },
            })),
            Open::Text | Open::Tool => {}
        }
        out.push(ev(&Payload::ContentBlockStop { index }));
        self.open = Open::None;
    }

    fn open(&mut self, kind: Open, block: BlockStart, out: &mut Vec<Event>) {
        self.close(out);
        out.push(ev(&Payload::ContentBlockStart {
            index: self.next,
            content_block: block,
        }));
        self.next += 1;
        self.open = kind;
    }

    fn delta(&self, delta: Delta) -> Event {
        ev(&Payload::ContentBlockDelta {
            index: self.next - 1,
            delta,
        })
    }

    fn text(&mut self, e: dsml::Event) -> Vec<Event> {
        let mut out = Vec::new();
        match e {
            dsml::Event::Reasoning(t) if !t.is_empty() => {
                if self.open != Open::Thinking {
                    let block = BlockStart::Thinking {
                        thinking: "",
                        signature: "",
                    };
                    self.open(Open::Thinking, block, &mut out);
                    self.thinking_sent = true;
                }
                out.push(self.delta(Delta::Thinking { thinking: t }));
            }
            dsml::Event::Content(t) if !t.is_empty() => {
                if self.open != Open::Text {
                    self.open(Open::Text, BlockStart::Text { text: "" }, &mut out);
                    self.text_sent = true;
                }
                out.push(self.delta(Delta::Text { text: t }));
            }
            dsml::Event::ToolCallStart { name, .. } => {
                let id = ids::random_id("toolu_");
                self.calls.push(id.clone());
                let block = BlockStart::ToolUse {
                    id,
                    name,
                    input: raw_json("{}"),
                };
                self.open(Open::Tool, block, &mut out);
            }
            dsml::Event::ToolCallArguments { delta, .. } if !delta.is_empty() => {
                out.push(self.delta(Delta::InputJson {
                    partial_json: delta,
                }));
            }
            dsml::Event::ToolCallEnd { .. } => self.close(&mut out),
            dsml::Event::ToolCallsAborted => {
                self.close(&mut out);
                self.aborted = !self.calls.is_empty();
            }
            dsml::Event::ToolCallsEnd { raw } => self.memory.remember(&self.calls, &raw),
            _ => {}
        }
        out
    }

    fn finish(
        &mut self,
        finish: engine::Finish,
        completion: usize,
        stop: Option<String>,
    ) -> Vec<Event> {
        let mut out = Vec::new();
        self.close(&mut out);
        if self.thinking_sent && !self.text_sent && self.calls.is_empty() {
            self.open(Open::Text, BlockStart::Text { text: "" }, &mut out);
            self.close(&mut out);
        }
        let stop_reason = if self.aborted {
            "end_turn"
        } else {
            anthropic_stop(finish, !self.calls.is_empty())
        };
        out.push(ev(&Payload::MessageDelta {
            delta: StopDelta {
                stop_reason,
                stop_sequence: stop.filter(|_| stop_reason == "stop_sequence"),
            },
            usage: OutputUsage {
                output_tokens: completion,
            },
        }));
        out.push(ev(&Payload::MessageStop));
        out
    }
}

impl Projector for MessagesStream {
    fn on(&mut self, reply: Reply) -> (Vec<Event>, bool) {
        match reply {
            Reply::Text(e) => (self.text(e), false),
            Reply::Done {
                finish,
                completion_tokens,
                stop,
                ..
            } => (self.finish(finish, completion_tokens, stop), true),
            Reply::Failed(msg) => (vec![error_event(&msg)], true),
            Reply::ShuttingDown => (vec![error_event("server shutting down")], true),
            Reply::Prefilled { prompt, cached } => {
                let usage = Usage {
                    prompt,
                    cached,
                    completion: 0,
                };
                (vec![self.start(usage)], false)
            }
        }
    }

    fn lost(&mut self) -> Vec<Event> {
        vec![error_event("generation stopped")]
    }
}

fn error_event(message: &str) -> Event {
    ev(&Payload::Error {
        error: ErrorBody {
            kind: "api_error",
            message,
        },
    })
}
