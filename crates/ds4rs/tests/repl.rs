//! The interactive `ds4rs run` under a pseudo-terminal (expectrl): a turn,
//! a `/nothink` switch, `/ctx`, Ctrl+C during generation returning to the
//! prompt, history, `/quit`. Runs on a tiny random-weight model.

use std::process::Command;
use std::time::Duration;

use expectrl::{ControlCode, Eof, Expect, Session};

const TINY: &str = r#"{"n_layer":2,"n_embd":256,"n_vocab":129280,"n_head":4,"head_dim":256,
"n_rot":64,"q_lora_rank":128,"o_lora_rank":128,"o_groups":2,"n_expert":8,"n_expert_used":3,
"n_ff_exp":256,"n_hash_layer":1,"sliding_window":32,"indexer_heads":4,"indexer_head_dim":128,
"indexer_top_k":8,"n_hc":4,"sinkhorn_iters":20,"compress_ratios":[0,4],
"swiglu_clamp":[10,10],"rope_base":10000,"compress_rope_base":160000,
"rope_scale_factor":16,"rope_orig_ctx":65536,"yarn_beta_fast":32,"yarn_beta_slow":1,
"expert_weights_scale":1.5,"rms_eps":1e-6,"hc_eps":1e-6,"context_length":1048576}"#;

/// Types `line` key by key, as a person does: rustyline (17) stalls on a
/// burst of several keys written to a pseudo-terminal at once.
fn type_line(p: &mut impl Expect, line: &str) {
    for c in line.chars().chain(['\r']) {
        p.send(c.to_string()).unwrap();
        std::thread::sleep(Duration::from_millis(15));
    }
}

#[test]
fn a_turn_nothink_ctrl_c_and_quit_under_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(d("tiny.json"), TINY).unwrap();
    let synth = Command::new(env!("CARGO_BIN_EXE_ds4rs"))
        .args(["synth", "--shape", &d("tiny.json"), "--recipe", "q8_0"])
        .args(["--out", &d("m.gguf")])
        .output()
        .unwrap();
    assert!(synth.status.success());

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ds4rs"));
    // A 64-token context bounds the first reply whatever the speed.
    cmd.args(["run", "-m", &d("m.gguf"), "--ctx", "64", "--seed", "1"])
        .env("HOME", dir.path())
        .env("RUST_BACKTRACE", "0");
    let mut p = Session::spawn(cmd).unwrap();
    p.set_expect_timeout(Some(Duration::from_secs(120)));
    p.expect("/nothink").unwrap();
    p.expect("ds4> ").unwrap();

    // A turn runs to its budget (or EOS) and prints the stats line.
    type_line(&mut p, "Hello");
    p.expect("generated: ").unwrap();
    p.expect("ds4> ").unwrap();

    type_line(&mut p, "/nothink");
    p.expect("Thinking mode: none.").unwrap();
    p.expect("ds4> ").unwrap();

    // A context with room for a reply that only Ctrl+C ends; the
    // conversation so far is kept.
    type_line(&mut p, "/ctx 100000");
    p.expect("new session, ctx=100000").unwrap();
    p.expect("ds4> ").unwrap();

    // Ctrl+C while the reply streams stops it and returns to the prompt.
    type_line(&mut p, "Tell me a long story");
    std::thread::sleep(Duration::from_millis(300));
    p.send(ControlCode::EndOfText).unwrap();
    p.expect("ds4rs: interrupted").unwrap();
    p.expect("generated: ").unwrap();
    p.expect("ds4> ").unwrap();

    // The REPL still works after the interrupt.
    type_line(&mut p, "/bogus");
    p.expect("unknown command: /bogus").unwrap();
    p.expect("ds4> ").unwrap();
    type_line(&mut p, "/quit");
    p.expect(Eof).unwrap();
    let status = p.get_process().wait().unwrap();
    assert_eq!(
        status,
        expectrl::process::unix::WaitStatus::Exited(p.get_process().pid(), 0)
    );
    let history = std::fs::read_to_string(dir.path().join(".ds4rs_history")).unwrap();
    for line in [
        "Hello",
        "/nothink",
        "/ctx 100000",
        "Tell me a long story",
        "/quit",
    ] {
        assert!(history.lines().any(|l| l == line), "{line:?} in {history}");
    }
}
