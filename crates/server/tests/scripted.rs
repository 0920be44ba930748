//! Deterministic protocol tests: a scripted backend emits fixed text through
//! the real tokenizer, generation loop and DSML parser, so reasoning splits,
//! tool calls (whole and streamed), stop sequences and the SSE grammars of
//! both APIs can be checked exactly.

mod common;

use std::time::Duration;

use common::{get, post, scripted_server, slow_scripted_server};
use serde_json::{json, Value};

/// Reasoning, a sentence, then one call with a string and a JSON parameter.
const TOOL_SCRIPT: &str = "I should list files.</think>Let me look.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"bash\">\n<｜DSML｜parameter name=\"command\" string=\"true\">ls -la; pwd</｜DSML｜parameter>\n<｜DSML｜parameter name=\"timeout\" string=\"false\">30</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";

const TOOLS: &str = r#"[{"type":"function","function":{"name":"bash","description":"Run a command","parameters":{"type":"object","properties":{"command":{"type":"string"},"timeout":{"type":"integer"}}}}}]"#;

fn server(script: &str) -> String {
    scripted_server(script, server::Config::new(4096))
}

fn chat_body(extra: &str) -> String {
    format!(
        r#"{{"model":"deepseek-v4-flash","messages":[{{"role":"user","content":"list files"}}],"tools":{TOOLS}{extra}}}"#
    )
}

#[test]
fn chat_tool_call_non_streaming() {
    let url = server(TOOL_SCRIPT);
    let r = post(&format!("{url}/v1/chat/completions"), &chat_body(""));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let m = &choice["message"];
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["content"], "Let me look.");
    assert_eq!(m["reasoning_content"], "I should list files.");
    let call = &m["tool_calls"][0];
    assert_eq!(call["type"], "function");
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("call_") && id.len() == 5 + 32, "{id}");
    assert_eq!(call["function"]["name"], "bash");
    assert_eq!(
        call["function"]["arguments"],
        r#"{"command":"ls -la; pwd","timeout":30}"#
    );
    let u = &v["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 10);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
}

#[test]
fn chat_tool_call_streams_argument_deltas() {
    let url = server(TOOL_SCRIPT);
    let r = post(
        &format!("{url}/v1/chat/completions"),
        &chat_body(r#","stream":true,"stream_options":{"include_usage":true}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.content_type.starts_with("text/event-stream"),
        "{}",
        r.content_type
    );
    let events = r.events();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(name, d)| {
            assert!(name.is_none(), "chat chunks have no event names");
            serde_json::from_str(d).unwrap()
        })
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant"})
    );
    let (mut reasoning, mut content, mut args, mut headers) =
        (String::new(), String::new(), String::new(), Vec::new());
    let mut finish = None;
    let mut usage = None;
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        if c["choices"].as_array().unwrap().is_empty() {
            usage = Some(c["usage"].clone());
            continue;
        }
        let d = &c["choices"][0]["delta"];
        reasoning += d["reasoning_content"].as_str().unwrap_or("");
        content += d["content"].as_str().unwrap_or("");
        if let Some(calls) = d["tool_calls"].as_array() {
            let call = &calls[0];
            assert_eq!(call["index"], 0);
            if let Some(id) = call["id"].as_str() {
                headers.push((id.to_string(), call["function"]["name"].clone()));
            }
            args += call["function"]["arguments"].as_str().unwrap();
        }
        if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(reasoning, "I should list files.");
    assert_eq!(content, "Let me look.");
    assert_eq!(headers.len(), 1);
    assert!(headers[0].0.starts_with("call_"));
    assert_eq!(headers[0].1, "bash");
    let parsed: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(parsed, json!({"command": "ls -la; pwd", "timeout": 30}));
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    let usage = usage.expect("usage chunk");
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(!r.body.contains("DSML"), "raw DSML leaked: {}", r.body);
}

