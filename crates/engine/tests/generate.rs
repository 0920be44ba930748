//! The generation loop: stop tokens, stop strings across token boundaries,
//! reasoning/content split, cancellation, context end, and "DSML structure
//! greedy, payload sampled" driven through a scripted backend.

mod common;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use engine::backend::{Prefilled, StateImage};
use engine::{
    generate, Backend, EngineError, Event, Finish, GenerateOptions, ModelIdentity, Sampler,
    SamplerConfig, Session,
};
use model::ModelConfig;
use text::dsml;

static NO: AtomicBool = AtomicBool::new(false);

fn opts(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        stop_tokens: vec![],
        stop_strings: vec![],
        thinking: false,
        tools: false,
        logprobs: 0,
    }
}

fn greedy() -> Sampler {
    Sampler::new(SamplerConfig {
        temperature: 0.0,
        ..SamplerConfig::default()
    })
    .unwrap()
}

/// Runs a generation on the flash_mini fixture; returns the result, the
/// token events and the concatenated (reasoning, content).
fn run(
    o: &GenerateOptions,
    ctx: usize,
    cancel_after: Option<usize>,
) -> (engine::Generation, Vec<u32>, String, String) {
    let b = common::backend("flash_mini", 8);
    let (toks, _) = common::oracle("flash_mini");
    let tok = common::byte_tokenizer();
    let mut s = Session::new(b, ctx);
    let cancel = AtomicBool::new(false);
    let (mut ids, mut reasoning, mut content) = (Vec::new(), String::new(), String::new());
    let g = generate(
        &mut s,
        &tok,
        &toks[..20],
        o,
        &mut greedy(),
        &mut |_, _| {},
        &mut |e| match e {
            Event::Token(t) => {
                ids.push(t.id);
                if Some(ids.len()) == cancel_after {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
            Event::Text(dsml::Event::Reasoning(r)) => reasoning += &r,
            Event::Text(dsml::Event::Content(c)) => content += &c,
            Event::Text(other) => panic!("unexpected {other:?}"),
        },
        &cancel,
    )
    .unwrap();
    (g, ids, reasoning, content)
}

#[test]
fn stop_tokens_stop_strings_and_the_reasoning_split() {
    let (base, ids, r, text) = run(&opts(60), 100, None);
    assert_eq!(base.finish, Finish::Length);
    assert_eq!(ids, base.tokens);
    assert!(r.is_empty());
    let tok = common::byte_tokenizer();
    assert_eq!(
        text,
        String::from_utf8_lossy(&tok.decode(&base.tokens)).into_owned()
    );

    // A stop token: generation ends before it, the token not reported.
    let k = 17;
    let first = base
        .tokens
        .iter()
        .position(|&t| t == base.tokens[k])
        .unwrap();
    let mut o = opts(60);
    o.stop_tokens = vec![base.tokens[k]];
    let (g, ids, _, _) = run(&o, 100, None);
    assert_eq!(g.finish, Finish::Stop);
    assert_eq!(g.tokens, base.tokens[..first]);
    assert_eq!(ids, g.tokens);

    // A stop string spanning several tokens: text cut before it.
    let chars: Vec<char> = text.chars().collect();
    let stop: String = chars[30..33].iter().collect();
    let at = text.find(&stop).unwrap();
    let mut o = opts(60);
    o.stop_strings = vec![stop.clone(), String::new()];
    let (g, _, _, content) = run(&o, 100, None);
    assert_eq!(g.finish, Finish::StopString);
    assert_eq!(content, text[..at], "stop {stop:?}");

    // Thinking mode: output without `</think>` is all reasoning.
    let mut o = opts(60);
    o.thinking = true;
    let (g, _, reasoning, content) = run(&o, 100, None);
    assert_eq!(g.tokens, base.tokens);
    assert_eq!((reasoning, content), (text, String::new()));
}

#[test]
fn cancellation_and_context_end() {
    let (g, ids, _, _) = run(&opts(60), 100, Some(3));
    assert_eq!(g.finish, Finish::Cancelled);
    assert_eq!((g.tokens.len(), ids.len()), (3, 3));
    // ctx 25 after a 20-token prompt: 5 decodes, and a sixth token sampled
    // from the last logits the context can hold.
    let (g, _, _, _) = run(&opts(60), 25, None);
    assert_eq!(g.finish, Finish::ContextFull);
    assert_eq!(g.tokens.len(), 6);
    let b = common::backend("flash_mini", 8);
    let mut s = Session::new(b, 10);
    let e = generate(
        &mut s,
        &common::byte_tokenizer(),
        &[1; 11],
        &opts(1),
        &mut greedy(),
        &mut |_, _| {},
        &mut |_| {},
        &NO,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        EngineError::PromptTooLong {
            tokens: 11,
            ctx: 10
        }
    ));
}

/// How the scripted backend shapes one position's logits.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Part {
    /// Only the scripted byte is plausible.
    Fixed,
    /// A close second ('Z') is plausible: only greedy sampling avoids it.
    Greedy,
    /// Same close second; sampled normally, so 'Z' comes out at times.
    Payload,
}

/// A backend whose logits follow a script, one byte token per position.
struct Scripted {
    cfg: ModelConfig,
    identity: ModelIdentity,
    script: Vec<(u8, Part)>,
}

