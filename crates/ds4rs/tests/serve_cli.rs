//! `ds4rs serve` as a user starts it: on a tiny random-weight model with the
//! real vocabulary, on an ephemeral port; it reports the bound address,
//! lists its model and answers a chat request; a bad model path fails fast.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Two layers at width 256 with Flash's 129280-token vocabulary.
const TINY: &str = r#"{"n_layer":2,"n_embd":256,"n_vocab":129280,"n_head":4,"head_dim":256,
"n_rot":64,"q_lora_rank":128,"o_lora_rank":128,"o_groups":2,"n_expert":8,"n_expert_used":3,
"n_ff_exp":256,"n_hash_layer":1,"sliding_window":32,"indexer_heads":4,"indexer_head_dim":128,
"indexer_top_k":8,"n_hc":4,"sinkhorn_iters":20,"compress_ratios":[0,4],
"swiglu_clamp":[10,10],"rope_base":10000,"compress_rope_base":160000,
"rope_scale_factor":16,"rope_orig_ctx":65536,"yarn_beta_fast":32,"yarn_beta_slow":1,
"expert_weights_scale":1.5,"rms_eps":1e-6,"hc_eps":1e-6,"context_length":1048576}"#;

fn ds4rs() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ds4rs"));
    c.env("RUST_BACKTRACE", "0");
    c
}

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

#[test]
fn serve_answers_models_and_chat() {
    let dir = tempfile::tempdir().unwrap();
    let shape = dir.path().join("tiny.json");
    let model = dir.path().join("m.gguf");
    std::fs::write(&shape, TINY).unwrap();
    let st = ds4rs()
        .args(["synth", "--recipe", "q8_0", "--seed", "3", "--shape"])
        .arg(&shape)
        .arg("--out")
        .arg(&model)
        .status()
        .unwrap();
    assert!(st.success());
    let mut child = ds4rs()
        .args([
            "serve",
            "--host",
            "localhost",
            "--port",
            "0",
            "--ctx",
            "512",
            "--model",
        ])
        .arg(&model)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _server = Server(child);
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("ds4rs: listening on ")
        .unwrap_or_else(|| panic!("no address line: {line:?}"))
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );

    let models: serde_json::Value = serde_json::from_str(
        &agent()
            .get(&format!("{url}/v1/models"))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(models["data"][0]["id"], "deepseek-v4-flash");
    assert_eq!(models["data"][0]["context_length"], 512);

    let mut r = agent()
        .post(&format!("{url}/v1/chat/completions"))
        .send(r#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3}"#)
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 3);
}

#[test]
fn serve_without_a_model_fails_with_a_message() {
    let o = ds4rs()
        .args(["serve", "--port", "0", "--model", "/nonexistent/m.gguf"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/m.gguf"), "{err}");
}
