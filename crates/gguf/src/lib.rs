//! The GGUF layer of ds4rs: the container (memory-mapped reader, streaming
//! writer), the ggml block formats ds4's DeepSeek V4 files use, their
//! quantizers and the CPU dot kernels. Spec: `shared/spec/gguf-and-quants.md`.

pub mod types;

pub use types::GgmlType;
