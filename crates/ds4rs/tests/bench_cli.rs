//! `ds4rs bench` on a tiny synthetic model on the CPU: the frontier rows,
//! ds4-bench's CSV columns (plus the device), snapshot sizes, and the
//! argument checks of programs-and-tests.md §3.1.

use std::process::{Command, Output};

fn ds4rs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ds4rs"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run ds4rs")
}

const TINY: &str = r#"{"n_layer":3,"n_embd":256,"n_vocab":256,"n_head":4,"head_dim":256,
"n_rot":64,"q_lora_rank":128,"o_lora_rank":128,"o_groups":2,"n_expert":8,"n_expert_used":3,
"n_ff_exp":256,"n_hash_layer":1,"sliding_window":32,"indexer_heads":4,"indexer_head_dim":128,
"indexer_top_k":8,"n_hc":4,"sinkhorn_iters":20,"compress_ratios":[0,4,128],
"swiglu_clamp":[10,10,10],"rope_base":10000,"compress_rope_base":160000,
"rope_scale_factor":16,"rope_orig_ctx":65536,"yarn_beta_fast":32,"yarn_beta_slow":1,
"expert_weights_scale":1.5,"rms_eps":1e-6,"hc_eps":1e-6,"context_length":1048576}"#;

#[test]
fn frontiers_rows_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(d("tiny.json"), TINY).unwrap();
    let o = ds4rs(&[
        "synth",
        "--shape",
        &d("tiny.json"),
        "--recipe",
        "q8_0",
        "--out",
        &d("m.gguf"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = d("m.gguf");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "-m",
            &model,
            "--backend",
            "cpu",
            "--gen-tokens",
            "4",
        ];
        args.extend_from_slice(extra);
        ds4rs(&args)
    };
    let o = run(&[
        "--random-tokens",
        "5",
        "--ctx-start",
        "40",
        "--ctx-max",
        "100",
        "--step-incr",
        "30",
        "--csv",
        &d("b.csv"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(d("b.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("ctx_tokens,prefill_tokens,prefill_tps,gen_tokens,gen_tps,kvcache_bytes,device")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let ctx: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    let prefill: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    assert_eq!(ctx, ["40", "70", "100"]);
    assert_eq!(prefill, ["40", "30", "30"]);
    let mut last_kv = 0u64;
    for r in &rows {
        assert_eq!(r.len(), 7);
        assert!(r[2].parse::<f64>().unwrap() > 0.0 && r[2].split('.').nth(1).unwrap().len() == 2);
        assert_eq!(r[3], "4");
        assert!(r[4].parse::<f64>().unwrap() > 0.0);
        let kv: u64 = r[5].parse().unwrap();
        assert!(kv > last_kv, "snapshot sizes grow with the frontier");
        last_kv = kv;
        assert!(r[6].starts_with("cpu ("), "{}", r[6]);
    }

    // Multiplicative steps end exactly at ctx-max.
    let o = run(&[
        "--random-tokens",
        "5",
        "--ctx-start",
        "16",
        "--ctx-max",
        "50",
        "--step-mul",
        "2",
    ]);
    let out = String::from_utf8(o.stdout).unwrap();
    let ctx: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(ctx, ["16", "32", "50"]);

    // Argument and prompt checks.
    let fails = |extra: &[&str], words: &[&str]| {
        let o = run(extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?} succeeded");
        for w in words {
            assert!(err.contains(w), "{w:?} not in {err}");
        }
    };
    fails(
        &[
            "--random-tokens",
            "1",
            "--ctx-start",
            "90",
            "--ctx-max",
            "50",
        ],
        &["--ctx-start"],
    );
    fails(
        &["--random-tokens", "1", "--step-mul", "0.5"],
        &["--step-mul"],
    );
    fails(
        &["--ctx-start", "16", "--ctx-max", "50"],
        &["exactly one of"],
    );
    std::fs::write(d("short.txt"), "a few words").unwrap();
    fails(
        &[
            "--prompt-file",
            &d("short.txt"),
            "--ctx-start",
            "16",
            "--ctx-max",
            "50",
        ],
        &["need at least --ctx-max=50"],
    );
}
