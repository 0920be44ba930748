//! `ds4rs detokenize`: token ids on stdin (a JSON array or whitespace-separated) → the bytes
//! they stand for, written as they are.

use std::io::{Read, Write};

use anyhow::{bail, Context};

use super::tokenize::{load, TokenizerSource};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: TokenizerSource,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let tok = load(&args.source)?;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading stdin")?;
    let ids: Vec<u32> = if input.trim_start().starts_with('[') {
        serde_json::from_str(&input).context("stdin: expected a JSON array of ids")?
    } else {
        input
            .split_whitespace()
            .map(|s| s.parse().with_context(|| format!("not a token id: {s:?}")))
            .collect::<anyhow::Result<_>>()?
    };
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= tok.vocab_size()) {
        bail!(
            "token id {bad} is outside the vocabulary ({} ids)",
            tok.vocab_size()
        );
    }
    std::io::stdout().write_all(&tok.decode(&ids))?;
    Ok(())
}
