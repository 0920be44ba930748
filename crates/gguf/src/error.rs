//! Errors of the container layer. Every variant names the field, key or
//! tensor at fault and, where it helps, the byte offset.

use std::path::PathBuf;

use crate::types::GgmlType;
use crate::value::ValueType;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write failed: {0}")]
    Write(#[from] std::io::Error),
    #[error("not a GGUF file: magic is {0:02x?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0}: only version 3 is supported")]
    UnsupportedVersion(u32),
    #[error(
        "truncated GGUF file: {what} at byte {offset} needs {need} bytes, the file ends at {len}"
    )]
    Truncated {
        what: String,
        offset: u64,
        need: u64,
        len: u64,
    },
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },
    #[error("metadata key {key:?}: unknown value type id {id}")]
    UnknownValueType { key: String, id: u32 },
    #[error("metadata key {key:?}: arrays nested deeper than {max}")]
    NestingTooDeep { key: String, max: usize },
    #[error("{what}: count {count} cannot fit in the {remaining} bytes left in the file")]
    AbsurdCount {
        what: String,
        count: u64,
        remaining: u64,
    },
    #[error("duplicate metadata key {0:?}")]
    DuplicateKey(String),
    #[error("duplicate tensor name {0:?}")]
    DuplicateTensor(String),
    #[error("general.alignment must be a power of two, got {0}")]
    BadAlignment(u64),
    #[error("tensor {name:?}: {n_dims} dimensions, expected 1..={max}")]
    BadDimCount {
        name: String,
        n_dims: u64,
        max: usize,
    },
    #[error("tensor {name:?}: dimensions {dims:?} overflow the element or byte count")]
    DimsOverflow { name: String, dims: Vec<u64> },
    #[error("tensor {name:?}: unknown ggml type id {id}")]
    UnknownType { name: String, id: u32 },
    #[error("tensor {name:?}: ne[0] = {ne0} is not a multiple of the {ty} block size {block}")]
    PartialBlock {
        name: String,
        ne0: u64,
        ty: GgmlType,
        block: usize,
    },
    #[error("tensor {name:?}: data [{start}, {end}) lies outside the file ({len} bytes)")]
    OutOfBounds {
        name: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("tensor {name:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        name: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensors {first:?} and {second:?} overlap")]
    Overlap { first: String, second: String },
    #[error("metadata key {key:?}: value type {found}, expected {expected}")]
    WrongValueType {
        key: String,
        expected: &'static str,
        found: ValueType,
    },
    #[error("missing metadata key {0:?}")]
    MissingKey(String),
    #[error("no tensor named {0:?}")]
    MissingTensor(String),
    #[error("nested arrays cannot be written (key {0:?}): ds4's tools reject them")]
    NestedArrayWrite(String),
    #[error("array at key {key:?}: element of type {found} in an array of {expected}")]
    MixedArray {
        key: String,
        expected: ValueType,
        found: ValueType,
    },
    #[error("tensor data: {0}")]
    DataOrder(String),
}

pub type Result<T, E = GgufError> = std::result::Result<T, E>;
