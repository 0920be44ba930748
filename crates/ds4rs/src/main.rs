//! `ds4rs`: one binary, one subcommand per user-facing program.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ds4rs", version, about = "DeepSeek V4 Flash inference engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a GGUF file's header, metadata and tensor table.
    Inspect(cmd::inspect::Args),
    /// Dequantize one tensor of a GGUF file to little-endian f32.
    Dequant(cmd::dequant::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Dequant(a) => cmd::dequant::run(a),
    }
}
