//! Checkpoints, rewind and snapshot files: a restored session continues with
//! bit-identical logits; malformed, damaged or foreign snapshots are
//! rejected with an error naming what is wrong, leaving the session as it was.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use engine::{Backend, CpuBackend, EngineError, Session};
use sha2::{Digest, Sha256};

const CONFIGS: [&str; 2] = ["flash_mini", "small_hca16"];
static NO: AtomicBool = AtomicBool::new(false);

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Logits after each of `toks`, uninterrupted, from a `ctx` session.
fn straight(b: &Arc<CpuBackend>, toks: &[u32], ctx: usize) -> Vec<Vec<u32>> {
    let mut s = Session::new(b.clone(), ctx);
    toks.iter().map(|&t| bits(s.decode(t).unwrap())).collect()
}

fn session_at(b: &Arc<CpuBackend>, toks: &[u32], ctx: usize) -> Session<CpuBackend> {
    let mut s = Session::new(b.clone(), ctx);
    s.prefill(toks, &mut |_, _| {}, &NO).unwrap();
    s
}

#[test]
fn snapshot_restore_continue_is_bit_identical() {
    // Exact numerics, and ds4's (quantized activations, QAT round trips,
    // f16 rows).
    let backends = CONFIGS.into_iter().flat_map(|c| {
        [
            (c, common::backend(c, 16)),
            (c, common::backend_with(c, 16, model::Options::default())),
        ]
    });
    for (config, b) in backends {
        let (toks, _) = common::oracle(config);
        let ctx = toks.len();
        let want = straight(&b, &toks, ctx);
        for t in [1, 5, 33, 50, 130].into_iter().filter(|&t| t < toks.len()) {
            let bytes = session_at(&b, &toks[..t], ctx).snapshot().unwrap();
            let mut s = Session::new(b.clone(), ctx);
            s.load_snapshot(&bytes).unwrap();
            assert_eq!(s.tokens(), &toks[..t]);
            assert_eq!(bits(&s.logits().unwrap()), want[t - 1], "{config} T={t}");
            for (p, &tok) in toks.iter().enumerate().skip(t) {
                let got = bits(s.decode(tok).unwrap());
                assert_eq!(got, want[p], "{config}: snapshot at {t}, position {p}");
            }
            // Saving the restored session reproduces the file byte for byte.
            let mut again = Session::new(b.clone(), ctx);
            again.load_snapshot(&bytes).unwrap();
            assert_eq!(again.snapshot().unwrap(), bytes);
        }
    }
}

/// attention.md §15.1's size formula with the model's shapes, plus the
/// 84-byte wrapper.
#[test]
fn snapshot_size_follows_the_payload_layout() {
    for config in CONFIGS {
        let b = common::backend(config, 16);
        let cfg = b.config().clone();
        let (toks, _) = common::oracle(config);
        for t in [1, 9, 64, toks.len()] {
            let s = session_at(&b, &toks[..t], toks.len());
            let mut n = 52 + 4 * t + 4 * cfg.n_vocab + 8 * cfg.n_layer;
            for il in 0..cfg.n_layer {
                let r = cfg.compress_ratios[il];
                n += 4 * t.min(cfg.sliding_window) * cfg.head_dim;
                if r != 0 {
                    let c = if r == 4 { 2 } else { 1 };
                    n += 4 * (t / r) * cfg.head_dim + 2 * 4 * (c * r) * (c * cfg.head_dim);
                }
                if r == 4 {
                    n += 4 * (t / r) * cfg.indexer_head_dim + 2 * 4 * 8 * 2 * cfg.indexer_head_dim;
                }
            }
            assert_eq!(s.snapshot().unwrap().len(), 84 + n, "{config} T={t}");
        }
    }
}

