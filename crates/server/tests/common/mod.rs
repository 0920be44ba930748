//! Shared test fixtures: a tiny random-weight model with the real V4
//! tokenizer (synthesized once per test binary), a scripted backend that
//! emits fixed text through the real tokenizer and DSML layer, an in-process
//! server on an ephemeral 127.0.0.1 port, and a blocking HTTP client.
#![allow(dead_code)] // each test binary uses a different part

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use engine::backend::{Prefilled, StateImage};
use engine::{Backend, CpuBackend, ModelIdentity};
use model::ModelConfig;
use text::Tokenizer;

/// Two layers at width 256 with Flash's 129280-token vocabulary (as
/// crates/ds4rs/tests/run_cli.rs).
const TINY: &str = r#"{"n_layer":2,"n_embd":256,"n_vocab":129280,"n_head":4,"head_dim":256,
"n_rot":64,"q_lora_rank":128,"o_lora_rank":128,"o_groups":2,"n_expert":8,"n_expert_used":3,
"n_ff_exp":256,"n_hash_layer":1,"sliding_window":32,"indexer_heads":4,"indexer_head_dim":128,
"indexer_top_k":8,"n_hc":4,"sinkhorn_iters":20,"compress_ratios":[0,4],
"swiglu_clamp":[10,10],"rope_base":10000,"compress_rope_base":160000,
"rope_scale_factor":16,"rope_orig_ctx":65536,"yarn_beta_fast":32,"yarn_beta_slow":1,
"expert_weights_scale":1.5,"rms_eps":1e-6,"hc_eps":1e-6,"context_length":1048576}"#;

/// The tiny model's path, written on first use.
pub fn tiny_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let out = dir.join("tiny.gguf");
        let cfg: ModelConfig = serde_json::from_str(TINY).unwrap();
        let mut meta = model::config::metadata_records(&cfg);
        meta.extend(
            model::convert::tokenizer::tokenizer_metadata(
                model::convert::tokenizer::V4_TOKENIZER_JSON,
            )
            .unwrap(),
        );
        model::synth::synth(&cfg, model::layout::Recipe::Q8_0, 3, meta, &out, &|_| {}).unwrap();
        out
    })
    .clone()
}

pub fn v4_tokenizer() -> Tokenizer {
    Tokenizer::from_tokenizer_json(model::convert::tokenizer::V4_TOKENIZER_JSON).unwrap()
}

/// A server over the tiny model; returns its base URL.
pub fn tiny_server(ctx: usize) -> String {
    let backend = Arc::new(CpuBackend::load(&tiny_model(), model::Options::default()).unwrap());
    let h = backend.file().header();
    let tok = engine::vocab::tokenizer(h).unwrap();
    let eos = engine::vocab::eos_id(h).unwrap();
    start(server::router(backend, tok, eos, server::Config::new(ctx)).unwrap())
}

/// A server over a [`Scripted`] backend answering every request with
/// `script`.
pub fn scripted_server(script: &str, config: server::Config) -> String {
    slow_scripted_server(script, config, Duration::ZERO)
}

/// As [`scripted_server`], with every prefill taking `delay`.
pub fn slow_scripted_server(script: &str, config: server::Config, delay: Duration) -> String {
    let tok = v4_tokenizer();
    let eos = tok.token_to_id("<｜end▁of▁sentence｜>").unwrap();
    let mut backend = Scripted::new(&tok, script, eos);
    backend.delay = delay;
    start(server::router(Arc::new(backend), tok, eos, config).unwrap())
}

/// A server over a [`Scripted`] backend with one script per assistant turn.
pub fn turns_server(scripts: &[&str], config: server::Config) -> String {
    let tok = v4_tokenizer();
    let eos = tok.token_to_id("<｜end▁of▁sentence｜>").unwrap();
    let backend = Scripted::turns(&tok, scripts, eos);
    start(server::router(Arc::new(backend), tok, eos, config).unwrap())
}

/// A server whose every prefill fails.
pub fn failing_server() -> String {
    let tok = v4_tokenizer();
    let mut backend = Scripted::new(&tok, "x", 1);
    backend.fail = true;
    start(server::router(Arc::new(backend), tok, 1, server::Config::new(256)).unwrap())
}

/// Serves `router` on an ephemeral 127.0.0.1 port from a background runtime.
pub fn start(router: axum::Router) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            server::serve(l, router).await.unwrap();
        });
    });
    format!("http://{addr}")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// A response's status, headers of interest and body.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `data:` payloads of an SSE body, with their `event:` names.
    pub fn events(&self) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        for block in self.body.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            out.push((name, data));
        }
        out
    }
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.expect("HTTP exchange");
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Reply {
        status: r.status().as_u16(),
        content_type,
        body: r.body_mut().read_to_string().unwrap(),
    }
}

pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call())
}

