//! Exact replay of sampled tool-call blocks. Clients send a past tool call back as JSON,
//! which the canonical rendering turns into DSML that can differ from what the model
//! actually sampled (spacing, JSON formatting, key quoting); the prompt then stops matching
//! the serving session at that call and everything after it is prefilled again. A server
//! that remembers the sampled block per call id supplies it through [`DsmlReplay`], and the
//! renderer writes those bytes instead (kv-cache.md §4).

use super::ToolCall;

/// Supplies the exact DSML block for an assistant turn's tool calls.
pub trait DsmlReplay {
    /// The block to write for `calls` (from its optional leading `"\n\n"` through the
    /// closing `tool_calls` marker), or `None` to render them canonically.
    fn block(&self, calls: &[ToolCall]) -> Option<String>;
}

/// Never replays: every call renders canonically.
pub struct NoReplay;

impl DsmlReplay for NoReplay {
    fn block(&self, _: &[ToolCall]) -> Option<String> {
        None
    }
}

impl<F: Fn(&[ToolCall]) -> Option<String>> DsmlReplay for F {
    fn block(&self, calls: &[ToolCall]) -> Option<String> {
        self(calls)
    }
}
