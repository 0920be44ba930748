//! The GGUF layer of ds4rs: the container (memory-mapped reader, streaming
//! writer), the ggml block formats ds4's DeepSeek V4 files use, their
//! quantizers and the CPU dot kernels. Spec: `shared/spec/gguf-and-quants.md`.

pub mod error;
pub mod order;
pub mod quant;
pub mod reader;
pub mod types;
pub mod value;
pub mod writer;

pub use error::{GgufError, Result};
pub use reader::{GgufFile, GgufHeader, Tensor, TensorInfo};
pub use types::GgmlType;
pub use value::{MetaArray, MetaValue, Metadata, ValueType};
pub use writer::{GgufBuilder, TensorWriter};
