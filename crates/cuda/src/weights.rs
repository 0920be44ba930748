//! Weights resident on the GPU (issue 6 item 2): every tensor of the GGUF
//! copied once into device memory at load, after a memory plan has been
//! checked against the card's free memory, so a model that cannot fit is
//! refused with the sizes instead of failing mid-run.

use std::collections::HashMap;

use cudarc::driver::CudaSlice;
use gguf::GgufFile;
use model::{AttentionKind, ModelConfig};

use crate::error::{gib, CudaError, Result};
use crate::ops::Gpu;

/// Device memory a session of `ctx` tokens needs, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    pub weights: u64,
    /// Attention state for `ctx` tokens: raw window, compressed and indexer
    /// rows (f32), compressor frontiers (attention.md §14).
    pub kv: u64,
    /// Activations, logits and scratch of one decode step plus a margin
    /// for the driver and the kernels' modules.
    pub workspace: u64,
}

impl MemoryPlan {
    pub fn new(file: &GgufFile, cfg: &ModelConfig, ctx: usize) -> Self {
        let step =
            (cfg.n_vocab + 4 * cfg.hc_dim() + cfg.n_head * cfg.head_dim * 2 + 4 * cfg.n_ff_exp)
                as u64
                * 4;
        MemoryPlan {
            weights: file.tensors().iter().map(|t| t.n_bytes).sum(),
            kv: Self::kv_bytes(cfg, ctx),
            workspace: step + (512 << 20),
        }
    }

    /// Attention state of `ctx` tokens with f32 rows (attention.md §14.2).
    pub fn kv_bytes(cfg: &ModelConfig, ctx: usize) -> u64 {
        let f = 4u64;
        let (hd, id) = (cfg.head_dim as u64, cfg.indexer_head_dim as u64);
        let ctx = ctx as u64;
        let mut kv = 0u64;
        for il in 0..cfg.n_layer {
            kv += cfg.sliding_window.min(ctx as usize) as u64 * hd * f;
            let r = cfg.compress_ratios[il] as u64;
            match cfg.attention_kind(il) {
                AttentionKind::Window => {}
                AttentionKind::Sparse => {
                    kv += (ctx / r + 2) * (hd + id) * f;
                    kv += 2 * (8 * 2 * hd + 8 * 2 * id) * f;
                }
                AttentionKind::Heavy => {
                    kv += (ctx / r + 2) * hd * f;
                    kv += 2 * r * hd * f;
                }
            }
        }
        kv
    }

    pub fn total(&self) -> u64 {
        self.weights + self.kv + self.workspace
    }

    /// Refuses a plan larger than `free` bytes, naming every part.
    pub fn check(&self, free: u64) -> Result<()> {
        if self.total() > free {
            return Err(CudaError::OutOfMemory {
                need: self.total(),
                free,
                weights: self.weights,
                kv: self.kv,
                workspace: self.workspace,
            });
        }
        Ok(())
    }
}

/// "weights 8.85 GiB + attention state 0.02 GiB + workspace 1.30 GiB =
/// 10.17 GiB": the plan as the commands print it before loading.
impl std::fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "weights {} + attention state {} + workspace {} = {}",
            gib(self.weights),
            gib(self.kv),
            gib(self.workspace),
            gib(self.total())
        )
    }
}

/// Every tensor of a model file, on the device, by name.
pub struct DeviceWeights {
    tensors: HashMap<String, CudaSlice<u8>>,
    pub bytes: u64,
}

impl DeviceWeights {
    /// Copies every tensor to the device; `progress` gets the bytes copied
    /// so far after each tensor.
    pub fn upload(gpu: &Gpu, file: &GgufFile, progress: &dyn Fn(u64)) -> Result<Self> {
        let mut tensors = HashMap::with_capacity(file.tensors().len());
        let mut bytes = 0u64;
        for t in file.tensors() {
            let data = file.tensor_data(t);
            tensors.insert(t.name.clone(), gpu.stream.clone_htod(data)?);
            bytes += t.n_bytes;
            progress(bytes);
        }
        gpu.stream.synchronize()?;
        Ok(DeviceWeights { tensors, bytes })
    }

    pub fn get(&self, name: &str) -> Option<&CudaSlice<u8>> {
        self.tensors.get(name)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_prints_its_parts_and_total() {
        let plan = MemoryPlan {
            weights: 9_502_653_440,
            kv: 21_474_836,
            workspace: 1_395_864_371,
        };
        assert_eq!(
            plan.to_string(),
            "weights 8.85 GiB + attention state 0.02 GiB + workspace 1.30 GiB = 10.17 GiB"
        );
    }

    /// attention.md §14.2: at 1M context, ≈13.45 GiB of rows with f32
    /// storage (13.125 ratio-4, 0.31 ratio-128, 11 MB raw) plus 12,206,080
    /// bytes of frontier state.
    #[test]
    fn flash_kv_matches_the_spec() {
        let cfg = ModelConfig::flash();
        let gib = MemoryPlan::kv_bytes(&cfg, 1 << 20) as f64 / (1u64 << 30) as f64;
        assert!((13.44..13.48).contains(&gib), "{gib}");
        let empty = MemoryPlan::kv_bytes(&cfg, 0);
        assert_eq!(empty, 12_206_080 + 2 * 4 * (21 * 640 + 20 * 512));
    }

    #[test]
    fn too_big_names_the_sizes() {
        let plan = MemoryPlan {
            weights: 80 << 30,
            kv: 13 << 30,
            workspace: 1 << 30,
        };
        let e = plan.check(79 << 30).unwrap_err().to_string();
        assert!(
            e.contains("weights") && e.contains("80.00 GiB") && e.contains("79.00 GiB"),
            "{e}"
        );
        plan.check(100 << 30).unwrap();
    }
}
