//! Incremental parser of one assistant turn's output: reasoning, content and tool calls,
//! reported as events the moment they are certain. Feeding the whole text at once and
//! feeding it in any pieces yield the same events once concatenated — the complete parser
//! ([`super::parse`]) is this parser run on the whole text.
//!
//! Rules (prompt-format.md §9.3, §10.3, with the project decisions at its top):
//! * Thinking mode: a leading `<think>` is skipped; reasoning runs to the first `</think>`.
//!   Output that ends before `</think>` is all reasoning.
//! * With tools: the first tool-block opening tag of any spelling starts the block; content is
//!   the text before it, minus a `"\n\n"` directly before the tag (which belongs to the block,
//!   as in the reference parser).
//! * In the block: whitespace between tags; `name` required on invokes and parameters;
//!   `string="true"` values are raw strings, others raw JSON text; a parameter without
//!   `string` is a string, unless its value starts with more parameters, which then form a
//!   JSON object (a recovered model slip). Arguments are built as the reference parser does:
//!   `{"k": "v", "n": 3}` with JSON values spliced verbatim.
//! * A malformed or unterminated block is not a tool call: [`Event::ToolCallsAborted`] is
//!   followed by the block's text as content. Text after the closing tag is ignored
//!   (generation stops there).

use super::syntax::{
    self, held_suffix, partial, read_tag, Syntax, Tag, INVOKE_TAG_ENDINGS, PARAM_TAG_ENDINGS,
};
use crate::json::dumps_str;

/// What the parser learned from the latest text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// More reasoning text.
    Reasoning(String),
    /// More visible content.
    Content(String),
    /// A tool call opened (its name is known).
    ToolCallStart { index: usize, name: String },
    /// More of a call's arguments JSON text.
    ToolCallArguments { index: usize, delta: String },
    /// A call's invoke closed.
    ToolCallEnd { index: usize },
    /// The tool block closed; `raw` is its exact text (with the `"\n\n"` before it, if any),
    /// for exact replay.
    ToolCallsEnd { raw: String },
    /// The tool block is malformed or unterminated: forget the calls streamed so far; its
    /// text follows as content.
    ToolCallsAborted,
}

/// Parser configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// The prompt ended with `<think>`: output starts with reasoning.
    pub thinking: bool,
    /// Tools were offered: look for a tool block.
    pub tools: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Thinking mode, before deciding whether the output starts with `<think>`.
    ReasoningStart,
    Reasoning,
    /// Content, watching for a tool block.
    Content,
    /// Content with no tool detection (no tools, or after an aborted block).
    PlainContent,
    Block(Block),
    /// After the tool block: the rest is ignored.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    BetweenInvokes,
    InvokeTag,
    BetweenParams,
    ParamTag {
        nested: bool,
    },
    /// A parameter without `string`: a string value, or nested parameters?
    ParamDecide,
    Value {
        string: bool,
        nested: bool,
    },
    NestedBetween,
    NestedEnd,
}

/// The streaming parser. Feed text with [`StreamParser::push`], end with
/// [`StreamParser::finish`].
#[derive(Debug, Clone)]
pub struct StreamParser {
    options: ParseOptions,
    state: State,
    /// Text received but not yet consumed.
    buf: String,
    /// The tool block's text consumed so far.
    raw: String,
    syntax: Syntax,
    index: usize,
    first_param: bool,
    events: Vec<Event>,
}

/// Outcome of one parsing step.
enum Step {
    /// State changed; try again.
    Progress,
    /// Need more text.
    Wait,
    /// The block is malformed.
    Abort,
}

impl StreamParser {
    pub fn new(options: ParseOptions) -> Self {
        let state = if options.thinking {
            State::ReasoningStart
        } else if options.tools {
            State::Content
        } else {
            State::PlainContent
        };
        StreamParser {
            options,
            state,
            buf: String::new(),
            raw: String::new(),
            syntax: syntax::FULL,
            index: 0,
            first_param: true,
            events: Vec::new(),
        }
    }

    /// Adds generated text; returns the events it made certain.
    pub fn push(&mut self, text: &str) -> Vec<Event> {
        if self.state != State::Done {
            self.buf.push_str(text);
        }
        self.run(false);
        std::mem::take(&mut self.events)
    }

    /// Ends the output; returns the remaining events.
    pub fn finish(mut self) -> Vec<Event> {
        self.run(true);
        self.events
    }

    fn emit(&mut self, e: Event) {
        let merged = match (self.events.last_mut(), &e) {
            (Some(Event::Reasoning(a)), Event::Reasoning(b))
            | (Some(Event::Content(a)), Event::Content(b)) => {
                a.push_str(b);
                true
            }
            (
                Some(Event::ToolCallArguments { index: i, delta: a }),
                Event::ToolCallArguments { index: j, delta: b },
            ) if i == j => {
                a.push_str(b);
                true
            }
            _ => false,
        };
        if !merged {
            match &e {
                Event::Reasoning(s) | Event::Content(s) if s.is_empty() => {}
                _ => self.events.push(e),
            }
        }
    }

