//! Reading DeepSeek's official V4 safetensors checkpoint
//! (gguf-and-quants.md §6.1 "Input format" and "Dequantization to f32"):
//! the shard index, memory-mapped shards (headers validated by the
//! `safetensors` crate, data read in place), and row-wise decoding of every
//! dtype the release uses to f32: FP8 E4M3 with E8M0 128×128 block scales,
//! FP4 E2M1 packed in I8 with E8M0 1×32 scales, BF16, F16, F32; I64/I32 for
//! the hash tables. Every error names the file and the tensor at fault.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::{tensor::Metadata, Dtype, SafeTensors};
use serde_json::Value;

use crate::error::{ModelError, Result};

const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

fn err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Checkpoint {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

struct Shard {
    path: PathBuf,
    map: Mmap,
    data_start: usize,
    meta: Metadata,
}

/// An opened checkpoint directory.
pub struct Checkpoint {
    shards: Vec<Shard>,
    /// Tensor name → index into `shards`.
    index: HashMap<String, usize>,
    index_path: PathBuf,
}

impl Checkpoint {
    /// Opens `dir/model.safetensors.index.json` and every shard it names
    /// (or a lone `dir/model.safetensors`), validating each header.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX);
        let mut files: Vec<String> = Vec::new();
        let mut names: Vec<(String, usize)> = Vec::new();
        if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|source| ModelError::Io {
                path: index_path.display().to_string(),
                source,
            })?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| err(&index_path, format!("not JSON: {e}")))?;
            let map = v
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| err(&index_path, "no \"weight_map\" object"))?;
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    err(
                        &index_path,
                        format!("weight_map[{name:?}] is not a file name"),
                    )
                })?;
                if Path::new(file).components().count() != 1 {
                    return Err(err(
                        &index_path,
                        format!("shard {file:?} is not a plain file name"),
                    ));
                }
                let i = match files.iter().position(|f| f == file) {
                    Some(i) => i,
                    None => {
                        files.push(file.to_owned());
                        files.len() - 1
                    }
                };
                names.push((name.clone(), i));
            }
        } else if dir.join(SINGLE).exists() {
            files.push(SINGLE.into());
        } else {
            return Err(err(dir, format!("neither {INDEX} nor {SINGLE} found")));
        }

        let shards = files
            .iter()
            .map(|f| Shard::open(&dir.join(f)))
            .collect::<Result<Vec<_>>>()?;
        let index = if names.is_empty() {
            shards[0]
                .meta
                .tensors()
                .into_keys()
                .map(|n| (n, 0))
                .collect()
        } else {
            for (name, i) in &names {
                if shards[*i].meta.info(name).is_none() {
                    return Err(err(
                        &shards[*i].path,
                        format!("tensor {name:?} is listed in {INDEX} but not in this shard"),
                    ));
                }
            }
            names.into_iter().collect()
        };
        Ok(Checkpoint {
            shards,
            index,
            index_path,
        })
    }

    fn find(&self, name: &str) -> Result<(&Shard, Dtype, Vec<usize>, &[u8])> {
        let Some(&i) = self.index.get(name) else {
            return Err(err(&self.index_path, format!("missing tensor {name:?}")));
        };
        let s = &self.shards[i];
        let info = s.meta.info(name).expect("checked at open");
        let (b, e) = info.data_offsets;
        let data = &s.map[s.data_start + b..s.data_start + e];
        Ok((s, info.dtype, info.shape.clone(), data))
    }

    /// The float tensor `name` as `rows x cols` (official `[rows, cols]`, or
    /// `[cols]` when `rows` is `None`), ready to decode.
    pub fn floats(&self, name: &str, rows: Option<usize>, cols: usize) -> Result<Source<'_>> {
        let (shard, dtype, shape, data) = self.find(name)?;
        let want: Vec<usize> = rows.into_iter().chain([cols]).collect();
        let path = &shard.path;
        let bad_shape = |found: &[usize], want: &[usize]| {
            err(
                path,
                format!("tensor {name:?}: shape {found:?}, expected {want:?}"),
            )
        };
        let rows = rows.unwrap_or(1);
        let kind = match dtype {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 => {
                if !same_shape(&shape, &want) {
                    return Err(bad_shape(&shape, &want));
                }
                match dtype {
                    Dtype::F32 => Kind::F32,
                    Dtype::F16 => Kind::F16,
                    _ => Kind::Bf16,
                }
            }
            Dtype::F8_E4M3 => {
                if !same_shape(&shape, &want) {
                    return Err(bad_shape(&shape, &want));
                }
                let scale_want = [rows.div_ceil(128), cols.div_ceil(128)];
                let scale = self.scale(name, path, &scale_want)?;
                Kind::Fp8 { scale }
            }
            Dtype::I8 => {
                let packed = [rows, cols / 2];
                if !cols.is_multiple_of(32) || shape != packed {
                    return Err(err(
                        path,
                        format!(
                            "tensor {name:?}: FP4 (I8) shape {shape:?}, expected {packed:?} for {rows}x{cols} with the input dim a multiple of 32"
                        ),
                    ));
                }
                let scale = self.scale(name, path, &[rows, cols / 32])?;
                Kind::Fp4 { scale }
            }
            other => {
                return Err(err(
                    path,
                    format!(
                        "tensor {name:?}: dtype {other:?}; a weight must be F8_E4M3, I8 (FP4), BF16, F16 or F32"
                    ),
                ))
            }
        };
        Ok(Source { kind, data, cols })
    }

    /// The E8M0 scale companion of `name` (`X.weight` → `X.scale`).
    fn scale(&self, name: &str, path: &Path, want: &[usize]) -> Result<&[u8]> {
        let sname = match name.strip_suffix(".weight") {
            Some(b) => format!("{b}.scale"),
            None => format!("{name}.scale"),
        };
        let (_, dtype, shape, data) = self.find(&sname).map_err(|_| {
            err(
                path,
                format!("tensor {name:?} is quantized but its scale {sname:?} is missing"),
            )
        })?;
        if dtype != Dtype::F8_E8M0 {
            return Err(err(
                path,
                format!("tensor {sname:?}: dtype {dtype:?}, expected F8_E8M0"),
            ));
        }
        if shape != want {
            return Err(err(
                path,
                format!("tensor {sname:?}: shape {shape:?}, expected {want:?}"),
            ));
        }
        Ok(data)
    }

    /// An integer table `[rows, cols]` (I64 or I32) narrowed to i32, each
    /// value checked to be in `0..limit`.
    pub fn ints(&self, name: &str, rows: usize, cols: usize, limit: usize) -> Result<Vec<i32>> {
        let (shard, dtype, shape, data) = self.find(name)?;
        let path = &shard.path;
        if shape != [rows, cols] {
            return Err(err(
                path,
                format!(
                    "tensor {name:?}: shape {shape:?}, expected {:?}",
                    [rows, cols]
                ),
            ));
        }
        let vals: Vec<i64> = match dtype {
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            Dtype::I32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                .collect(),
            other => {
                return Err(err(
                    path,
                    format!("tensor {name:?}: dtype {other:?}, expected I64 or I32"),
                ))
            }
        };
        vals.into_iter()
            .enumerate()
            .map(|(i, x)| {
                if (0..limit as i64).contains(&x) {
                    Ok(x as i32)
                } else {
                    Err(err(
                        path,
                        format!("tensor {name:?}: entry {i} is {x}, outside 0..{limit}"),
                    ))
                }
            })
            .collect()
    }
}

