use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF file to read.
    pub file: PathBuf,
    /// Print one JSON object with every metadata value in full.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not yet wired")
}
