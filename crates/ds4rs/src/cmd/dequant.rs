use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF file to read.
    pub file: PathBuf,
    /// Tensor name, e.g. `blk.0.attn_q_a.weight`.
    pub tensor: String,
    /// Where to write the little-endian f32 values.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not yet wired")
}
