//! `ds4rs render`: an OpenAI-style conversation → the exact prompt the model gets (DeepSeek's
//! reference encoding), as text or as token ids.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use text::render::{parse_messages, parse_tools, render, RenderOptions, Thinking};

use super::tokenize::{load, TokenizerSource};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ThinkingArg {
    Off,
    High,
    Max,
}

#[derive(clap::Args)]
pub struct Args {
    /// JSON file with an OpenAI `messages` array.
    #[arg(long, value_name = "FILE")]
    pub messages: PathBuf,
    /// JSON file with an OpenAI `tools` array.
    #[arg(long, value_name = "FILE")]
    pub tools: Option<PathBuf>,
    /// Thinking mode.
    #[arg(long, value_enum, default_value = "high")]
    pub thinking: ThinkingArg,
    /// Serving context size in tokens (Think Max needs at least 393216).
    #[arg(long, value_name = "N")]
    pub ctx: Option<u64>,
    /// Print a JSON array of token ids instead of the prompt text.
    #[arg(long)]
    pub ids: bool,
    #[command(flatten)]
    pub source: TokenizerSource,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let messages = parse_messages(&read(&args.messages)?)
        .with_context(|| format!("parsing {}", args.messages.display()))?;
    let tools = match &args.tools {
        Some(p) => parse_tools(&read(p)?).with_context(|| format!("parsing {}", p.display()))?,
        None => Vec::new(),
    };
    let options = RenderOptions {
        thinking: match args.thinking {
            ThinkingArg::Off => Thinking::Off,
            ThinkingArg::High => Thinking::High,
            ThinkingArg::Max => Thinking::Max,
        },
        context_size: args.ctx,
    };
    let rendered = render(&messages, &tools, &options)?;
    if args.ids {
        let tok = load(&args.source)?;
        println!("{}", serde_json::to_string(&rendered.token_ids(&tok)?)?);
    } else {
        std::io::stdout().write_all(rendered.text().as_bytes())?;
    }
    Ok(())
}
