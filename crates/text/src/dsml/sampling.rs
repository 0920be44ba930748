//! "Structure greedy, payload sampled": inside a tool block the tags, names and JSON syntax
//! are sampled at temperature 0 so they come out well-formed, while string payloads and JSON
//! string contents use the request's sampler. The tracker reads the generated text (reasoning
//! included — it does not know about `</think>`) and says which applies to the next token.
//! Only the first tool block of a turn is tracked (prompt-format.md §10.7).

use super::syntax::{self, attribute, held_suffix, partial, Syntax};

/// How the next token should be sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeState {
    /// Not in a tool block: normal sampling.
    Outside,
    /// Tags and the space between them: greedy.
    Structural,
    /// A `string="true"` parameter value: normal sampling.
    StringBody,
    /// JSON syntax of a non-string parameter: greedy.
    JsonStructural,
    /// Inside a JSON string of a non-string parameter: normal sampling.
    JsonString,
}

impl DecodeState {
    /// Whether the next token must be the argmax.
    pub fn greedy(self) -> bool {
        matches!(self, DecodeState::Structural | DecodeState::JsonStructural)
    }

    /// The state's name as the spec's examples spell it.
    pub fn name(self) -> &'static str {
        match self {
            DecodeState::Outside => "outside",
            DecodeState::Structural => "structural",
            DecodeState::StringBody => "string_body",
            DecodeState::JsonStructural => "json_structural",
            DecodeState::JsonString => "json_string",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Outside,
    Structural,
    StringBody,
    Json {
        in_string: bool,
        escape: bool,
    },
    /// The first block closed: outside for the rest of the turn.
    Done,
}

/// Tracks the decode state over one assistant turn's generated text.
#[derive(Debug, Clone)]
pub struct SamplingTracker {
    mode: Mode,
    syntax: Syntax,
    /// Unconsumed text (a short tail, except inside an unfinished tag).
    buf: String,
    state: DecodeState,
}

impl Default for SamplingTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SamplingTracker {
    pub fn new() -> Self {
        SamplingTracker {
            mode: Mode::Outside,
            syntax: syntax::FULL,
            buf: String::new(),
            state: DecodeState::Outside,
        }
    }

    /// The state governing the next token.
    pub fn state(&self) -> DecodeState {
        self.state
    }

    /// Adds the text of a sampled token; returns the state for the next one.
    pub fn push(&mut self, text: &str) -> DecodeState {
        if self.mode != Mode::Done {
            self.buf.push_str(text);
            self.state = self.advance();
        }
        self.state
    }

    fn drain(&mut self, n: usize) {
        self.buf.drain(..n);
    }

    fn advance(&mut self) -> DecodeState {
        loop {
            match self.mode {
                Mode::Done => {
                    self.buf.clear();
                    return DecodeState::Outside;
                }
                Mode::Outside => {
                    let found = syntax::ALL
                        .iter()
                        .filter_map(|s| self.buf.find(s.open).map(|at| (at, *s)))
                        .min_by_key(|(at, _)| *at);
                    if let Some((at, syn)) = found {
                        self.syntax = syn;
                        self.drain(at + syn.open.len());
                        self.mode = Mode::Structural;
                        continue;
                    }
                    let keep = syntax::ALL
                        .iter()
                        .map(|s| held_suffix(&self.buf, s.open))
                        .min()
                        .unwrap_or(self.buf.len());
                    self.drain(keep);
                    return DecodeState::Outside;
                }
                Mode::Structural => {
                    let syn = self.syntax;
                    let ws = self.buf.len()
                        - self
                            .buf
                            .trim_start_matches(|c: char| c.is_ascii_whitespace())
                            .len();
                    self.drain(ws);
                    if self.buf.starts_with(syn.close) {
                        self.mode = Mode::Done;
                        continue;
                    }
                    if self.buf.starts_with(syn.invoke_close) {
                        self.drain(syn.invoke_close.len());
                        continue;
                    }
                    let is_param = self.buf.starts_with(syn.param_open);
                    if is_param || self.buf.starts_with(syn.invoke_open) {
                        let Some(gt) = self.buf.find('>') else {
                            return DecodeState::Structural;
                        };
                        if is_param {
                            let string = attribute(&self.buf[..gt], "string") == Some("true");
                            self.mode = if string {
                                Mode::StringBody
                            } else {
                                Mode::Json {
                                    in_string: false,
                                    escape: false,
                                }
                            };
                        }
                        self.drain(gt + 1);
                        continue;
                    }
                    // Partial tags and anything unexpected: stay structural.
                    return DecodeState::Structural;
                }
                Mode::StringBody => {
                    let close = self.syntax.param_close;
                    if let Some(at) = self.buf.find(close) {
                        self.drain(at + close.len());
                        self.mode = Mode::Structural;
                        continue;
                    }
                    let keep = held_suffix(&self.buf, close);
                    self.drain(keep);
                    // Once "</" of the closing tag is out, the rest of the tag is structure.
                    return if self.buf.len() >= 2 {
                        DecodeState::Structural
                    } else {
                        DecodeState::StringBody
                    };
                }
                Mode::Json {
                    mut in_string,
                    mut escape,
                } => {
                    let close = self.syntax.param_close;
                    let mut closed = None;
                    let mut stop = self.buf.len();
                    for (i, c) in self.buf.char_indices() {
                        if in_string {
                            if escape {
                                escape = false;
                            } else if c == '\\' {
                                escape = true;
                            } else if c == '"' {
                                in_string = false;
                            }
                            continue;
                        }
                        let rest = &self.buf[i..];
                        if rest.starts_with(close) {
                            closed = Some(i + close.len());
                            break;
                        }
                        if partial(rest, close) {
                            stop = i;
                            break;
                        }
                        if c == '"' {
                            in_string = true;
                        }
                    }
                    if let Some(end) = closed {
                        self.drain(end);
                        self.mode = Mode::Structural;
                        continue;
                    }
                    self.drain(stop);
                    self.mode = Mode::Json { in_string, escape };
                    return if in_string {
                        DecodeState::JsonString
                    } else if self.buf.len() >= 2 {
                        DecodeState::Structural
                    } else {
                        DecodeState::JsonStructural
                    };
                }
            }
        }
    }
}