impl Shard {
    fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        // SAFETY: the map is read-only; a checkpoint changed underneath a
        // running conversion gives wrong numbers, not memory unsafety in
        // this process beyond what any mmap reader accepts.
        let map = unsafe { Mmap::map(&f) }.map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let (n, meta) = SafeTensors::read_metadata(&map)
            .map_err(|e| err(path, format!("bad safetensors file: {e}")))?;
        Ok(Shard {
            path: path.to_owned(),
            map,
            data_start: 8 + n,
            meta,
        })
    }
}

enum Kind<'a> {
    F32,
    F16,
    Bf16,
    Fp8 { scale: &'a [u8] },
    Fp4 { scale: &'a [u8] },
}

/// A float tensor of the checkpoint, decoded row by row.
pub struct Source<'a> {
    kind: Kind<'a>,
    data: &'a [u8],
    cols: usize,
}

impl Source<'_> {
    /// Decodes rows `row0..row0 + out.len() / cols` into `out`, in parallel.
    pub fn decode_rows(&self, row0: usize, out: &mut [f32]) {
        out.par_chunks_mut(self.cols)
            .enumerate()
            .for_each(|(i, y)| self.decode_row(row0 + i, y));
    }

    fn decode_row(&self, r: usize, y: &mut [f32]) {
        let c = self.cols;
        match self.kind {
            Kind::F32 => {
                for (y, b) in y.iter_mut().zip(self.data[r * c * 4..].chunks_exact(4)) {
                    *y = f32::from_le_bytes(b.try_into().expect("4 bytes"));
                }
            }
            Kind::F16 => {
                for (y, b) in y.iter_mut().zip(self.data[r * c * 2..].chunks_exact(2)) {
                    *y = gguf::quant::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                }
            }
            Kind::Bf16 => {
                for (y, b) in y.iter_mut().zip(self.data[r * c * 2..].chunks_exact(2)) {
                    *y = gguf::quant::bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                }
            }
            Kind::Fp8 { scale } => {
                let sc = c.div_ceil(128);
                let srow = &scale[r / 128 * sc..];
                let w = &self.data[r * c..(r + 1) * c];
                for (i, (y, &q)) in y.iter_mut().zip(w).enumerate() {
                    *y = e4m3(q) * e8m0(srow[i / 128]);
                }
            }
            Kind::Fp4 { scale } => {
                let w = &self.data[r * c / 2..(r + 1) * c / 2];
                let s = &scale[r * c / 32..(r + 1) * c / 32];
                for (j, pair) in y.chunks_exact_mut(2).enumerate() {
                    let b = w[j];
                    let d = e8m0(s[2 * j / 32]);
                    pair[0] = E2M1[(b & 15) as usize] * d;
                    pair[1] = E2M1[(b >> 4) as usize] * d;
                }
            }
        }
    }
}

