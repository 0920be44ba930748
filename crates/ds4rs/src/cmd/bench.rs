//! `ds4rs bench`: ds4-bench's throughput at context frontiers
//! (programs-and-tests.md §3). One session grows frontier by frontier: the
//! suffix up to each frontier is prefilled (timed), the session is
//! snapshotted in memory (untimed), `--gen-tokens` greedy steps that never
//! pick EOS are decoded (timed) and the snapshot is restored, so the next
//! prefill continues from exactly the frontier. One CSV row per frontier,
//! ds4's columns plus the device name.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use engine::sampler::Pick;
use engine::{vocab, Backend, Session};
use gguf::GgufFile;

use super::backend::{with_backend, BackendKind, WithBackend};

#[derive(clap::Args)]
pub struct Args {
    #[arg(short = 'm', long, default_value = "ds4flash.gguf")]
    pub model: PathBuf,
    /// Raw text, tokenized without BOS or template.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// The file rendered as one non-thinking chat user message.
    #[arg(long)]
    pub chat_prompt_file: Option<PathBuf>,
    #[arg(
        long = "system",
        short = 's',
        default_value = "You are a helpful assistant."
    )]
    pub system: String,
    /// Token ids drawn uniformly from the vocabulary with this seed instead
    /// of a prompt file (synthetic models: random weights, random tokens).
    #[arg(long)]
    pub random_tokens: Option<u64>,
    #[arg(long, default_value_t = 2048)]
    pub ctx_start: usize,
    #[arg(long, default_value_t = 32768)]
    pub ctx_max: usize,
    /// Session size; default ctx-max + gen-tokens + 1.
    #[arg(long)]
    pub ctx_alloc: Option<usize>,
    #[arg(long, default_value_t = 2048)]
    pub step_incr: usize,
    #[arg(long, default_value_t = 1.0)]
    pub step_mul: f64,
    #[arg(
        long = "gen-tokens",
        visible_alias = "tokens",
        short = 'n',
        default_value_t = 128
    )]
    pub gen_tokens: usize,
    /// CSV destination (default stdout).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
}

/// The frontiers: start, then +step-incr (or ×step-mul, at least +1),
/// clamped so the last is exactly ctx-max.
pub fn frontiers(start: usize, max: usize, incr: usize, mul: f64) -> Vec<usize> {
    let mut out = vec![start.min(max)];
    let mut cur = start;
    while cur < max {
        let next = if mul == 1.0 {
            cur + incr.max(1)
        } else {
            ((cur as f64 * mul).ceil() as usize).max(cur + 1)
        };
        cur = next.min(max);
        out.push(cur);
    }
    out
}

/// Index of the largest logit other than `eos` (ties to the lower id).
pub fn argmax_no_eos(logits: &[f32], eos: u32) -> u32 {
    let mut best = 0u32;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if i as u32 != eos && v > bv {
            best = i as u32;
            bv = v;
        }
    }
    best
}

/// `n` token ids uniform over `n_vocab` from `seed` (xorshift64): the
/// prompts of synthetic models, the same for a seed in every command.
pub fn random_tokens(seed: u64, n: usize, n_vocab: usize) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n_vocab as u64) as u32
        })
        .collect()
}

fn tokens(args: &Args, file: &GgufFile, need: usize) -> anyhow::Result<Vec<u32>> {
    let given = [
        args.prompt_file.is_some(),
        args.chat_prompt_file.is_some(),
        args.random_tokens.is_some(),
    ];
    ensure!(
        given.iter().filter(|&&g| g).count() == 1,
        "exactly one of --prompt-file, --chat-prompt-file or --random-tokens is required"
    );
    if let Some(seed) = args.random_tokens {
        let n_vocab = model::ModelConfig::from_gguf(file.header())?.n_vocab;
        return Ok(random_tokens(seed, need, n_vocab));
    }
    let tok = vocab::tokenizer(file.header()).context("the model's tokenizer")?;
    if let Some(p) = &args.prompt_file {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        return Ok(tok.encode(&text));
    }
    let p = args.chat_prompt_file.as_ref().expect("checked above");
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    use text::render::{render, Message, RenderOptions, Role, Thinking};
    let messages = [
        Message::new(Role::System, args.system.as_str()),
        Message::new(Role::User, text.as_str()),
    ];
    let options = RenderOptions {
        thinking: Thinking::Off,
        context_size: None,
    };
    render(&messages, &[], &options)
        .and_then(|r| r.token_ids(&tok))
        .context("rendering the chat prompt")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.ctx_start >= 1 && args.ctx_start <= args.ctx_max,
        "--ctx-start must be in 1..=--ctx-max"
    );
    ensure!(args.step_mul >= 1.0, "--step-mul must be at least 1");
    let alloc = args.ctx_alloc.unwrap_or(args.ctx_max + args.gen_tokens + 1);
    ensure!(
        alloc > args.ctx_max + args.gen_tokens,
        "--ctx-alloc must exceed ctx-max + gen-tokens"
    );
    let file =
        GgufFile::open(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let toks = tokens(&args, &file, args.ctx_max)?;
    if toks.len() < args.ctx_max {
        bail!(
            "prompt has {} tokens, need at least --ctx-max={}",
            toks.len(),
            args.ctx_max
        );
    }
    drop(file);
    let model = args.model.clone();
    let backend = args.backend;
    with_backend(backend, &model, alloc, Bench { args, toks, alloc })
}

