//! Device context, the loaded kernels, and a checked entry point per kernel
//! for whole buffers (what `selftest` drives). Each checks its shapes and
//! hands device addresses to the raw launches of `kern`.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr};
use cudarc::nvrtc::Ptx;

use gguf::quant::tables;
use gguf::GgmlType;

use crate::error::{CudaError, Result};
use crate::kern::{Act, AttnArgs, DPtr, MatKernel, Slots};
use crate::FATBIN;

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

/// The kernels of `kernels/*.cu`, in the order of [`KERNELS`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kernel {
    QuantizeQ80Act,
    QuantizeQ8K,
    MmQ80,
    MmMxfp4,
    MmF16,
    MmF32,
    MmQ2K,
    MmQ4K,
    MmIq2Xxs,
    RmsNorm,
    Rope,
    Fp8RoundTrip,
    F16Round,
    HcSplit,
    HcPost,
    HcWeightedSum,
    HcHeadWeights,
    Embed,
    Router,
    Swiglu,
    MoeSum,
    CompressorPool,
    IndexerRoundTrip,
    CompressorScan,
    RingWrite,
    IndexerScores,
    TopK,
    Attention,
    Argmax,
    MmQ80Tiles,
    MoeGroup,
    MmIq2XxsGrouped,
    MmQ2KGrouped,
    MmF16Wide,
    MmF32Wide,
    MathProbe,
    Sample,
    TopLogits,
    MmQ80Staged,
}

/// The `extern "C"` names `Gpu::new` loads, indexed by [`Kernel`].
pub const KERNELS: [&str; 39] = [
    "quantize_q8_0_act",
    "quantize_q8_k",
    "mm_q8_0",
    "mm_mxfp4",
    "mm_f16",
    "mm_f32",
    "mm_q2_k",
    "mm_q4_k",
    "mm_iq2_xxs",
    "rms_norm",
    "rope",
    "fp8_round_trip",
    "f16_round",
    "hc_split",
    "hc_post",
    "hc_weighted_sum",
    "hc_head_weights",
    "embed",
    "router",
    "swiglu",
    "moe_sum",
    "compressor_pool",
    "indexer_round_trip",
    "compressor_scan",
    "ring_write",
    "indexer_scores",
    "top_k",
    "attention",
    "argmax",
    "mm_q8_0_tiles",
    "moe_group",
    "mm_iq2_xxs_grouped",
    "mm_q2_k_grouped",
    "mm_f16_wide",
    "mm_f32_wide",
    "math_probe",
    "sample",
    "top_logits",
    "mm_q8_0_staged",
];

/// Bytes of one Q8_K activation block (`gguf::quant::BlockQ8K`).
const Q8K_BYTES: usize = 292;

