//! `ds4rs synth`: a random-weight DeepSeek V4 model in ds4's exact layout
//! and metadata, with the real V4 tokenizer (model::synth has the why).

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use model::convert::tokenizer::{tokenizer_metadata, V4_TOKENIZER_JSON};
use model::layout::{self, Recipe};
use model::synth::{pro_shape, synth, truncate_layers};
use model::ModelConfig;

#[derive(clap::Args)]
pub struct Args {
    /// `flash`, `pro` (transformers' DeepseekV4Config defaults) or a JSON
    /// file of ModelConfig fields.
    #[arg(long)]
    pub shape: String,
    /// Keep only the first N layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Storage recipe: q2, q4, q8_0, f16 or f32.
    #[arg(long, default_value = "q2")]
    pub recipe: Recipe,
    /// PRNG seed; the file depends on it alone (not on thread count).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// tokenizer.json to embed instead of the built-in V4 tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Output GGUF (written as OUT.partial, renamed when complete).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = match args.shape.as_str() {
        "flash" => ModelConfig::flash(),
        "pro" => pro_shape(),
        file => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("reading shape {file}"))?;
            serde_json::from_str(&text).with_context(|| format!("shape {file}"))?
        }
    };
    if let Some(n) = args.layers {
        truncate_layers(&mut cfg, n).context("--layers")?;
    }
    let tok_json = match &args.tokenizer {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => V4_TOKENIZER_JSON.to_owned(),
    };
    let tok = tokenizer_metadata(&tok_json).map_err(|m| {
        anyhow::anyhow!(
            "tokenizer {}: {m}",
            args.tokenizer
                .as_ref()
                .map_or("(built-in)".into(), |p| p.display().to_string())
        )
    })?;

    let mut metadata = model::config::metadata_records(&cfg);
    let name = format!(
        "ds4rs synth {} {} layers {} seed {}",
        args.shape, args.recipe, cfg.n_layer, args.seed
    );
    metadata.insert(1, ("general.name".into(), name.as_str().into()));
    metadata.extend(tok);

    let specs = layout::layout(&cfg, args.recipe)?;
    let total: u64 = specs.iter().map(|s| s.n_bytes()).sum();
    let bar = progress_bar(total);
    let t0 = std::time::Instant::now();
    synth(&cfg, args.recipe, args.seed, metadata, &args.out, &|n| {
        bar.inc(n)
    })
    .with_context(|| format!("writing {}", args.out.display()))?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} ({} tensors, {:.2} GiB of tensor data) in {secs:.1} s, {:.0} MiB/s",
        args.out.display(),
        specs.len(),
        total as f64 / (1u64 << 30) as f64,
        total as f64 / (1u64 << 20) as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("valid template"),
    );
    bar
}
