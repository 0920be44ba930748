//! The Responses event stream (spec §6.7): `response.created` and
//! `response.in_progress`, then a reasoning item (only when the client opted
//! in to summaries) and a message item streamed as their text arrives, then
//! at the end the `.done` events, one call item per tool call (arguments in
//! one delta: this API does not stream them live), and the terminal
//! `response.completed` / `incomplete` / `failed` carrying the full
//! response. Events are `data:`-only; each has `type` first and a
//! `sequence_number` counting from 0 second (Codex keys on them).

use axum::response::sse::Event;
use serde::Serialize;
use text::dsml::{self, ParseOptions, ParsedMessage};

use crate::chat_stream::error_event;
use crate::ids;
use crate::responses_binding::Binder;
use crate::responses_items::{
    call_ids, call_item, item_status, reasoning_status, status, Item, Part, ResponseObject,
};
use crate::responses_tools::Tools;
use crate::sse::{data, Projector};
use crate::turn::{compact_arguments, Usage};
use crate::worker::Reply;

/// An item being streamed: its id, output index and text so far.
struct Open {
    id: String,
    index: usize,
    text: String,
}

pub struct ResponsesStream {
    response: ResponseObject,
    summary: bool,
    tools: Tools,
    parse: ParseOptions,
    /// Binds the finished turn for the next request (and holds the tool
    /// memory its calls go into).
    binder: Binder,
    seq: u64,
    next_index: usize,
    usage: Usage,
    reasoning: Option<Open>,
    message: Option<Open>,
    /// Every parser event, for the final parse of the tool calls.
    events: Vec<dsml::Event>,
}

/// An event: `type`, `sequence_number`, then the event's own fields.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct WithResponse<'a> {
    response: &'a ResponseObject,
}

#[derive(Serialize)]
struct ItemEvent<'a> {
    output_index: usize,
    item: &'a Item,
}

#[derive(Serialize)]
struct SummaryPart<'a> {
    item_id: &'a str,
    output_index: usize,
    summary_index: usize,
    part: Part,
}

#[derive(Serialize)]
struct SummaryText<'a> {
    item_id: &'a str,
    output_index: usize,
    summary_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct ContentPart<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    part: Part,
}

#[derive(Serialize)]
struct OutputText<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct ArgumentsDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
}

#[derive(Serialize)]
struct ArgumentsDone<'a> {
    item_id: &'a str,
    output_index: usize,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    arguments: &'a str,
}

impl ResponsesStream {
    pub fn new(
        response: ResponseObject,
        summary: bool,
        tools: Tools,
        parse: ParseOptions,
        binder: Binder,
    ) -> Self {
        ResponsesStream {
            response,
            summary,
            tools,
            parse,
            binder,
            seq: 0,
            next_index: 0,
            usage: Usage::default(),
            reasoning: None,
            message: None,
            events: Vec::new(),
        }
    }

    fn ev<T: Serialize>(&mut self, kind: &str, body: T) -> Event {
        let e = data(&Envelope {
            kind,
            sequence_number: self.seq,
            body,
        });
        self.seq += 1;
        e
    }

    fn open(&mut self, prefix: &str) -> Open {
        let o = Open {
            id: ids::item_id(prefix),
            index: self.next_index,
            text: String::new(),
        };
        self.next_index += 1;
        o
    }

    fn start(&mut self) -> Vec<Event> {
        let r = self.response.clone();
        vec![
            self.ev("response.created", WithResponse { response: &r }),
            self.ev("response.in_progress", WithResponse { response: &r }),
        ]
    }

    fn text(&mut self, e: dsml::Event) -> Vec<Event> {
        let mut out = Vec::new();
        match &e {
            dsml::Event::Reasoning(t) if !t.is_empty() && self.summary => {
                let mut r = match self.reasoning.take() {
                    Some(r) => r,
                    None => {
                        let r = self.open("rs_");
                        let item = Item::Reasoning {
                            id: r.id.clone(),
                            status: "in_progress",
                            summary: Vec::new(),
                        };
                        let added = ItemEvent {
                            output_index: r.index,
                            item: &item,
                        };
                        out.push(self.ev("response.output_item.added", added));
                        let part = SummaryPart {
                            item_id: &r.id,
                            output_index: r.index,
                            summary_index: 0,
                            part: Part::SummaryText {
                                text: String::new(),
                            },
                        };
                        out.push(self.ev("response.reasoning_summary_part.added", part));
                        r
                    }
                };
                let delta = SummaryText {
                    item_id: &r.id,
                    output_index: r.index,
                    summary_index: 0,
                    delta: Some(t),
                    text: None,
                };
                out.push(self.ev("response.reasoning_summary_text.delta", delta));
                r.text.push_str(t);
                self.reasoning = Some(r);
            }
            dsml::Event::Content(t) if !t.is_empty() => {
                let mut m = match self.message.take() {
                    Some(m) => m,
                    None => {
                        let m = self.open("msg_");
                        let item = Item::Message {
                            id: m.id.clone(),
                            status: "in_progress",
                            role: "assistant",
                            content: Vec::new(),
                        };
                        let added = ItemEvent {
                            output_index: m.index,
                            item: &item,
                        };
                        out.push(self.ev("response.output_item.added", added));
                        let part = ContentPart {
                            item_id: &m.id,
                            output_index: m.index,
                            content_index: 0,
                            part: Part::output_text(""),
                        };
                        out.push(self.ev("response.content_part.added", part));
                        m
                    }
                };
                let delta = OutputText {
                    item_id: &m.id,
                    output_index: m.index,
                    content_index: 0,
                    delta: Some(t),
                    text: None,
                };
                out.push(self.ev("response.output_text.delta", delta));
                m.text.push_str(t);
                self.message = Some(m);
            }
            _ => {}
        }
        self.events.push(e);
        out
    }