    fn args(&mut self, delta: &str) {
        self.emit(Event::ToolCallArguments {
            index: self.index,
            delta: delta.to_string(),
        });
    }

    /// Moves the first `n` bytes of the buffer into the block's raw text.
    fn consume(&mut self, n: usize) -> String {
        let head: String = self.buf.drain(..n).collect();
        self.raw.push_str(&head);
        head
    }

    fn run(&mut self, end: bool) {
        loop {
            let step = match self.state.clone() {
                State::ReasoningStart => self.reasoning_start(end),
                State::Reasoning => self.reasoning(end),
                State::Content => self.content(end),
                State::PlainContent => {
                    let all = std::mem::take(&mut self.buf);
                    self.emit(Event::Content(all));
                    Step::Wait
                }
                State::Done => {
                    self.buf.clear();
                    Step::Wait
                }
                State::Block(b) => self.block(b),
            };
            match step {
                Step::Progress => continue,
                Step::Abort => self.abort(),
                Step::Wait if end && matches!(self.state, State::Block(_)) => self.abort(),
                Step::Wait => return,
            }
        }
    }

    fn abort(&mut self) {
        self.emit(Event::ToolCallsAborted);
        let mut text = std::mem::take(&mut self.raw);
        text.push_str(&self.buf);
        self.buf.clear();
        self.emit(Event::Content(text));
        self.state = State::PlainContent;
    }

    fn after_reasoning(&self) -> State {
        if self.options.tools {
            State::Content
        } else {
            State::PlainContent
        }
    }

    fn reasoning_start(&mut self, end: bool) -> Step {
        const OPEN: &str = "<think>";
        if self.buf.starts_with(OPEN) {
            self.buf.drain(..OPEN.len());
        } else if !end && (self.buf.is_empty() || partial(&self.buf, OPEN)) {
            return Step::Wait;
        }
        self.state = State::Reasoning;
        Step::Progress
    }

    fn reasoning(&mut self, end: bool) -> Step {
        const CLOSE: &str = "</think>";
        if let Some(at) = self.buf.find(CLOSE) {
            let text: String = self.buf.drain(..at).collect();
            self.buf.drain(..CLOSE.len());
            self.emit(Event::Reasoning(text));
            self.state = self.after_reasoning();
            return Step::Progress;
        }
        let keep = if end {
            self.buf.len()
        } else {
            held_suffix(&self.buf, CLOSE)
        };
        let text: String = self.buf.drain(..keep).collect();
        self.emit(Event::Reasoning(text));
        Step::Wait
    }

