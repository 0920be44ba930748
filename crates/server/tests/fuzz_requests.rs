//! Property test of request handling: random JSON built from the APIs' own
//! field names (right and wrong types, nested at random) and random byte
//! edits of valid requests, posted to every endpoint. Each must get a 200
//! or a 4xx in the API's error shape — never a 5xx, a hang or a dead
//! server.

mod common;

use std::sync::OnceLock;

use common::{post, scripted_server};
use proptest::prelude::*;
use serde_json::{Map, Value};

const KEYS: [&str; 28] = [
    "messages",
    "model",
    "tools",
    "tool_choice",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stream",
    "stream_options",
    "thinking",
    "think",
    "reasoning_effort",
    "stop",
    "stop_sequences",
    "system",
    "prompt",
    "role",
    "content",
    "type",
    "text",
    "input",
    "instructions",
    "reasoning",
    "max_output_tokens",
];

const VALID: [&str; 4] = [
    r#"{"input":[{"role":"user","content":"hi"},{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c1","output":"ok"}],"max_output_tokens":4,"reasoning":{"summary":"auto"}}"#,
    r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stop":["x"]}"#,
    r#"{"max_tokens":4,"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
    r#"{"prompt":"hi","max_tokens":4,"stream":true}"#,
];

const PATHS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/completions",
    "/v1/responses",
];

fn url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    let mut config = server::Config::new(512);
    config.max_body = 1 << 16;
    URL.get_or_init(|| scripted_server("Sure.</think>Done.", config))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z<>｜ ]{0,8}".prop_map(Value::String),
        prop::sample::select(
            &[
                "user",
                "assistant",
                "tool",
                "text",
                "tool_use",
                "max",
                "none"
            ][..]
        )
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(&KEYS[..]), inner), 0..6).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// A valid body with `edits` random byte replacements, insertions or cuts.
fn mutated() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&VALID[..]),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, b' '..b'~'), 1..4),
    )
        .prop_map(|(body, edits)| {
            let mut b = body.as_bytes().to_vec();
            for (at, op, byte) in edits {
                let i = at.index(b.len());
                match op {
                    0 => b[i] = byte,
                    1 => b.insert(i, byte),
                    _ => {
                        b.remove(i);
                    }
                }
            }
            String::from_utf8_lossy(&b).into_owned()
        })
}

fn check(path: &str, body: &str) {
    let r = post(&format!("{}{path}", url()), body);
    assert!(
        r.status == 200 || (400..500).contains(&r.status),
        "{path} {body} -> {} {}",
        r.status,
        r.body
    );
    if r.status != 200 {
        let v = r.json();
        if path == "/v1/messages" {
            assert_eq!(v["type"], "error", "{body}: {}", r.body);
        } else {
            assert!(v["error"]["message"].is_string(), "{body}: {}", r.body);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_json_gets_200_or_a_shaped_4xx(
        top in prop::collection::vec((prop::sample::select(&KEYS[..]), json_value()), 0..6),
        path in prop::sample::select(&PATHS[..]),
    ) {
        let body: Map<String, Value> = top.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        check(path, &Value::Object(body).to_string());
    }

    #[test]
    fn edited_valid_requests_get_200_or_a_shaped_4xx(
        body in mutated(),
        path in prop::sample::select(&PATHS[..]),
    ) {
        check(path, &body);
    }
}
