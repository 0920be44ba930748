//! Errors of the CUDA backend.

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver library (libcuda) on this machine")]
    NoDriver,
    #[error("CUDA driver: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    #[error(
        "the model needs {} of GPU memory but {} is free (weights {}, attention state {}, workspace {})",
        gib(*need), gib(*free), gib(*weights), gib(*kv), gib(*workspace)
    )]
    OutOfMemory {
        need: u64,
        free: u64,
        weights: u64,
        kv: u64,
        workspace: u64,
    },
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error("not supported on the GPU: {0}")]
    Unsupported(String),
    #[error("{what}: {got} does not fit {expected}")]
    Shape {
        what: &'static str,
        expected: String,
        got: String,
    },
}

pub type Result<T, E = CudaError> = std::result::Result<T, E>;

/// Bytes as "1.23 GiB".
pub(crate) fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}
