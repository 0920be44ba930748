//! DSML, the model's tool-call syntax: rendering calls into prompts, parsing model output
//! (complete or streaming), and the decode-state tracker for "structure greedy, payload
//! sampled".

mod canonical;
mod parse;
mod sampling;
mod stream;
mod syntax;

pub(crate) use canonical::render_tool_calls;
pub use canonical::tool_calls_dsml;
pub use parse::{parse, ParsedMessage, ParsedToolCall};
pub use sampling::{DecodeState, SamplingTracker};
pub use stream::{Event, ParseOptions, StreamParser};
