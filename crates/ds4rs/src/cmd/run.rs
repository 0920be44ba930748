//! `ds4rs run`: one-shot chat generation from `-p TEXT` or `--prompt-file`,
//! the interactive REPL without a prompt (programs-and-tests.md §1), plus
//! the `--dump-tokens` and `--dump-logprobs` diagnostics. Generated text goes to stdout, reasoning
//! apart from the answer (dim on a terminal, tags hidden); progress and the
//! stats line go to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use engine::sampler::Pick;
use engine::{generate, vocab, Backend, GenerateOptions, Sampler, SamplerConfig, Session};
use gguf::GgufFile;
use serde_json::json;
use text::render::{render, Message, RenderOptions, Role, Thinking};
use text::Tokenizer;

mod output;
mod repl;

use output::{print_stats, Printer, Progress};

use super::backend::{with_backend, BackendKind, WithBackend};

/// A prompt starting with this is an already rendered chat (§1.3).
const BOS: &str = "<｜begin▁of▁sentence｜>";

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model (`ds4rs pull q2` downloads one).
    #[arg(short = 'm', long, default_value = "ds4flash.gguf")]
    pub model: PathBuf,
    /// The user prompt (one-shot; without a prompt, interactive chat). Text
    /// starting with the BOS marker is used as an already rendered chat.
    #[arg(short = 'p', long, conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// System text; empty for none.
    #[arg(long, default_value = "You are a helpful assistant")]
    pub system: String,
    /// Most tokens to generate.
    #[arg(short = 'n', long = "tokens", default_value_t = 50000)]
    pub tokens: usize,
    /// Context size of the session.
    #[arg(short = 'c', long, default_value_t = 32768)]
    pub ctx: usize,
    /// Temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temp: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 is off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Keeps tokens with p >= min_p * p_max.
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Sampling seed; default from the clock and the process id.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Answer without reasoning.
    #[arg(long, conflicts_with = "think_max")]
    pub nothink: bool,
    /// Maximum reasoning effort (needs --ctx >= 393216, else normal thinking).
    #[arg(long)]
    pub think_max: bool,
    /// Backend: auto (CUDA when built with it and usable, else CPU), cpu or cuda.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendKind,
    /// Worker threads; default all cores.
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Print the prompt's tokens and exit (no inference).
    #[arg(long)]
    pub dump_tokens: bool,
    /// Greedy continuation with the top alternatives per step, as JSON.
    #[arg(long, value_name = "FILE")]
    pub dump_logprobs: Option<PathBuf>,
    /// Alternatives per step for --dump-logprobs (at most 128).
    #[arg(long, default_value_t = 20)]
    pub logprobs_top_k: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("--prompt-file: reading {}", f.display()))?,
        ),
        (None, None) => None,
    };
    if !args.model.exists() {
        bail!(
            "model {} not found. Download DeepSeek V4 Flash with `ds4rs pull q2` \
             (about 81 GiB), or write a random-weight test model (it prints noise) with \
             `ds4rs synth --shape flash --layers 1 --out {}` (3.4 GiB, seconds); choose another file with -m",
            args.model.display(),
            args.model.display()
        );
    }
    if args.dump_tokens {
        let Some(prompt) = &prompt else {
            bail!("--dump-tokens requires -p or --prompt-file");
        };
        let file = GgufFile::open(&args.model)
            .with_context(|| format!("reading {}", args.model.display()))?;
        let tok = vocab::tokenizer(file.header())
            .with_context(|| format!("tokenizer of {}", args.model.display()))?;
        return dump_tokens(&tok, prompt);
    }
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("--threads: starting the thread pool")?;
    }
    let ctx = args.ctx;
    let model = args.model.clone();
    with_backend(args.backend, &model, ctx, Chat { args, prompt })
}

/// The chat itself, over whichever backend `--backend` loaded.
struct Chat {
    args: Args,
    prompt: Option<String>,
}

impl WithBackend for Chat {
    type Output = ();

    fn run<B: Backend + 'static>(
        self,
        backend: Arc<B>,
        tok: Tokenizer,
        eos: u32,
    ) -> anyhow::Result<()> {
        chat(backend, tok, eos, self.args, self.prompt)
    }
}

