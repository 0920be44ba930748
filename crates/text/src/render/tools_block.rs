//! The "## Tools" section the reference encoder appends to the system (or developer)
//! message when tools are available.

use super::segments::Rendered;
use super::ToolSchema;
use crate::json;

const HEAD: &str = "## Tools\n\nYou have access to a set of tools to help answer the user's question. You can invoke tools by writing a \"<｜DSML｜tool_calls>\" block like the following:\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"$TOOL_NAME\">\n<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n...\n</｜DSML｜invoke>\n<｜DSML｜invoke name=\"$TOOL_NAME2\">\n...\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>\n\nString parameters should be specified as is and set `string=\"true\"`. For all other types (numbers, booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\nIf thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside <think>...</think> BEFORE any tool calls or final response.\n\nOtherwise, output directly after </think> with tool calls or final response.\n\n### Available Tool Schemas\n\n";

const TAIL: &str = "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";

/// Appends the tools section: fixed instructions, then one `json.dumps` line per schema.
pub(super) fn render_tools(tools: &[ToolSchema], out: &mut Rendered) {
    out.template(HEAD);
    let schemas: Vec<String> = tools.iter().map(json::dumps).collect();
    out.text_push(&schemas.join("\n"));
    out.template(TAIL);
}
