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
    /// Convert DeepSeek's official safetensors checkpoint to a GGUF.
    Convert(cmd::convert::Args),
    /// Write a random-weight model in ds4's layout.
    Synth(cmd::synth::Args),
    /// Compute the f32 logits of every position of a token sequence.
    Logits(cmd::logits::Args),
    /// Encode UTF-8 text from stdin into token ids.
    Tokenize(cmd::tokenize::Args),
    /// Decode token ids from stdin into the bytes they stand for.
    Detokenize(cmd::detokenize::Args),
    /// Render an OpenAI-style conversation into the model's prompt.
    Render(cmd::render::Args),
    /// Chat with a model: one-shot generation from -p or --prompt-file.
    Run(cmd::run::Args),
    /// Check every GPU kernel against the CPU reference on this machine's GPU.
    #[cfg(feature = "cuda")]
    Selftest(cmd::selftest::Args),
    /// Compare the GPU forward with the CPU reference on a model file.
    #[cfg(feature = "cuda")]
    GpuCheck(cmd::gpu_check::Args),
    /// Throughput at context frontiers (ds4-bench): prefill and greedy decode, CSV.
    Bench(cmd::bench::Args),
    /// Download one of ds4's published GGUFs and link ./ds4flash.gguf to it.
    Pull(cmd::pull::Args),
    /// Serve the model over OpenAI- and Anthropic-compatible HTTP APIs.
    Serve(cmd::serve::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Dequant(a) => cmd::dequant::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Synth(a) => cmd::synth::run(a),
        Command::Logits(a) => cmd::logits::run(a),
        Command::Tokenize(a) => cmd::tokenize::run(a),
        Command::Detokenize(a) => cmd::detokenize::run(a),
        Command::Render(a) => cmd::render::run(a),
        Command::Run(a) => cmd::run::run(a),
        #[cfg(feature = "cuda")]
        Command::Selftest(a) => cmd::selftest::run(a),
        #[cfg(feature = "cuda")]
        Command::GpuCheck(a) => cmd::gpu_check::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Pull(a) => cmd::pull::run(a),
        Command::Serve(a) => cmd::serve::run(a),
    }
}
