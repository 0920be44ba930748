//! `POST /v1/responses` on the scripted backend: output items and usage of
//! the non-streaming body, the exact event lifecycle of the stream, finish
//! statuses, namespaced tools, errors in OpenAI's shape, and a tool loop
//! replayed as input items that prefills only each new tool output.

mod common;

use common::{post, scripted_server, turns_server};
use serde_json::{json, Value};

const TOOL_SCRIPT: &str = "I should list files.</think>Let me look.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"bash\">\n<｜DSML｜parameter name=\"command\" string=\"true\">ls -la</｜DSML｜parameter>\n\n<｜DSML｜parameter name=\"timeout\" string=\"false\">30</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";

const TOOLS: &str = r#"[{"type":"function","name":"bash","description":"Run","parameters":{"type":"object","properties":{"command":{"type":"string"}}}}]"#;

fn url(script: &str) -> String {
    scripted_server(script, server::Config::new(4096))
}

fn body(extra: &str) -> String {
    format!(r#"{{"model":"deepseek-v4-flash","input":"list files","tools":{TOOLS}{extra}}}"#)
}

fn hex_id(v: &Value, prefix: &str, hex: usize) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("id {v}"));
    let rest = s
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{s} lacks {prefix}"));
    assert_eq!(rest.len(), hex, "{s}");
    assert!(rest.bytes().all(|b| b.is_ascii_hexdigit()), "{s}");
    s.to_string()
}

