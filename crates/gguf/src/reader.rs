//! GGUF reader (gguf-and-quants.md §2).
//!
//! `GgufHeader::parse` works on any byte slice and checks everything a
//! tensor view relies on, so a view handed out later can index the bytes
//! without further checks. It is stricter than ds4 (§2.7): duplicate keys
//! and names, unknown tensor types, partial blocks, misaligned or
//! overlapping tensors are errors here, because a valid ds4 file never has
//! them and silently picking one reading of a broken file loses data.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};

use crate::error::{GgufError, Result};
use crate::types::GgmlType;
use crate::value::{MetaArray, MetaValue, Metadata, ValueType};

pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
pub const GGUF_VERSION: u32 = 3;
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ds4 accepts tensors of up to 8 dimensions (GGML itself uses at most 4).
pub const MAX_DIMS: usize = 8;
/// ds4's limit on array nesting in metadata.
pub const MAX_ARRAY_DEPTH: usize = 8;

pub(crate) fn align_up(v: u64, a: u64) -> Option<u64> {
    match v % a {
        0 => Some(v),
        r => v.checked_add(a - r),
    }
}

/// One entry of the tensor directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the contiguous (innermost) dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset relative to the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time not to overflow.
        self.dims.iter().product()
    }

    /// Bytes of one row (`dims[0]` elements).
    pub fn row_bytes(&self) -> u64 {
        self.ty.row_bytes(self.dims[0]).unwrap_or(0)
    }

    /// Number of rows: the product of every dimension but the first.
    pub fn n_rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }
}

/// Everything before the tensor data: version, metadata, tensor directory.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_start: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos as u64,
                need: n,
                len: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        Ok(s.try_into().expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        let start = self.pos as u64;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
            what: what(),
            offset: start,
        })
    }

    /// Rejects a count whose elements, at their smallest encoding, could not
    /// fit in what is left: no allocation is ever sized by a lying count.
    fn check_count(&self, count: u64, min_len: u64, what: &dyn Fn() -> String) -> Result<()> {
        if count
            .checked_mul(min_len)
            .is_none_or(|n| n > self.remaining())
        {
            return Err(GgufError::AbsurdCount {
                what: what(),
                count,
                remaining: self.remaining(),
            });
        }
        Ok(())
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<MetaValue> {
        let what = || format!("value of metadata key {key:?}");
        Ok(match ty {
            ValueType::U8 => MetaValue::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => MetaValue::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => MetaValue::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => MetaValue::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => MetaValue::U32(self.u32(&what)?),
            ValueType::I32 => MetaValue::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => MetaValue::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => MetaValue::Bool(self.array::<1>(&what)?[0] != 0),
            ValueType::String => MetaValue::String(self.string(&what)?),
            ValueType::U64 => MetaValue::U64(self.u64(&what)?),
            ValueType::I64 => MetaValue::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => MetaValue::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        key: key.to_owned(),
                        max: MAX_ARRAY_DEPTH,
                    });
                }
                let id = self.u32(&|| format!("array element type of metadata key {key:?}"))?;
                let elem_type =
                    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
                        key: key.to_owned(),
                        id,
                    })?;
                let count = self.u64(&|| format!("array count of metadata key {key:?}"))?;
                self.check_count(count, elem_type.min_encoded_len(), &|| {
                    format!("array of metadata key {key:?}")
                })?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem_type, key, depth + 1)?);
                }
                MetaValue::Array(MetaArray { elem_type, items })
            }
        })
    }
}

