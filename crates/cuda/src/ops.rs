//! Device context, the loaded kernels, and one safe entry point per kernel.
//! The `unsafe` here is confined to kernel launches, whose argument lists
//! are checked against the kernel signatures in `kernels/ds4.cu` by the
//! shape checks in front of each launch.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use gguf::quant::tables;
use gguf::GgmlType;

use crate::error::{CudaError, Result};
use crate::FATBIN;

/// Warps per block of the row-per-warp kernels.
const WARPS: u32 = 8;

fn shape(what: &'static str, ok: bool, expected: String, got: String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(CudaError::Shape {
            what,
            expected,
            got,
        })
    }
}

fn warp_grid(items: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((items as u32).div_ceil(WARPS), 1, 1),
        block_dim: (32 * WARPS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The kernels of `kernels/ds4.cu`, in the order of [`KERNELS`].
#[derive(Clone, Copy, Debug)]
enum Kernel {
    QuantizeQ80Act,
    MatvecQ80,
    MatvecF16,
    QuantizeQ8K,
    MatvecQ2K,
    MatvecQ4K,
    MatvecIq2Xxs,
    RmsNorm,
    Rope,
    Fp8RoundTrip,
    F16Round,
    HcSplit,
    HcPost,
    Router,
    SinkAttention,
    Swiglu,
    HcWeightedSum,
    CompressorPool,
    IndexerRoundTrip,
}

/// The `extern "C"` names `Gpu::new` loads, indexed by [`Kernel`].
pub const KERNELS: [&str; 19] = [
    "quantize_q8_0_act",
    "matvec_q8_0",
    "matvec_f16",
    "quantize_q8_k",
    "matvec_q2_k",
    "matvec_q4_k",
    "matvec_iq2_xxs",
    "rms_norm",
    "rope",
    "fp8_round_trip",
    "f16_round",
    "hc_split",
    "hc_post",
    "router",
    "sink_attention",
    "swiglu",
    "hc_weighted_sum",
    "compressor_pool",
    "indexer_round_trip",
];

/// Bytes of one Q8_K activation block (`gguf::quant::BlockQ8K`).
const Q8K_BYTES: usize = 292;

/// One GPU with the ds4rs kernels loaded.
pub struct Gpu {
    pub stream: Arc<CudaStream>,
    name: String,
    /// Loaded kernels, indexed by [`Kernel`].
    kernels: Vec<CudaFunction>,
    /// IQ2_XXS decoding tables (gguf::quant::tables), uploaded once.
    iq2_grid: CudaSlice<u64>,
    ksigns: CudaSlice<u8>,
}

/// A Q8_K-quantized activation on the device: `blocks` blocks of 256
/// values in `gguf::quant::BlockQ8K`'s byte layout.
pub struct DeviceActQ8K {
    pub blocks: usize,
    pub data: CudaSlice<u8>,
}

/// A Q8_0-quantized activation on the device: int8 codes and f32 scales
/// (ds4's layout, gguf-and-quants.md §5.2).
pub struct DeviceActQ8_0 {
    pub len: usize,
    pub qs: CudaSlice<i8>,
    pub scales: CudaSlice<f32>,
}

impl Gpu {
    /// Opens GPU `ordinal` and loads the kernels.
    pub fn new(ordinal: usize) -> Result<Self> {
        // SAFETY: only probes whether the driver library can be loaded.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(CudaError::NoDriver);
        }
        let ctx = CudaContext::new(ordinal)?;
        let name = ctx.name()?;
        let module = ctx.load_module(Ptx::from_binary(FATBIN.to_vec()))?;
        let kernels = KERNELS
            .iter()
            .map(|k| module.load_function(k))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = ctx.default_stream();
        Ok(Gpu {
            iq2_grid: stream.clone_htod(&tables::IQ2XXS_GRID)?,
            ksigns: stream.clone_htod(&tables::KSIGNS)?,
            stream,
            name,
            kernels,
        })
    }

    fn kernel(&self, k: Kernel) -> &CudaFunction {
        &self.kernels[k as usize]
    }

    /// Free and total device memory in bytes.
    pub fn mem_info(&self) -> Result<(u64, u64)> {
        let (free, total) = self.stream.context().mem_get_info()?;
        Ok((free as u64, total as u64))
    }

    /// The card's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// ds4's Q8_0 activation of `x` (`n` values, padded with zeros to 32).
    pub fn quantize_q8_0_act(&self, x: &CudaSlice<f32>) -> Result<DeviceActQ8_0> {
        let n = x.len();
        let nb = n.div_ceil(32);
        let mut qs = self.stream.alloc_zeros::<i8>(nb * 32)?;
        let mut scales = self.stream.alloc_zeros::<f32>(nb)?;
        let n_i = n as i32;
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::QuantizeQ80Act));
        b.arg(x).arg(&n_i).arg(&mut qs).arg(&mut scales);
        // SAFETY: quantize_q8_0_act(const float*, int, int8_t*, float*); qs
        // holds nb*32 codes and scales nb values, as the kernel writes.
        unsafe { b.launch(warp_grid(nb)) }?;
        Ok(DeviceActQ8_0 { len: n, qs, scales })
    }

    /// `y = W x` for a Q8_0 matrix of `rows x cols` (raw GGUF bytes).
    pub fn matvec_q8_0(
        &self,
        w: &CudaSlice<u8>,
        rows: usize,
        cols: usize,
        x: &DeviceActQ8_0,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        shape(
            "Q8_0 columns",
            cols.is_multiple_of(32) && x.len == cols,
            format!("{} (multiple of 32)", x.len),
            cols.to_string(),
        )?;
        shape(
            "Q8_0 weight bytes",
            w.len() == rows * cols / 32 * 34,
            (rows * cols / 32 * 34).to_string(),
            w.len().to_string(),
        )?;
        shape(
            "output rows",
            y.len() == rows,
            rows.to_string(),
            y.len().to_string(),
        )?;
        let (r, c) = (rows as i32, cols as i32);
        let mut b = self.stream.launch_builder(self.kernel(Kernel::MatvecQ80));
        b.arg(w).arg(&r).arg(&c).arg(&x.qs).arg(&x.scales).arg(y);
        // SAFETY: matvec_q8_0(const uint8_t*, int, int, const int8_t*,
        // const float*, float*); sizes checked above.
        unsafe { b.launch(warp_grid(rows)) }?;
        Ok(())
    }

    /// `y = W x` for an F16 matrix of `rows x cols` (raw GGUF bytes).
    pub fn matvec_f16(
        &self,
        w: &CudaSlice<u8>,
        rows: usize,
        cols: usize,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        shape(
            "F16 weight bytes",
            w.len() == rows * cols * 2,
            (rows * cols * 2).to_string(),
            w.len().to_string(),
        )?;
        shape(
            "input length",
            x.len() == cols,
            cols.to_string(),
            x.len().to_string(),
        )?;
        shape(
            "output rows",
            y.len() == rows,
            rows.to_string(),
            y.len().to_string(),
        )?;
        let (r, c) = (rows as i32, cols as i32);
        let mut b = self.stream.launch_builder(self.kernel(Kernel::MatvecF16));
        b.arg(w).arg(&r).arg(&c).arg(x).arg(y);
        // SAFETY: matvec_f16(const uint16_t*, int, int, const float*, float*);
        // the byte buffer holds rows*cols halves, checked above.
        unsafe { b.launch(warp_grid(rows)) }?;
        Ok(())
    }

    /// Q8_K activation of `x` (a whole number of 256-value blocks).
    pub fn quantize_q8_k(&self, x: &CudaSlice<f32>) -> Result<DeviceActQ8K> {
        let n = x.len();
        shape(
            "Q8_K input",
            n.is_multiple_of(256),
            "a multiple of 256".into(),
            n.to_string(),
        )?;
        let blocks = n / 256;
        let mut data = self.stream.alloc_zeros::<u8>(blocks * Q8K_BYTES)?;
        let nb = blocks as i32;
        let mut b = self.stream.launch_builder(self.kernel(Kernel::QuantizeQ8K));
        b.arg(x).arg(&nb).arg(&mut data);
        // SAFETY: quantize_q8_k(const float*, int, block_q8_K*); data holds
        // `blocks` 292-byte blocks, x holds 256 values per block.
        unsafe { b.launch(warp_grid(blocks)) }?;
        Ok(DeviceActQ8K { blocks, data })
    }

    /// `y = W x` for routed-expert weights (Q2_K, Q4_K or IQ2_XXS) of
    /// `rows x cols` and a Q8_K activation.
    pub fn matvec_kquant(
        &self,
        ty: GgmlType,
        w: &CudaSlice<u8>,
        rows: usize,
        cols: usize,
        x: &DeviceActQ8K,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let f = match ty {
            GgmlType::Q2K => self.kernel(Kernel::MatvecQ2K),
            GgmlType::Q4K => self.kernel(Kernel::MatvecQ4K),
            GgmlType::Iq2Xxs => self.kernel(Kernel::MatvecIq2Xxs),
            _ => {
                return Err(CudaError::Shape {
                    what: "K-quant weight type",
                    expected: "Q2_K, Q4_K or IQ2_XXS".into(),
                    got: ty.name().into(),
                })
            }
        };
        let nb = cols / 256;
        shape(
            "K-quant columns",
            cols.is_multiple_of(256) && x.blocks == nb,
            format!("{} (x blocks * 256)", x.blocks * 256),
            cols.to_string(),
        )?;
        let want = rows * nb * ty.block_bytes();
        shape(
            "K-quant weight bytes",
            w.len() == want,
            want.to_string(),
            w.len().to_string(),
        )?;
        shape(
            "output rows",
            y.len() == rows,
            rows.to_string(),
            y.len().to_string(),
        )?;
        let (r, c) = (rows as i32, cols as i32);
        let mut b = self.stream.launch_builder(f);
        b.arg(w).arg(&r).arg(&c).arg(&x.data);
        if ty == GgmlType::Iq2Xxs {
            b.arg(&self.iq2_grid).arg(&self.ksigns);
        }
        b.arg(y);
        // SAFETY: matvec_{q2_k,q4_k}(const uint8_t*, int, int, const
        // block_q8_K*, float*) and matvec_iq2_xxs(..., const uint64_t*,
        // const uint8_t*, float*); sizes checked above.
        unsafe { b.launch(warp_grid(rows)) }?;
        Ok(())
    }

    /// RMSNorm of each `n`-value vector of `x` into `out`, weighted by `w`
    /// or plain (model.md §4).
    pub fn rms_norm(
        &self,
        x: &CudaSlice<f32>,
        w: Option<&CudaSlice<f32>>,
        n: usize,
        eps: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        shape(
            "RMSNorm input",
            n > 0 && x.len().is_multiple_of(n),
            format!("vectors of {n}"),
            x.len().to_string(),
        )?;
        shape(
            "RMSNorm output",
            out.len() == x.len(),
            x.len().to_string(),
            out.len().to_string(),
        )?;
        if let Some(w) = w {
            shape(
                "RMSNorm weight",
                w.len() == n,
                n.to_string(),
                w.len().to_string(),
            )?;
        }
        let count = (x.len() / n) as u32;
        let n_i = n as i32;
        let cfg = LaunchConfig {
            grid_dim: (count, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream.launch_builder(self.kernel(Kernel::RmsNorm));
        b.arg(x);
        let null = 0u64;
        match w {
            Some(w) => b.arg(w),
            None => b.arg(&null),
        };
        b.arg(&n_i).arg(&eps).arg(out);
        // SAFETY: rms_norm(const float*, const float* or null, int, float,
        // float*); one block per vector, sizes checked above.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }

    /// RoPE on the tails of `v`'s vectors of `dim` at position `pos`
    /// (attention.md §5); `inv_freq` has one frequency per rotated pair.
    pub fn rope(
        &self,
        v: &mut CudaSlice<f32>,
        dim: usize,
        inv_freq: &CudaSlice<f32>,
        pos: usize,
        inverse: bool,
    ) -> Result<()> {
        let pairs = inv_freq.len();
        shape(
            "RoPE vectors",
            dim >= 2 * pairs && v.len().is_multiple_of(dim),
            format!("vectors of {dim} with {pairs} pairs"),
            v.len().to_string(),
        )?;
        let count = v.len() / dim;
        let (c, d, p, ps, inv) = (
            count as i32,
            dim as i32,
            pairs as i32,
            pos as i32,
            i32::from(inverse),
        );
        let mut b = self.stream.launch_builder(self.kernel(Kernel::Rope));
        b.arg(v)
            .arg(&c)
            .arg(&d)
            .arg(inv_freq)
            .arg(&p)
            .arg(&ps)
            .arg(&inv);
        // SAFETY: rope(float*, int, int, const float*, int, int, int); one
        // thread per (vector, pair), bounds checked in the kernel.
        unsafe { b.launch(LaunchConfig::for_num_elems((count * pairs) as u32)) }?;
        Ok(())
    }

    /// FP8 round trip of dims `[0, nope)` of each `dim`-vector of `v`
    /// (attention.md §6.1).
    pub fn fp8_round_trip(&self, v: &mut CudaSlice<f32>, dim: usize, nope: usize) -> Result<()> {
        shape(
            "FP8 vectors",
            nope.is_multiple_of(64) && nope <= dim && v.len().is_multiple_of(dim),
            format!("vectors of {dim}, nope {nope} in 64-blocks"),
            v.len().to_string(),
        )?;
        let count = v.len() / dim;
        let (c, d, n) = (count as i32, dim as i32, nope as i32);
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::Fp8RoundTrip));
        b.arg(v).arg(&c).arg(&d).arg(&n);
        // SAFETY: fp8_round_trip(float*, int, int, int); one warp per
        // 64-block, bounds checked in the kernel.
        unsafe { b.launch(warp_grid(count * nope / 64)) }?;
        Ok(())
    }

    /// Rounds every value of `v` to f16 and back (attention.md §12).
    pub fn f16_round(&self, v: &mut CudaSlice<f32>) -> Result<()> {
        let n = v.len() as i32;
        let mut b = self.stream.launch_builder(self.kernel(Kernel::F16Round));
        b.arg(v).arg(&n);
        // SAFETY: f16_round(float*, int); bounds checked in the kernel.
        unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }?;
        Ok(())
    }

    /// The HC split (model.md §5.2 steps 3–8) of `mix` (`count` vectors of
    /// `2n + n²`) into pre, post and comb.
    #[allow(clippy::too_many_arguments)]
    pub fn hc_split(
        &self,
        mix: &CudaSlice<f32>,
        n_hc: usize,
        scale: &CudaSlice<f32>,
        base: &CudaSlice<f32>,
        iters: usize,
        eps: f32,
        pre: &mut CudaSlice<f32>,
        post: &mut CudaSlice<f32>,
        comb: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let m = 2 * n_hc + n_hc * n_hc;
        shape(
            "HC streams",
            (1..=8).contains(&n_hc),
            "1..=8".into(),
            n_hc.to_string(),
        )?;
        shape(
            "HC mix",
            mix.len().is_multiple_of(m) && base.len() == m && scale.len() == 3,
            format!("vectors of {m}, base {m}, scale 3"),
            format!("{}, {}, {}", mix.len(), base.len(), scale.len()),
        )?;
        let count = mix.len() / m;
        shape(
            "HC outputs",
            pre.len() == count * n_hc
                && post.len() == count * n_hc
                && comb.len() == count * n_hc * n_hc,
            format!("{count} tokens"),
            format!("{}, {}, {}", pre.len(), post.len(), comb.len()),
        )?;
        let (c, n, it) = (count as i32, n_hc as i32, iters as i32);
        let mut b = self.stream.launch_builder(self.kernel(Kernel::HcSplit));
        b.arg(mix)
            .arg(&c)
            .arg(&n)
            .arg(scale)
            .arg(base)
            .arg(&it)
            .arg(&eps)
            .arg(pre)
            .arg(post)
            .arg(comb);
        // SAFETY: hc_split(const float*, int, int, const float*, const
        // float*, int, float, float*, float*, float*); sizes checked above.
        unsafe { b.launch(LaunchConfig::for_num_elems(count as u32)) }?;
        Ok(())
    }

    /// HC-post (model.md §5.3) of one token: `out` = post ⊗ y + Pᵀ·H.
    pub fn hc_post(
        &self,
        y: &CudaSlice<f32>,
        h: &CudaSlice<f32>,
        post: &CudaSlice<f32>,
        comb: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (n_hc, d) = (post.len(), y.len());
        shape(
            "HC-post",
            h.len() == n_hc * d && comb.len() == n_hc * n_hc && out.len() == n_hc * d,
            format!("{n_hc} streams of {d}"),
            format!("h {}, comb {}, out {}", h.len(), comb.len(), out.len()),
        )?;
        let (n, di) = (n_hc as i32, d as i32);
        let mut b = self.stream.launch_builder(self.kernel(Kernel::HcPost));
        b.arg(y)
            .arg(h)
            .arg(post)
            .arg(comb)
            .arg(&n)
            .arg(&di)
            .arg(out);
        // SAFETY: hc_post(const float*, const float*, const float*, const
        // float*, int, int, float*); sizes checked above.
        unsafe { b.launch(LaunchConfig::for_num_elems((n_hc * d) as u32)) }?;
        Ok(())
    }

    /// Expert choice and weights of one token from its router logits
    /// (model.md §7.1–7.3): `hash_ids` for hash layers, else the biased
    /// top-k.
    #[allow(clippy::too_many_arguments)]
    pub fn router(
        &self,
        logits: &CudaSlice<f32>,
        bias: Option<&CudaSlice<f32>>,
        hash_ids: Option<&CudaSlice<i32>>,
        k: usize,
        scale: f32,
        experts: &mut CudaSlice<i32>,
        weights: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = logits.len();
        shape(
            "router experts",
            n <= 512 && k <= 64 && k <= n,
            "at most 512 experts, k <= 64".into(),
            format!("{n}, k {k}"),
        )?;
        shape(
            "router outputs",
            experts.len() == k && weights.len() == k,
            k.to_string(),
            format!("{}, {}", experts.len(), weights.len()),
        )?;
        if let Some(b) = bias {
            shape(
                "router bias",
                b.len() == n,
                n.to_string(),
                b.len().to_string(),
            )?;
        }
        if let Some(h) = hash_ids {
            shape("hash ids", h.len() == k, k.to_string(), h.len().to_string())?;
        }
        let (ni, ki) = (n as i32, k as i32);
        let null = 0u64;
        let mut b = self.stream.launch_builder(self.kernel(Kernel::Router));
        b.arg(logits).arg(&ni);
        match bias {
            Some(x) => b.arg(x),
            None => b.arg(&null),
        };
        match hash_ids {
            Some(x) => b.arg(x),
            None => b.arg(&null),
        };
        b.arg(&ki).arg(&scale).arg(experts).arg(weights);
        // SAFETY: router(const float*, int, const float* or null, const int*
        // or null, int, float, int*, float*); one warp, sizes checked above
        // (hash ids are validated against n by the caller's binder).
        unsafe {
            b.launch(LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (32, 1, 1),
                shared_mem_bytes: 0,
            })
        }?;
        Ok(())
    }

    /// Sink softmax attention of every head of `q` (heads of `dim`) over
    /// `keys` (rows of `dim`, also the values), attention.md §9.2.
    pub fn sink_attention(
        &self,
        q: &CudaSlice<f32>,
        keys: &CudaSlice<f32>,
        dim: usize,
        sinks: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let heads = sinks.len();
        let n_keys = keys.len() / dim.max(1);
        shape(
            "attention",
            dim > 0
                && q.len() == heads * dim
                && out.len() == heads * dim
                && keys.len() == n_keys * dim
                && n_keys <= 12 * 1024,
            format!("{heads} heads of {dim}, at most 12288 keys"),
            format!("q {}, keys {}, out {}", q.len(), keys.len(), out.len()),
        )?;
        let scale = 1.0 / (dim as f32).sqrt();
        let (nk, d) = (n_keys as i32, dim as i32);
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::SinkAttention));
        b.arg(q)
            .arg(keys)
            .arg(&nk)
            .arg(&d)
            .arg(sinks)
            .arg(&scale)
            .arg(out);
        // SAFETY: sink_attention(const float*, const float*, int, int, const
        // float*, float, float*); one block per head, n_keys floats of
        // dynamic shared memory (at most 48 KiB, checked above).
        unsafe {
            b.launch(LaunchConfig {
                grid_dim: (heads as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: (n_keys * 4) as u32,
            })
        }?;
        Ok(())
    }

    /// The clamped SwiGLU of an expert, times its route weight (model.md
    /// §7.4): `mid = (silu(min(g, c)) · clamp(u, ±c)) · weight`.
    pub fn swiglu(
        &self,
        g: &CudaSlice<f32>,
        u: &CudaSlice<f32>,
        clamp: f32,
        weight: f32,
        mid: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n = g.len();
        shape(
            "SwiGLU",
            u.len() == n && mid.len() == n,
            n.to_string(),
            format!("{}, {}", u.len(), mid.len()),
        )?;
        let ni = n as i32;
        let mut b = self.stream.launch_builder(self.kernel(Kernel::Swiglu));
        b.arg(g).arg(u).arg(&ni).arg(&clamp).arg(&weight).arg(mid);
        // SAFETY: swiglu(const float*, const float*, int, float, float,
        // float*); sizes checked above.
        unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }?;
        Ok(())
    }

    /// `x[d] = Σ_h w[h] · H[h][d]` (model.md §5.2 step 9).
    pub fn hc_weighted_sum(
        &self,
        h: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        x: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (n_hc, d) = (w.len(), x.len());
        shape(
            "HC state",
            h.len() == n_hc * d,
            format!("{n_hc} streams of {d}"),
            h.len().to_string(),
        )?;
        let (n, di) = (n_hc as i32, d as i32);
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::HcWeightedSum));
        b.arg(h).arg(w).arg(&n).arg(&di).arg(x);
        // SAFETY: hc_weighted_sum(const float*, const float*, int, int,
        // float*); sizes checked above.
        unsafe { b.launch(LaunchConfig::for_num_elems(d as u32)) }?;
        Ok(())
    }

    /// Gated softmax pooling of a compressor frontier (`rows x width`
    /// matrices `kv` and `score`) into a `d`-wide row (attention.md §8.4).
    pub fn compressor_pool(
        &self,
        kv: &CudaSlice<f32>,
        score: &CudaSlice<f32>,
        ratio: usize,
        d: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (rows, width) = if ratio == 4 { (8, 2 * d) } else { (ratio, d) };
        shape(
            "compressor frontier",
            ratio > 0 && kv.len() == rows * width && score.len() == rows * width && out.len() == d,
            format!("{rows}x{width} and {d} out"),
            format!("{}, {}, {}", kv.len(), score.len(), out.len()),
        )?;
        let (r, di, w) = (ratio as i32, d as i32, width as i32);
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::CompressorPool));
        b.arg(kv).arg(score).arg(&r).arg(&di).arg(&w).arg(out);
        // SAFETY: compressor_pool(const float*, const float*, int, int, int,
        // float*); sizes checked above.
        unsafe { b.launch(LaunchConfig::for_num_elems(d as u32)) }?;
        Ok(())
    }

    /// Hadamard + FP4 round trip of each `dim`-vector of `v` (attention.md
    /// §6.2); `dim` a power of two from 32 to 1024.
    pub fn indexer_round_trip(&self, v: &mut CudaSlice<f32>, dim: usize) -> Result<()> {
        shape(
            "indexer vectors",
            dim.is_power_of_two() && (32..=1024).contains(&dim) && v.len().is_multiple_of(dim),
            "vectors of a power of two in 32..=1024".into(),
            format!("{} values of {dim}", v.len()),
        )?;
        let (d, count) = (dim as i32, (v.len() / dim) as u32);
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::IndexerRoundTrip));
        b.arg(v).arg(&d);
        // SAFETY: indexer_round_trip(float*, int); one block of `dim`
        // threads per vector, dim <= 1024 (the kernel's shared buffer).
        unsafe {
            b.launch(LaunchConfig {
                grid_dim: (count, 1, 1),
                block_dim: (dim as u32, 1, 1),
                shared_mem_bytes: 0,
            })
        }?;
        Ok(())
    }
}