#[test]
fn non_streaming_tool_call_with_reasoning_summary() {
    let u = url(TOOL_SCRIPT);
    let r = post(
        &format!("{u}/v1/responses"),
        &body(r#","reasoning":{"effort":"high","summary":"auto"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    hex_id(&v["id"], "resp_", 24);
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "deepseek-v4-flash");
    assert!(v.get("incomplete_details").is_none() && v.get("error").is_none());
    let out = v["output"].as_array().unwrap();
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[0]["type"], "reasoning");
    hex_id(&out[0]["id"], "rs_", 24);
    assert_eq!(out[0]["status"], "completed");
    assert_eq!(
        out[0]["summary"],
        json!([{"type": "summary_text", "text": "I should list files."}])
    );
    assert_eq!(out[1]["type"], "message");
    hex_id(&out[1]["id"], "msg_", 24);
    assert_eq!(out[1]["role"], "assistant");
    assert_eq!(out[1]["status"], "completed");
    assert_eq!(
        out[1]["content"],
        json!([{"type": "output_text", "text": "Let me look.", "annotations": []}])
    );
    assert_eq!(out[2]["type"], "function_call");
    hex_id(&out[2]["id"], "fc_", 24);
    hex_id(&out[2]["call_id"], "call_", 32);
    assert_eq!(out[2]["name"], "bash");
    assert!(out[2].get("namespace").is_none());
    assert_eq!(out[2]["arguments"], r#"{"command":"ls -la","timeout":30}"#);
    let us = &v["usage"];
    let n = |k: &str| us[k].as_u64().unwrap();
    assert!(n("input_tokens") > 10);
    assert_eq!(n("total_tokens"), n("input_tokens") + n("output_tokens"));
    assert_eq!(
        us["input_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            + us["input_tokens_details"]["cache_write_tokens"]
                .as_u64()
                .unwrap(),
        n("input_tokens")
    );
    assert_eq!(us["output_tokens_details"]["reasoning_tokens"], 0);
    // Without the summary opt-in the reasoning stays hidden.
    let v = post(&format!("{u}/v1/responses"), &body("")).json();
    let types: Vec<&str> = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["message", "function_call"]);
}

/// The stream's events, checking the framing: data-only, `type` first and
/// `sequence_number` second, numbered from 0.
fn stream_events(r: &common::Reply) -> Vec<Value> {
    assert!(r.content_type.starts_with("text/event-stream"));
    assert!(!r.body.contains("[DONE]"));
    let mut out = Vec::new();
    for (k, (name, data)) in r.events().into_iter().enumerate() {
        assert!(name.is_none(), "event line in {data}");
        assert!(data.starts_with(r#"{"type":"#), "{data}");
        let v: Value = serde_json::from_str(&data).unwrap();
        let seq = format!(r#"{{"type":{},"sequence_number":{k},"#, v["type"]);
        assert!(data.starts_with(&seq), "{data} should start {seq}");
        out.push(v);
    }
    out
}

#[test]
fn stream_follows_the_event_lifecycle() {
    let u = url(TOOL_SCRIPT);
    let r = post(
        &format!("{u}/v1/responses"),
        &body(r#","stream":true,"reasoning":{"summary":"detailed"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let events = stream_events(&r);
    let mut shape: Vec<String> = Vec::new();
    for e in &events {
        let t = e["type"].as_str().unwrap().to_string();
        let label = match t.as_str() {
            "response.output_item.added" | "response.output_item.done" => {
                format!("{t}:{}", e["item"]["type"].as_str().unwrap())
            }
            _ => t,
        };
        if shape.last() != Some(&label) {
            shape.push(label);
        }
    }
    assert_eq!(
        shape,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added:reasoning",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.output_item.added:message",
            "response.content_part.added",
            "response.output_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done:reasoning",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done:message",
            "response.output_item.added:function_call",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done:function_call",
            "response.completed",
        ]
    );
    let created = &events[0]["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    let id = created["id"].as_str().unwrap();
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Let me look.");
    let reasoning: String = events
        .iter()
        .filter(|e| e["type"] == "response.reasoning_summary_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(reasoning, "I should list files.");
    let added = events
        .iter()
        .find(|e| e["type"] == "response.output_item.added" && e["item"]["type"] == "function_call")
        .unwrap();
    assert_eq!(added["item"]["status"], "in_progress");
    assert_eq!(added["item"]["arguments"], "");
    assert_eq!(added["output_index"], 2);
    let done = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(done["arguments"], r#"{"command":"ls -la","timeout":30}"#);
    assert_eq!(done["name"], "bash");
    let last = &events.last().unwrap()["response"];
    assert_eq!(last["id"], id);
    assert_eq!(last["status"], "completed");
    let out = last["output"].as_array().unwrap();
    assert_eq!(out.len(), 3);
    // The terminal response repeats the streamed items' ids.
    assert_eq!(out[2]["id"], added["item"]["id"]);
    assert_eq!(out[2]["call_id"], added["item"]["call_id"]);
    assert!(last["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(!r.body.contains("DSML") && !r.body.contains("</think>"));
}

#[test]
fn length_is_incomplete_and_reasoning_cut_short_is_not_completed() {
    let u = url("Thinking hard about this problem for a while.</think>Answer.");
    let v = post(
        &format!("{u}/v1/responses"),
        r#"{"input":"hi","max_output_tokens":3,"reasoning":{"summary":"auto"}}"#,
    )
    .json();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"], json!({"reason": "max_tokens"}));
    assert_eq!(v["output"][0]["type"], "reasoning");
    assert_eq!(v["output"][0]["status"], "incomplete");
    assert_eq!(v["usage"]["output_tokens"], 3);
    let r = post(
        &format!("{u}/v1/responses"),
        r#"{"input":"hi","max_output_tokens":3,"stream":true}"#,
    );
    let events = stream_events(&r);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    // Thinking off: the whole output is the message.
    let v = post(
        &format!("{u}/v1/responses"),
        r#"{"input":"hi","reasoning":{"effort":"none"}}"#,
    )
    .json();
    assert_eq!(v["status"], "completed");
    assert_eq!(
        v["output"][0]["content"][0]["text"],
        "Thinking hard about this problem for a while.</think>Answer."
    );
}

#[test]
fn namespaced_and_hosted_tools_get_their_names_back() {
    let call = |name: &str| {
        format!("Go.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"{name}\">\n<｜DSML｜parameter name=\"q\" string=\"true\">rust</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>")
    };
    let tools = r#"[{"type":"namespace","name":"mcp__web__","tools":[{"type":"function","name":"search","parameters":{"type":"object"}}]},{"type":"tool_search"}]"#;
    let u = url(&call("mcp__web__search"));
    let v = post(
        &format!("{u}/v1/responses"),
        &format!(r#"{{"input":"find","tools":{tools}}}"#),
    )
    .json();
    let item = &v["output"][0];
    assert_eq!(item["type"], "function_call", "{v}");
    assert_eq!(item["name"], "search");
    assert_eq!(item["namespace"], "mcp__web__");
    let u = url(&call("tool_search"));
    let r = post(
        &format!("{u}/v1/responses"),
        &format!(r#"{{"input":"find","tools":{tools},"stream":true}}"#),
    );
    let events = stream_events(&r);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        !types.contains(&"response.function_call_arguments.delta"),
        "{types:?}"
    );
    let item = &events.last().unwrap()["response"]["output"][0];
    assert_eq!(item["type"], "tool_search_call");
    assert_eq!(item["execution"], "client");
    assert_eq!(item["arguments"], json!({"q": "rust"}));
}

#[test]
fn errors_use_the_openai_shape() {
    let u = scripted_server("Sure.", server::Config::new(64));
    let cases = [
        (r#"{"model":"x"}"#, "missing input"),
        (
            r#"{"input":"x","previous_response_id":"resp_abc"}"#,
            "previous_response_id is not supported; replay full input instead",
        ),
        (
            r#"{"input":[{"type":"function_call_output","call_id":"call_x","output":"o"}]}"#,
            "Responses continuation state is not available for call_id call_x; retry by replaying the full input history",
        ),
        (r#"{"input":[{"type":"message","content":[{"type":"input_image"}]}]}"#, "invalid JSON request"),
        (r#"{"input":"x","tool_choice":"required"}"#, "tool_choice=required not supported"),
    ];
    for (b, msg) in cases {
        let r = post(&format!("{u}/v1/responses"), b);
        assert_eq!(r.status, 400, "{b}");
        let v = r.json();
        assert_eq!(v["error"]["message"], msg, "{b}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let long = "word ".repeat(200);
    let r = post(
        &format!("{u}/v1/responses"),
        &format!(r#"{{"input":"{long}"}}"#),
    );
    assert_eq!(r.status, 400);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "context_length_exceeded");
    assert_eq!(e["param"], "input");
    assert_eq!(e["n_ctx"], 64);
}

#[test]
fn a_replayed_tool_loop_prefills_only_each_new_output() {
    let u = turns_server(
        &[TOOL_SCRIPT, TOOL_SCRIPT, "Seen.</think>Done."],
        server::Config::new(4096),
    );
    let mut input = vec![
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]}),
    ];
    let mut usage: Vec<(u64, u64, u64)> = Vec::new();
    for turn in 0..3 {
        let stream = turn == 1;
        let b = json!({"input": input, "tools": serde_json::from_str::<Value>(TOOLS).unwrap(),
                       "reasoning": {"summary": "auto"}, "stream": stream, "store": false});
        let r = post(&format!("{u}/v1/responses"), &b.to_string());
        assert_eq!(r.status, 200, "{}", r.body);
        let v = if stream {
            stream_events(&r).last().unwrap()["response"].clone()
        } else {
            r.json()
        };
        let us = &v["usage"];
        usage.push((
            us["input_tokens"].as_u64().unwrap(),
            us["input_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap(),
            us["output_tokens"].as_u64().unwrap(),
        ));
        let out = v["output"].as_array().unwrap().clone();
        if turn == 2 {
            assert_eq!(out.last().unwrap()["content"][0]["text"], "Done.");
            break;
        }
        let call_id = out[2]["call_id"].clone();
        input.extend(out);
        input.push(json!({"type": "function_call_output", "call_id": call_id, "output": format!("result {turn}")}));
    }
    for k in 1..3 {
        let (p, _, c) = usage[k - 1];
        assert_eq!(usage[k].1, p + c - 1, "turn {k}: {usage:?}");
    }
}

#[test]
fn a_codex_style_replay_without_reasoning_continues_the_live_session() {
    // Codex asks for no summaries and replays only messages and calls: the
    // model's reasoning is in the live session but not in the replay.
    let u = turns_server(
        &[TOOL_SCRIPT, TOOL_SCRIPT, "Seen.</think>Done."],
        server::Config::new(4096),
    );
    let mut input = vec![json!({"type": "message", "role": "user", "content": "list files"})];
    let mut usage: Vec<(u64, u64, u64)> = Vec::new();
    for turn in 0..3 {
        let b = json!({"input": input, "tools": serde_json::from_str::<Value>(TOOLS).unwrap(),
                       "stream": turn == 1, "store": false});
        let r = post(&format!("{u}/v1/responses"), &b.to_string());
        assert_eq!(r.status, 200, "{}", r.body);
        let v = if turn == 1 {
            stream_events(&r).last().unwrap()["response"].clone()
        } else {
            r.json()
        };
        let us = &v["usage"];
        usage.push((
            us["input_tokens"].as_u64().unwrap(),
            us["input_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap(),
            us["output_tokens"].as_u64().unwrap(),
        ));
        let out = v["output"].as_array().unwrap().clone();
        assert!(out.iter().all(|i| i["type"] != "reasoning"));
        if turn == 2 {
            assert_eq!(out[0]["content"][0]["text"], "Done.");
            break;
        }
        let call_id = out[1]["call_id"].clone();
        input.extend(out);
        input.push(json!({"type": "function_call_output", "call_id": call_id, "output": "x.rs"}));
    }
    for k in 1..3 {
        let (p, _, c) = usage[k - 1];
        // Everything the session held is reused: the previous prompt and all
        // its sampled tokens but the last, hidden reasoning included.
        assert_eq!(usage[k].1, p + c - 1, "turn {k}: {usage:?}");
        assert!(usage[k].0 - usage[k].1 < 20, "turn {k}: {usage:?}");
    }
}
