//! The server over a real (tiny, random-weight) model with the V4
//! tokenizer: both APIs end to end, live-prefix reuse across turns, a
//! responsive server during generation, and cancellation when a streaming
//! client disconnects.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{get, post, tiny_server};
use serde_json::Value;

fn chat(url: &str, body: &str) -> Value {
    let r = post(&format!("{url}/v1/chat/completions"), body);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn chat_is_deterministic_when_greedy_and_counts_tokens() {
    let url = tiny_server(512);
    let body = r#"{"messages":[{"role":"user","content":"Hello"}],"think":false,"temperature":0,"max_tokens":6}"#;
    let a = chat(&url, body);
    let b = chat(&url, body);
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);
    let u = &a["usage"];
    let c = u["completion_tokens"].as_u64().unwrap();
    assert!((1..=6).contains(&c), "{u}");
    let finish = a["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(["stop", "length"].contains(&finish));
    if finish == "length" {
        assert_eq!(c, 6);
    }
    assert_ne!(a["id"], b["id"]);
}

#[test]
fn a_follow_up_turn_prefills_only_the_new_suffix() {
    let url = tiny_server(1024);
    let t1 = r#"{"messages":[{"role":"system","content":"You are a coding agent."},{"role":"user","content":"Read main.rs"}],"think":false,"max_tokens":4,"seed":5}"#;
    let a = chat(&url, t1);
    let p1 = a["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(a["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let reply = a["choices"][0]["message"]["content"].as_str().unwrap();
    let t2 = serde_json::json!({
        "messages": [
            {"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": "Read main.rs"},
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "Now fix the bug."}
        ],
        "think": false, "max_tokens": 4, "seed": 5
    });
    let b = chat(&url, &t2.to_string());
    let u = &b["usage"];
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let written = u["prompt_tokens_details"]["cache_write_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached >= p1,
        "turn 2 reused {cached} of turn 1's {p1} tokens: {u}"
    );
    assert_eq!(cached + written, u["prompt_tokens"].as_u64().unwrap());
}

#[test]
fn streams_on_both_apis() {
    let url = tiny_server(512);
    let r = post(
        &format!("{url}/v1/chat/completions"),
        r#"{"messages":[{"role":"user","content":"Hi"}],"stream":true,"max_tokens":5,"stream_options":{"include_usage":true}}"#,
    );
    assert_eq!(r.status, 200);
    let ev = r.events();
    assert_eq!(ev.last().unwrap().1, "[DONE]");
    let first: Value = serde_json::from_str(&ev[0].1).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let usage: Value = serde_json::from_str(&ev[ev.len() - 2].1).unwrap();
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() <= 5);
    let fin: Value = serde_json::from_str(&ev[ev.len() - 3].1).unwrap();
    assert!(fin["choices"][0]["finish_reason"].is_string());

    let r = post(
        &format!("{url}/v1/messages"),
        r#"{"model":"claude-haiku","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#,
    );
    assert_eq!(r.status, 200);
    let names: Vec<String> = r.events().into_iter().map(|(n, _)| n.unwrap()).collect();
    assert_eq!(names[0], "message_start");
    assert_eq!(names[names.len() - 2], "message_delta");
    assert_eq!(names[names.len() - 1], "message_stop");
    let starts = names.iter().filter(|n| *n == "content_block_start").count();
    let stops = names.iter().filter(|n| *n == "content_block_stop").count();
    assert!(starts >= 1 && starts == stops, "{names:?}");

    let r = post(
        &format!("{url}/v1/messages"),
        r#"{"max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#,
    );
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() <= 5);
}

/// The queue depth `/health` reports.
fn queued(url: &str) -> u64 {
    get(&format!("{url}/health")).json()["queued"]
        .as_u64()
        .unwrap()
}

#[test]
fn health_answers_during_generation_and_a_dropped_stream_cancels_its_job() {
    let url = tiny_server(8192);
    let addr = url.trim_start_matches("http://").to_string();
    let body = r#"{"messages":[{"role":"user","content":"Tell a long story"}],"think":false,"stream":true,"max_tokens":8000}"#;
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Wait for the first streamed bytes: the job is running.
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    assert_eq!(queued(&url), 1);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "health blocked by generation"
    );
    drop(s);
    let t = Instant::now();
    while queued(&url) != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "job not cancelled after the client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = get(&format!("{url}/metrics")).body;
    assert!(m.contains("\nds4rs_cancelled_total 1\n"), "{m}");
}

#[test]
fn a_client_leaving_a_non_streaming_request_cancels_its_job() {
    let url = tiny_server(8192);
    let addr = url.trim_start_matches("http://").to_string();
    let body = r#"{"messages":[{"role":"user","content":"Tell a long story"}],"think":false,"max_tokens":8000}"#;
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let t = Instant::now();
    while queued(&url) == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "job never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(s);
    let t = Instant::now();
    while queued(&url) != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "job not cancelled after the client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = get(&format!("{url}/metrics")).body;
    assert!(m.contains("\nds4rs_cancelled_total 1\n"), "{m}");
}

#[test]
fn reused_prefixes_give_the_same_output_as_a_cold_start() {
    let first = r#"{"messages":[{"role":"user","content":"one"}],"max_tokens":5,"seed":9}"#;
    let second = r#"{"messages":[{"role":"user","content":"one"},{"role":"assistant","content":"Sure."},{"role":"user","content":"two"}],"max_tokens":5,"seed":9}"#;
    let warm = tiny_server(512);
    let a = chat(&warm, first);
    let p1 = a["usage"]["prompt_tokens"].as_u64().unwrap();
    let b = chat(&warm, second);
    // Thinking history drops the reasoning: all but the final <think> reused.
    assert_eq!(b["usage"]["prompt_tokens_details"]["cached_tokens"], p1 - 1);
    let again = chat(&warm, second);
    let cold = chat(&tiny_server(512), second);
    assert_eq!(b["choices"][0]["message"], cold["choices"][0]["message"]);
    assert_eq!(
        again["choices"][0]["message"],
        cold["choices"][0]["message"]
    );
}
