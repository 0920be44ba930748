//! Exact-DSML replay across an agent's tool loop: the model's tool calls
//! come back as JSON in the next request, and the prompt renders the DSML
//! exactly as sampled, so every turn prefills only the new tool result. The
//! scripted calls are written unlike the canonical rendering (a blank line
//! between parameters, compact JSON), so without replay the prompt would
//! diverge from the live session at the first call.

mod common;

use common::{get, post, turns_server};
use serde_json::{json, Value};

const CALL: &str = "I should list files.</think>Let me look.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"bash\">\n<｜DSML｜parameter name=\"command\" string=\"true\">ls -la</｜DSML｜parameter>\n\n<｜DSML｜parameter name=\"opts\" string=\"false\">{\"depth\":2}</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
const ANSWER: &str = "Seen it.</think>Done.";

const TOOLS: &str =
    r#"[{"type":"function","function":{"name":"bash","parameters":{"type":"object"}}}]"#;

fn usage(v: &Value, cached_key: &str) -> (u64, u64, u64) {
    let u = &v["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or_else(|| panic!("{k} in {u}"));
    match cached_key {
        "openai" => (
            n("prompt_tokens"),
            u["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap(),
            n("completion_tokens"),
        ),
        _ => (
            n("cache_read_input_tokens") + n("cache_creation_input_tokens") + n("input_tokens"),
            n("cache_read_input_tokens"),
            n("output_tokens"),
        ),
    }
}

/// Runs a three-turn chat tool loop; returns each turn's (prompt, cached,
/// completion) usage.
fn chat_loop(url: &str) -> Vec<(u64, u64, u64)> {
    let mut messages = vec![json!({"role": "user", "content": "list files"})];
    let mut out = Vec::new();
    for turn in 0..3 {
        let body =
            json!({"messages": messages, "tools": serde_json::from_str::<Value>(TOOLS).unwrap()});
        let r = post(&format!("{url}/v1/chat/completions"), &body.to_string());
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        out.push(usage(&v, "openai"));
        let m = v["choices"][0]["message"].clone();
        if turn == 2 {
            assert_eq!(m["content"], "Done.");
            break;
        }
        let id = m["tool_calls"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            r#"{"command":"ls -la","opts":{"depth":2}}"#
        );
        messages.push(m);
        messages
            .push(json!({"role": "tool", "tool_call_id": id, "content": format!("result {turn}")}));
    }
    out
}

#[test]
fn chat_tool_loop_prefills_only_each_new_tool_result() {
    let url = turns_server(&[CALL, CALL, ANSWER], server::Config::new(4096));
    let turns = chat_loop(&url);
    assert_eq!(turns[0].1, 0);
    for k in 1..3 {
        let (prev_prompt, _, prev_completion) = turns[k - 1];
        let (prompt, cached, _) = turns[k];
        // The live session holds the previous prompt and every sampled token
        // but the last (decoding stops right after the DSML block closes).
        assert_eq!(
            cached,
            prev_prompt + prev_completion - 1,
            "turn {k}: {turns:?}"
        );
        assert!(
            prompt - cached < 20,
            "turn {k} prefilled {}",
            prompt - cached
        );
    }
    let m = get(&format!("{url}/metrics")).body;
    let cached_total: u64 = turns.iter().map(|t| t.1).sum();
    assert!(
        m.contains(&format!(
            "ds4rs_cached_prompt_tokens_total {cached_total}\n"
        )),
        "{m}"
    );
}

#[test]
fn without_replay_the_canonical_rendering_misses_the_live_session() {
    let mut config = server::Config::new(4096);
    config.tool_memory_max_ids = 0;
    let url = turns_server(&[CALL, CALL, ANSWER], config);
    let turns = chat_loop(&url);
    let (p0, _, c0) = turns[0];
    assert!(turns[1].1 < p0 + c0 - 1, "{turns:?}");
    let m = get(&format!("{url}/metrics")).body;
    assert!(
        m.contains("ds4rs_tool_replay_total{kind=\"canonical\"} 3\n"),
        "{m}"
    );
}

#[test]
fn streamed_calls_are_remembered_too_and_anthropic_replays_them() {
    let url = turns_server(&[CALL, CALL, ANSWER], server::Config::new(4096));
    let tools = json!([{"name": "bash", "input_schema": {"type": "object"}}]);
    let mut messages = vec![json!({"role": "user", "content": "list files"})];
    let mut turns = Vec::new();
    for turn in 0..3 {
        let stream = turn == 1;
        let body =
            json!({"max_tokens": 500, "tools": tools, "messages": messages, "stream": stream});
        let r = post(&format!("{url}/v1/messages"), &body.to_string());
        assert_eq!(r.status, 200, "{}", r.body);
        let v = if stream {
            fold_anthropic_stream(&r)
        } else {
            r.json()
        };
        turns.push(usage(&v, "anthropic"));
        if turn == 2 {
            assert_eq!(v["content"][1]["text"], "Done.", "{v}");
            break;
        }
        let content = v["content"].clone();
        let id = content[2]["id"].as_str().unwrap().to_string();
        messages.push(json!({"role": "assistant", "content": content}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": format!("result {turn}")}]}));
    }
    for k in 1..3 {
        let (prev_prompt, _, prev_completion) = turns[k - 1];
        assert_eq!(
            turns[k].1,
            prev_prompt + prev_completion - 1,
            "turn {k}: {turns:?}"
        );
    }
}

/// A streamed Anthropic message folded into the non-streaming shape (the
/// blocks the next request replays, and usage).
fn fold_anthropic_stream(r: &common::Reply) -> Value {
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial = String::new();
    let mut usage = json!({});
    for (_, d) in r.events() {
        let e: Value = serde_json::from_str(&d).unwrap();
        match e["type"].as_str().unwrap() {
            "message_start" => usage = e["message"]["usage"].clone(),
            "content_block_start" => blocks.push(e["content_block"].clone()),
            "content_block_delta" => {
                let b = blocks.last_mut().unwrap();
                let d = &e["delta"];
                match d["type"].as_str().unwrap() {
                    "thinking_delta" => {
                        let t = b["thinking"].as_str().unwrap().to_string();
                        b["thinking"] = json!(t + d["thinking"].as_str().unwrap());
                    }
                    "signature_delta" => b["signature"] = d["signature"].clone(),
                    "text_delta" => {
                        let t = b["text"].as_str().unwrap().to_string();
                        b["text"] = json!(t + d["text"].as_str().unwrap());
                    }
                    "input_json_delta" => partial += d["partial_json"].as_str().unwrap(),
                    other => panic!("{other}"),
                }
            }
            "content_block_stop" => {
                let b = blocks.last_mut().unwrap();
                if b["type"] == "tool_use" {
                    b["input"] = serde_json::from_str(&std::mem::take(&mut partial)).unwrap();
                }
            }
            "message_delta" => usage["output_tokens"] = e["usage"]["output_tokens"].clone(),
            _ => {}
        }
    }
    json!({"content": blocks, "usage": usage})
}