struct Bench {
    args: Args,
    toks: Vec<u32>,
    alloc: usize,
}

impl WithBackend for Bench {
    type Output = ();

    fn run<B: Backend + 'static>(
        self,
        backend: Arc<B>,
        _: text::Tokenizer,
        eos: u32,
    ) -> anyhow::Result<()> {
        measure(backend, &self.args, &self.toks, eos, self.alloc)
    }
}

fn measure<B: Backend + 'static>(
    backend: Arc<B>,
    args: &Args,
    toks: &[u32],
    eos: u32,
    alloc: usize,
) -> anyhow::Result<()> {
    let mut out: Box<dyn Write> = match &args.csv {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout()),
    };
    writeln!(
        out,
        "ctx_tokens,prefill_tokens,prefill_tps,gen_tokens,gen_tps,kvcache_bytes,device"
    )?;
    out.flush()?;
    let device = backend.device_name();
    let mut session = Session::new(backend, alloc);
    session.set_max_anchors(0);
    let never = AtomicBool::new(false);
    let mut prev = 0;
    for f in frontiers(args.ctx_start, args.ctx_max, args.step_incr, args.step_mul) {
        let t0 = Instant::now();
        session
            .sync(&toks[..f], &mut |_, _| {}, &never)
            .context("ds4rs bench: prefill failed")?;
        let prefill_s = t0.elapsed().as_secs_f64();
        let snap = session.snapshot().context("ds4rs bench: snapshot failed")?;
        let t1 = Instant::now();
        for _ in 0..args.gen_tokens {
            ensure!(
                session.len() + 1 < alloc,
                "ds4rs bench: decode failed: context full"
            );
            // The argmax is picked on the device; only when it is EOS does
            // the whole vector come back for the runner-up.
            let best = session.pick(&Pick::Greedy)?;
            let next = if best == eos {
                argmax_no_eos(&session.logits()?, eos)
            } else {
                best
            };
            session.decode(next).context("ds4rs bench: decode failed")?;
        }
        let gen_s = t1.elapsed().as_secs_f64();
        session
            .load_snapshot(&snap)
            .context("ds4rs bench: restore failed")?;
        writeln!(
            out,
            "{f},{},{:.2},{},{:.2},{},{}",
            f - prev,
            (f - prev) as f64 / prefill_s,
            args.gen_tokens,
            args.gen_tokens as f64 / gen_s,
            snap.len(),
            device.replace(',', " ")
        )?;
        out.flush()?;
        prev = f;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontiers_linear_and_multiplicative() {
        assert_eq!(frontiers(2048, 8192, 2048, 1.0), [2048, 4096, 6144, 8192]);
        assert_eq!(frontiers(2048, 7000, 2048, 1.0), [2048, 4096, 6144, 7000]);
        assert_eq!(frontiers(1000, 4000, 0, 2.0), [1000, 2000, 4000]);
        assert_eq!(frontiers(3, 5, 0, 1.1), [3, 4, 5]);
        assert_eq!(frontiers(5, 5, 1, 1.0), [5]);
    }

    #[test]
    fn argmax_skips_eos() {
        assert_eq!(argmax_no_eos(&[0.0, 5.0, 1.0], 1), 2);
        assert_eq!(argmax_no_eos(&[2.0, 2.0, 1.0], 9), 0);
    }
}
