//! Streaming GGUF writer (gguf-and-quants.md §2).
//!
//! The header is fixed before any tensor data is written: the caller
//! declares metadata and the tensor directory on a `GgufBuilder`, then
//! `begin` writes the header and returns a `TensorWriter` that takes the
//! tensor bytes in declaration order, in chunks of any size. Nothing but
//! the chunk in hand is ever held in memory, so an 81 GiB model is written
//! with a few MiB of buffers. The layout is the one ds4's tools write:
//! offsets assigned in directory order, each tensor padded with zeros to
//! the alignment (the last one too).

use std::io::Write;

use crate::error::{GgufError, Result};
use crate::reader::{align_up, DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION};
use crate::types::GgmlType;
use crate::value::{MetaValue, Metadata};

/// GGML uses at most 4 dimensions; ds4's readers accept more but its tools
/// never write them.
const MAX_WRITE_DIMS: usize = 4;

/// Declares a GGUF file: metadata records and the tensor directory.
#[derive(Clone, Debug, Default)]
pub struct GgufBuilder {
    metadata: Metadata,
    tensors: Vec<(String, GgmlType, Vec<u64>, u64)>,
}

impl GgufBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata record (kept in insertion order). A `general.alignment`
    /// UINT32 record sets the alignment, as it does for readers.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: MetaValue) -> Result<()> {
        let key = key.into();
        if let MetaValue::Array(a) = &value {
            for item in &a.items {
                if matches!(item, MetaValue::Array(_)) {
                    return Err(GgufError::NestedArrayWrite(key));
                }
                if item.value_type() != a.elem_type {
                    return Err(GgufError::MixedArray {
                        key,
                        expected: a.elem_type,
                        found: item.value_type(),
                    });
                }
            }
        }
        if key == "general.alignment" {
            if let MetaValue::U32(a) = value {
                if a == 0 || !a.is_power_of_two() {
                    return Err(GgufError::BadAlignment(a.into()));
                }
            }
        }
        self.metadata
            .insert(key.clone(), value)
            .map_err(|_| GgufError::DuplicateKey(key))
    }

    /// Declares the next tensor of the data section.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        dims: &[u64],
    ) -> Result<()> {
        let name = name.into();
        if dims.is_empty() || dims.len() > MAX_WRITE_DIMS {
            return Err(GgufError::BadDimCount {
                name,
                n_dims: dims.len() as u64,
                max: MAX_WRITE_DIMS,
            });
        }
        if !dims[0].is_multiple_of(ty.block_elems() as u64) {
            return Err(GgufError::PartialBlock {
                name,
                ne0: dims[0],
                ty,
                block: ty.block_elems(),
            });
        }
        let n_bytes = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .and_then(|n| ty.bytes_for(n));
        let Some(n_bytes) = n_bytes else {
            return Err(GgufError::DimsOverflow {
                name,
                dims: dims.to_vec(),
            });
        };
        if self.tensors.iter().any(|t| t.0 == name) {
            return Err(GgufError::DuplicateTensor(name));
        }
        self.tensors.push((name, ty, dims.to_vec(), n_bytes));
        Ok(())
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn alignment(&self) -> u64 {
        match self.metadata.get("general.alignment") {
            Some(MetaValue::U32(a)) if *a != 0 => (*a).into(),
            _ => DEFAULT_ALIGNMENT,
        }
    }

    fn header_bytes(&self) -> Result<(Vec<u8>, Vec<crate::TensorInfo>)> {
        let alignment = self.alignment();
        let mut h = Vec::new();
        h.extend_from_slice(&GGUF_MAGIC);
        h.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in self.metadata.iter() {
            put_string(&mut h, key);
            h.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut h, value);
        }
        let mut infos = Vec::with_capacity(self.tensors.len());
        let mut offset = 0u64;
        for (name, ty, dims, n_bytes) in &self.tensors {
            put_string(&mut h, name);
            h.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&ty.id().to_le_bytes());
            h.extend_from_slice(&offset.to_le_bytes());
            infos.push(crate::TensorInfo {
                name: name.clone(),
                dims: dims.clone(),
                ty: *ty,
                offset,
                n_bytes: *n_bytes,
            });
            offset =
                align_up(offset + n_bytes, alignment).ok_or_else(|| GgufError::DimsOverflow {
                    name: name.clone(),
                    dims: dims.clone(),
                })?;
        }
        let data_start = align_up(h.len() as u64, alignment).expect("small header");
        h.resize(data_start as usize, 0);
        Ok((h, infos))
    }

    /// Size of the complete file this builder describes.
    pub fn file_len(&self) -> Result<u64> {
        let (h, infos) = self.header_bytes()?;
        let alignment = self.alignment();
        let data = infos.last().map_or(0, |t| {
            align_up(t.offset + t.n_bytes, alignment).unwrap_or(u64::MAX)
        });
        Ok(h.len() as u64 + data)
    }

    /// Writes the header and returns the writer for the tensor data.
    pub fn begin<W: Write>(self, mut w: W) -> Result<TensorWriter<W>> {
        let (h, tensors) = self.header_bytes()?;
        w.write_all(&h)?;
        let mut tw = TensorWriter {
            w,
            alignment: self.alignment(),
            tensors,
            current: 0,
            written: 0,
        };
        tw.skip_empty();
        Ok(tw)
    }
}

