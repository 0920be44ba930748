//! Errors of the CUDA backend.

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("no CUDA driver library (libcuda) on this machine")]
    NoDriver,
    #[error("CUDA driver: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    #[error("{what}: {got} does not fit {expected}")]
    Shape {
        what: &'static str,
        expected: String,
        got: String,
    },
}

pub type Result<T, E = CudaError> = std::result::Result<T, E>;
