//! `ds4rs dequant`: one tensor as little-endian f32 in GGUF element order.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use gguf::GgufFile;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF file to read.
    pub file: PathBuf,
    /// Tensor name, e.g. `blk.0.attn_q_a.weight`.
    pub tensor: String,
    /// Where to write the little-endian f32 values (`ne[0]` fastest).
    #[arg(long)]
    pub out: PathBuf,
}

/// Rows are converted a few MiB at a time, so a 4 GiB expert tensor never
/// needs 16 GiB of f32 in memory.
const CHUNK_ELEMS: u64 = 1 << 20;

pub fn run(args: Args) -> anyhow::Result<()> {
    let f =
        GgufFile::open(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let t = f
        .tensor(&args.tensor)
        .with_context(|| format!("in {}", args.file.display()))?;
    let ne0 = t.dims()[0].max(1);
    let rows_per_chunk = (CHUNK_ELEMS / ne0).max(1);
    let row_bytes = t.info.row_bytes();
    let n_rows = t.info.n_rows();

    // Written beside the target and renamed at the end: a failure never
    // leaves a half-written file under the requested name.
    let tmp = args.out.with_extension("partial");
    let write = || -> anyhow::Result<()> {
        let mut out = BufWriter::new(
            File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        let mut buf = Vec::new();
        let mut bytes = Vec::new();
        let mut row = 0;
        while row < n_rows {
            let n = rows_per_chunk.min(n_rows - row);
            let src = &t.data[(row * row_bytes) as usize..((row + n) * row_bytes) as usize];
            buf.resize((n * t.dims()[0]) as usize, 0.0);
            gguf::quant::dequantize(t.ty(), src, &mut buf)
                .with_context(|| format!("tensor {:?} ({})", args.tensor, t.ty()))?;
            bytes.clear();
            bytes.extend(buf.iter().flat_map(|v| v.to_le_bytes()));
            out.write_all(&bytes)
                .with_context(|| format!("writing {}", tmp.display()))?;
            row += n;
        }
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), args.out.display()))?;
    Ok(())
}
