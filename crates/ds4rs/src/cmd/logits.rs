//! `ds4rs logits`: f32 logits of every position of a token sequence, for
//! comparisons with the oracle and between modes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use gguf::GgufFile;
use model::{Logits, Model, NoTrace, Numerics, Options};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Mode {
    /// Activations never quantized (the oracle comparison).
    F32,
    /// Activations quantized as ds4's CPU path does.
    Default,
}

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model.
    #[arg(long)]
    pub model: PathBuf,
    /// Token ids, comma separated (e.g. `0,17,4`).
    #[arg(long)]
    pub tokens: String,
    /// Tokens per forward call (prefill chunk); default all at once.
    #[arg(long)]
    pub chunk: Option<usize>,
    #[arg(long, value_enum, default_value = "default")]
    pub mode: Mode,
    /// Context size of the state; default the number of tokens.
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Output: little-endian f32, one row of n_vocab per position.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let tokens = args
        .tokens
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<u32>()
                .with_context(|| format!("--tokens: {s:?} is not a token id"))
        })
        .collect::<anyhow::Result<Vec<u32>>>()?;
    if tokens.is_empty() {
        bail!("--tokens: no tokens");
    }
    let chunk = args.chunk.unwrap_or(tokens.len());
    if chunk == 0 {
        bail!("--chunk must be at least 1");
    }
    let file =
        GgufFile::open(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let opts = Options {
        numerics: match args.mode {
            Mode::F32 => Numerics::F32,
            Mode::Default => Numerics::Quantized,
        },
        qat: true,
        ..Options::default()
    };
    let model =
        Model::load(&file, opts).with_context(|| format!("loading {}", args.model.display()))?;
    let ctx = args.ctx.unwrap_or(tokens.len());
    let mut state = model.new_state(ctx);

    let t0 = std::time::Instant::now();
    let mut logits = Vec::with_capacity(tokens.len() * model.cfg.n_vocab);
    for c in tokens.chunks(chunk) {
        logits.extend(
            model
                .forward(&mut state, c, Logits::All, &mut NoTrace)
                .with_context(|| format!("forward of {} tokens", c.len()))?,
        );
    }
    let secs = t0.elapsed().as_secs_f64();

    let mut out = BufWriter::new(
        File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?,
    );
    for v in &logits {
        out.write_all(&v.to_le_bytes())?;
    }
    out.flush()
        .with_context(|| format!("writing {}", args.out.display()))?;

    let non_finite = logits.iter().filter(|v| !v.is_finite()).count();
    let top1: Vec<String> = logits
        .chunks(model.cfg.n_vocab)
        .map(|row| {
            let (i, _) = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                );
            i.to_string()
        })
        .collect();
    eprintln!(
        "{} positions in {secs:.2} s ({:.2} tok/s), {non_finite} non-finite values; top-1: {}",
        tokens.len(),
        tokens.len() as f64 / secs.max(1e-9),
        top1.join(",")
    );
    Ok(())
}