fn put_string(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => h.push(*x),
        MetaValue::I8(x) => h.push(*x as u8),
        MetaValue::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => h.push(u8::from(*x)),
        MetaValue::String(s) => put_string(h, s),
        MetaValue::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Array(a) => {
            h.extend_from_slice(&a.elem_type.id().to_le_bytes());
            h.extend_from_slice(&(a.items.len() as u64).to_le_bytes());
            for item in &a.items {
                put_value(h, item);
            }
        }
    }
}

/// Takes tensor data in directory order after the header has been written.
pub struct TensorWriter<W: Write> {
    w: W,
    alignment: u64,
    tensors: Vec<crate::TensorInfo>,
    current: usize,
    written: u64,
}

impl<W: Write> TensorWriter<W> {
    /// The tensor the next bytes belong to, or `None` when all are complete.
    pub fn current(&self) -> Option<&crate::TensorInfo> {
        self.tensors.get(self.current)
    }

    /// The directory as written, with offsets.
    pub fn tensors(&self) -> &[crate::TensorInfo] {
        &self.tensors
    }

    /// Appends bytes to the current tensor; a chunk never spans two tensors.
    pub fn write_data(&mut self, chunk: &[u8]) -> Result<()> {
        let Some(t) = self.tensors.get(self.current) else {
            return Err(GgufError::DataOrder(format!(
                "{} bytes written after the last tensor",
                chunk.len()
            )));
        };
        let left = t.n_bytes - self.written;
        if chunk.len() as u64 > left {
            return Err(GgufError::DataOrder(format!(
                "tensor {:?}: chunk of {} bytes but only {left} remain",
                t.name,
                chunk.len()
            )));
        }
        self.w.write_all(chunk)?;
        self.written += chunk.len() as u64;
        if self.written == t.n_bytes {
            self.complete()?;
        }
        Ok(())
    }

    /// Writes a whole tensor, checking it is the one expected next.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        match self.current() {
            Some(t) if t.name == name && self.written == 0 && t.n_bytes == data.len() as u64 => {
                self.write_data(data)
            }
            Some(t) => Err(GgufError::DataOrder(format!(
                "expected {} bytes of tensor {:?}, got {} bytes of {name:?}",
                t.n_bytes - self.written,
                t.name,
                data.len()
            ))),
            None => Err(GgufError::DataOrder(format!(
                "tensor {name:?} written after the last tensor"
            ))),
        }
    }

    fn complete(&mut self) -> Result<()> {
        let t = &self.tensors[self.current];
        let pad = align_up(t.n_bytes, self.alignment).expect("checked at build") - t.n_bytes;
        self.w.write_all(&vec![0u8; pad as usize])?;
        self.current += 1;
        self.written = 0;
        self.skip_empty();
        Ok(())
    }

    fn skip_empty(&mut self) {
        while self
            .tensors
            .get(self.current)
            .is_some_and(|t| t.n_bytes == 0)
        {
            self.current += 1;
        }
    }

    /// Checks every tensor is complete, flushes and returns the sink.
    pub fn finish(mut self) -> Result<W> {
        if let Some(t) = self.current() {
            return Err(GgufError::DataOrder(format!(
                "tensor {:?} has {} of {} bytes",
                t.name, self.written, t.n_bytes
            )));
        }
        self.w.flush()?;
        Ok(self.w)
    }
}