#[test]
fn tool_choice_none_leaves_dsml_as_text() {
    let url = server(TOOL_SCRIPT);
    let r = post(
        &format!("{url}/v1/chat/completions"),
        &chat_body(r#","tool_choice":"none""#),
    );
    let v = r.json();
    let m = &v["choices"][0]["message"];
    assert!(m.get("tool_calls").is_none(), "{m}");
    assert!(m["content"].as_str().unwrap().contains("<｜DSML｜invoke"));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[test]
fn messages_tool_use_non_streaming() {
    let url = server(TOOL_SCRIPT);
    let body = r#"{"model":"claude-sonnet-4","max_tokens":200,"system":[{"type":"text","text":"x-anthropic-billing: 1"},{"type":"text","text":"Be brief."}],
        "tools":[{"name":"bash","description":"Run","input_schema":{"type":"object","properties":{"command":{"type":"string"}}}}],
        "messages":[{"role":"user","content":[{"type":"text","text":"list files"}]}]}"#;
    let r = post(&format!("{url}/v1/messages"), body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "claude-sonnet-4");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["stop_sequence"], Value::Null);
    let c = v["content"].as_array().unwrap();
    assert_eq!(c.len(), 3, "{c:?}");
    assert_eq!(c[0]["type"], "thinking");
    assert_eq!(c[0]["thinking"], "I should list files.");
    assert_eq!(c[0]["signature"], v["id"]);
    assert_eq!(c[1], json!({"type": "text", "text": "Let me look."}));
    assert_eq!(c[2]["type"], "tool_use");
    assert!(c[2]["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(
        c[2]["input"],
        json!({"command": "ls -la; pwd", "timeout": 30})
    );
    let u = &v["usage"];
    assert_eq!(u["input_tokens"], 0);
    assert!(u["cache_creation_input_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn messages_stream_follows_anthropic_event_order() {
    let url = server(TOOL_SCRIPT);
    let body = r#"{"model":"claude-x","max_tokens":200,"stream":true,
        "tools":[{"name":"bash","input_schema":{"type":"object"}}],
        "messages":[{"role":"user","content":"list files"}]}"#;
    let r = post(&format!("{url}/v1/messages"), body);
    assert_eq!(r.status, 200, "{}", r.body);
    let events: Vec<(String, Value)> = r
        .events()
        .into_iter()
        .map(|(n, d)| (n.expect("named event"), serde_json::from_str(&d).unwrap()))
        .collect();
    for (name, v) in &events {
        assert_eq!(&v["type"], name);
    }
    // Collapse runs of deltas to see the block structure.
    let mut shape: Vec<String> = Vec::new();
    for (name, v) in &events {
        let label = match name.as_str() {
            "content_block_start" => {
                format!("start:{}", v["content_block"]["type"].as_str().unwrap())
            }
            "content_block_delta" => format!("delta:{}", v["delta"]["type"].as_str().unwrap()),
            other => other.to_string(),
        };
        if shape.last() != Some(&label) {
            shape.push(label);
        }
    }
    assert_eq!(
        shape,
        [
            "message_start",
            "start:thinking",
            "delta:thinking_delta",
            "delta:signature_delta",
            "content_block_stop",
            "start:text",
            "delta:text_delta",
            "content_block_stop",
            "start:tool_use",
            "delta:input_json_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &events[0].1["message"];
    assert_eq!(start["usage"]["output_tokens"], 0);
    assert!(
        start["usage"]["cache_creation_input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let mut json_text = String::new();
    let mut indexes = Vec::new();
    for (name, v) in &events {
        if name == "content_block_start" {
            indexes.push(v["index"].as_u64().unwrap());
        }
        if v["delta"]["type"] == "input_json_delta" {
            json_text += v["delta"]["partial_json"].as_str().unwrap();
        }
    }
    assert_eq!(indexes, [0, 1, 2]);
    let input: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(input, json!({"command": "ls -la; pwd", "timeout": 30}));
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(!r.body.contains("DSML") && !r.body.contains("</think>"));
}

#[test]
fn stop_sequences_cut_output_and_report_the_match() {
    let url = server("Hello there. STOP here and more text.");
    let r = post(
        &format!("{url}/v1/chat/completions"),
        r#"{"messages":[{"role":"user","content":"hi"}],"think":false,"stop":["STOP",7,""]}"#,
    );
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello there. ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]
        .get("reasoning_content")
        .is_none());

    let r = post(
        &format!("{url}/v1/messages"),
        r#"{"max_tokens":50,"messages":[{"role":"user","content":"hi"}],"thinking":{"type":"disabled"},"stop_sequences":["more","STOP"]}"#,
    );
    let v = r.json();
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello there. "}])
    );
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], "STOP");
}

#[test]
fn max_tokens_ends_with_length_and_unfinished_reasoning_stays_reasoning() {
    let url = server("Thinking hard about this problem for a while.</think>Answer.");
    let r = post(
        &format!("{url}/v1/chat/completions"),
        r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#,
    );
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["choices"][0]["message"]["content"], "");
    assert!(!v["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap()
        .is_empty());

    let r = post(
        &format!("{url}/v1/messages"),
        r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#,
    );
    let v = r.json();
    assert_eq!(v["stop_reason"], "max_tokens");
    let c = v["content"].as_array().unwrap();
    assert_eq!(c[0]["type"], "thinking");
    assert_eq!(c[1], json!({"type": "text", "text": ""}));
}

#[test]
fn a_repeated_conversation_reuses_the_live_prefix() {
    let url = server("Sure.");
    let first = r#"{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"one"}],"think":false}"#;
    let a = post(&format!("{url}/v1/chat/completions"), first).json();
    assert_eq!(a["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let second = r#"{"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"one"},{"role":"assistant","content":"Sure."},{"role":"user","content":"two"}],"think":false}"#;
    let b = post(&format!("{url}/v1/chat/completions"), second).json();
    let u = &b["usage"];
    let (p, cached, written) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap(),
        u["prompt_tokens_details"]["cache_write_tokens"]
            .as_u64()
            .unwrap(),
    );
    // The whole first prompt plus the generated reply is reused.
    assert!(
        cached >= a["usage"]["prompt_tokens"].as_u64().unwrap(),
        "{u}"
    );
    assert_eq!(cached + written, p);
    assert!(written > 0 && written < 10, "{u}");
}

#[test]
fn streams_send_keepalive_comments_during_a_slow_prefill() {
    let mut config = server::Config::new(4096);
    config.keepalive = Duration::from_millis(50);
    let url = slow_scripted_server("Sure.", config, Duration::from_millis(600));
    for (path, body) in [
        (
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        ),
        (
            "/v1/messages",
            r#"{"max_tokens":9,"messages":[{"role":"user","content":"hi"}],"stream":true}"#,
        ),
    ] {
        let r = post(&format!("{url}{path}"), body);
        assert_eq!(r.status, 200, "{}", r.body);
        let first_data = r.body.find("data: ").unwrap();
        let keepalive = r.body.find(": keepalive\n\n").expect("keepalive comment");
        assert!(keepalive < first_data, "{}", r.body);
        assert!(r.body.trim_end().ends_with("[DONE]") || r.body.contains("message_stop"));
    }
}

/// The value of an unlabelled (or exactly labelled) sample.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[test]
fn metrics_count_requests_tokens_and_reuse() {
    let url = server("Sure.");
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"think":false}"#;
    let a = post(&format!("{url}/v1/chat/completions"), body).json();
    post(&format!("{url}/v1/chat/completions"), "{}");
    post(
        &format!("{url}/v1/messages"),
        r#"{"max_tokens":5,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Sure."},{"role":"user","content":"more"}],"thinking":{"type":"disabled"}}"#,
    );
    // The worker counts a job until it has returned, just after the reply's
    // last event: wait for it (bounded) before reading the totals.
    let t = std::time::Instant::now();
    while get(&format!("{url}/health")).json()["queued"] != 0 {
        assert!(t.elapsed().as_secs() < 30, "queue never drained");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = get(&format!("{url}/metrics"));
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/plain"));
    let m = r.body;
    assert_eq!(sample(&m, r#"ds4rs_requests_total{endpoint="chat"}"#), 2.0);
    assert_eq!(
        sample(&m, r#"ds4rs_requests_total{endpoint="messages"}"#),
        1.0
    );
    assert_eq!(sample(&m, "ds4rs_rejected_requests_total"), 1.0);
    let p1 = a["usage"]["prompt_tokens"].as_f64().unwrap();
    assert!(sample(&m, "ds4rs_prompt_tokens_total") >= 2.0 * p1);
    // The follow-up turn reuses the first turn's prompt from the live session.
    assert!(sample(&m, "ds4rs_cached_prompt_tokens_total") >= p1);
    assert_eq!(sample(&m, "ds4rs_completion_tokens_total"), 4.0);
    assert_eq!(sample(&m, "ds4rs_queue_depth"), 0.0);
    assert_eq!(sample(&m, "ds4rs_cancelled_total"), 0.0);
    assert!(m.contains("# TYPE ds4rs_prefill_seconds_total counter"));
}

#[test]
fn unknown_roles_are_dropped_and_a_missing_role_is_user() {
    let url = server("Sure.");
    let prompt = |messages: &str| {
        let body = format!(r#"{{"messages":{messages},"think":false}}"#);
        let r = post(&format!("{url}/v1/chat/completions"), &body);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["usage"]["prompt_tokens"].as_u64().unwrap()
    };
    let plain = prompt(r#"[{"role":"user","content":"hi there"}]"#);
    assert_eq!(
        prompt(
            r#"[{"role":"narrator","content":"ignored text"},{"role":"user","content":"hi there"}]"#
        ),
        plain
    );
    assert_eq!(prompt(r#"[{"content":"hi there"}]"#), plain);
}

#[test]
fn completions_return_raw_text_whole_and_streamed() {
    let url = server("Plan it.</think>Done. STOP tail");
    let r = post(
        &format!("{url}/v1/completions"),
        r#"{"prompt":["Say done",7],"stop":"STOP"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["choices"],
        json!([{"text": "Plan it.</think>Done. ", "index": 0, "finish_reason": "stop"}])
    );
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let r = post(
        &format!("{url}/v1/completions"),
        r#"{"prompt":"Say done","stream":true,"max_tokens":100,"stream_options":{"include_usage":true}}"#,
    );
    let events = r.events();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    // The second request repeats the first prompt: reported as reused or not,
    // the counts add up.
    let u = &usage["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    let fin = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(fin["text"], "");
    assert_eq!(fin["finish_reason"], "stop");
    let text: String = chunks[..chunks.len() - 2]
        .iter()
        .map(|c| {
            assert_eq!(c["object"], "text_completion");
            assert!(c["choices"][0]["finish_reason"].is_null());
            c["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, "Plan it.</think>Done. STOP tail");
}

#[test]
fn thinking_follow_ups_and_regenerations_reuse_all_but_the_last_prompt_token() {
    let url = server("Thought.</think>Sure.");
    let first = r#"{"messages":[{"role":"user","content":"one"}]}"#;
    let a = post(&format!("{url}/v1/chat/completions"), first).json();
    let p1 = a["usage"]["prompt_tokens"].as_u64().unwrap();
    // History drops the reasoning: the prompt's final <think> becomes </think>.
    let second = r#"{"messages":[{"role":"user","content":"one"},{"role":"assistant","content":"Sure."},{"role":"user","content":"two"}]}"#;
    let b = post(&format!("{url}/v1/chat/completions"), second).json();
    let cached = b["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert_eq!(cached, p1 - 1, "{}", b["usage"]);
    // Regenerating the same turn.
    let c = post(&format!("{url}/v1/chat/completions"), second).json();
    let u = &c["usage"];
    assert_eq!(
        u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap(),
        u["prompt_tokens"].as_u64().unwrap() - 1,
        "{u}"
    );
}

#[test]
fn trace_records_prompt_reuse_events_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.txt");
    let mut config = server::Config::new(4096);
    config.trace = Some(path.clone());
    let url = scripted_server(TOOL_SCRIPT, config);
    let r = post(&format!("{url}/v1/chat/completions"), &chat_body(""));
    assert_eq!(r.status, 200);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let t = std::fs::read_to_string(&path).unwrap();
    assert!(t.starts_with(&format!("=== {id}: prompt ")), "{t}");
    assert!(t.contains("0 reused from the live session"), "{t}");
    assert!(
        t.contains("<｜User｜>list files<｜Assistant｜><think>"),
        "{t}"
    );
    assert!(t.contains("## Tools"), "tool block rendered: {t}");
    assert!(
        t.contains(r#"ToolCallStart { index: 0, name: "bash" }"#),
        "{t}"
    );
    assert!(t.contains("--- finish ToolCalls"), "{t}");
    assert!(t.contains("</｜DSML｜tool_calls>\n=== end"), "{t}");
}

#[test]
fn an_unwritable_trace_fails_startup() {
    let mut config = server::Config::new(64);
    config.trace = Some("/nonexistent/dir/trace.txt".into());
    let tok = common::v4_tokenizer();
    let backend = std::sync::Arc::new(common::Scripted::new(&tok, "x", 1));
    let Err(err) = server::router(backend, tok, 1, config) else {
        panic!("started with an unwritable trace");
    };
    assert!(
        err.to_string().contains("/nonexistent/dir/trace.txt"),
        "{err}"
    );
}

#[test]
fn think_max_needs_a_large_context_and_zero_max_tokens_generates_nothing() {
    let tokens = |ctx: usize, effort: &str| {
        let url = scripted_server("Sure.", server::Config::new(ctx));
        let body = format!(
            r#"{{"messages":[{{"role":"user","content":"hi"}}],"reasoning_effort":"{effort}","max_tokens":0}}"#
        );
        let v = post(&format!("{url}/v1/chat/completions"), &body).json();
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 0);
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    };
    assert_eq!(tokens(4096, "max"), tokens(4096, "high"));
    assert!(tokens(400_000, "max") > tokens(400_000, "high") + 20);
}
