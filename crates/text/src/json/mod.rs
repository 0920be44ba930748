//! JSON with Python's semantics, because the reference encoder round-trips tool schemas and
//! tool-call arguments through `json.loads` / `json.dumps(ensure_ascii=False)` and the prompt
//! bytes must match: integers keep every digit, floats print as Python's `repr`, objects keep
//! key order (a repeated key keeps its first position and takes the last value), and the
//! separators are `", "` and `": "`.

mod dump;
mod parse;

pub use dump::{dumps, dumps_str};
pub use parse::parse;

/// A JSON value as Python's `json.loads` sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An integer, as its decimal digits (Python ints are unbounded).
    Int(String),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    /// Members in insertion order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}
