//! Request bodies to typed requests. Agents send large, deeply nested tool
//! schemas, so nesting up to [`MAX_DEPTH`] levels is accepted (serde_json
//! alone stops at 128); deeper documents are rejected by a byte scan before
//! any recursive parser sees them, so no request can exhaust the stack.

use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Deepest nesting of arrays and objects accepted, the top level included.
pub const MAX_DEPTH: usize = 256;

/// Parses `body` as `T`; malformed, mistyped or too deep JSON is ds4's
/// `400 invalid JSON request`.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if depth(body) > MAX_DEPTH {
        return Err(ApiError::invalid_json());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    de.disable_recursion_limit();
    let v = T::deserialize(&mut de).map_err(|_| ApiError::invalid_json())?;
    de.end().map_err(|_| ApiError::invalid_json())?;
    Ok(v)
}

/// The deepest bracket nesting of `body`, brackets inside strings ignored.
fn depth(body: &[u8]) -> usize {
    let (mut d, mut max) = (0usize, 0usize);
    let (mut in_str, mut escaped) = (false, false);
    for &b in body {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                d += 1;
                max = max.max(d);
            }
            b']' | b'}' => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(depth(br#"{"a":[{"b":"[[[{{"}]}"#), 3);
        assert_eq!(depth(br#"{"a":"\"[["}"#), 1);
    }

    #[test]
    fn nesting_limit_is_inclusive() {
        let nested = |n: usize| format!("{{\"x\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(parse::<serde_json::Value>(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert!(parse::<serde_json::Value>(nested(MAX_DEPTH + 1).as_bytes()).is_err());
    }
}
