//! The Responses API's `tools` (spec §2.7): chat-style and flat function
//! tools pass through as their raw JSON (so schema bytes, and the prompt's
//! cache key, stay as sent); `namespace` groups are flattened into functions
//! named `namespace + name`; the hosted `tool_search` becomes a synthetic
//! function. What was flattened or hosted is remembered so output calls get
//! their wire name, namespace and item type back.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use text::render::{parse_tools, ToolSchema};

use crate::error::ApiError;

type R<T> = Result<T, ApiError>;

/// The active tools of a request and how their names map back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tools {
    pub schemas: Vec<ToolSchema>,
    /// Flattened name → (wire name, namespace).
    pub namespaced: HashMap<String, (String, String)>,
    /// `tool_search` is the hosted tool (not a client function of that name).
    pub hosted_search: bool,
}

/// How an output call is presented to the client.
#[derive(Clone, Debug, PartialEq)]
pub enum CallKind {
    Function {
        name: String,
        namespace: Option<String>,
    },
    /// A call of the hosted `tool_search` tool.
    ToolSearch,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    description: Option<String>,
    parameters: Option<Box<RawValue>>,
    input_schema: Option<Box<RawValue>>,
    tools: Option<Vec<Box<RawValue>>>,
}

const SEARCH_DESCRIPTION: &str = "Search available tools.";
const EMPTY_PARAMETERS: &str = r#"{"type":"object","properties":{}}"#;

impl Tools {
    /// Parses a `tools` array (the request's, or a `tool_search_output`'s)
    /// and adds its tools; malformed arrays are `400 invalid JSON request`.
    pub fn extend(&mut self, raw: &str) -> R<()> {
        let items: Vec<Box<RawValue>> =
            serde_json::from_str(raw).map_err(|_| ApiError::invalid_json())?;
        let mut lines: Vec<String> = Vec::with_capacity(items.len());
        for item in &items {
            let head: Head =
                serde_json::from_str(item.get()).map_err(|_| ApiError::invalid_json())?;
            match head.kind.as_deref() {
                Some("namespace") => {
                    let ns = head.name.ok_or_else(ApiError::invalid_json)?;
                    for inner in head.tools.ok_or_else(ApiError::invalid_json)? {
                        let f: Head = serde_json::from_str(inner.get())
                            .map_err(|_| ApiError::invalid_json())?;
                        let name = f.name.ok_or_else(ApiError::invalid_json)?;
                        let flat = format!("{ns}{name}");
                        let params = f.parameters.or(f.input_schema);
                        lines.push(synthesized(&flat, f.description.as_deref(), params)?);
                        self.namespaced.insert(flat, (name, ns.clone()));
                    }
                }
                Some("tool_search") => {
                    let desc = head.description.as_deref().or(Some(SEARCH_DESCRIPTION));
                    lines.push(synthesized("tool_search", desc, head.parameters)?);
                    self.hosted_search = true;
                }
                _ => lines.push(item.get().to_string()),
            }
        }
        let schemas =
            parse_tools(&format!("[{}]", lines.join(","))).map_err(|_| ApiError::invalid_json())?;
        // A client function named tool_search shadows the hosted tool.
        if items.iter().any(|i| {
            serde_json::from_str::<Head>(i.get()).is_ok_and(|h| {
                h.kind.as_deref() != Some("tool_search") && h.name.as_deref() == Some("tool_search")
            })
        }) {
            self.hosted_search = false;
        }
        self.schemas.extend(schemas);
        Ok(())
    }

    /// How a call the model made to `name` is reported.
    pub fn kind_of(&self, name: &str) -> CallKind {
        if name == "tool_search" && self.hosted_search {
            return CallKind::ToolSearch;
        }
        match self.namespaced.get(name) {
            Some((wire, ns)) => CallKind::Function {
                name: wire.clone(),
                namespace: Some(ns.clone()),
            },
            None => CallKind::Function {
                name: name.to_string(),
                namespace: None,
            },
        }
    }
}

/// `{"name":…,"description":…,"parameters":<raw>}` for a tool the server
/// builds itself.
fn synthesized(name: &str, description: Option<&str>, params: Option<Box<RawValue>>) -> R<String> {
    let s = |v: &str| serde_json::to_string(v).map_err(|_| ApiError::invalid_json());
    let mut out = format!("{{\"name\":{}", s(name)?);
    if let Some(d) = description {
        out.push_str(&format!(",\"description\":{}", s(d)?));
    }
    let params = params.map_or(EMPTY_PARAMETERS.to_string(), |p| p.get().to_string());
    out.push_str(&format!(",\"parameters\":{params}}}"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use text::json;

    fn tools(raw: &str) -> Tools {
        let mut t = Tools::default();
        t.extend(raw).unwrap();
        t
    }

    #[test]
    fn namespaces_flatten_and_map_back() {
        let t = tools(
            r#"[{"type":"namespace","name":"mcp__x__","tools":[{"type":"function","name":"search","description":"d","parameters":{"type":"object"}}]},
                {"type":"function","name":"bash","parameters":{}}]"#,
        );
        assert_eq!(t.schemas.len(), 2);
        assert_eq!(
            json::dumps(&t.schemas[0]),
            r#"{"name": "mcp__x__search", "description": "d", "parameters": {"type": "object"}}"#
        );
        assert_eq!(
            t.kind_of("mcp__x__search"),
            CallKind::Function {
                name: "search".into(),
                namespace: Some("mcp__x__".into())
            }
        );
        assert_eq!(
            t.kind_of("bash"),
            CallKind::Function {
                name: "bash".into(),
                namespace: None
            }
        );
    }

    #[test]
    fn hosted_tool_search_unless_a_function_takes_the_name() {
        let t = tools(r#"[{"type":"tool_search"}]"#);
        assert_eq!(t.kind_of("tool_search"), CallKind::ToolSearch);
        assert_eq!(
            json::dumps(&t.schemas[0]),
            r#"{"name": "tool_search", "description": "Search available tools.", "parameters": {"type": "object", "properties": {}}}"#
        );
        let t = tools(r#"[{"type":"function","name":"tool_search","parameters":{}}]"#);
        assert!(matches!(
            t.kind_of("tool_search"),
            CallKind::Function { .. }
        ));
    }

    #[test]
    fn malformed_tools_are_invalid_json() {
        for bad in [
            r#"{}"#,
            r#"[5]"#,
            r#"[{"type":"namespace","tools":[]}]"#,
            r#"[{"type":"namespace","name":"n","tools":[{"x":1}]}]"#,
        ] {
            assert_eq!(
                Tools::default().extend(bad),
                Err(ApiError::invalid_json()),
                "{bad}"
            );
        }
    }
}
