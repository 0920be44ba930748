//! DSML parsing against the reference parser (`parse_message_from_completion_text`), the
//! spec's examples (with the spec's recoveries where the reference raises), streaming
//! split-invariance, the canonical renderer and the sampling tracker.

mod common;

use common::{fixture, jsonl};
use serde_json::Value;
use text::dsml::{
    parse, tool_calls_dsml, Event, ParseOptions, ParsedMessage, SamplingTracker, StreamParser,
};
use text::render::ToolCall;
use text::IncrementalDecoder;

fn spec() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("prompt-examples.json")).expect("spec"))
        .expect("json")
}

fn calls(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_string(),
                c["arguments"].as_str().expect("arguments").to_string(),
            )
        })
        .collect()
}

fn got_calls(m: &ParsedMessage) -> Vec<(String, String)> {
    m.tool_calls
        .iter()
        .map(|c| (c.name.clone(), c.arguments.clone()))
        .collect()
}

/// Feeds `text` split at byte `k` (through the UTF-8-safe decoder, as a server would) and
/// folds the events.
fn streamed(text: &str, options: ParseOptions, splits: &[usize]) -> ParsedMessage {
    let bytes = text.as_bytes();
    let mut dec = IncrementalDecoder::new();
    let mut p = StreamParser::new(options);
    let mut events = Vec::new();
    let mut last = 0;
    for &k in splits.iter().chain([bytes.len()].iter()) {
        events.extend(p.push(&dec.push_bytes(&bytes[last..k])));
        last = k;
    }
    events.extend(p.push(&dec.finish()));
    events.extend(p.finish());
    ParsedMessage::from_events(options, events)
}

fn assert_split_invariant(text: &str, options: ParseOptions) {
    let whole = parse(text, options);
    for k in 0..=text.len() {
        assert_eq!(
            streamed(text, options, &[k]),
            whole,
            "split at {k} of {text:?}"
        );
    }
    let every: Vec<usize> = (1..text.len()).collect();
    assert_eq!(
        streamed(text, options, &every),
        whole,
        "byte by byte: {text:?}"
    );
}

