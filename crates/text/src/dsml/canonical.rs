//! JSON → DSML: the tool-call block of an assistant turn, as the reference encoder renders
//! it (`encode_arguments_to_dsml`). String arguments are written raw, every other value as
//! `json.dumps`; arguments that are not a JSON object become one string parameter named
//! `arguments`.

use crate::json::{self, Value};
use crate::render::{Rendered, ToolCall};

/// Appends `"\n\n<｜DSML｜tool_calls>\n" … "</｜DSML｜tool_calls>"` for `calls`.
pub(crate) fn render_tool_calls(calls: &[ToolCall], out: &mut Rendered) {
    out.template("\n\n<｜DSML｜tool_calls>\n");
    for (i, call) in calls.iter().enumerate() {
        if i > 0 {
            out.template("\n");
        }
        out.template("<｜DSML｜invoke name=\"");
        out.text_push(&call.name);
        out.template("\">\n");
        let params = match json::parse(&call.arguments) {
            Ok(Value::Object(members)) => members,
            _ => vec![("arguments".to_string(), Value::Str(call.arguments.clone()))],
        };
        for (k, (key, value)) in params.iter().enumerate() {
            if k > 0 {
                out.template("\n");
            }
            out.template("<｜DSML｜parameter name=\"");
            out.text_push(key);
            match value {
                Value::Str(s) => {
                    out.template("\" string=\"true\">");
                    out.text_push(s);
                }
                v => {
                    out.template("\" string=\"false\">");
                    out.text_push(&json::dumps(v));
                }
            }
            out.template("</｜DSML｜parameter>");
        }
        out.template("\n</｜DSML｜invoke>");
    }
    out.template("\n</｜DSML｜tool_calls>");
}

/// The canonical DSML block for `calls` as text (what [`crate::render::render`] puts after
/// an assistant message's content).
pub fn tool_calls_dsml(calls: &[ToolCall]) -> String {
    let mut r = Rendered::default();
    render_tool_calls(calls, &mut r);
    r.text()
}
