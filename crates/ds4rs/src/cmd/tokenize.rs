//! `ds4rs tokenize`: text on stdin → token ids, exactly as the model's tokenizer encodes it.
//! The text is taken literally: strings that spell control tokens stay text.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use gguf::{GgufFile, MetaValue};
use text::Tokenizer;

/// Where the vocabulary comes from.
#[derive(clap::Args)]
pub struct TokenizerSource {
    /// A GGUF model (its `tokenizer.ggml.*` arrays).
    #[arg(long, value_name = "FILE", conflicts_with = "tokenizer")]
    pub model: Option<PathBuf>,
    /// An HF `tokenizer.json` (DeepSeek V4's).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: TokenizerSource,
    /// Print a JSON array of ids instead of one `id<TAB>"text"` line per token.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let tok = load(&args.source)?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading stdin")?;
    let input = String::from_utf8(input).context("stdin is not UTF-8")?;
    let ids = tok.encode(&input);
    if args.json {
        println!("{}", serde_json::to_string(&ids)?);
    } else {
        for id in ids {
            let piece = String::from_utf8_lossy(tok.token_bytes(id).unwrap_or_default());
            println!("{id}\t{}", serde_json::to_string(&piece)?);
        }
    }
    Ok(())
}

/// Loads the tokenizer named on the command line.
pub fn load(source: &TokenizerSource) -> anyhow::Result<Tokenizer> {
    if let Some(path) = &source.tokenizer {
        let json =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Tokenizer::from_tokenizer_json(&json)
            .with_context(|| format!("loading {}", path.display()));
    }
    let Some(path) = &source.model else {
        bail!("give --model FILE.gguf or --tokenizer tokenizer.json");
    };
    let f = GgufFile::open(path).with_context(|| format!("reading {}", path.display()))?;
    let meta = f.metadata();
    let strings = |key: &str| -> anyhow::Result<Vec<String>> {
        match meta.get(key) {
            Some(MetaValue::Array(a)) => a
                .items
                .iter()
                .map(|v| match v {
                    MetaValue::String(s) => Ok(s.clone()),
                    _ => bail!("{key}: not a string array"),
                })
                .collect(),
            _ => bail!("{key}: missing or not an array"),
        }
    };
    let types = match meta.get("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(a)) => a
            .items
            .iter()
            .map(|v| match v {
                MetaValue::I32(t) => Ok(*t),
                _ => bail!("tokenizer.ggml.token_type: not an i32 array"),
            })
            .collect::<anyhow::Result<Vec<i32>>>()?,
        _ => bail!("tokenizer.ggml.token_type: missing or not an array"),
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    Tokenizer::from_vocab(tokens, &merges, &types)
        .with_context(|| format!("loading the tokenizer of {}", path.display()))
}
