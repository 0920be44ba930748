//! `ds4rs serve` as a user starts it: on a tiny random-weight model with the
//! real vocabulary, on an ephemeral port; it reports the bound address,
//! lists its model and answers a chat request; a bad model path fails fast;
//! Ctrl+C stops a running generation and exits 0; a second server on the
//! same lock file is refused; `--backend cuda` without CUDA explains itself.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
    // Each test's servers take their own instance lock, not the machine's.
    c.env("DS4_LOCK_FILE", lock_file());
    c
}

/// A lock path private to this test process (tests run in parallel and
/// must not exclude each other; a test that wants the conflict shares one).
fn lock_file() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "ds4rs-serve-test-{}-{}.lock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The tiny model, synthesized once per test binary.
fn tiny_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let shape = dir.join("tiny.json");
        let model = dir.join("m.gguf");
        std::fs::write(&shape, TINY).unwrap();
        let st = ds4rs()
            .args(["synth", "--recipe", "q8_0", "--seed", "3", "--shape"])
            .arg(&shape)
            .arg("--out")
            .arg(&model)
            .status()
            .unwrap();
        assert!(st.success());
        model
    })
    .clone()
}

/// Starts `ds4rs serve` on the tiny model with `extra` arguments; returns
/// the server (killed on drop) and its URL once it listens.
fn serve(mut cmd: Command, extra: &[&str]) -> (Server, String) {
    let mut child = cmd
        .args(["serve", "--host", "localhost", "--port", "0"])
        .args(extra)
        .arg("--model")
        .arg(tiny_model())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr);
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("ds4rs: listening on ")
        .unwrap_or_else(|| panic!("no address line: {line:?}"))
        .to_string();
    (Server(child, Some(lines)), url)
}

/// Kills the server when the test ends, pass or fail.
struct Server(Child, Option<BufReader<std::process::ChildStderr>>);

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
    let (_server, url) = serve(ds4rs(), &["--ctx", "512"]);
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

#[test]
fn sigint_stops_the_running_generation_and_exits_zero() {
    let (mut server, url) = serve(ds4rs(), &["--ctx", "8192"]);
    let body = r#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":8000,"think":false,"stream":true}"#;
    let r = agent()
        .post(&format!("{url}/v1/chat/completions"))
        .send(body)
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut reader = BufReader::new(r.into_body().into_reader());
    let mut seen = String::new();
    // Wait for generation to be under way: a few content chunks.
    while seen.matches("\"content\"").count() < 3 {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended: {seen}"
        );
        seen.push_str(&line);
    }
    let t0 = Instant::now();
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    // The running job stopped at a token boundary with finish "error".
    assert!(rest.contains(r#""finish_reason":"error""#), "{rest}");
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
    let status = loop {
        if let Some(st) = server.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "server did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    server.1.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );
    // The listener is gone.
    let addr = url.trim_start_matches("http://");
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn a_second_server_on_the_same_lock_is_refused_with_status_2() {
    let lock = lock_file();
    let mut first = ds4rs();
    first.env("DS4_LOCK_FILE", &lock);
    let (server, _url) = serve(first, &["--ctx", "256"]);
    let o = ds4rs()
        .env("DS4_LOCK_FILE", &lock)
        .args(["serve", "--port", "0", "--model"])
        .arg(tiny_model())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let want = format!(
        "another ds4 process is already running (pid {}); refusing to start",
        server.0.id()
    );
    assert!(err.contains(&want), "{err}");
}

/// Without CUDA in the build, or without a GPU to run it, `--backend cuda`
/// fails with a message naming the flag and the CPU alternative.
#[test]
fn backend_cuda_without_a_gpu_backend_is_a_clear_error() {
    let o = ds4rs()
        .args(["serve", "--port", "0", "--backend", "cuda", "--model"])
        .arg(tiny_model())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--backend cuda") && err.contains("--backend cpu"),
        "{err}"
    );
    let o = ds4rs()
        .args(["run", "-n", "1", "-p", "hi", "--backend", "cuda", "--model"])
        .arg(tiny_model())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--backend cuda"));
}
