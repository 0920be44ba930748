//! Logits stay in the backend: the generation loop asks it for the next
//! token and for log-probabilities, never for the whole vector, and gives
//! the same tokens and log-probabilities as the host sampler did before the
//! logits became lazy (the expected values below were recorded with the
//! previous loop, which sampled `Session::logits()` on the host).

mod common;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use engine::backend::{Prefilled, StateImage};
use engine::sampler::{Pick, TopLogits};
use engine::{
    generate, Backend, CpuBackend, Event, GenerateOptions, ModelIdentity, Sampler, SamplerConfig,
    Session,
};
use model::ModelConfig;

/// (temperature, top_k, top_p, min_p) of the recorded runs.
const CONFIGS: [(f32, usize, f32, f32); 7] = [
    (1.0, 0, 1.0, 0.05),
    (0.7, 40, 1.0, 0.0),
    (1.5, 0, 0.9, 0.0),
    (1.0, 1000, 1.0, 0.0),
    (1.0, 1, 1.0, 0.05),
    (0.0, 0, 1.0, 0.05),
    (1.2, 5, 0.8, 0.1),
];

/// (config, seed, tokens, FNV-1a of every token's logprob and top-3 bits)
/// of 24 tokens after the flash_mini oracle prompt's first 12 tokens.
#[rustfmt::skip]
const RECORDED: [(usize, u64, &[u32], u64); 21] = [
    (0, 0, &[112, 174, 148, 3, 227, 92, 13, 234, 59, 18, 152, 51, 44, 189, 132, 168, 148, 44, 158, 199, 18, 98, 114, 39], 0xc3ba3850647fbd90),
    (0, 7, &[234, 74, 89, 113, 242, 104, 3, 3, 30, 155, 113, 215, 142, 213, 36, 234, 24, 241, 205, 1, 114, 72, 189, 227], 0x50c50c10e7b36ef4),
    (0, 12345, &[234, 34, 2, 164, 172, 94, 149, 225, 81, 149, 64, 117, 202, 71, 114, 120, 215, 41, 174, 242, 142, 213, 225, 224], 0x20321ccf0bf5b1b),
    (1, 0, &[224, 61, 231, 157, 43, 221, 162, 176, 175, 17, 174, 43, 221, 3, 114, 180, 65, 171, 19, 222, 69, 4, 171, 110], 0xbfcd1635f4b1fde7),
    (1, 7, &[234, 138, 160, 113, 105, 203, 154, 160, 234, 75, 228, 113, 200, 203, 154, 160, 132, 49, 154, 160, 234, 175, 173, 167], 0xb9bd9e4d0db3d0da),
    (1, 12345, &[234, 34, 188, 10, 148, 3, 148, 13, 202, 90, 187, 189, 234, 175, 17, 124, 113, 171, 17, 124, 114, 13, 13, 224], 0x2fcbaf45885dc250),
    (2, 0, &[17, 55, 76, 201, 143, 174, 44, 196, 24, 6, 190, 129, 10, 19, 188, 63, 102, 172, 172, 246, 58, 196, 204, 130], 0x90d3afd8324a9251),
    (2, 7, &[87, 174, 23, 70, 214, 205, 150, 105, 201, 16, 143, 155, 158, 107, 134, 138, 122, 223, 24, 201, 147, 4, 48, 87], 0xe01857f6b801d86a),
    (2, 12345, &[234, 138, 182, 98, 101, 6, 134, 16, 210, 222, 227, 138, 168, 34, 219, 48, 214, 178, 109, 0, 199, 134, 21, 111], 0x6b303a33f5452b81),
    (3, 0, &[3, 148, 181, 113, 38, 125, 112, 205, 225, 236, 13, 67, 98, 102, 192, 7, 213, 53, 158, 127, 199, 203, 154, 16], 0xb8dc656d07a30bf5),
    (3, 7, &[234, 188, 168, 170, 223, 110, 136, 242, 220, 225, 224, 42, 180, 160, 201, 161, 236, 176, 33, 167, 84, 228, 19, 43], 0xec8765903c84572f),
    (3, 12345, &[234, 34, 135, 112, 218, 237, 112, 16, 102, 135, 49, 20, 102, 6, 148, 157, 102, 81, 121, 222, 154, 112, 243, 104], 0x969f3bee6870ef10),
    (4, 0, &[234, 34, 175, 84, 27, 168, 122, 47, 102, 122, 13, 202, 100, 198, 90, 189, 237, 255, 231, 20, 74, 200, 178, 129], 0x1c3b6198c7d060d5),
    (4, 7, &[234, 34, 175, 84, 27, 168, 122, 47, 102, 122, 13, 202, 100, 198, 90, 189, 237, 255, 231, 20, 74, 200, 178, 129], 0x1c3b6198c7d060d5),
    (4, 12345, &[234, 34, 175, 84, 27, 168, 122, 47, 102, 122, 13, 202, 100, 198, 90, 189, 237, 255, 231, 20, 74, 200, 178, 129], 0x1c3b6198c7d060d5),
    (5, 0, &[234, 34, 175, 84, 27, 168, 122, 47, 102, 122, 13, 202, 100, 198, 90, 189, 237, 255, 231, 20, 74, 200, 178, 129], 0x1c3b6198c7d060d5),
    (5, 7, &[234, 34, 175, 84, 27, 168, 122, 47, 102, 122, 13, 202, 100, 198, 90, 189, 237, 255, 231, 20, 74, 200, 178, 129], 0x1c3b6198c7d060d5),
    (5, 12345, &[234, 34, 175, 84, 27, 168, 122, 47, 102, 122, 13, 202, 100, 198, 90, 189, 237, 255, 231, 20, 74, 200, 178, 129], 0x1c3b6198c7d060d5),
    (6, 0, &[87, 174, 234, 73, 167, 13, 8, 154, 236, 164, 221, 191, 84, 236, 215, 142, 157, 62, 125, 111, 17, 160, 10, 113], 0x2bfe2131ab212b28),
    (6, 7, &[234, 34, 74, 47, 102, 186, 35, 234, 207, 189, 237, 255, 231, 39, 189, 246, 129, 6, 69, 149, 3, 175, 180, 105], 0xff2d7d322ae9f872),
    (6, 12345, &[234, 34, 74, 218, 129, 150, 34, 183, 112, 69, 238, 129, 234, 102, 198, 198, 198, 209, 111, 201, 237, 111, 236, 89], 0x56cabe7a47387840),
];