#[test]
fn spec_examples() {
    let spec = spec();
    for e in spec["dsml_parse_examples"].as_array().expect("examples") {
        let name = e["name"].as_str().expect("name");
        let output = e["model_output"].as_str().expect("output");
        let options = ParseOptions {
            thinking: e["thinking_mode"] == "thinking",
            tools: e["has_tools"].as_bool().expect("has_tools"),
        };
        let got = parse(output, options);
        let official = &e["official"];
        let reference_ok =
            official["ok"] == true && !matches!(name, "short_marker_variant" | "plain_xml_variant");
        if reference_ok {
            assert_eq!(
                got.content,
                official["content"].as_str().expect("content"),
                "{name}"
            );
            let reasoning = got.reasoning.clone().unwrap_or_default();
            assert_eq!(
                reasoning,
                official["reasoning_content"].as_str().expect("r"),
                "{name}"
            );
            assert_eq!(got_calls(&got), calls(&official["tool_calls"]), "{name}");
        } else {
            // The reference raises (or, for the short and plain spellings, sees no call):
            // the spec's recovery applies, with the reference's argument format and no
            // entity decoding.
            let want_args: &[(&str, &str)] = match name {
                "dsml_inside_reasoning_is_not_a_call" | "malformed_invoke_without_name" => &[],
                "no_blank_line_before_block" => &[("bash", r#"{"command": "pwd"}"#)],
                "short_marker_variant" | "plain_xml_variant" => &[("bash", r#"{"command": "ls"}"#)],
                "missing_string_attribute_and_nested_params" => &[(
                    "edit",
                    r#"{"path": "/tmp/t.c", "edits": {"oldText":"old &lt;text&gt;","newText":"new text"}}"#,
                )],
                "duplicate_parameter_names" => &[("bash", r#"{"command": "a", "command": "b"}"#)],
                other => panic!("unexpected example {other}"),
            };
            let want: Vec<(String, String)> = want_args
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            assert_eq!(got_calls(&got), want, "{name}");
            assert_eq!(
                got.content,
                e["content"].as_str().expect("content"),
                "{name}"
            );
            assert_eq!(
                got.reasoning.as_deref(),
                e["reasoning_content"].as_str(),
                "{name}"
            );
            assert_eq!(got.recovered, e["ds4_recovered"] == true, "{name}");
        }
        assert_eq!(got.raw_dsml.as_deref(), e["raw_dsml"].as_str(), "{name}");
        assert_split_invariant(output, options);
    }
}

#[test]
fn generated_tool_calls_match_reference_parser() {
    let cases = jsonl("dsml_cases.jsonl");
    assert!(cases.len() >= 500);
    let mut with_calls = 0;
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(
            c["ok"], true,
            "generator produced a case the reference rejects"
        );
        let output = c["output"].as_str().expect("output");
        let options = ParseOptions {
            thinking: c["thinking"] == true,
            tools: true,
        };
        let got = parse(output, options);
        assert_eq!(
            got.content,
            c["content"].as_str().expect("content"),
            "case {i}"
        );
        assert_eq!(
            got.reasoning.clone().unwrap_or_default(),
            c["reasoning_content"].as_str().expect("reasoning"),
            "case {i}"
        );
        let want = calls(&c["tool_calls"]);
        assert_eq!(got_calls(&got), want, "case {i}");
        assert!(!got.recovered);
        if !want.is_empty() {
            with_calls += 1;
            // Canonical rendering of the parsed calls reproduces the sampled block.
            let calls: Vec<ToolCall> = got
                .tool_calls
                .iter()
                .map(|c| ToolCall {
                    id: None,
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                })
                .collect();
            assert_eq!(Some(tool_calls_dsml(&calls)), got.raw_dsml, "case {i}");
        }
        if i < 150 {
            assert_split_invariant(output, options);
        } else {
            let every: Vec<usize> = (1..output.len()).collect();
            assert_eq!(streamed(output, options, &every), got, "case {i}");
        }
    }
    assert!(with_calls >= 300, "{with_calls}");
}

#[test]
fn stream_events_arrive_as_text_arrives() {
    let spec = spec();
    let ex = &spec["stream_example"];
    let options = ParseOptions {
        thinking: true,
        tools: true,
    };
    let mut p = StreamParser::new(options);
    let mut events = Vec::new();
    let mut started_before_params = false;
    for piece in ex["pieces"].as_array().expect("pieces") {
        let new = p.push(piece["piece"].as_str().expect("piece"));
        if new
            .iter()
            .any(|e| matches!(e, Event::ToolCallStart { name, .. } if name == "get_weather"))
        {
            started_before_params = !events.iter().any(
                |e| matches!(e, Event::ToolCallArguments { delta, .. } if delta.contains("city")),
            );
        }
        events.extend(new);
    }
    assert!(started_before_params);
    events.extend(p.finish());
    let m = ParsedMessage::from_events(options, events);
    assert_eq!(m.content, "Checking.");
    assert_eq!(m.reasoning.as_deref(), Some("User wants weather."));
    assert_eq!(
        got_calls(&m),
        [(
            "get_weather".to_string(),
            r#"{"city": "Rome &amp; Milan", "opts": {"days": 2, "note": "a b"}}"#.to_string()
        )]
    );
}

#[test]
fn sampling_tracker_matches_spec_stream() {
    let spec = spec();
    let mut t = SamplingTracker::new();
    for piece in spec["stream_example"]["pieces"].as_array().expect("pieces") {
        let want = piece["state_when_sampled"].as_str().expect("state");
        assert_eq!(t.state().name(), want, "before {piece}");
        assert_eq!(
            t.state().greedy(),
            piece["greedy"] == true,
            "before {piece}"
        );
        t.push(piece["piece"].as_str().expect("piece"));
    }
}

#[test]
fn unterminated_output() {
    let thinking = ParseOptions {
        thinking: true,
        tools: true,
    };
    // Cut off before </think>: all reasoning.
    let m = parse("<think>still thinking", thinking);
    assert_eq!(m.reasoning.as_deref(), Some("still thinking"));
    assert_eq!(m.content, "");
    // A tool block that never closes is content.
    let text = "</think>ok\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n";
    let m = parse(text, thinking);
    assert!(m.recovered && m.tool_calls.is_empty());
    assert_eq!(
        m.content,
        "ok\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"x\">\n"
    );
    assert_split_invariant(text, thinking);
}
