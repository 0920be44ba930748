//! The engine against the oracle's exact-mode logits (QAT round trips off):
//! session logits at every position within 1e-5, and greedy generation
//! picking the oracle's argmax at every prefix.

mod common;

use std::sync::atomic::AtomicBool;

use engine::sampler::argmax;
use engine::{generate, Backend, Event, Finish, GenerateOptions, Sampler, SamplerConfig, Session};

const CONFIGS: [&str; 2] = ["flash_mini", "small_hca16"];

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig {
        temperature: 0.0,
        ..SamplerConfig::default()
    })
    .unwrap()
}

#[test]
fn session_logits_match_the_oracle_at_every_position() {
    let no = AtomicBool::new(false);
    for config in CONFIGS {
        let (toks, want) = common::oracle(config);
        for chunk in [1, 7, 64] {
            let b = common::backend(config, chunk);
            let nv = b.config().n_vocab;
            let mut s = Session::new(b, toks.len());
            // Prefill of a first part, then one decode step per token.
            let split = 37;
            let mut calls = 0;
            assert_eq!(
                s.prefill(&toks[..split], &mut |_, _| calls += 1, &no)
                    .unwrap(),
                split
            );
            assert_eq!(calls, split.div_ceil(chunk));
            let r = common::rel(&s.logits().unwrap(), &want[(split - 1) * nv..split * nv]);
            assert!(r <= 1e-5, "{config} chunk {chunk}: prefill {r:.2e}");
            for (p, &t) in toks.iter().enumerate().skip(split) {
                let got = s.decode(t).unwrap();
                let r = common::rel(got, &want[p * nv..(p + 1) * nv]);
                assert!(r <= 1e-5, "{config} chunk {chunk}: position {p}: {r:.2e}");
            }
        }
    }
}

#[test]
fn greedy_generation_picks_the_oracle_argmax_at_every_prefix() {
    let no = AtomicBool::new(false);
    let tok = common::byte_tokenizer();
    for config in CONFIGS {
        let (toks, want) = common::oracle(config);
        let b = common::backend(config, 16);
        let nv = b.config().n_vocab;
        let mut s = Session::new(b, toks.len() + 1);
        let opts = GenerateOptions {
            max_tokens: 1,
            stop_tokens: vec![],
            stop_strings: vec![],
            thinking: false,
            tools: false,
            logprobs: 0,
        };
        for p in 1..=toks.len() {
            let g = generate(
                &mut s,
                &tok,
                &toks[..p],
                &opts,
                &mut greedy(),
                &mut |_, _| {},
                &mut |_| {},
                &no,
            )
            .unwrap();
            let oracle = argmax(&want[(p - 1) * nv..p * nv]);
            assert_eq!(g.tokens, vec![oracle], "{config}: prefix {p}");
            assert_eq!(g.finish, Finish::Length);
            // The session reused everything before: one new token per step.
            assert_eq!(g.stats.prompt_tokens, 1);
        }
    }
}

#[test]
fn free_running_greedy_generation_equals_a_manual_argmax_loop() {
    let no = AtomicBool::new(false);
    let tok = common::byte_tokenizer();
    let (toks, _) = common::oracle("flash_mini");
    let prompt = &toks[..20];
    let b = common::backend("flash_mini", 8);
    let n = 40;
    // Reference: the session API by hand, argmax each step.
    let mut s = Session::new(b.clone(), 64);
    s.prefill(prompt, &mut |_, _| {}, &no).unwrap();
    let mut manual = Vec::new();
    for _ in 0..n {
        let t = argmax(&s.logits().unwrap());
        manual.push(t);
        s.decode(t).unwrap();
    }
    let mut s = Session::new(b, 64);
    let mut streamed = Vec::new();
    let g = generate(
        &mut s,
        &tok,
        prompt,
        &GenerateOptions {
            max_tokens: n,
            stop_tokens: vec![],
            stop_strings: vec![],
            thinking: false,
            tools: false,
            logprobs: 3,
        },
        &mut greedy(),
        &mut |_, _| {},
        &mut |e| {
            if let Event::Token(t) = e {
                assert_eq!(t.top.len(), 3);
                assert_eq!(t.top[0].0, t.id, "greedy token is the top alternative");
                assert_eq!(t.logprob, Some(t.top[0].1));
                streamed.push(t.id);
            }
        },
        &no,
    )
    .unwrap();
    assert_eq!(g.tokens, manual);
    assert_eq!(streamed, manual);
    assert_eq!(g.finish, Finish::Length);
    assert_eq!(g.stats.prompt_tokens, 20);
    assert_eq!(g.stats.generated_tokens, n);
    // The last sampled token is not evaluated: nothing reads its logits.
    assert_eq!(s.len(), 20 + n - 1);
}