    fn finish(&mut self, finish: engine::Finish, completion: usize, live: Vec<u32>) -> Vec<Event> {
        self.usage.completion = completion;
        let parsed = ParsedMessage::from_events(self.parse, std::mem::take(&mut self.events));
        let visible = !parsed.content.is_empty() || !parsed.tool_calls.is_empty();
        let item_st = item_status(finish);
        let mut out = Vec::new();
        let mut output = Vec::new();
        if let Some(r) = self.reasoning.take() {
            let text = SummaryText {
                item_id: &r.id,
                output_index: r.index,
                summary_index: 0,
                delta: None,
                text: Some(&r.text),
            };
            out.push(self.ev("response.reasoning_summary_text.done", text));
            let part = SummaryPart {
                item_id: &r.id,
                output_index: r.index,
                summary_index: 0,
                part: Part::SummaryText {
                    text: r.text.clone(),
                },
            };
            out.push(self.ev("response.reasoning_summary_part.done", part));
            let item = Item::Reasoning {
                id: r.id.clone(),
                status: reasoning_status(finish, visible),
                summary: vec![Part::SummaryText { text: r.text }],
            };
            let done = ItemEvent {
                output_index: r.index,
                item: &item,
            };
            out.push(self.ev("response.output_item.done", done));
            output.push(item);
        }
        if let Some(m) = self.message.take() {
            let text = OutputText {
                item_id: &m.id,
                output_index: m.index,
                content_index: 0,
                delta: None,
                text: Some(&m.text),
            };
            out.push(self.ev("response.output_text.done", text));
            let part = ContentPart {
                item_id: &m.id,
                output_index: m.index,
                content_index: 0,
                part: Part::output_text(&m.text),
            };
            out.push(self.ev("response.content_part.done", part));
            let item = Item::Message {
                id: m.id.clone(),
                status: item_st,
                role: "assistant",
                content: vec![Part::output_text(&m.text)],
            };
            let done = ItemEvent {
                output_index: m.index,
                item: &item,
            };
            out.push(self.ev("response.output_item.done", done));
            output.push(item);
        }
        let assigned = call_ids(&self.binder.memory, &parsed);
        for (call, (fc, call_id)) in parsed.tool_calls.iter().zip(assigned.clone()) {
            let index = self.next_index;
            self.next_index += 1;
            let added = call_item(&self.tools, &fc, &call_id, call, item_st, false);
            let added_ev = ItemEvent {
                output_index: index,
                item: &added,
            };
            out.push(self.ev("response.output_item.added", added_ev));
            let item = call_item(&self.tools, &fc, &call_id, call, item_st, true);
            if let Item::FunctionCall {
                name, namespace, ..
            } = &item
            {
                let arguments = compact_arguments(&call.arguments);
                let delta = ArgumentsDelta {
                    item_id: &fc,
                    output_index: index,
                    delta: &arguments,
                };
                out.push(self.ev("response.function_call_arguments.delta", delta));
                let done = ArgumentsDone {
                    item_id: &fc,
                    output_index: index,
                    name,
                    namespace: namespace.as_deref(),
                    arguments: &arguments,
                };
                out.push(self.ev("response.function_call_arguments.done", done));
            }
            let done = ItemEvent {
                output_index: index,
                item: &item,
            };
            out.push(self.ev("response.output_item.done", done));
            output.push(item);
        }
        let st = status(finish, !parsed.tool_calls.is_empty());
        let call_ids: Vec<String> = assigned.into_iter().map(|(_, c)| c).collect();
        self.binder
            .bind(st == "completed", &parsed, &call_ids, live);
        self.response.finish(st, output, self.usage);
        let kind = match st {
            "incomplete" => "response.incomplete",
            "failed" => "response.failed",
            _ => "response.completed",
        };
        let r = self.response.clone();
        out.push(self.ev(kind, WithResponse { response: &r }));
        out
    }
}

impl Projector for ResponsesStream {
    fn on(&mut self, reply: Reply) -> (Vec<Event>, bool) {
        match reply {
            Reply::Prefilled { prompt, cached } => {
                self.usage = Usage {
                    prompt,
                    cached,
                    completion: 0,
                };
                (self.start(), false)
            }
            Reply::Text(e) => (self.text(e), false),
            Reply::Done {
                finish,
                completion_tokens,
                live,
                ..
            } => (self.finish(finish, completion_tokens, live), true),
            Reply::Failed(msg) => (vec![error_event(&msg)], true),
            Reply::ShuttingDown => (vec![error_event("server shutting down")], true),
        }
    }

    fn lost(&mut self) -> Vec<Event> {
        vec![error_event("generation stopped")]
    }
}
