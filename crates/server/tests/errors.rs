//! Bad requests, table-driven: each gets its status and its API's error
//! shape, and the server keeps serving afterwards.

mod common;

use common::{failing_server, get, post, post_with, scripted_server};
use serde_json::Value;

const OK_MSGS: &str = r#"[{"role":"user","content":"hi"}]"#;

fn chat(extra: &str) -> String {
    format!(r#"{{"messages":{OK_MSGS},{extra}}}"#)
}

fn anth(extra: &str) -> String {
    format!(r#"{{"max_tokens":8,"messages":{OK_MSGS},{extra}}}"#)
}

fn nested(levels: usize) -> String {
    // The top-level object is one level.
    format!(
        r#"{{"messages":{OK_MSGS},"x":{}1{}}}"#,
        "[".repeat(levels - 1),
        "]".repeat(levels - 1)
    )
}

/// (body, expected status, message substring) for one endpoint.
fn openai_cases() -> Vec<(String, u16, &'static str)> {
    let bad = |b: &str| (b.to_string(), 400, "invalid JSON request");
    let mut v = vec![
        bad("not json"),
        bad(""),
        bad("[]"),
        bad(r#""messages""#),
        bad(r#"{"messages":{}}"#),
        (r#"{}"#.into(), 400, "missing messages"),
        (r#"{"messages":null}"#.into(), 400, "missing messages"),
        (r#"{"model":"x"}"#.into(), 400, "missing messages"),
        bad(r#"{"messages":"hi"}"#),
        bad(r#"{"messages":[5]}"#),
        bad(r#"{"messages":["hi"]}"#),
        bad(r#"{"messages":[{"role":5}]}"#),
        bad(r#"{"messages":[{"role":null,"content":"null role"}]}"#),
        bad(r#"{"messages":[{"role":"user","content":5}]}"#),
        bad(r#"{"messages":[{"role":"user","content":[5]}]}"#),
        bad(r#"{"messages":[{"role":"assistant","content":"","tool_calls":{}}]}"#),
        bad(
            r#"{"messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"arguments":"{}"}}]}]}"#,
        ),
        bad(r#"{"messages":[{"role":"tool","content":"x","tool_call_id":5}]}"#),
        bad(r#"{"messages":[{"role":"assistant","content":"x","reasoning_content":5}]}"#),
        bad(r#"{"messages":[{"role":"user","content":"a"}"#),
        bad(r#"{"messages":[{"role":"user","content":"\q"}]}"#),
        bad(r#"{"messages":[{"role":"user","content":"hi"}]} trailing"#),
        bad(&nested(257)),
    ];
    for field in [
        r#""temperature":"hot""#,
        r#""stream":"yes""#,
        r#""stream":1"#,
        r#""max_tokens":"5""#,
        r#""max_completion_tokens":true"#,
        r#""top_p":[]"#,
        r#""top_k":{}"#,
        r#""min_p":"low""#,
        r#""seed":"x""#,
        r#""stop":5"#,
        r#""stop":{"a":1}"#,
        r#""reasoning_effort":"extreme""#,
        r#""reasoning_effort":3"#,
        r#""think":"yes""#,
        r#""tools":{}"#,
        r#""tools":"bash""#,
        r#""model":5"#,
        r#""stream_options":5"#,
        r#""stream_options":{"include_usage":"yes"}"#,
    ] {
        v.push(bad(&chat(field)));
    }
    v
}

fn anthropic_cases() -> Vec<(String, u16, &'static str)> {
    let bad = |b: &str| (b.to_string(), 400, "invalid JSON request");
    let mut v = vec![
        bad("{"),
        bad("[1]"),
        (r#"{"max_tokens":5}"#.into(), 400, "missing messages"),
        bad(r#"{"messages":"hi"}"#),
        bad(r#"{"messages":[5]}"#),
        bad(r#"{"messages":[{"role":5,"content":"x"}]}"#),
        bad(r#"{"messages":[{"role":"user","content":5}]}"#),
        bad(r#"{"messages":[{"role":"user","content":[5]}]}"#),
        bad(r#"{"messages":[{"role":"user","content":[{"type":5}]}]}"#),
        bad(
            r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","input":{}}]}]}"#,
        ),
        bad(
            r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":5}]}]}"#,
        ),
        bad(r#"{"messages":[{"role":"user","content":[{"type":"text","text":7}]}]}"#),
        bad(r#"{"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]}"#),
        (
            r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_gone","content":"x"}]}]}"#.into(),
            400,
            "Anthropic continuation state is not available for tool_use_id toolu_gone; retry by replaying the full messages history",
        ),
    ];
    for field in [
        r#""system":5"#,
        r#""system":[5]"#,
        r#""max_tokens":"10""#,
        r#""stop_sequences":5"#,
        r#""output_config":{"effort":"bogus"}"#,
        r#""output_config":5"#,
        r#""reasoning_effort":"turbo""#,
        r#""temperature":"x""#,
        r#""top_k":"x""#,
        r#""tools":{}"#,
        r#""stream":1"#,
    ] {
        v.push(bad(&anth(field)));
    }
    v
}

/// Bad `/v1/responses` bodies (spec §6).
fn responses_cases() -> Vec<(String, u16, &'static str)> {
    let bad = |b: &str| (b.to_string(), 400, "invalid JSON request");
    let item = |i: &str| format!(r#"{{"input":[{i}]}}"#);
    vec![
        bad("not json"),
        bad(r#"{"input":5}"#),
        bad(r#"{"input":{"role":"user"}}"#),
        ("{}".into(), 400, "missing input"),
        (r#"{"input":null}"#.into(), 400, "missing input"),
        bad(r#"{"input":"x","stream":"yes"}"#),
        bad(r#"{"input":"x","temperature":"hot"}"#),
        bad(r#"{"input":"x","reasoning":{"effort":"huge"}}"#),
        bad(r#"{"input":"x","reasoning":{"effort":5}}"#),
        bad(r#"{"input":"x","tools":{}}"#),
        bad(r#"{"input":"x","tools":[{"type":"namespace","name":"n"}]}"#),
        bad(&item(r#"5"#)),
        bad(&item(r#"{"type":"hologram"}"#)),
        bad(&item(
            r#"{"type":"message","status":"incomplete","content":"x"}"#,
        )),
        bad(&item(r#"{"type":"message","role":"wizard","content":"x"}"#)),
        bad(&item(
            r#"{"content":[{"type":"input_image","image_url":"u"}]}"#,
        )),
        bad(&item(r#"{"content":[{"type":"input_text","text":5}]}"#)),
        bad(&item(
            r#"{"type":"reasoning","summary":[{"type":"summary_text","text":"r"}],"status":"in_progress"}"#,
        )),
        bad(&item(
            r#"{"type":"function_call","call_id":"c","arguments":"{}"}"#,
        )),
        bad(&item(
            r#"{"type":"tool_search_output","call_id":"c","tools":"x"}"#,
        )),
        (
            item(r#"{"type":"function_call_output","call_id":"call_zz","output":"o"}"#),
            400,
            "continuation state is not available for call_id call_zz",
        ),
        (
            r#"{"input":"x","conversation":"conv_1"}"#.into(),
            400,
            "conversation is not supported",
        ),
        (
            r#"{"input":"x","previous_response_id":"resp_1"}"#.into(),
            400,
            "previous_response_id is not supported",
        ),
        (
            r#"{"input":"x","tool_choice":"required"}"#.into(),
            400,
            "tool_choice=required not supported",
        ),
        (
            r#"{"input":"x","tool_choice":{"type":"function","name":"f"}}"#.into(),
            400,
            "forced tool_choice not supported",
        ),
    ]
}

fn tiny_limits() -> server::Config {
    let mut c = server::Config::new(64);
    c.max_body = 4096;
    c
}

#[test]
fn malformed_requests_get_their_status_and_shape() {
    let url = scripted_server("Fine.", tiny_limits());
    let long = "word ".repeat(200);
    let mut n = 0;
    let mut table = openai_cases();
    table.push((
        chat(&format!(r#""x":"{}""#, "a".repeat(5000))),
        413,
        "too large",
    ));
    for (body, status, msg) in &table {
        let r = post(&format!("{url}/v1/chat/completions"), body);
        assert_eq!(r.status, *status, "{body}: {}", r.body);
        assert!(r.content_type.starts_with("application/json"), "{body}");
        let v = r.json();
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(msg), "{body}: {m}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        n += 1;
    }
    for (body, status, msg) in [
        ("{}", 400, "missing prompt"),
        (r#"{"prompt":null}"#, 400, "missing prompt"),
        (
            r#"{"prompt":"x","max_tokens":"5"}"#,
            400,
            "invalid JSON request",
        ),
        (
            r#"{"prompt":"x","stream":"no"}"#,
            400,
            "invalid JSON request",
        ),
        (
            r#"{"prompt":"x","reasoning_effort":"huge"}"#,
            400,
            "invalid JSON request",
        ),
    ] {
        let r = post(&format!("{url}/v1/completions"), body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.json()["error"]["message"].as_str().unwrap().contains(msg));
        n += 1;
    }
    for (body, status, msg) in responses_cases() {
        let r = post(&format!("{url}/v1/responses"), &body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        let v = r.json();
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(msg), "{body}: {m}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        n += 1;
    }
    let mut table = anthropic_cases();
    table.push((
        anth(&format!(r#""x":"{}""#, "a".repeat(5000))),
        413,
        "too large",
    ));
    for (body, status, msg) in &table {
        let r = post(&format!("{url}/v1/messages"), body);
        assert_eq!(r.status, *status, "{body}: {}", r.body);
        assert!(
            r.body.starts_with(r#"{"type":"error","error":{"type":"#),
            "{}",
            r.body
        );
        let v = r.json();
        assert_eq!(v["type"], "error", "{body}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(msg), "{body}: {m}");
        let kind = if *status == 413 {
            "request_too_large"
        } else {
            "invalid_request_error"
        };
        assert_eq!(v["error"]["type"], kind, "{body}");
        n += 1;
    }
    assert!(n >= 50, "only {n} cases");

    // Context overflow: both shapes carry the counts.
    let over = format!(r#"{{"messages":[{{"role":"user","content":"{long}"}}]}}"#);
    let v = post(&format!("{url}/v1/chat/completions"), &over);
    assert_eq!(v.status, 400);
    let e = &v.json()["error"];
    assert_eq!(e["code"], "context_length_exceeded");
    assert_eq!(e["param"], "messages");
    assert_eq!(e["n_ctx"], 64);
    assert!(e["n_prompt_tokens"].as_u64().unwrap() >= 64);
    let over = format!(r#"{{"max_tokens":5,"messages":[{{"role":"user","content":"{long}"}}]}}"#);
    let v = post(&format!("{url}/v1/messages"), &over);
    assert_eq!(v.status, 400);
    let v = v.json();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Prompt has "));
    assert_eq!(v["error"]["n_ctx"], 64);

    let over = format!(r#"{{"prompt":"{long}"}}"#);
    let e = post(&format!("{url}/v1/completions"), &over).json();
    assert_eq!(e["error"]["code"], "context_length_exceeded");
    assert_eq!(e["error"]["param"], "prompt");

    // Still serving, and a good request still works.
    assert_eq!(get(&format!("{url}/health")).status, 200);
    let ok = post(
        &format!("{url}/v1/chat/completions"),
        &chat(r#""think":false"#),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["choices"][0]["message"]["content"], "Fine.");
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let url = scripted_server("Fine.", server::Config::new(256));
    let r = post(&format!("{url}/v1/chat/completions"), &nested(256));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn routes_methods_and_models() {
    let url = scripted_server("Fine.", server::Config::new(256));
    let r = get(&format!("{url}/v1/nope"));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "unknown endpoint");
    let r = get(&format!("{url}/v1/chat/completions"));
    assert_eq!(r.status, 404, "wrong method is 404 as in ds4");
    let r = get(&format!("{url}/v1/messages/x"));
    assert_eq!(r.json()["type"], "error");

    let list = get(&format!("{url}/v1/models")).json();
    assert_eq!(list["object"], "list");
    let m = &list["data"][0];
    assert_eq!(m["id"], "deepseek-v4-flash");
    assert_eq!(m["context_length"], 256);
    assert_eq!(m["top_provider"]["max_completion_tokens"], 256);
    let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 8);
    for id in ["deepseek-v4-flash", "deepseek-chat", "deepseek-reasoner"] {
        let r = get(&format!("{url}/v1/models/{id}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["id"], id);
    }
    let r = get(&format!("{url}/v1/models/gpt-4"));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    let h = get(&format!("{url}/health")).json();
    assert_eq!(h["status"], "ok");
}

#[test]
fn api_key_and_cors() {
    let mut c = server::Config::new(256);
    c.api_key = Some("sekrit".into());
    c.cors = true;
    let url = scripted_server("Fine.", c);
    let body = chat(r#""think":false"#);
    let r = post(&format!("{url}/v1/chat/completions"), &body);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = post(&format!("{url}/v1/messages"), &anth(r#""stream":false"#));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = post_with(
        &format!("{url}/v1/chat/completions"),
        &body,
        ("authorization", "Bearer sekrit"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post_with(
        &format!("{url}/v1/messages"),
        &anth(r#""stream":false"#),
        ("x-api-key", "sekrit"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(&format!("{url}/health")).status, 200);

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .build()
        .into();
    let pre = agent
        .options(&format!("{url}/v1/chat/completions"))
        .call()
        .unwrap();
    assert_eq!(pre.status(), 204);
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-allow-methods"], "GET, POST, OPTIONS");
    assert!(h.get("content-type").is_none());
}

#[test]
fn no_cors_headers_by_default() {
    let url = scripted_server("Fine.", server::Config::new(256));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let r = agent.get(&format!("{url}/v1/models")).call().unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let v: Value = serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(v["object"], "list");
}

#[test]
fn engine_failures_are_500s_or_in_band_stream_errors() {
    let url = failing_server();
    let chat = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let r = post(&format!("{url}/v1/chat/completions"), chat);
    assert_eq!(r.status, 500);
    let v = r.json();
    assert_eq!(v["error"]["type"], "server_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("scripted failure"));
    let r = post(&format!("{url}/v1/messages"), &anth(r#""stream":false"#));
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["type"], "api_error");

    // Streams have sent their headers already: the error comes in-band.
    let r = post(
        &format!("{url}/v1/chat/completions"),
        r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#,
    );
    assert_eq!(r.status, 200);
    let ev = r.events();
    assert_eq!(ev.len(), 1, "{}", r.body);
    assert_eq!(ev[0].0.as_deref(), Some("error"));
    let v: Value = serde_json::from_str(&ev[0].1).unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    let r = post(&format!("{url}/v1/messages"), &anth(r#""stream":true"#));
    let ev = r.events();
    assert_eq!(ev[0].0.as_deref(), Some("error"), "{}", r.body);
    let v: Value = serde_json::from_str(&ev[0].1).unwrap();
    assert_eq!(v["error"]["type"], "api_error");
    let r = post(&format!("{url}/v1/responses"), r#"{"input":"hi"}"#);
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["type"], "server_error");
    let r = post(
        &format!("{url}/v1/responses"),
        r#"{"input":"hi","stream":true}"#,
    );
    let ev = r.events();
    assert_eq!(ev.len(), 1, "{}", r.body);
    assert_eq!(ev[0].0.as_deref(), Some("error"));
    assert_eq!(get(&format!("{url}/health")).status, 200);
}
