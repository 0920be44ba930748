//! The CUDA backend of ds4rs (cuda-design.md). Kernels live in
//! `kernels/*.cu`, compiled by `build.rs` into one fatbin (sm_90a + PTX)
//! that is embedded in the binary and loaded through cudarc's dynamically
//! loaded driver API, so building needs nvcc but no GPU and no libcuda.
//!
//! Correct first: every op has a CPU definition in the `gguf`/`model`
//! crates, and `selftest` compares them on random inputs on the device.

pub mod dmodel;
pub mod error;
pub mod forward;
pub mod kern;
pub mod ops;
pub mod sample;
pub mod selftest;
mod selftest_batch;
mod selftest_sample;
pub mod weights;

pub use error::{CudaError, Result};
pub use forward::{GpuModel, GpuState, LoadEvent, GPU_CHUNK};
pub use ops::Gpu;
pub use sample::{DeviceLogits, DeviceSampler};
pub use weights::{DeviceWeights, MemoryPlan};

/// The compiled kernels.
pub(crate) static FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ds4.fatbin"));

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded fatbin holds every kernel the ops load by name (a kernel
    /// renamed in the .cu file fails here, not on the GPU machine).
    #[test]
    fn fatbin_has_every_kernel() {
        for name in ops::KERNELS {
            assert!(
                FATBIN.windows(name.len()).any(|w| w == name.as_bytes()),
                "{name} missing from the fatbin"
            );
        }
    }

    /// Without a GPU the backend reports it cleanly instead of panicking.
    #[test]
    fn opening_never_panics() {
        match Gpu::new(0) {
            Ok(gpu) => assert!(!gpu.name().is_empty()),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
