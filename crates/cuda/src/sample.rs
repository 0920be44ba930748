//! Choosing the next token where the logits are: the device applies the
//! `sampling` crate's rules (kernels/sample.cu), so a generation step copies
//! back a token id, plus a log-sum-exp and a few (id, logit) pairs when
//! log-probabilities are asked for, instead of the vocabulary's logits.
//!
//! The uniform number of a draw comes from the host ([`Pick::Draw`]), made
//! by the engine's seeded stream exactly as for the CPU, so a seed gives the
//! same tokens on both: the device forms every sum the host forms from the
//! same f64 operations, in the host's order where the host's order is
//! defined; only `exp`'s last bit and the top-k set's total (which the host
//! sums in `select_nth_unstable`'s order) can differ, and a draw changes only
//! when its number falls within that rounding of a boundary between tokens.

use std::sync::Mutex;

use cudarc::driver::CudaSlice;
use sampling::{Pick, TopLogits};

use crate::error::{CudaError, Result};
use crate::ops::Gpu;

/// One position's logits in device memory, as a forward call leaves them
/// ([`crate::GpuModel::forward_device`]). `Clone` copies on the device (an
/// in-memory checkpoint; cudarc's clone panics only when the device cannot
/// allocate the copy, as for `GpuState`).
#[derive(Clone)]
pub struct DeviceLogits(CudaSlice<f32>);

impl DeviceLogits {
    pub(crate) fn new(buf: CudaSlice<f32>) -> Self {
        DeviceLogits(buf)
    }

    /// Host logits copied to the device (a snapshot's, or a test's).
    pub fn upload(gpu: &Gpu, host: &[f32]) -> Result<Self> {
        Ok(DeviceLogits(gpu.stream.clone_htod(host)?))
    }

    /// The whole vector on the host.
    pub fn download(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(gpu.stream.clone_dtoh(&self.0)?)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Device scratch of the sampling kernels, for vocabularies up to `cap`.
struct Scratch {
    /// Sort keys of the kept tokens, padded to a power of two.
    keys: CudaSlice<u64>,
    /// Running sums of the kept weights.
    cums: CudaSlice<f64>,
    ids: CudaSlice<i32>,
    vals: CudaSlice<f32>,
    /// Log-sum-exp and the asked token's logit.
    lse_tok: CudaSlice<f32>,
    token: CudaSlice<i32>,
}

/// Picks tokens and reports log-probabilities from [`DeviceLogits`]. One
/// call at a time (the scratch is shared); a call copies back only its
/// answer.
pub struct DeviceSampler {
    cap: usize,
    scratch: Mutex<Scratch>,
}

impl DeviceSampler {
    /// Device bytes of the scratch for vocabularies up to `cap` (the memory
    /// plan counts them).
    pub fn bytes(cap: usize) -> u64 {
        (cap.max(1).next_power_of_two() * 8 + cap * (8 + 4 + 4) + 8 + 4) as u64
    }

    /// Allocates the scratch for vocabularies up to `cap` tokens.
    pub fn new(gpu: &Gpu, cap: usize) -> Result<Self> {
        let s = &gpu.stream;
        let cap = cap.max(1);
        Ok(DeviceSampler {
            cap,
            scratch: Mutex::new(Scratch {
                keys: s.alloc_zeros::<u64>(cap.next_power_of_two())?,
                cums: s.alloc_zeros::<f64>(cap)?,
                ids: s.alloc_zeros::<i32>(cap)?,
                vals: s.alloc_zeros::<f32>(cap)?,
                lse_tok: s.alloc_zeros::<f32>(2)?,
                token: s.alloc_zeros::<i32>(1)?,
            }),
        })
    }

    fn check(&self, logits: &DeviceLogits) -> Result<()> {
        let n = logits.len();
        if n == 0 || n > self.cap {
            return Err(CudaError::Shape {
                what: "sampled logits",
                expected: format!("1..={} values", self.cap),
                got: n.to_string(),
            });
        }
        Ok(())
    }

    /// The token `pick` chooses from `logits`: the argmax (the forward's
    /// `argmax` kernel) or a draw; only its id comes back.
    pub fn pick(&self, gpu: &Gpu, logits: &DeviceLogits, pick: &Pick) -> Result<u32> {
        self.check(logits)?;
        let sc = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let x = gpu.ptr(&logits.0);
        let out = gpu.ptr(&sc.token);
        match *pick {
            Pick::Draw { filters: f, unit } if !pick.is_greedy() => {
                // top-k at or above the count keeps everything: off.
                let top_k = if f.top_k < x.len() { f.top_k } else { 0 };
                gpu.k_sample(
                    x,
                    f.temperature,
                    top_k,
                    f.top_p,
                    f.min_p,
                    unit,
                    gpu.ptr(&sc.keys),
                    gpu.ptr(&sc.cums),
                    out,
                )?;
            }
            _ => gpu.k_argmax(x, out)?,
        }
        let mut id = [0i32];
        gpu.stream.memcpy_dtoh(&sc.token, &mut id)?;
        gpu.stream.synchronize()?;
        Ok(id[0] as u32)
    }

    /// `sampling::top_logits` of `logits`: the log-sum-exp, `token`'s logit
    /// and the `n` largest (at most the vocabulary) as (id, logit).
    pub fn top_logits(
        &self,
        gpu: &Gpu,
        logits: &DeviceLogits,
        token: Option<u32>,
        n: usize,
    ) -> Result<TopLogits> {
        self.check(logits)?;
        let len = logits.len();
        if let Some(t) = token.filter(|&t| t as usize >= len) {
            return Err(CudaError::Shape {
                what: "token of top_logits",
                expected: format!("below {len}"),
                got: t.to_string(),
            });
        }
        let k = n.min(len);
        let sc = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        gpu.k_top_logits(
            gpu.ptr(&logits.0),
            token,
            k,
            gpu.ptr(&sc.keys),
            gpu.ptr(&sc.ids),
            gpu.ptr(&sc.vals),
            gpu.ptr(&sc.lse_tok),
        )?;
        let s = &gpu.stream;
        let (mut lse_tok, mut ids, mut vals) = ([0f32; 2], vec![0i32; k], vec![0f32; k]);
        s.memcpy_dtoh(&sc.lse_tok, &mut lse_tok)?;
        if k > 0 {
            s.memcpy_dtoh(&sc.ids.slice(0..k), &mut ids)?;
            s.memcpy_dtoh(&sc.vals.slice(0..k), &mut vals)?;
        }
        s.synchronize()?;
        Ok(TopLogits {
            lse: lse_tok[0],
            token: token.map(|_| lse_tok[1]),
            top: ids.into_iter().map(|i| i as u32).zip(vals).collect(),
        })
    }
}