impl Scripted {
    fn logits(&self, n: usize) -> Vec<f32> {
        let mut l = vec![0.0; self.cfg.n_vocab];
        // Position n-1 is the prompt's single token; script[i] follows at n = i + 1.
        if let Some(&(b, part)) = self.script.get(n - 1) {
            l[b as usize] = 30.0;
            if part != Part::Fixed {
                l[b as usize] = 5.0;
                l[b'Z' as usize] = 4.9;
            }
        }
        l
    }
}

impl Backend for Scripted {
    type State = (Vec<u32>, usize);
    type Logits = Vec<f32>;
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }
    fn device_name(&self) -> String {
        "scripted".into()
    }
    fn prefill_chunk(&self) -> usize {
        4
    }
    fn new_state(&self, ctx: usize) -> Self::State {
        (Vec::new(), ctx)
    }
    fn n_tokens(&self, st: &Self::State) -> usize {
        st.0.len()
    }
    fn ctx(&self, st: &Self::State) -> usize {
        st.1
    }
    fn prefill(
        &self,
        st: &mut Self::State,
        tokens: &[u32],
        progress: &mut dyn FnMut(usize),
        _: &AtomicBool,
    ) -> engine::Result<Prefilled<Vec<f32>>> {
        st.0.extend_from_slice(tokens);
        progress(tokens.len());
        Ok(Prefilled {
            consumed: tokens.len(),
            logits: Some(self.logits(st.0.len())),
        })
    }
    fn decode(&self, st: &mut Self::State, token: u32) -> engine::Result<Vec<f32>> {
        st.0.push(token);
        Ok(self.logits(st.0.len()))
    }
    fn logits_to_host<'l>(&self, logits: &'l Vec<f32>) -> engine::Result<Cow<'l, [f32]>> {
        Ok(Cow::Borrowed(logits))
    }
    fn logits_from_host(&self, logits: Vec<f32>) -> engine::Result<Vec<f32>> {
        Ok(logits)
    }
    fn export(&self, st: &Self::State) -> engine::Result<StateImage> {
        Ok(StateImage {
            ctx: st.1,
            n_tokens: st.0.len(),
            layers: Vec::new(),
        })
    }
    fn import(&self, _: &StateImage) -> engine::Result<Self::State> {
        Err(EngineError::StateMismatch("scripted backend".into()))
    }
}

#[test]
fn dsml_structure_is_greedy_and_payload_is_sampled() {
    use Part::*;
    let segments = [
        (Fixed, "Sure.\n\n<｜DSML｜tool_calls>"),
        (
            Greedy,
            "\n<｜DSML｜invoke name=\"get\">\n<｜DSML｜parameter name=\"city\" string=\"true\">",
        ),
        (Payload, "abcdefghij"),
        // `</` of the closing tag is still sampled normally (§10.7).
        (Fixed, "</"),
        (
            Greedy,
            "｜DSML｜parameter>\n<｜DSML｜parameter name=\"opts\" string=\"false\">{\"",
        ),
        (Payload, "klmnopqr"),
        // The closing quote is read inside the JSON string.
        (Fixed, "\""),
        (
            Greedy,
            "}</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
        ),
    ];
    let script: Vec<(u8, Part)> = segments
        .iter()
        .flat_map(|&(p, s)| s.bytes().map(move |b| (b, p)))
        .collect();
    let cfg = common::backend("flash_mini", 8).config().clone();
    let b = Arc::new(Scripted {
        cfg,
        identity: [0; 32],
        script: script.clone(),
    });
    let tok = common::byte_tokenizer();
    let mut zs = 0;
    for seed in 0..6 {
        let mut s = Session::new(b.clone(), 1000);
        let mut sampler = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            min_p: 0.0,
            seed,
        })
        .unwrap();
        let mut o = opts(1000);
        o.tools = true;
        let mut infos = Vec::new();
        let mut text_events = Vec::new();
        let g = generate(
            &mut s,
            &tok,
            &[0],
            &o,
            &mut sampler,
            &mut |_, _| {},
            &mut |e| match e {
                Event::Token(t) => infos.push(t),
                Event::Text(e) => text_events.push(e),
            },
            &NO,
        )
        .unwrap();
        assert_eq!(g.finish, Finish::ToolCalls, "seed {seed}");
        assert_eq!(infos.len(), script.len());
        for (i, (info, &(want, part))) in infos.iter().zip(&script).enumerate() {
            assert_eq!(info.greedy, part == Greedy, "seed {seed} byte {i} {part:?}");
            match part {
                Fixed | Greedy => assert_eq!(info.id, u32::from(want), "byte {i}"),
                Payload => {
                    assert!(info.id == u32::from(want) || info.id == u32::from(b'Z'));
                    zs += usize::from(info.id == u32::from(b'Z'));
                }
            }
        }
        let content: String = text_events
            .iter()
            .filter_map(|e| match e {
                dsml::Event::Content(c) => Some(c.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(content, "Sure.");
        assert!(text_events.contains(&dsml::Event::ToolCallStart {
            index: 0,
            name: "get".into()
        }));
        assert!(matches!(
            text_events.last(),
            Some(dsml::Event::ToolCallsEnd { .. })
        ));
    }
    // 6 runs x 18 payload bytes at P('Z') ~ 0.48: payload really is sampled.
    assert!(zs > 10, "{zs} sampled payload bytes");
}
