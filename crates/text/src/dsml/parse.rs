//! The complete parse of one assistant turn: the streaming parser run over the whole text,
//! its events folded into a message.

use super::stream::{Event, ParseOptions, StreamParser};

/// One parsed tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToolCall {
    pub name: String,
    /// Arguments as the reference parser builds them: `{"k": "v", "n": 3}`, string values
    /// JSON-encoded, other values spliced in as the model wrote them (so possibly invalid
    /// JSON when the model wrote invalid JSON).
    pub arguments: String,
}

/// An assistant turn split into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedMessage {
    /// Reasoning (thinking mode only; `Some("")` when empty).
    pub reasoning: Option<String>,
    pub content: String,
    pub tool_calls: Vec<ParsedToolCall>,
    /// The exact text of the tool block, for replaying it byte for byte.
    pub raw_dsml: Option<String>,
    /// A tool block started but was malformed or unterminated; its text is in `content`.
    pub recovered: bool,
}

impl ParsedMessage {
    /// Folds a parser's events (in order) into the message they describe.
    pub fn from_events(options: ParseOptions, events: impl IntoIterator<Item = Event>) -> Self {
        let mut m = ParsedMessage {
            reasoning: options.thinking.then(String::new),
            ..Default::default()
        };
        for e in events {
            match e {
                Event::Reasoning(t) => m.reasoning.get_or_insert_with(String::new).push_str(&t),
                Event::Content(t) => m.content.push_str(&t),
                Event::ToolCallStart { name, .. } => m.tool_calls.push(ParsedToolCall {
                    name,
                    arguments: String::new(),
                }),
                Event::ToolCallArguments { delta, .. } => {
                    if let Some(c) = m.tool_calls.last_mut() {
                        c.arguments.push_str(&delta);
                    }
                }
                Event::ToolCallEnd { .. } => {}
                Event::ToolCallsEnd { raw } => m.raw_dsml = Some(raw),
                Event::ToolCallsAborted => {
                    m.tool_calls.clear();
                    m.recovered = true;
                }
            }
        }
        m
    }
}

/// Parses a complete assistant turn (the generated text, without EOS).
pub fn parse(text: &str, options: ParseOptions) -> ParsedMessage {
    let mut p = StreamParser::new(options);
    let mut events = p.push(text);
    events.extend(p.finish());
    ParsedMessage::from_events(options, events)
}