#[test]
fn checkpoint_restore_and_rewind_are_bit_identical() {
    let b = common::backend("small_hca16", 5);
    let (toks, _) = common::oracle("small_hca16");
    let ctx = toks.len();
    let want = straight(&b, &toks, ctx);
    for anchors in [0, 1, 3] {
        let mut s = Session::new(b.clone(), ctx);
        s.set_max_anchors(anchors);
        s.prefill(&toks[..40], &mut |_, _| {}, &NO).unwrap();
        let cp = s.checkpoint();
        for &t in &toks[40..70] {
            s.decode(t).unwrap();
        }
        s.prefill(&toks[70..90], &mut |_, _| {}, &NO).unwrap();
        assert_eq!(bits(&s.logits().unwrap()), want[89]);

        // Rewind behind the last anchor and in front of it.
        for target in [80, 50, 17] {
            let redone = s.rewind(target, &mut |_, _| {}, &NO).unwrap();
            // From the newest anchor at or before the target, else from 0.
            let anchor = match (anchors, target) {
                (3, 80) | (3, 50) => 40,
                _ => 0,
            };
            assert_eq!(
                redone,
                target - anchor,
                "anchors {anchors}, rewind {target}"
            );
            assert_eq!(s.tokens(), &toks[..target]);
            assert_eq!(
                bits(&s.logits().unwrap()),
                want[target - 1],
                "rewind {target}"
            );
            s.decode(toks[target]).unwrap();
            assert_eq!(bits(&s.logits().unwrap()), want[target]);
            s.prefill(&toks[target + 1..90], &mut |_, _| {}, &NO)
                .unwrap();
        }
        s.restore(&cp).unwrap();
        assert_eq!(s.tokens(), &toks[..40]);
        assert_eq!(bits(&s.logits().unwrap()), want[39]);
        assert_eq!(bits(s.decode(toks[40]).unwrap()), want[40]);

        // sync keeps the common prefix of a diverging prompt.
        let mut other = toks[..60].to_vec();
        other[55] = (other[55] + 1) % 256;
        assert_eq!(s.sync(&other, &mut |_, _| {}, &NO).unwrap(), 60 - 41);
        let mut fresh = Session::new(b.clone(), ctx);
        fresh.prefill(&other, &mut |_, _| {}, &NO).unwrap();
        assert_eq!(bits(&s.logits().unwrap()), bits(&fresh.logits().unwrap()));
        assert_eq!(s.sync(&other, &mut |_, _| {}, &NO).unwrap(), 0);
        // Back to the common prefix of 55 (from the anchor at 17 when three
        // are kept, else from 0), then the 5 diverging tokens.
        let fed = s.sync(&toks[..60], &mut |_, _| {}, &NO).unwrap();
        assert_eq!(fed, if anchors == 3 { 55 - 17 + 5 } else { 60 });
        assert_eq!(bits(&s.logits().unwrap()), want[59]);
    }
    let mut s = session_at(&b, &toks[..10], ctx);
    assert!(matches!(
        s.rewind(11, &mut |_, _| {}, &NO),
        Err(EngineError::RewindPastEnd {
            target: 11,
            len: 10
        })
    ));
    let small = Session::new(b.clone(), 50).checkpoint();
    assert!(matches!(
        s.restore(&small),
        Err(EngineError::StateMismatch(_))
    ));
}