pub fn post(url: &str, body: &str) -> Reply {
    reply(
        agent()
            .post(url)
            .header("content-type", "application/json")
            .send(body),
    )
}

pub fn post_with(url: &str, body: &str, header: (&str, &str)) -> Reply {
    reply(agent().post(url).header(header.0, header.1).send(body))
}

/// A backend that answers every prompt with a fixed token sequence, then
/// EOS: one-hot logits on the script's next token, so any sampler picks it.
/// The script position counts from the prompt's end, found as the token
/// after the last `<｜Assistant｜>` (its `<think>` or `</think>`), so it does
/// not matter how the server splits the prompt into prefills and decodes.
/// Scripts are tokenized with special tokens recognised (`</think>` and the
/// DSML markers are single tokens), as the real model samples them.
///
/// With several scripts, the prompt's n-th assistant turn gets the n-th
/// (the last one repeats): an agent conversation's later turns can answer
/// differently from its first.
pub struct Scripted {
    cfg: ModelConfig,
    scripts: Vec<Vec<u32>>,
    eos: u32,
    assistant: u32,
    /// Time each prefill takes (a long prompt on a slow machine).
    pub delay: Duration,
    /// Time each decoded token takes.
    pub step: Duration,
    /// Every prefill fails (an engine error).
    pub fail: bool,
}

impl Scripted {
    pub fn new(tok: &Tokenizer, script: &str, eos: u32) -> Self {
        Self::turns(tok, &[script], eos)
    }

    /// One script per assistant turn.
    pub fn turns(tok: &Tokenizer, scripts: &[&str], eos: u32) -> Self {
        let mut cfg = ModelConfig::flash();
        cfg.n_vocab = tok.vocab_size();
        Scripted {
            cfg,
            scripts: scripts
                .iter()
                .map(|s| tok.encode_with_added_tokens(s))
                .collect(),
            eos,
            assistant: tok.token_to_id("<｜Assistant｜>").unwrap(),
            delay: Duration::ZERO,
            step: Duration::ZERO,
            fail: false,
        }
    }

    fn logits(&self, tokens: &[u32]) -> Vec<f32> {
        let mut l = vec![0.0; self.cfg.n_vocab];
        let start = tokens
            .iter()
            .rposition(|&t| t == self.assistant)
            .map_or(tokens.len(), |i| i + 2);
        let step = tokens.len().saturating_sub(start);
        let turn = tokens.iter().filter(|&&t| t == self.assistant).count();
        let script = &self.scripts[turn.saturating_sub(1).min(self.scripts.len() - 1)];
        l[*script.get(step).unwrap_or(&self.eos) as usize] = 100.0;
        l
    }
}

/// Tokens seen, context size.
#[derive(Clone)]
pub struct ScriptState(Vec<u32>, usize);

impl Backend for Scripted {
    type State = ScriptState;
    type Logits = Vec<f32>;
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    fn identity(&self) -> &ModelIdentity {
        &[0; 32]
    }
    fn device_name(&self) -> String {
        "scripted".into()
    }
    fn prefill_chunk(&self) -> usize {
        64
    }
    fn new_state(&self, ctx: usize) -> ScriptState {
        ScriptState(Vec::new(), ctx)
    }
    fn n_tokens(&self, st: &ScriptState) -> usize {
        st.0.len()
    }
    fn ctx(&self, st: &ScriptState) -> usize {
        st.1
    }
    fn prefill(
        &self,
        st: &mut ScriptState,
        tokens: &[u32],
        progress: &mut dyn FnMut(usize),
        _: &AtomicBool,
    ) -> engine::Result<Prefilled<Vec<f32>>> {
        std::thread::sleep(self.delay);
        if self.fail {
            return Err(engine::EngineError::StateMismatch(
                "scripted failure".into(),
            ));
        }
        st.0.extend_from_slice(tokens);
        progress(tokens.len());
        Ok(Prefilled {
            consumed: tokens.len(),
            logits: Some(self.logits(&st.0)),
        })
    }
    fn decode(&self, st: &mut ScriptState, token: u32) -> engine::Result<Vec<f32>> {
        std::thread::sleep(self.step);
        st.0.push(token);
        Ok(self.logits(&st.0))
    }
    fn logits_to_host<'l>(&self, logits: &'l Vec<f32>) -> engine::Result<Cow<'l, [f32]>> {
        Ok(Cow::Borrowed(logits))
    }
    fn logits_from_host(&self, logits: Vec<f32>) -> engine::Result<Vec<f32>> {
        Ok(logits)
    }
    fn export(&self, st: &ScriptState) -> engine::Result<StateImage> {
        Ok(StateImage {
            ctx: st.1,
            n_tokens: st.0.len(),
            layers: Vec::new(),
        })
    }
    fn import(&self, image: &StateImage) -> engine::Result<ScriptState> {
        Ok(ScriptState(vec![0; image.n_tokens], image.ctx))
    }
}
