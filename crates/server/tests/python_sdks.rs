//! The official Python SDKs (`openai`, `anthropic`; `.ci/run` installs them
//! from PyPI) driving the server: models, chat, Responses and messages, streaming and
//! not, usage with cached tokens, stop sequences, tool calls round trip, and
//! error mapping. Tool paths run on the scripted backend so they are exact.

mod common;

use std::path::Path;
use std::process::Command;

use common::scripted_server;

const TOOL_SCRIPT: &str = "I should list files.</think>Let me look.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"bash\">\n<｜DSML｜parameter name=\"command\" string=\"true\">ls -la; pwd</｜DSML｜parameter>\n<｜DSML｜parameter name=\"timeout\" string=\"false\">30</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";

fn run_sdk(script: &str) {
    let tool = scripted_server(TOOL_SCRIPT, server::Config::new(4096));
    let text = scripted_server(
        "Hello there. STOP here and more text.",
        server::Config::new(4096),
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let o = Command::new("python3")
        .arg(&path)
        .args([&tool, &text])
        .output()
        .expect("python3");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{script} failed:\n{out}\n{err}");
    assert!(
        out.contains("sdk ok"),
        "{script} ended early:\n{out}\n{err}"
    );
}

#[test]
fn openai_sdk() {
    run_sdk("openai_sdk.py");
}

#[test]
fn anthropic_sdk() {
    run_sdk("anthropic_sdk.py");
}