#[test]
fn prefill_cancels_at_a_chunk_boundary_and_stays_consistent() {
    let b = common::backend("flash_mini", 8);
    let (toks, _) = common::oracle("flash_mini");
    let want = straight(&b, &toks, toks.len());
    let mut s = Session::new(b.clone(), toks.len());
    let cancel = AtomicBool::new(false);
    let mut seen = Vec::new();
    let done = s
        .prefill(
            &toks[..60],
            &mut |d, total| {
                assert_eq!(total, 60);
                seen.push(d);
                if d >= 20 {
                    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            },
            &cancel,
        )
        .unwrap();
    assert_eq!(seen, vec![8, 16, 24]);
    assert_eq!(done, 24);
    assert_eq!(s.tokens(), &toks[..24]);
    assert_eq!(bits(&s.logits().unwrap()), want[23]);
    // Chunks stay aligned to absolute multiples of the chunk size.
    s.decode(toks[24]).unwrap();
    let mut seen = Vec::new();
    s.prefill(&toks[25..40], &mut |d, _| seen.push(d), &NO)
        .unwrap();
    assert_eq!(seen, vec![7, 15]);
    assert_eq!(bits(&s.logits().unwrap()), want[39]);
}

/// Rewrites the payload checksum after an edit, so the edit reaches the
/// payload validation.
fn reseal(bytes: &mut [u8]) {
    let sum = Sha256::digest(&bytes[84..]);
    bytes[52..84].copy_from_slice(&sum);
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn snapshot_error(s: &mut Session<CpuBackend>, bytes: &[u8]) -> String {
    let before = s.snapshot().unwrap();
    let e = s.load_snapshot(bytes).unwrap_err();
    assert_eq!(
        s.snapshot().unwrap(),
        before,
        "a rejected load changed the session"
    );
    e.to_string()
}

#[test]
fn bad_snapshots_are_rejected_with_clear_errors() {
    let b = common::backend("flash_mini", 16);
    let (toks, _) = common::oracle("flash_mini");
    let ctx = toks.len();
    let good = session_at(&b, &toks[..50], ctx).snapshot().unwrap();
    let mut s = session_at(&b, &toks[..3], ctx);
    let cfg = b.config().clone();
    let check = |s: &mut Session<CpuBackend>, bytes: &[u8], want: &str| {
        let e = snapshot_error(s, bytes);
        assert!(e.contains(want), "{e:?} should mention {want:?}");
    };

    check(&mut s, &good[..40], "truncated");
    check(&mut s, &good[..good.len() - 1], "truncated");
    let mut long = good.clone();
    long.push(0);
    check(&mut s, &long, "trailing");
    let mut bad = good.clone();
    bad[0] = b'X';
    check(&mut s, &bad, "not a ds4rs snapshot");
    let mut bad = good.clone();
    put_u32(&mut bad, 8, 2);
    check(&mut s, &bad, "version");
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    check(&mut s, &bad, "checksum");
    let mut bad = good.clone();
    bad[200] ^= 0x10;
    check(&mut s, &bad, "corrupted");

    // A snapshot of another model.
    let other = common::backend("small_hca16", 16);
    let (otoks, _) = common::oracle("small_hca16");
    let foreign = session_at(&other, &otoks[..20], ctx).snapshot().unwrap();
    assert!(matches!(
        s.load_snapshot(&foreign),
        Err(EngineError::ForeignSnapshot { .. })
    ));
    check(&mut s, &foreign, "another model");

    // Payload fields that contradict each other or the model, resealed.
    let p = 84;
    let header = |i: usize| p + 4 * i;
    let n_comp_at = p + 52 + 4 * 50 + 4 * cfg.n_vocab;
    for (at, v, field) in [
        (header(0), 0x1234_5678, "header.magic"),
        (header(2), 8, "header.T"),
        (header(4), 7, "header.raw_cap"),
        (header(7), 20, "header.raw_live"),
        (header(7), 0, "header.T"),
        (header(8), cfg.n_layer as u32 + 1, "header.n_layer"),
        (header(9), 512, "header.head_dim"),
        (header(11), 129_280, "header.n_vocab"),
        (header(12), 3, "header.raw_live"),
        (n_comp_at + 4, 13, "n_comp[1]"),
        (n_comp_at + 4 * cfg.n_layer + 4, 11, "n_index_comp[1]"),
    ] {
        let mut bad = good.clone();
        put_u32(&mut bad, at, v);
        reseal(&mut bad);
        check(&mut s, &bad, field);
    }
    // A token id outside the vocabulary.
    let mut bad = good.clone();
    put_u32(&mut bad, p + 52, 9999);
    reseal(&mut bad);
    check(&mut s, &bad, "outside the vocabulary");
    // Payload shorter than its counts say (wrapper consistent).
    let mut bad = good[..good.len() - 8].to_vec();
    let len = (bad.len() - 84) as u64;
    bad[44..52].copy_from_slice(&len.to_le_bytes());
    reseal(&mut bad);
    check(&mut s, &bad, "payload ends");
    // Bytes after the last layer (wrapper consistent).
    let mut bad = good.clone();
    bad.extend_from_slice(&[0; 4]);
    let len = (bad.len() - 84) as u64;
    bad[44..52].copy_from_slice(&len.to_le_bytes());
    reseal(&mut bad);
    check(&mut s, &bad, "after the last layer");

    // A resealed bit flip in the header (prefill_cap aside: any non-zero
    // chunk is accepted) or the row counts always fails; a token id may
    // flip to another valid id.
    let token_region = p + 52..p + 52 + 4 * 50;
    let counts = n_comp_at..n_comp_at + 8 * cfg.n_layer;
    let prefill_cap = header(3)..header(4);
    for at in (p..p + 52).chain(token_region.clone()).chain(counts) {
        if prefill_cap.contains(&at) {
            continue;
        }
        let mut bad = good.clone();
        bad[at] ^= 1 << (at % 8);
        reseal(&mut bad);
        let r = s.load_snapshot(&bad);
        assert!(
            r.is_err() || token_region.contains(&at),
            "bit flip at byte {at} accepted"
        );
        s = session_at(&b, &toks[..3], ctx);
    }
    // Anywhere else it loads or fails cleanly, never panics.
    let mut x = 12345u64;
    for _ in 0..100 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = p + (x >> 33) as usize % (good.len() - p);
        let mut bad = good.clone();
        bad[at] ^= 1 << ((x >> 29) & 7);
        reseal(&mut bad);
        let _ = session_at(&b, &toks[..3], ctx).load_snapshot(&bad);
    }

    // A context larger than the session's.
    let mut small = session_at(&b, &toks[..3], 100);
    check(&mut small, &good, "ctx_size");

    // And a file that is not there.
    let e = s
        .load_snapshot_file(std::path::Path::new("/nonexistent/x.snap"))
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x.snap"));
}

#[test]
fn snapshot_files_round_trip_and_a_larger_session_accepts_them() {
    let b = common::backend("small_hca16", 16);
    let (toks, _) = common::oracle("small_hca16");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.snap");
    session_at(&b, &toks[..70], 80)
        .save_snapshot(&path)
        .unwrap();
    let mut s = Session::new(b.clone(), toks.len());
    s.load_snapshot_file(&path).unwrap();
    assert_eq!(s.ctx(), toks.len());
    let want = straight(&b, &toks, toks.len());
    for (p, &t) in toks.iter().enumerate().skip(70) {
        assert_eq!(bits(s.decode(t).unwrap()), want[p]);
    }
    // An empty session has no checkpoint to save.
    assert!(matches!(
        Session::new(b.clone(), 10).snapshot(),
        Err(EngineError::NoLogits)
    ));
}
