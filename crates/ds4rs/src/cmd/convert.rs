//! `ds4rs convert`: DeepSeek's official V4 safetensors checkpoint to a GGUF
//! in ds4's layout (model::convert has the details).

use std::path::PathBuf;

use anyhow::Context;
use model::convert::Converter;
use model::layout::Recipe;

use super::synth::progress_bar;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint directory: config.json, model.safetensors.index.json and
    /// shards, optionally tokenizer.json.
    #[arg(long)]
    pub hf: PathBuf,
    /// Output GGUF (written as OUT.partial, renamed when complete).
    #[arg(long)]
    pub out: PathBuf,
    /// Storage recipe: f32, f16, q8_0, q2 or q4.
    #[arg(long)]
    pub recipe: Recipe,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let conv = Converter::open(&args.hf, args.recipe)
        .with_context(|| format!("reading checkpoint {}", args.hf.display()))?;
    for note in &conv.notes {
        eprintln!("note: {note}");
    }
    let total = conv.total_bytes();
    let bar = progress_bar(total);
    let t0 = std::time::Instant::now();
    conv.write(&args.out, &|n| bar.inc(n))
        .with_context(|| format!("converting {} to {}", args.hf.display(), args.out.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} ({} tensors, recipe {}, {:.3} GiB of tensor data) in {:.1} s",
        args.out.display(),
        conv.specs.len(),
        args.recipe,
        total as f64 / (1u64 << 30) as f64,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