impl GgufHeader {
    /// Parses and validates the header of a GGUF image held in `bytes`.
    /// Tensor extents are checked against `bytes.len()`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut c = Cursor { buf: bytes, pos: 0 };
        let magic: [u8; 4] = c.array(&|| "magic".into())?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = c.u32(&|| "version".into())?;
        if version != GGUF_VERSION {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = c.u64(&|| "tensor count".into())?;
        let n_kv = c.u64(&|| "metadata count".into())?;
        // Smallest record: key length (8) + type (4) + a 1-byte value.
        c.check_count(n_kv, 13, &|| "metadata count".into())?;
        // Smallest tensor record: name length, n_dims, one dim, type, offset.
        c.check_count(n_tensors, 32, &|| "tensor count".into())?;

        let mut metadata = Metadata::new();
        for i in 0..n_kv {
            let key = c.string(&|| format!("key of metadata record {i}"))?;
            let id = c.u32(&|| format!("value type of metadata key {key:?}"))?;
            let ty = ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
                key: key.clone(),
                id,
            })?;
            let value = c.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), value).is_err() {
                return Err(GgufError::DuplicateKey(key));
            }
        }

        // §2.4: honoured only as a non-zero UINT32.
        let alignment = match metadata.get("general.alignment") {
            Some(MetaValue::U32(a)) if *a != 0 => u64::from(*a),
            _ => DEFAULT_ALIGNMENT,
        };
        if !alignment.is_power_of_two() {
            return Err(GgufError::BadAlignment(alignment));
        }

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut by_name = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = c.string(&|| format!("name of tensor record {i}"))?;
            let n_dims = u64::from(c.u32(&|| format!("dimension count of tensor {name:?}"))?);
            if n_dims == 0 || n_dims > MAX_DIMS as u64 {
                return Err(GgufError::BadDimCount {
                    name,
                    n_dims,
                    max: MAX_DIMS,
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(c.u64(&|| format!("ne[{d}] of tensor {name:?}"))?);
            }
            let id = c.u32(&|| format!("type of tensor {name:?}"))?;
            let offset = c.u64(&|| format!("offset of tensor {name:?}"))?;
            let ty = GgmlType::from_id(id).ok_or_else(|| GgufError::UnknownType {
                name: name.clone(),
                id,
            })?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64);
            let n_bytes = n_elements.and_then(|n| ty.bytes_for(n));
            let Some(n_bytes) = n_bytes else {
                return Err(GgufError::DimsOverflow { name, dims });
            };
            if dims[0] % ty.block_elems() as u64 != 0 {
                return Err(GgufError::PartialBlock {
                    name,
                    ne0: dims[0],
                    ty,
                    block: ty.block_elems(),
                });
            }
            if offset % alignment != 0 {
                return Err(GgufError::Misaligned {
                    name,
                    offset,
                    alignment,
                });
            }
            if by_name.insert(name.clone(), tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor(name));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                n_bytes,
            });
        }

        let len = bytes.len() as u64;
        let data_start = align_up(c.pos as u64, alignment).unwrap_or(u64::MAX);
        for t in &tensors {
            let start = data_start.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(_), Some(end)) if end <= len => {}
                _ => {
                    return Err(GgufError::OutOfBounds {
                        name: t.name.clone(),
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        len,
                    })
                }
            }
        }
        let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
        order.sort_by_key(|t| t.offset);
        for pair in order.windows(2) {
            if pair[0].offset + pair[0].n_bytes > pair[1].offset {
                return Err(GgufError::Overlap {
                    first: pair[0].name.clone(),
                    second: pair[1].name.clone(),
                });
            }
        }

        Ok(GgufHeader {
            version,
            alignment,
            data_start,
            metadata,
            tensors,
            by_name,
        })
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Tensor directory in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// Absolute byte range of a tensor's data (validated by `parse`).
    pub fn tensor_range(&self, t: &TensorInfo) -> Range<u64> {
        let start = self.data_start + t.offset;
        start..start + t.n_bytes
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_owned()))
    }

    fn wrong(key: &str, expected: &'static str, v: &MetaValue) -> GgufError {
        GgufError::WrongValueType {
            key: key.to_owned(),
            expected,
            found: v.value_type(),
        }
    }

    /// A key that must be exactly UINT32 (ds4's rule for its u32 keys).
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        match self.require(key)? {
            MetaValue::U32(v) => Ok(*v),
            v => Err(Self::wrong(key, "UINT32", v)),
        }
    }

    /// A key that may be UINT32 or UINT64.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        match self.require(key)? {
            MetaValue::U32(v) => Ok((*v).into()),
            MetaValue::U64(v) => Ok(*v),
            v => Err(Self::wrong(key, "UINT32 or UINT64", v)),
        }
    }

    /// A float key: FLOAT32, FLOAT64, UINT32 or INT32, as ds4 accepts.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| Self::wrong(key, "FLOAT32, FLOAT64, UINT32 or INT32", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, "BOOL", v))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "STRING", v))
    }

    pub fn get_array(&self, key: &str) -> Result<&MetaArray> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| Self::wrong(key, "ARRAY", v))
    }
}

/// A tensor's directory entry with its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

impl<'a> Tensor<'a> {
    pub fn name(&self) -> &'a str {
        &self.info.name
    }

    pub fn ty(&self) -> GgmlType {
        self.info.ty
    }

    pub fn dims(&self) -> &'a [u64] {
        &self.info.dims
    }

    /// The bytes of row `r` (rows counted over all outer dimensions).
    pub fn row(&self, r: u64) -> Option<&'a [u8]> {
        let rb = self.info.row_bytes();
        let start = r.checked_mul(rb)?;
        let end = start.checked_add(rb)?;
        self.data.get(start as usize..end as usize)
    }
}

/// A GGUF file mapped read-only, with its parsed header.
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    header: GgufHeader,
}

impl GgufFile {
    /// Maps `path` privately and read-only (§2.8) and parses its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 24 {
            return Err(GgufError::Truncated {
                what: "header".into(),
                offset: 0,
                need: 24,
                len,
            });
        }
        // SAFETY: the mapping is private and read-only, so this process
        // cannot change it; another process truncating the file while it is
        // mapped can still fault the reader (SIGBUS), the accepted limit of
        // every mmap-based loader (ds4 included).
        let map = unsafe { MmapOptions::new().map_copy_read_only(&file) }.map_err(io)?;
        let header = GgufHeader::parse(&map)?;
        Ok(GgufFile { path, map, header })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    pub fn metadata(&self) -> &Metadata {
        self.header.metadata()
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        self.header.tensors()
    }

    /// The whole mapped file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let r = self.header.tensor_range(t);
        &self.map[r.start as usize..r.end as usize]
    }

    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>> {
        let info = self
            .header
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_owned()))?;
        Ok(Tensor {
            info,
            data: self.tensor_data(info),
        })
    }

    /// Asks the kernel to read the whole mapping ahead (§2.8 prefetch).
    pub fn advise_willneed(&self) -> Result<()> {
        self.map
            .advise(memmap2::Advice::WillNeed)
            .map_err(|source| GgufError::Io {
                path: self.path.clone(),
                source,
            })
    }
}
