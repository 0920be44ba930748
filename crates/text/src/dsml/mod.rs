//! DSML, the model's tool-call syntax: rendering calls into prompts, parsing model output
//! (complete or streaming), and the decode-state tracker for "structure greedy, payload
//! sampled".

mod canonical;

pub(crate) use canonical::render_tool_calls;
pub use canonical::tool_calls_dsml;
