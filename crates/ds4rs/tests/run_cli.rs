//! `ds4rs run` as a user runs it, on a tiny random-weight model with the
//! real vocabulary: one-shot generation (deterministic under a seed or
//! greedy), the stats line, `--dump-tokens`, `--dump-logprobs`, and the
//! messages for a missing model and bad flags.

use std::process::{Command, Output};

fn ds4rs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ds4rs"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run ds4rs")
}

fn ok(args: &[&str]) -> (String, String) {
    let o = ds4rs(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "ds4rs {args:?} failed:\n{err}");
    (out, err)
}

/// Two layers at width 256 with Flash's 129280-token vocabulary.
const TINY: &str = r#"{"n_layer":2,"n_embd":256,"n_vocab":129280,"n_head":4,"head_dim":256,
"n_rot":64,"q_lora_rank":128,"o_lora_rank":128,"o_groups":2,"n_expert":8,"n_expert_used":3,
"n_ff_exp":256,"n_hash_layer":1,"sliding_window":32,"indexer_heads":4,"indexer_head_dim":128,
"indexer_top_k":8,"n_hc":4,"sinkhorn_iters":20,"compress_ratios":[0,4],
"swiglu_clamp":[10,10],"rope_base":10000,"compress_rope_base":160000,
"rope_scale_factor":16,"rope_orig_ctx":65536,"yarn_beta_fast":32,"yarn_beta_slow":1,
"expert_weights_scale":1.5,"rms_eps":1e-6,"hc_eps":1e-6,"context_length":1048576}"#;

fn model(dir: &tempfile::TempDir) -> String {
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(d("tiny.json"), TINY).unwrap();
    ok(&[
        "synth",
        "--shape",
        &d("tiny.json"),
        "--recipe",
        "q8_0",
        "--seed",
        "3",
        "--out",
        &d("m.gguf"),
    ]);
    d("m.gguf")
}

/// `generated: N tokens` from the stats line.
fn generated(err: &str) -> usize {
    let line = err
        .lines()
        .find(|l| l.starts_with("ds4rs: prompt: "))
        .unwrap_or_else(|| panic!("no stats line in\n{err}"));
    assert!(line.contains("prefill: ") && line.contains("generation: "));
    let after = line.split("generated: ").nth(1).unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn one_shot_generation_is_reproducible_and_reports_stats() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(&dir);
    let greedy = ["run", "-m", &m, "-p", "Hello", "-n", "12", "--temp", "0"];
    let (a, err) = ok(&greedy);
    let (b, _) = ok(&greedy);
    assert_eq!(a, b);
    assert!(a.ends_with('\n') && a.len() > 1, "{a:?}");
    assert!(generated(&err) <= 12);
    let seeded = |seed: &str| ok(&["run", "-m", &m, "-p", "Hi", "-n", "16", "--seed", seed]).0;
    assert_eq!(seeded("7"), seeded("7"));
    assert_ne!(seeded("7"), seeded("8"));
    // Thinking and non-thinking prompts differ, so do their outputs.
    let (nothink, _) = ok(&[
        "run",
        "-m",
        &m,
        "-p",
        "Hello",
        "-n",
        "12",
        "--temp",
        "0",
        "--nothink",
    ]);
    assert_ne!(nothink, a);
    let prompt = dir.path().join("p.txt");
    std::fs::write(&prompt, "Hello").unwrap();
    let (from_file, _) = ok(&[
        "run",
        "-m",
        &m,
        "--prompt-file",
        prompt.to_str().unwrap(),
        "-n",
        "12",
        "--temp",
        "0",
    ]);
    assert_eq!(from_file, a);
}

#[test]
fn dump_tokens_and_dump_logprobs() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(&dir);
    let (out, _) = ok(&["run", "-m", &m, "-p", "Hi<｜User｜>", "--dump-tokens"]);
    let mut lines = out.lines();
    let ids: Vec<u32> = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(ids.len(), 2, "{out}");
    assert_eq!(ids[1], 128803, "the control token is recognised");
    assert_eq!(lines.next().unwrap(), format!("{:>6}  Hi", ids[0]));
    assert_eq!(lines.next().unwrap(), "128803  <｜User｜>");

    let json = dir.path().join("lp.json");
    let (stdout, _) = ok(&[
        "run",
        "-m",
        &m,
        "-p",
        "Hello",
        "-n",
        "4",
        "--dump-logprobs",
        json.to_str().unwrap(),
        "--logprobs-top-k",
        "3",
    ]);
    assert!(stdout.is_empty());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["top_k"], 3);
    assert_eq!(v["ctx"], 32768);
    let steps = v["steps"].as_array().unwrap();
    assert!(!steps.is_empty() && steps.len() <= 4);
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["step"], i);
        let top = s["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["token"], s["selected"], "greedy picks the top token");
        let lp: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(lp.windows(2).all(|w| w[0] >= w[1]) && lp[0] <= 0.0);
    }
}

#[test]
fn missing_model_and_bad_flags_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ds4flash.gguf");
    let o = ds4rs(&["run", "-m", missing.to_str().unwrap(), "-p", "hi"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    for w in ["not found", "ds4rs pull q2", "ds4rs synth", "random-weight"] {
        assert!(err.contains(w), "{w:?} not in {err}");
    }
    let m = model(&dir);
    let o = ds4rs(&["run", "-m", &m, "-p", "hi", "--top-p", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("top_p 2"), "{err}");
    let o = ds4rs(&["run", "-m", &m, "--dump-tokens"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("requires -p"), "{err}");
    let o = ds4rs(&["run", "-m", &m, "-p", "hi", "--ctx", "4"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--ctx 4"), "{err}");
}

/// Without a prompt and with stdin not a terminal, the REPL reads lines
/// plainly, so it can be scripted through a pipe.
#[test]
fn repl_scripted_through_a_pipe() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let m = model(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ds4rs"))
        .args(["run", "-m", &m, "-n", "5", "--seed", "2"])
        .env("HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello\n/nothink\nmore \\\nlines\n/ctx x\n/read /nonexistent\n/quit\nnever\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("/think-max") && out.contains("Thinking mode: none."),
        "{out}"
    );
    let stats: Vec<&str> = err.lines().filter(|l| l.contains("generated: ")).collect();
    assert_eq!(stats.len(), 2, "two turns, nothing after /quit:\n{err}");
    // The second turn reuses the first: only its own tokens are evaluated
    // (EOS, the last sampled token, <｜User｜>, 2-3 text tokens,
    // <｜Assistant｜>, </think>).
    let second: usize = stats[1]
        .split("prompt: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((5..=10).contains(&second), "{}", stats[1]);
    assert!(err.contains("/ctx needs a positive integer"));
    assert!(err.contains("failed to open prompt file /nonexistent"));
}