/// E2M1 nibble values; bit 3 is the sign (codes 8..15 negative, 8 is -0).
const E2M1: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// E8M0: `2^(e - 127)`, with `e = 0` giving 2^-127 (a subnormal f32).
fn e8m0(e: u8) -> f32 {
    if e == 0 {
        f32::from_bits(0x0040_0000)
    } else {
        f32::from_bits((e as u32) << 23)
    }
}

/// Shapes compared after dropping trailing 1s, as deepseek4-quantize does
/// (a `[n, 1]` vector is the `[n]` the GGUF wants).
fn same_shape(a: &[usize], b: &[usize]) -> bool {
    let strip = |s: &[usize]| s.len() - s.iter().rev().take_while(|&&d| d == 1).count();
    a[..strip(a)] == b[..strip(b)]
}

/// E4M3FN decoded by table; the NaN codes (abs 0x7F) decode to +0 as
/// deepseek4-quantize does.
fn e4m3(v: u8) -> f32 {
    E4M3[v as usize]
}

const E4M3: [f32; 256] = {
    let mut t = [0f32; 256];
    let mut v = 0;
    while v < 256 {
        let a = v & 0x7F;
        let (e, m) = ((a >> 3) as u32, (a & 7) as u32);
        let mag = if a == 0x7F {
            0.0
        } else if e == 0 {
            m as f32 * (1.0 / 512.0)
        } else {
            // 1.m × 2^(e-7) as f32 bits: exponent e - 7 + 127, mantissa m.
            f32::from_bits(((e + 120) << 23) | (m << 20))
        };
        t[v] = if v & 0x80 != 0 && a != 0x7F {
            -mag
        } else {
            mag
        };
        v += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    /// gguf-and-quants.md §6.1 decoding rules.
    #[test]
    fn float8_decoders() {
        assert_eq!(e8m0(127), 1.0);
        assert_eq!(e8m0(0).to_bits(), 0x0040_0000);
        assert!(e8m0(255).is_infinite());
        assert_eq!(e4m3(0x38), 1.0);
        assert_eq!(e4m3(0x7E), 448.0);
        assert_eq!(e4m3(0x01), 2f32.powi(-9));
        assert_eq!(e4m3(0xFF), 0.0);
        assert_eq!(e4m3(0x80).to_bits(), (-0.0f32).to_bits());
        assert_eq!(e4m3(0xB8), -1.0);
    }

    #[test]
    fn trailing_ones_do_not_count() {
        assert!(same_shape(&[256, 1], &[256]));
        assert!(same_shape(&[1], &[1, 1]));
        assert!(!same_shape(&[1, 256], &[256]));
        assert!(!same_shape(&[128, 2], &[256]));
    }
}