/// Logits the test cannot read directly, as on a device: the backend
/// answers `pick` and `top_logits` itself and counts whole-vector copies.
#[derive(Clone)]
struct Opaque(Vec<f32>);

struct DeviceLike {
    cpu: Arc<CpuBackend>,
    to_host: AtomicUsize,
}

impl Backend for DeviceLike {
    type State = <CpuBackend as Backend>::State;
    type Logits = Opaque;
    fn config(&self) -> &ModelConfig {
        self.cpu.config()
    }
    fn identity(&self) -> &ModelIdentity {
        self.cpu.identity()
    }
    fn device_name(&self) -> String {
        "device-like".into()
    }
    fn prefill_chunk(&self) -> usize {
        self.cpu.prefill_chunk()
    }
    fn new_state(&self, ctx: usize) -> Self::State {
        self.cpu.new_state(ctx)
    }
    fn n_tokens(&self, st: &Self::State) -> usize {
        self.cpu.n_tokens(st)
    }
    fn ctx(&self, st: &Self::State) -> usize {
        self.cpu.ctx(st)
    }
    fn prefill(
        &self,
        st: &mut Self::State,
        tokens: &[u32],
        progress: &mut dyn FnMut(usize),
        cancel: &AtomicBool,
    ) -> engine::Result<Prefilled<Opaque>> {
        let p = self.cpu.prefill(st, tokens, progress, cancel)?;
        Ok(Prefilled {
            consumed: p.consumed,
            logits: p.logits.map(Opaque),
        })
    }
    fn decode(&self, st: &mut Self::State, token: u32) -> engine::Result<Opaque> {
        self.cpu.decode(st, token).map(Opaque)
    }
    fn logits_to_host<'l>(&self, logits: &'l Opaque) -> engine::Result<Cow<'l, [f32]>> {
        self.to_host.fetch_add(1, Ordering::Relaxed);
        Ok(Cow::Owned(logits.0.clone()))
    }
    fn logits_from_host(&self, logits: Vec<f32>) -> engine::Result<Opaque> {
        Ok(Opaque(logits))
    }
    fn pick(&self, logits: &Opaque, pick: &Pick) -> engine::Result<u32> {
        Ok(engine::sampler::pick(&logits.0, pick))
    }
    fn top_logits(
        &self,
        logits: &Opaque,
        token: Option<u32>,
        n: usize,
    ) -> engine::Result<TopLogits> {
        Ok(engine::sampler::top_logits(&logits.0, token, n))
    }
    fn export(&self, st: &Self::State) -> engine::Result<StateImage> {
        self.cpu.export(st)
    }
    fn import(&self, image: &StateImage) -> engine::Result<Self::State> {
        self.cpu.import(image)
    }
}