/// One GPU with the ds4rs kernels loaded.
pub struct Gpu {
    pub stream: Arc<CudaStream>,
    name: String,
    /// Loaded kernels, indexed by [`Kernel`].
    kernels: Vec<CudaFunction>,
    /// The IQ2_XXS decoding grid (gguf::quant::tables), uploaded once.
    iq2_grid: CudaSlice<u64>,
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
            stream,
            name,
            kernels,
        })
    }

    pub(crate) fn kernel(&self, k: Kernel) -> &CudaFunction {
        &self.kernels[k as usize]
    }

    pub(crate) fn iq2_grid_addr(&self) -> u64 {
        self.iq2_grid.device_ptr(&self.stream).0
    }

    /// The address of a whole buffer.
    pub fn ptr<T>(&self, s: &CudaSlice<T>) -> DPtr<T> {
        DPtr::of(s, &self.stream)
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
        let qs = self.stream.alloc_zeros::<i8>(nb * 32)?;
        let scales = self.stream.alloc_zeros::<f32>(nb)?;
        self.k_quantize_q8_0(self.ptr(x), self.ptr(&qs), self.ptr(&scales))?;
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
        let act = Act::Q8_0 {
            qs: self.ptr(&x.qs),
            scales: self.ptr(&x.scales),
        };
        let slots = Slots::tokens(1, cols);
        self.k_mm(
            MatKernel::Q8_0,
            self.ptr(w),
            rows,
            cols,
            act,
            slots,
            self.ptr(y),
        )
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
        let act = Act::F32(self.ptr(x));
        let slots = Slots::tokens(1, cols);
        self.k_mm(
            MatKernel::F16,
            self.ptr(w),
            rows,
            cols,
            act,
            slots,
            self.ptr(y),
        )
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
        let data = self.stream.alloc_zeros::<u8>(blocks * Q8K_BYTES)?;
        self.k_quantize_q8_k(self.ptr(x), self.ptr(&data))?;
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
        let kind = match ty {
            GgmlType::Q2K => MatKernel::Q2K,
            GgmlType::Q4K => MatKernel::Q4K,
            GgmlType::Iq2Xxs => MatKernel::Iq2Xxs,
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
        let act = Act::Q8K(self.ptr(&x.data));
        let slots = Slots::tokens(1, cols);
        self.k_mm(kind, self.ptr(w), rows, cols, act, slots, self.ptr(y))
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
        self.k_rms_norm(self.ptr(x), w.map(|w| self.ptr(w)), n, eps, self.ptr(out))
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
        self.k_rope(self.ptr(v), dim, self.ptr(inv_freq), pos, count, inverse)
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
        self.k_fp8_round_trip(self.ptr(v), dim, nope)
    }

    /// Rounds every value of `v` to f16 and back (attention.md §12).
    pub fn f16_round(&self, v: &mut CudaSlice<f32>) -> Result<()> {
        self.k_f16_round(self.ptr(v))
    }

    /// The device's exp, softplus, sin and cos (kernels/math.cu) of each
    /// value of `x`, four outputs per input in that order.
    pub fn math_probe(&self, x: &CudaSlice<f32>) -> Result<Vec<f32>> {
        let out = self.stream.alloc_zeros::<f32>(4 * x.len())?;
        self.k_math_probe(self.ptr(x), self.ptr(&out))?;
        self.download(self.ptr(&out))
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
        self.k_hc_split(
            self.ptr(mix),
            count,
            n_hc,
            self.ptr(scale),
            self.ptr(base),
            iters,
            eps,
            self.ptr(pre),
            self.ptr(post),
            self.ptr(comb),
        )
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
        self.k_hc_post(
            self.ptr(y),
            self.ptr(h),
            self.ptr(post),
            self.ptr(comb),
            1,
            n_hc,
            d,
            self.ptr(out),
        )
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
        // One token whose hash row is row 0 of a one-row table.
        let token0 = self.stream.clone_htod(&[0i32])?;
        self.k_router(
            self.ptr(logits),
            1,
            n,
            bias.map(|b| self.ptr(b)),
            hash_ids.map(|h| (self.ptr(h), self.ptr(&token0))),
            k,
            scale,
            self.ptr(experts),
            self.ptr(weights),
        )
    }

    /// Sink softmax attention of every head of `q` (heads of `dim`) over
    /// `keys` (rows of `dim`, also the values), attention.md §9.2: the
    /// forward's attention kernel with the keys as one token's raw window
    /// (all but the last row in the ring, the last as the token's own row).
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
                && n_keys > 0
                && q.len() == heads * dim
                && out.len() == heads * dim
                && keys.len() == n_keys * dim
                && n_keys <= MAX_KEYS,
            format!("{heads} heads of {dim}, 1 to {MAX_KEYS} keys"),
            format!("q {}, keys {}, out {}", q.len(), keys.len(), out.len()),
        )?;
        let k = self.ptr(keys);
        self.k_attention(&AttnArgs {
            q: self.ptr(q),
            cur: k.at((n_keys - 1) * dim, dim),
            ring: k,
            window: n_keys,
            comp: DPtr::null(),
            ratio: 0,
            sel: None,
            sel_k: 0,
            pos0: n_keys - 1,
            tokens: 1,
            hd: dim,
            sinks: self.ptr(sinks),
            scale: 1.0 / (dim as f32).sqrt(),
            max_keys: n_keys,
            out: self.ptr(out),
        })
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
            n > 0 && u.len() == n && mid.len() == n,
            n.to_string(),
            format!("{}, {}", u.len(), mid.len()),
        )?;
        self.k_swiglu(
            self.ptr(g),
            self.ptr(u),
            n,
            clamp,
            None,
            weight,
            self.ptr(mid),
        )
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
        self.k_hc_weighted_sum(self.ptr(h), self.ptr(w), 1, n_hc, self.ptr(x))
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
        self.k_compressor_pool(self.ptr(kv), self.ptr(score), ratio, d, self.ptr(out))
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
        self.k_indexer_round_trip(self.ptr(v), dim)
    }
}

/// Keys one attention launch may take: its scores live in the default 48
/// KiB of shared memory.
pub const MAX_KEYS: usize = 12 * 1024;
