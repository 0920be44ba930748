//! The reference encoder's algorithm (`encode_messages` with `drop_thinking=True`), step by
//! step: merge tool results into user turns, sort them into call order, drop old reasoning,
//! then render each message and the transition to the next.

use std::collections::HashMap;

use super::replay::{DsmlReplay, NoReplay};
use super::segments::{Control, Rendered};
use super::tools_block::render_tools;
use super::{Message, RenderOptions, Role, Thinking, ToolCall, ToolSchema};
use crate::dsml::render_tool_calls;
use crate::{Error, Result};

const THINK_MAX_PREFIX: &str = "Reasoning Effort: Absolute maximum with no shortcuts permitted.\nYou MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial scenarios.\nExplicitly write out your entire deliberation process, documenting every intermediate step, considered alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

/// A part of a merged user turn.
#[derive(Clone)]
enum Block<'a> {
    Text(&'a str),
    ToolResult { id: &'a str, content: &'a str },
}

/// A message after preprocessing.
#[derive(Clone)]
struct Turn<'a> {
    role: Role,
    content: &'a str,
    /// User turns: their text and tool-result blocks, joined with blank lines.
    blocks: Vec<Block<'a>>,
    reasoning: Option<&'a str>,
    tool_calls: &'a [ToolCall],
    /// Whether the request's tools are attached to this (system/developer) message.
    tools: bool,
}

/// Renders a conversation with the given tools exactly as the reference encoder would.
pub fn render(
    messages: &[Message],
    tools: &[ToolSchema],
    options: &RenderOptions,
) -> Result<Rendered> {
    render_replaying(messages, tools, options, &NoReplay)
}

/// [`render`], except that an assistant turn's tool calls are written as the block `replay`
/// returns for them (the exact DSML the model sampled) instead of re-rendered from JSON.
pub fn render_replaying(
    messages: &[Message],
    tools: &[ToolSchema],
    options: &RenderOptions,
    replay: &dyn DsmlReplay,
) -> Result<Rendered> {
    let thinking = options.resolved_thinking();
    let think = thinking != Thinking::Off;
    let mut turns = merge(messages);
    if !tools.is_empty() {
        match turns.first_mut() {
            Some(t) if matches!(t.role, Role::System | Role::Developer) => t.tools = true,
            _ => turns.insert(
                0,
                Turn {
                    role: Role::System,
                    content: "",
                    blocks: Vec::new(),
                    reasoning: None,
                    tool_calls: &[],
                    tools: true,
                },
            ),
        }
    }
    sort_tool_results(&mut turns);
    // Tools keep every reasoning; otherwise thinking mode drops what precedes the last user
    // turn.
    let drop_thinking = tools.is_empty();
    if think && drop_thinking {
        turns = drop_old_thinking(turns);
    }
    let last_user = last_user_index(&turns);

    let mut out = Rendered::default();
    out.control(Control::Bos);
    for (i, turn) in turns.iter().enumerate() {
        if i == 0 && thinking == Thinking::Max {
            out.template(THINK_MAX_PREFIX);
        }
        match turn.role {
            Role::System => {
                out.text_push(turn.content);
                if turn.tools {
                    out.template("\n\n");
                    render_tools(tools, &mut out);
                }
            }
            Role::Developer => {
                if turn.content.is_empty() {
                    return Err(Error::Messages(
                        "developer message with empty content".into(),
                    ));
                }
                out.control(Control::User);
                out.text_push(turn.content);
                if turn.tools {
                    out.template("\n\n");
                    render_tools(tools, &mut out);
                }
            }
            Role::User => {
                out.control(Control::User);
                for (k, block) in turn.blocks.iter().enumerate() {
                    if k > 0 {
                        out.template("\n\n");
                    }
                    match block {
                        Block::Text(t) => out.text_push(t),
                        Block::ToolResult { content, .. } => {
                            out.template("<tool_result>");
                            out.text_push(content);
                            out.template("</tool_result>");
                        }
                    }
                }
            }
            Role::LatestReminder => {
                out.control(Control::LatestReminder);
                out.text_push(turn.content);
            }
            Role::Assistant => {
                if think && (!drop_thinking || last_user.is_none_or(|l| i > l)) {
                    out.text_push(turn.reasoning.unwrap_or(""));
                    out.control(Control::ThinkEnd);
                }
                out.text_push(turn.content);
                if !turn.tool_calls.is_empty() {
                    match replay.block(turn.tool_calls) {
                        Some(raw) => out.template(&raw),
                        None => render_tool_calls(turn.tool_calls, &mut out),
                    }
                }
                out.control(Control::Eos);
            }
            // Merged into user turns above.
            Role::Tool => {}
        }
        let next_is_reply = turns
            .get(i + 1)
            .is_none_or(|n| matches!(n.role, Role::Assistant | Role::LatestReminder));
        if next_is_reply && matches!(turn.role, Role::User | Role::Developer) {
            out.control(Control::Assistant);
            if think && (!drop_thinking || last_user.is_none_or(|l| i >= l)) {
                out.control(Control::ThinkStart);
            } else {
                out.control(Control::ThinkEnd);
            }
        }
    }
    Ok(out)
}

