//! `ds4rs convert`: DeepSeek's official V4 safetensors checkpoint to a GGUF
//! in ds4's layout (gguf-and-quants.md §6.1), with the tensor table of
//! [`crate::layout`] for the chosen recipe instead of a template file.
//!
//! Streaming: one tensor, or one routed expert, is decoded to f32,
//! quantized with gguf's byte-exact quantizers (IQ2_XXS with the synthetic
//! per-expert importance vector of §4.7, Q2_K/Q4_K unweighted, as the
//! published q2/q4 files) and written before the next is read; large
//! non-expert tensors go through in row chunks. Memory stays at a few
//! hundred MiB whatever the model size.
//!
//! Metadata: `deepseek4.*` from `config.json` ([`hf_config`]), and the
//! `tokenizer.ggml.*` keys from `tokenizer.json` when the directory has one.
//! Without it the file has no tokenizer keys (ds4 itself would refuse such a
//! file, ds4rs's forward does not need them) and a note says so.

pub mod checkpoint;
pub mod hf_config;
pub mod tokenizer;

use std::path::Path;

use gguf::{GgmlType, MetaValue};

use crate::config::{metadata_records, ModelConfig};
use crate::error::{ModelError, Result};
use crate::layout::{self, Official, Recipe, TensorSpec};
use checkpoint::Checkpoint;

/// f32 values decoded per chunk of a non-expert tensor (64 MiB).
const CHUNK_VALUES: usize = 16 << 20;

/// A checkpoint opened for conversion, with its plan.
pub struct Converter {
    pub cfg: ModelConfig,
    pub specs: Vec<TensorSpec>,
    pub metadata: Vec<(String, MetaValue)>,
    /// Things the user should know (e.g. no tokenizer).
    pub notes: Vec<String>,
    ckpt: Checkpoint,
}

impl Converter {
    /// Reads `dir/config.json`, opens the shards and plans the table.
    pub fn open(dir: &Path, recipe: Recipe) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = read(&cfg_path)?;
        let cfg = hf_config::from_config_json(&text).map_err(|msg| ModelError::Checkpoint {
            path: cfg_path.display().to_string(),
            msg,
        })?;
        let specs = layout::layout(&cfg, recipe)?;
        let ckpt = Checkpoint::open(dir)?;

        let mut metadata = metadata_records(&cfg);
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "deepseek4".into());
        metadata.insert(1, ("general.name".into(), MetaValue::from(name.as_str())));
        let mut notes = Vec::new();
        let tok_path = dir.join("tokenizer.json");
        if tok_path.exists() {
            let tok = tokenizer::tokenizer_metadata(&read(&tok_path)?).map_err(|msg| {
                ModelError::Checkpoint {
                    path: tok_path.display().to_string(),
                    msg,
                }
            })?;
            metadata.extend(tok);
        } else {
            notes.push(format!(
                "no {}: the GGUF has no tokenizer.ggml.* keys (ds4rs runs it; ds4 would refuse it)",
                tok_path.display()
            ));
        }
        Ok(Converter {
            cfg,
            specs,
            metadata,
            notes,
            ckpt,
        })
    }

    /// Bytes of tensor data the output will hold.
    pub fn total_bytes(&self) -> u64 {
        self.specs.iter().map(TensorSpec::n_bytes).sum()
    }

    /// Writes the GGUF (through `out.partial`, removed on error);
    /// `progress` gets the bytes as they are written.
    pub fn write(&self, out: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<()> {
        let b = layout::builder(self.metadata.clone(), &self.specs)?;
        layout::write_file(out, b, |tw| {
            for spec in &self.specs {
                match &spec.official {
                    Official::Tensor(name) if spec.ty == GgmlType::I32 => {
                        let (cols, rows) = (spec.cols(), spec.rows());
                        let ids = self.ckpt.ints(name, rows, cols, self.cfg.n_expert)?;
                        let bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
                        layout::write_chunks(tw, &bytes, progress)?;
                    }
                    Official::Tensor(name) => {
                        let (cols, rows) = (spec.cols(), spec.rows());
                        let src =
                            self.ckpt
                                .floats(name, (spec.dims.len() > 1).then_some(rows), cols)?;
                        let per = (CHUNK_VALUES / cols).max(1);
                        let mut r0 = 0;
                        while r0 < rows {
                            let n = per.min(rows - r0);
                            let mut x = vec![0f32; n * cols];
                            src.decode_rows(r0, &mut x);
                            let q = gguf::quant::quantize(spec.ty, &x, cols, None)?;
                            layout::write_chunks(tw, &q, progress)?;
                            r0 += n;
                        }
                    }
                    Official::Experts { layer, part } => {
                        let (cols, rows) = (spec.cols(), spec.dims[1] as usize);
                        let n = spec.dims[2] as usize;
                        for e in 0..n {
                            let name = Official::expert_name(*layer, e, *part);
                            let src = self.ckpt.floats(&name, Some(rows), cols)?;
                            let mut x = vec![0f32; rows * cols];
                            src.decode_rows(0, &mut x);
                            let q = gguf::quant::quantize(spec.ty, &x, cols, None)?;
                            layout::write_chunks(tw, &q, progress)?;
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })
}