/// Runs every recorded configuration on `backend`; returns (config, seed,
/// tokens, hash) per run.
fn runs<B: Backend>(backend: Arc<B>) -> Vec<(usize, u64, Vec<u32>, u64)> {
    let (toks, _) = common::oracle("flash_mini");
    let tok = common::byte_tokenizer();
    let mut out = Vec::new();
    for (ci, &(temperature, top_k, top_p, min_p)) in CONFIGS.iter().enumerate() {
        for seed in [0u64, 7, 12345] {
            let mut s = Session::new(backend.clone(), 64);
            let mut sampler = Sampler::new(SamplerConfig {
                temperature,
                top_k,
                top_p,
                min_p,
                seed,
            })
            .unwrap();
            let o = GenerateOptions {
                max_tokens: 24,
                stop_tokens: vec![],
                stop_strings: vec![],
                thinking: false,
                tools: false,
                logprobs: 3,
            };
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            let mut mix = |x: u64| {
                h ^= x;
                h = h.wrapping_mul(0x100_0000_01b3);
            };
            let g = generate(
                &mut s,
                &tok,
                &toks[..12],
                &o,
                &mut sampler,
                &mut |_, _| {},
                &mut |e| {
                    if let Event::Token(t) = e {
                        mix(u64::from(t.logprob.unwrap().to_bits()));
                        for (i, l) in t.top {
                            mix(u64::from(i));
                            mix(u64::from(l.to_bits()));
                        }
                    }
                },
                &AtomicBool::new(false),
            )
            .unwrap();
            out.push((ci, seed, g.tokens, h));
        }
    }
    out
}

fn recorded() -> Vec<(usize, u64, Vec<u32>, u64)> {
    RECORDED
        .iter()
        .map(|&(c, s, t, h)| (c, s, t.to_vec(), h))
        .collect()
}

#[test]
fn cpu_generation_gives_the_recorded_tokens_and_logprobs() {
    assert_eq!(runs(common::backend("flash_mini", 8)), recorded());
}

#[test]
fn generation_never_copies_the_whole_logits_vector() {
    let b = Arc::new(DeviceLike {
        cpu: common::backend("flash_mini", 8),
        to_host: AtomicUsize::new(0),
    });
    assert_eq!(runs(b.clone()), recorded());
    assert_eq!(b.to_host.load(Ordering::Relaxed), 0);
    // Reading the vector is still possible, and counted.
    let mut s = Session::new(b.clone(), 64);
    s.prefill(&[1, 2, 3], &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap();
    let host = s.logits().unwrap().into_owned();
    assert_eq!(b.to_host.load(Ordering::Relaxed), 1);
    assert_eq!(
        s.pick(&Pick::Greedy).unwrap(),
        engine::sampler::argmax(&host)
    );
    let t = s.top_logits(Some(5), 4).unwrap();
    assert_eq!(t, engine::sampler::top_logits(&host, Some(5), 4));
}
