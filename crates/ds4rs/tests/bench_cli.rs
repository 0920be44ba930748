//! `ds4rs bench` on a tiny synthetic model on the CPU: the frontier rows,
//! ds4-bench's CSV columns (plus the device), snapshot sizes, and the
//! argument checks of programs-and-tests.md §3.1.

mod common;

use common::{ds4rs, TINY};

#[test]
fn frontiers_rows_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    std::fs::write(
        d("tiny.json"),
        TINY.replace("\"n_hash_layer\":2", "\"n_hash_layer\":1"),
    )
    .unwrap();
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