fn chat<B: Backend + 'static>(
    backend: Arc<B>,
    tok: Tokenizer,
    eos: u32,
    args: Args,
    prompt: Option<String>,
) -> anyhow::Result<()> {
    let requested = if args.nothink {
        Thinking::Off
    } else if args.think_max {
        Thinking::Max
    } else {
        Thinking::High
    };
    let sampler = SamplerConfig {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        seed: args.seed.unwrap_or_else(clock_seed),
    };
    sampler
        .validate()
        .context("--temp/--top-k/--top-p/--min-p")?;
    let Some(prompt) = prompt else {
        if args.dump_logprobs.is_some() {
            bail!("--dump-logprobs requires -p or --prompt-file");
        }
        return repl::Repl::new(backend, tok, eos, &args, requested, sampler)?.run();
    };

    let options = RenderOptions {
        thinking: requested,
        context_size: Some(args.ctx as u64),
    };
    let thinking = options.resolved_thinking();
    if requested == Thinking::Max && thinking != Thinking::Max {
        warn_think_max(args.ctx);
    }
    let tokens = if prompt.starts_with(BOS) {
        tok.encode_with_added_tokens(&prompt)
    } else {
        let mut messages = Vec::new();
        if !args.system.is_empty() {
            messages.push(Message::new(Role::System, args.system.as_str()));
        }
        messages.push(Message::new(Role::User, prompt.as_str()));
        render(&messages, &[], &options)
            .and_then(|r| r.token_ids(&tok))
            .context("rendering the prompt")?
    };
    if tokens.is_empty() || tokens.len() >= args.ctx {
        bail!(
            "prompt of {} tokens is empty or does not fit --ctx {}",
            tokens.len(),
            args.ctx
        );
    }
    let mut session = Session::new(backend.clone(), args.ctx);
    if let Some(out) = &args.dump_logprobs {
        return dump_logprobs(&mut session, &tok, &tokens, eos, &args, out);
    }
    let opts = GenerateOptions {
        max_tokens: args.tokens.min(args.ctx - tokens.len() - 1),
        stop_tokens: vec![eos],
        stop_strings: Vec::new(),
        thinking: thinking != Thinking::Off,
        tools: false,
        logprobs: 0,
    };
    let mut printer = Printer::new();
    let mut progress = Progress::new();
    let g = generate(
        &mut session,
        &tok,
        &tokens,
        &opts,
        &mut Sampler::new(sampler)?,
        &mut |done, total| progress.update(done, total),
        &mut |e| printer.event(e),
        &AtomicBool::new(false),
    )
    .context("generation failed")?;
    printer.finish();
    print_stats(&g.stats);
    Ok(())
}

/// The downgrade warning of programs-and-tests.md §1.2.
fn warn_think_max(ctx: usize) {
    eprintln!(
        "ds4rs: warning: --think-max needs --ctx >= {}; ctx={ctx} uses normal thinking instead",
        text::render::THINK_MAX_MIN_CONTEXT
    );
}

/// Unreproducible default seed (§0.6): clock and process id.
fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// `--dump-tokens` (§1.7.1): the ids, then one line per token.
fn dump_tokens(tok: &Tokenizer, prompt: &str) -> anyhow::Result<()> {
    let ids = tok.encode_with_added_tokens(prompt);
    let mut out = std::io::stdout().lock();
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    writeln!(out, "[{}]", list.join(", "))?;
    for &id in &ids {
        write!(out, "{id:>6}  ")?;
        out.write_all(tok.token_bytes(id).unwrap_or_default())?;
        writeln!(out)?;
    }
    Ok(())
}

/// A token as the logprob dump spells it: text (bytes as Latin-1 when not
/// UTF-8, so they show as `\u00XX`) and the authoritative bytes.
fn token_json(tok: &Tokenizer, id: u32) -> serde_json::Value {
    let bytes = tok.token_bytes(id).unwrap_or_default();
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    };
    json!({"id": id, "text": text, "bytes": bytes})
}

/// `--dump-logprobs` (§1.7.2): greedy steps with the top alternatives.
fn dump_logprobs<B: Backend>(
    session: &mut Session<B>,
    tok: &Tokenizer,
    prompt: &[u32],
    eos: u32,
    args: &Args,
    out: &Path,
) -> anyhow::Result<()> {
    let k = args.logprobs_top_k.min(128);
    let mut progress = Progress::new();
    session
        .prefill(
            prompt,
            &mut |d, t| progress.update(d, t),
            &AtomicBool::new(false),
        )
        .context("prompt processing failed")?;
    let n = args.tokens.min(args.ctx - prompt.len() - 1);
    let mut steps = Vec::new();
    for step in 0..n {
        let top = session.top_logits(None, k)?;
        let id = session.pick(&Pick::Greedy)?;
        let alts: Vec<_> = top
            .top
            .iter()
            .map(|&(t, logit)| {
                json!({"token": token_json(tok, t), "logit": logit, "logprob": logit - top.lse})
            })
            .collect();
        steps.push(json!({"step": step, "selected": token_json(tok, id), "top_logprobs": alts}));
        if id == eos {
            break;
        }
        session.decode(id).context("decode failed")?;
    }
    let doc = json!({
        "source": "ds4rs",
        "prompt_tokens": prompt.len(),
        "ctx": args.ctx,
        "top_k": k,
        "steps": steps,
    });
    std::fs::write(out, serde_json::to_vec(&doc)?)
        .with_context(|| format!("--dump-logprobs: writing {}", out.display()))
}