/// Tool results become blocks of a user turn; consecutive user messages (and user text after
/// tool results) join the same turn.
fn merge(messages: &[Message]) -> Vec<Turn<'_>> {
    let mut turns: Vec<Turn> = Vec::with_capacity(messages.len());
    for m in messages {
        let block = match m.role {
            Role::Tool => Block::ToolResult {
                id: m.tool_call_id.as_deref().unwrap_or(""),
                content: &m.content,
            },
            Role::User => Block::Text(&m.content),
            _ => {
                turns.push(Turn {
                    role: m.role,
                    content: &m.content,
                    blocks: Vec::new(),
                    reasoning: m.reasoning.as_deref(),
                    tool_calls: &m.tool_calls,
                    tools: false,
                });
                continue;
            }
        };
        match turns.last_mut() {
            Some(t) if t.role == Role::User => t.blocks.push(block),
            _ => turns.push(Turn {
                role: Role::User,
                content: "",
                blocks: vec![block],
                reasoning: None,
                tool_calls: &[],
                tools: false,
            }),
        }
    }
    turns
}

/// Within each user turn, tool results follow the order of the most recent assistant tool
/// calls (unknown ids sort first; the sort is stable).
fn sort_tool_results(turns: &mut [Turn<'_>]) {
    let mut order: HashMap<&str, usize> = HashMap::new();
    for turn in turns.iter_mut() {
        if turn.role == Role::Assistant && !turn.tool_calls.is_empty() {
            order = turn
                .tool_calls
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    c.id.as_deref()
                        .filter(|id| !id.is_empty())
                        .map(|id| (id, i))
                })
                .collect();
        } else if turn.role == Role::User && !order.is_empty() {
            let mut results: Vec<Block> = turn
                .blocks
                .iter()
                .filter(|b| matches!(b, Block::ToolResult { .. }))
                .cloned()
                .collect();
            if results.len() < 2 {
                continue;
            }
            results.sort_by_key(|b| match b {
                Block::ToolResult { id, .. } => order.get(id).copied().unwrap_or(0),
                Block::Text(_) => 0,
            });
            let mut sorted = results.into_iter();
            for b in turn.blocks.iter_mut() {
                if matches!(b, Block::ToolResult { .. }) {
                    if let Some(next) = sorted.next() {
                        *b = next;
                    }
                }
            }
        }
    }
}

fn last_user_index(turns: &[Turn<'_>]) -> Option<usize> {
    turns
        .iter()
        .rposition(|t| matches!(t.role, Role::User | Role::Developer))
}

/// Before the last user/developer turn: assistants lose their reasoning, developer messages
/// are dropped.
fn drop_old_thinking(turns: Vec<Turn<'_>>) -> Vec<Turn<'_>> {
    let last_user = last_user_index(&turns);
    turns
        .into_iter()
        .enumerate()
        .filter_map(|(i, mut t)| {
            if last_user.is_none_or(|l| i >= l) {
                return Some(t);
            }
            match t.role {
                Role::User | Role::System | Role::Tool | Role::LatestReminder => Some(t),
                Role::Assistant => {
                    t.reasoning = None;
                    Some(t)
                }
                Role::Developer => None,
            }
        })
        .collect()
}