    fn content(&mut self, end: bool) -> Step {
        let found = syntax::ALL
            .iter()
            .filter_map(|s| self.buf.find(s.open).map(|at| (at, *s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, syn)) = found {
            let start = if self.buf[..at].ends_with("\n\n") {
                at - 2
            } else {
                at
            };
            let text: String = self.buf.drain(..start).collect();
            self.emit(Event::Content(text));
            self.syntax = syn;
            self.raw.clear();
            self.consume(at - start + syn.open.len());
            self.state = State::Block(Block::BetweenInvokes);
            return Step::Progress;
        }
        let keep = if end {
            self.buf.len()
        } else {
            syntax::ALL
                .iter()
                .flat_map(|s| {
                    let with_nl = format!("\n\n{}", s.open);
                    [
                        held_suffix(&self.buf, s.open),
                        held_suffix(&self.buf, &with_nl),
                    ]
                })
                .min()
                .unwrap_or(self.buf.len())
        };
        let text: String = self.buf.drain(..keep).collect();
        self.emit(Event::Content(text));
        Step::Wait
    }

    /// Consumes leading ASCII whitespace into the raw block text.
    fn skip_ws(&mut self) {
        let n = self.buf.len()
            - self
                .buf
                .trim_start_matches(|c: char| c.is_ascii_whitespace())
                .len();
        self.consume(n);
    }

    fn block(&mut self, b: Block) -> Step {
        let syn = self.syntax;
        match b {
            Block::BetweenInvokes => {
                self.skip_ws();
                if self.buf.starts_with(syn.close) {
                    self.consume(syn.close.len());
                    let raw = std::mem::take(&mut self.raw);
                    self.emit(Event::ToolCallsEnd { raw });
                    self.state = State::Done;
                    Step::Progress
                } else if self.buf.starts_with(syn.invoke_open) {
                    self.consume(syn.invoke_open.len());
                    self.state = State::Block(Block::InvokeTag);
                    Step::Progress
                } else if self.buf.is_empty()
                    || partial(&self.buf, syn.close)
                    || partial(&self.buf, syn.invoke_open)
                {
                    Step::Wait
                } else {
                    Step::Abort
                }
            }
            Block::InvokeTag => {
                let (len, name) = match read_tag(&self.buf, &INVOKE_TAG_ENDINGS) {
                    Tag::Wait => return Step::Wait,
                    Tag::Bad => return Step::Abort,
                    Tag::Done { len, name, .. } => (len, name),
                };
                self.consume(len);
                self.emit(Event::ToolCallStart {
                    index: self.index,
                    name,
                });
                self.args("{");
                self.first_param = true;
                self.state = State::Block(Block::BetweenParams);
                Step::Progress
            }
            Block::BetweenParams => {
                self.skip_ws();
                if self.buf.starts_with(syn.invoke_close) {
                    self.consume(syn.invoke_close.len());
                    self.args("}");
                    self.emit(Event::ToolCallEnd { index: self.index });
                    self.index += 1;
                    self.state = State::Block(Block::BetweenInvokes);
                    Step::Progress
                } else if self.buf.starts_with(syn.param_open) {
                    self.consume(syn.param_open.len());
                    self.state = State::Block(Block::ParamTag { nested: false });
                    Step::Progress
                } else if self.buf.is_empty()
                    || partial(&self.buf, syn.invoke_close)
                    || partial(&self.buf, syn.param_open)
                {
                    Step::Wait
                } else {
                    Step::Abort
                }
            }
            Block::ParamTag { nested } => {
                let (len, name, string) = match read_tag(&self.buf, &PARAM_TAG_ENDINGS) {
                    Tag::Wait => return Step::Wait,
                    Tag::Bad => return Step::Abort,
                    Tag::Done { len, name, string } => (len, name, string.map(|s| s == "true")),
                };
                self.consume(len);
                let key = if nested {
                    let sep = if self.first_param { "" } else { "," };
                    format!("{sep}{}:", dumps_str(&name))
                } else {
                    let sep = if self.first_param { "" } else { ", " };
                    format!("{sep}{}: ", dumps_str(&name))
                };
                self.first_param = false;
                self.args(&key);
                let next = match string {
                    Some(false) => Block::Value {
                        string: false,
                        nested,
                    },
                    Some(true) => Block::Value {
                        string: true,
                        nested,
                    },
                    // Leaves of a nested run default to strings.
                    None if nested => Block::Value {
                        string: true,
                        nested,
                    },
                    None => Block::ParamDecide,
                };
                if matches!(next, Block::Value { string: true, .. }) {
                    self.args("\"");
                }
                self.state = State::Block(next);
                Step::Progress
            }
            Block::ParamDecide => {
                let rest = self
                    .buf
                    .trim_start_matches(|c: char| c.is_ascii_whitespace());
                if rest.starts_with(syn.param_open) {
                    self.skip_ws();
                    self.args("{");
                    self.first_param = true;
                    self.state = State::Block(Block::NestedBetween);
                } else if rest.is_empty() || partial(rest, syn.param_open) {
                    return Step::Wait;
                } else {
                    self.args("\"");
                    self.state = State::Block(Block::Value {
                        string: true,
                        nested: false,
                    });
                }
                Step::Progress
            }
            Block::Value { string, nested } => {
                let (len, done) = match self.buf.find(syn.param_close) {
                    Some(at) => (at, true),
                    None => (held_suffix(&self.buf, syn.param_close), false),
                };
                let value = self.consume(len);
                if string {
                    let quoted = dumps_str(&value);
                    self.args(&quoted[1..quoted.len() - 1]);
                } else {
                    self.args(&value);
                }
                if !done {
                    return Step::Wait;
                }
                self.consume(syn.param_close.len());
                if string {
                    self.args("\"");
                }
                self.state = State::Block(if nested {
                    Block::NestedBetween
                } else {
                    Block::BetweenParams
                });
                Step::Progress
            }
            Block::NestedBetween => {
                self.skip_ws();
                if self.buf.starts_with(syn.param_open) {
                    self.consume(syn.param_open.len());
                    self.state = State::Block(Block::ParamTag { nested: true });
                    Step::Progress
                } else if self.buf.is_empty() || partial(&self.buf, syn.param_open) {
                    Step::Wait
                } else {
                    self.args("}");
                    self.state = State::Block(Block::NestedEnd);
                    Step::Progress
                }
            }
            Block::NestedEnd => {
                // The nested run may be closed by the outer parameter's closing tag.
                if self.buf.starts_with(syn.param_close) {
                    self.consume(syn.param_close.len());
                } else if self.buf.is_empty() || partial(&self.buf, syn.param_close) {
                    return Step::Wait;
                }
                self.state = State::Block(Block::BetweenParams);
                Step::Progress
            }
        }
    }
}
