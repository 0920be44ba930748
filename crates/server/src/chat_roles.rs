//! OpenAI `messages` role rules the renderer leaves to the server (spec
//! §4.1): a missing role means `user`, and messages with a role the model
//! has no turn for are dropped rather than failing the request. Done on the
//! raw JSON of each message, never re-serialized, so tool-call arguments and
//! content keep their exact bytes (and the prompt its cache key).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::ApiError;

/// Roles the renderer turns into prompt text.
const KNOWN: [&str; 7] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
    "latest_reminder",
];

#[derive(Deserialize)]
struct RoleOnly {
    #[serde(default, deserialize_with = "crate::params::present")]
    role: Option<Value>,
}

/// The `messages` array text with unknown roles dropped and missing roles
/// made `user`; wrongly typed messages are left for the renderer to reject.
pub fn normalize(messages: &RawValue) -> Result<String, ApiError> {
    let items: Vec<Box<RawValue>> =
        serde_json::from_str(messages.get()).map_err(|_| ApiError::invalid_json())?;
    let mut kept = Vec::with_capacity(items.len());
    for item in &items {
        let raw = item.get();
        let role = serde_json::from_str::<RoleOnly>(raw).map(|r| r.role);
        kept.push(match role {
            Ok(None) => with_user_role(raw),
            Ok(Some(Value::String(r))) if !KNOWN.contains(&r.as_str()) => continue,
            _ => raw.to_string(),
        });
    }
    Ok(format!("[{}]", kept.join(",")))
}

/// `raw` (a JSON object without `role`) with `"role":"user"` first.
fn with_user_role(raw: &str) -> String {
    let inner = raw.trim()[1..].trim_start();
    if inner.starts_with('}') {
        r#"{"role":"user"}"#.to_string()
    } else {
        format!(r#"{{"role":"user",{inner}"#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize(&RawValue::from_string(s.into()).unwrap()).unwrap()
    }

    #[test]
    fn unknown_roles_drop_and_missing_roles_become_user() {
        assert_eq!(
            norm(
                r#"[{"role":"wizard","content":"x"}, {"content":"hi"}, { }, {"role":"user","content":"a  b"}]"#
            ),
            r#"[{"role":"user","content":"hi"},{"role":"user"},{"role":"user","content":"a  b"}]"#
        );
        // Not objects, or mistyped roles: left for the renderer to reject.
        assert_eq!(norm(r#"[5, {"role":5}]"#), r#"[5,{"role":5}]"#);
        assert!(normalize(&RawValue::from_string("{}".into()).unwrap()).is_err());
    }
}
