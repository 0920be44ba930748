//! Raw launches of the kernels in `kernels/*.cu`, one function per kernel,
//! taking device addresses ([`DPtr`]) so callers can point anywhere inside
//! their buffers (a layer's compressed rows, one token of a chunk) and run
//! ops in place. This is the one place the backend launches kernels: every
//! `unsafe` block here pairs a launch with the kernel's C signature, and the
//! callers (the checked wrappers in `ops` and the forward pass) own the
//! sizes.

use std::marker::PhantomData;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};

use gguf::order;

use crate::error::{CudaError, Result};
use crate::ops::{Gpu, Kernel};

/// Warps per block of the row-per-warp kernels.
pub(crate) const WARPS: u32 = 8;

/// Whether `mm_q8_0_staged` may read these rows with 16-byte loads: rows of
/// a multiple of 8 blocks (272 bytes) at 16-byte aligned addresses, and
/// activations at 4-byte aligned offsets.
fn q8_0_staged(w: DPtr<u8>, cols: usize, slots: &Slots) -> bool {
    cols.is_multiple_of(256)
        && w.addr.is_multiple_of(16)
        && slots.w_stride.is_multiple_of(16)
        && slots.act_stride.is_multiple_of(32)
}

/// The Q2_K and IQ2_XXS decoders read their blocks with 4-byte loads
/// (forward.cu), which need every matrix to start 4-byte aligned; a
/// misaligned address would fault on the device, so it is refused here.
fn check_word_aligned(kind: MatKernel, w: DPtr<u8>, w_stride: usize) -> Result<()> {
    let aligned = w.addr.is_multiple_of(4) && w_stride.is_multiple_of(4);
    if matches!(kind, MatKernel::Q2K | MatKernel::Iq2Xxs) && !aligned {
        return Err(CudaError::Shape {
            what: "Q2_K / IQ2_XXS weight address and matrix stride",
            expected: "multiples of 4 bytes".into(),
            got: format!("{:#x} and {w_stride}", w.addr),
        });
    }
    Ok(())
}

/// Slots per block of the Q8_0 weight-reusing kernel (TILE_Q8 in forward.cu).
const TILE_Q8: u32 = 16;

/// Threads of the one block that samples (SMP_THREADS in sample.cu).
const SAMPLE_THREADS: u32 = 1024;

/// A device address of `len` values of `T`: a whole buffer or a range of it.
#[derive(Debug)]
pub struct DPtr<T> {
    addr: u64,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for DPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for DPtr<T> {}

impl<T> DPtr<T> {
    /// The address of a whole buffer.
    pub fn of(s: &CudaSlice<T>, stream: &CudaStream) -> Self {
        let (addr, _sync) = s.device_ptr(stream);
        DPtr {
            addr,
            len: s.len(),
            _t: PhantomData,
        }
    }

    /// No buffer: the kernels' optional arguments.
    pub fn null() -> Self {
        DPtr {
            addr: 0,
            len: 0,
            _t: PhantomData,
        }
    }

    /// Values `[off, off + len)`. Ranges are computed from the model's
    /// shapes, so one outside the buffer is a bug in the caller, never a
    /// property of the input: it panics rather than write out of bounds.
    pub fn at(self, off: usize, len: usize) -> Self {
        assert!(
            off + len <= self.len,
            "device range {off}+{len} outside a buffer of {}",
            self.len
        );
        DPtr {
            addr: self.addr + (off * std::mem::size_of::<T>()) as u64,
            len,
            _t: PhantomData,
        }
    }

    /// Values from `off` to the end.
    pub fn from(self, off: usize) -> Self {
        self.at(off, self.len - off.min(self.len))
    }

    pub fn len(self) -> usize {
        self.len
    }

    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    pub fn is_null(self) -> bool {
        self.addr == 0
    }

    pub fn addr(self) -> u64 {
        self.addr
    }
}

impl Gpu {
    /// Copies `p` to the host after everything queued so far.
    pub fn download(&self, p: DPtr<f32>) -> Result<Vec<f32>> {
        self.stream.synchronize()?;
        let mut out = vec![0f32; p.len()];
        // SAFETY: `p` addresses `p.len()` f32 of device memory (a DPtr is
        // only made from a live buffer, narrowed by checked ranges) and the
        // stream is idle, so nothing writes it during the copy.
        unsafe { cudarc::driver::result::memcpy_dtoh_sync(&mut out, p.addr) }?;
        Ok(out)
    }
}

/// How a batched matrix-vector product addresses its slots (kernels/forward.cu
/// header): weight `ids[s]` or `s % w_mod`, `w_stride` bytes apart;
/// activation `s / act_div`, `act_stride` values apart; output rows of slot
/// `s` at `s * rows`.
#[derive(Clone, Copy, Debug)]
pub struct Slots {
    pub count: usize,
    pub ids: Option<DPtr<i32>>,
    pub w_mod: usize,
    pub w_stride: usize,
    pub act_div: usize,
    pub act_stride: usize,
}

impl Slots {
    /// `count` activation vectors of `cols` against one matrix.
    pub fn tokens(count: usize, cols: usize) -> Self {
        Slots {
            count,
            ids: None,
            w_mod: 1,
            w_stride: 0,
            act_div: 1,
            act_stride: cols,
        }
    }
}

/// A quantized or plain activation as a matrix kernel reads it.
#[derive(Clone, Copy, Debug)]
pub enum Act {
    F32(DPtr<f32>),
    Q8_0 { qs: DPtr<i8>, scales: DPtr<f32> },
    Q8K(DPtr<u8>),
}

/// The matrix kernels, by the device format of their weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatKernel {
    F32,
    F16,
    Q8_0,
    Mxfp4,
    Q2K,
    Q4K,
    Iq2Xxs,
}

fn grid1(n: usize) -> LaunchConfig {
    LaunchConfig::for_num_elems(n as u32)
}

fn cfg(grid: (u32, u32, u32), block: u32, smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: smem,
    }
}

fn i(v: usize) -> i32 {
    v as i32
}

impl Gpu {
    pub(crate) fn k_quantize_q8_0(
        &self,
        x: DPtr<f32>,
        qs: DPtr<i8>,
        scales: DPtr<f32>,
    ) -> Result<()> {
        let n = i(x.len());
        let nb = x.len().div_ceil(32);
        let (xa, qa, sa) = (x.addr, qs.addr, scales.addr);
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::QuantizeQ80Act));
        b.arg(&xa).arg(&n).arg(&qa).arg(&sa);
        // SAFETY: quantize_q8_0_act(const float*, int, int8_t*, float*);
        // callers size qs for nb*32 codes and scales for nb values.
        unsafe {
            b.launch(cfg(
                (nb.div_ceil(WARPS as usize) as u32, 1, 1),
                32 * WARPS,
                0,
            ))
        }?;
        Ok(())
    }

    pub(crate) fn k_quantize_q8_k(&self, x: DPtr<f32>, out: DPtr<u8>) -> Result<()> {
        let blocks = x.len() / 256;
        let nb = i(blocks);
        let (xa, oa) = (x.addr, out.addr);
        let mut b = self.stream.launch_builder(self.kernel(Kernel::QuantizeQ8K));
        b.arg(&xa).arg(&nb).arg(&oa);
        // SAFETY: quantize_q8_k(const float*, int, block_q8_K*); out holds
        // `blocks` 292-byte blocks (callers), x 256 values per block.
        unsafe {
            b.launch(cfg(
                (blocks.div_ceil(WARPS as usize) as u32, 1, 1),
                32 * WARPS,
                0,
            ))
        }?;
        Ok(())
    }

    /// `y[s] = W[s] · x[s]` for every slot of `slots`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_mm(
        &self,
        kind: MatKernel,
        w: DPtr<u8>,
        rows: usize,
        cols: usize,
        act: Act,
        slots: Slots,
        y: DPtr<f32>,
    ) -> Result<()> {
        check_word_aligned(kind, w, slots.w_stride)?;
        let wide = order::is_wide(rows, cols);
        let k = match kind {
            MatKernel::F32 if wide => Kernel::MmF32Wide,
            MatKernel::F16 if wide => Kernel::MmF16Wide,
            MatKernel::F32 => Kernel::MmF32,
            MatKernel::F16 => Kernel::MmF16,
            MatKernel::Q8_0 if q8_0_staged(w, cols, &slots) => Kernel::MmQ80Staged,
            MatKernel::Q8_0 => Kernel::MmQ80,
            MatKernel::Mxfp4 => Kernel::MmMxfp4,
            MatKernel::Q2K => Kernel::MmQ2K,
            MatKernel::Q4K => Kernel::MmQ4K,
            MatKernel::Iq2Xxs => Kernel::MmIq2Xxs,
        };
        let wa = w.addr;
        let stride = slots.w_stride as i64;
        let ids = slots.ids.map_or(0, |p| p.addr);
        let (w_mod, r, c) = (i(slots.w_mod.max(1)), i(rows), i(cols));
        let (div, st) = (i(slots.act_div.max(1)), i(slots.act_stride));
        let ya = y.addr;
        let mut b = self.stream.launch_builder(self.kernel(k));
        b.arg(&wa)
            .arg(&stride)
            .arg(&ids)
            .arg(&w_mod)
            .arg(&r)
            .arg(&c);
        let (a0, a1);
        match act {
            Act::F32(x) => {
                a0 = x.addr;
                b.arg(&a0);
            }
            Act::Q8_0 { qs, scales } => {
                a0 = qs.addr;
                a1 = scales.addr;
                b.arg(&a0).arg(&a1);
            }
            Act::Q8K(x) => {
                a0 = x.addr;
                b.arg(&a0);
            }
        }
        b.arg(&div).arg(&st);
        let g = self.iq2_grid_addr();
        if kind == MatKernel::Iq2Xxs {
            b.arg(&g);
        }
        b.arg(&ya);
        let (grid, block) = if wide && matches!(kind, MatKernel::F32 | MatKernel::F16) {
            (
                (slots.count as u32, rows as u32, 1),
                order::WIDE_THREADS as u32,
            )
        } else {
            (
                (slots.count as u32, (rows as u32).div_ceil(WARPS), 1),
                32 * WARPS,
            )
        };
        // SAFETY: mm_*(const uint8_t*, long long, const int*, int, int, int,
        // <activation>, int, int, [grid,] float*) as declared in
        // kernels/forward.cu; the activation variant matches the kernel
        // (callers pick it from the weight format) and the callers size
        // w, the activations and y for `slots`.
        unsafe { b.launch(cfg(grid, block, 0)) }?;
        Ok(())
    }

    pub(crate) fn k_rms_norm(
        &self,
        x: DPtr<f32>,
        w: Option<DPtr<f32>>,
        n: usize,
        eps: f32,
        out: DPtr<f32>,
    ) -> Result<()> {
        let count = (x.len() / n) as u32;
        let (xa, wa, oa, ni) = (x.addr, w.map_or(0, |p| p.addr), out.addr, i(n));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::RmsNorm));
        b.arg(&xa).arg(&wa).arg(&ni).arg(&eps).arg(&oa);
        // SAFETY: rms_norm(const float*, const float* or null, int, float,
        // float*); one block per n-vector of x, out as long as x.
        unsafe { b.launch(cfg((count, 1, 1), order::NORM_THREADS as u32, 0)) }?;
        Ok(())
    }

    /// RoPE of `v`'s vectors of `dim`; vector j at position pos0 + j / per_pos.
    pub(crate) fn k_rope(
        &self,
        v: DPtr<f32>,
        dim: usize,
        inv_freq: DPtr<f32>,
        pos0: usize,
        per_pos: usize,
        inverse: bool,
    ) -> Result<()> {
        let count = v.len() / dim;
        let pairs = inv_freq.len();
        let (va, fa) = (v.addr, inv_freq.addr);
        let (c, d, p, p0, pp, inv) = (
            i(count),
            i(dim),
            i(pairs),
            i(pos0),
            i(per_pos.max(1)),
            i32::from(inverse),
        );
        let mut b = self.stream.launch_builder(self.kernel(Kernel::Rope));
        b.arg(&va)
            .arg(&c)
            .arg(&d)
            .arg(&fa)
            .arg(&p)
            .arg(&p0)
            .arg(&pp)
            .arg(&inv);
        // SAFETY: rope(float*, int, int, const float*, int, int, int, int);
        // one thread per (vector, pair), bounds checked in the kernel.
        unsafe { b.launch(grid1(count * pairs)) }?;
        Ok(())
    }

    pub(crate) fn k_fp8_round_trip(&self, v: DPtr<f32>, dim: usize, nope: usize) -> Result<()> {
        let count = v.len() / dim;
        let (va, c, d, n) = (v.addr, i(count), i(dim), i(nope));
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::Fp8RoundTrip));
        b.arg(&va).arg(&c).arg(&d).arg(&n);
        // SAFETY: fp8_round_trip(float*, int, int, int); one warp per
        // 64-block, bounds checked in the kernel.
        let blocks = count * nope / 64;
        unsafe {
            b.launch(cfg(
                (blocks.div_ceil(WARPS as usize) as u32, 1, 1),
                32 * WARPS,
                0,
            ))
        }?;
        Ok(())
    }

    pub(crate) fn k_f16_round(&self, v: DPtr<f32>) -> Result<()> {
        let (va, n) = (v.addr, i(v.len()));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::F16Round));
        b.arg(&va).arg(&n);
        // SAFETY: f16_round(float*, int); bounds checked in the kernel.
        unsafe { b.launch(grid1(v.len())) }?;
        Ok(())
    }

    pub(crate) fn k_math_probe(&self, x: DPtr<f32>, out: DPtr<f32>) -> Result<()> {
        let (xa, n, oa) = (x.addr, i(x.len()), out.addr);
        let mut b = self.stream.launch_builder(self.kernel(Kernel::MathProbe));
        b.arg(&xa).arg(&n).arg(&oa);
        // SAFETY: math_probe(const float*, int, float*); out holds 4 values
        // per input (the caller allocates it so); bounds checked in the kernel.
        unsafe { b.launch(grid1(x.len())) }?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_hc_split(
        &self,
        mix: DPtr<f32>,
        count: usize,
        n_hc: usize,
        scale: DPtr<f32>,
        base: DPtr<f32>,
        iters: usize,
        eps: f32,
        pre: DPtr<f32>,
        post: DPtr<f32>,
        comb: DPtr<f32>,
    ) -> Result<()> {
        let (ma, sa, ba, pa, qa, ca) = (
            mix.addr, scale.addr, base.addr, pre.addr, post.addr, comb.addr,
        );
        let (c, n, it) = (i(count), i(n_hc), i(iters));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::HcSplit));
        b.arg(&ma)
            .arg(&c)
            .arg(&n)
            .arg(&sa)
            .arg(&ba)
            .arg(&it)
            .arg(&eps);
        b.arg(&pa).arg(&qa).arg(&ca);
        // SAFETY: hc_split(const float*, int, int, const float*, const
        // float*, int, float, float*, float*, float*); one warp per token,
        // WARPS tokens per block.
        unsafe { b.launch(cfg(((count as u32).div_ceil(WARPS), 1, 1), 32 * WARPS, 0)) }?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_hc_post(
        &self,
        y: DPtr<f32>,
        h: DPtr<f32>,
        post: DPtr<f32>,
        comb: DPtr<f32>,
        tokens: usize,
        n_hc: usize,
        d: usize,
        out: DPtr<f32>,
    ) -> Result<()> {
        let (ya, ha, pa, ca, oa) = (y.addr, h.addr, post.addr, comb.addr, out.addr);
        let (t, n, di) = (i(tokens), i(n_hc), i(d));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::HcPost));
        b.arg(&ya)
            .arg(&ha)
            .arg(&pa)
            .arg(&ca)
            .arg(&t)
            .arg(&n)
            .arg(&di)
            .arg(&oa);
        // SAFETY: hc_post(const float*, const float*, const float*, const
        // float*, int, int, int, float*); one thread per output value.
        unsafe { b.launch(grid1(tokens * n_hc * d)) }?;
        Ok(())
    }

    pub(crate) fn k_hc_weighted_sum(
        &self,
        h: DPtr<f32>,
        w: DPtr<f32>,
        tokens: usize,
        n_hc: usize,
        x: DPtr<f32>,
    ) -> Result<()> {
        let d = x.len() / tokens.max(1);
        let (ha, wa, xa) = (h.addr, w.addr, x.addr);
        let (t, n, di) = (i(tokens), i(n_hc), i(d));
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::HcWeightedSum));
        b.arg(&ha).arg(&wa).arg(&t).arg(&n).arg(&di).arg(&xa);
        // SAFETY: hc_weighted_sum(const float*, const float*, int, int, int,
        // float*); one thread per output value.
        unsafe { b.launch(grid1(tokens * d)) }?;
        Ok(())
    }

    pub(crate) fn k_hc_head_weights(
        &self,
        mix: DPtr<f32>,
        n_hc: usize,
        scale: DPtr<f32>,
        base: DPtr<f32>,
        eps: f32,
        w: DPtr<f32>,
    ) -> Result<()> {
        let tokens = mix.len() / n_hc;
        let (ma, sa, ba, wa) = (mix.addr, scale.addr, base.addr, w.addr);
        let (t, n) = (i(tokens), i(n_hc));
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::HcHeadWeights));
        b.arg(&ma)
            .arg(&t)
            .arg(&n)
            .arg(&sa)
            .arg(&ba)
            .arg(&eps)
            .arg(&wa);
        // SAFETY: hc_head_weights(const float*, int, int, const float*,
        // const float*, float, float*); one thread per value.
        unsafe { b.launch(grid1(tokens * n_hc)) }?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_embed(
        &self,
        table: DPtr<u8>,
        is_f16: bool,
        tokens: DPtr<i32>,
        count: usize,
        d: usize,
        n_hc: usize,
        out: DPtr<f32>,
    ) -> Result<()> {
        let (ta, ka, oa) = (table.addr, tokens.addr, out.addr);
        let (f, t, di, n) = (i32::from(is_f16), i(count), i(d), i(n_hc));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::Embed));
        b.arg(&ta)
            .arg(&f)
            .arg(&ka)
            .arg(&t)
            .arg(&di)
            .arg(&n)
            .arg(&oa);
        // SAFETY: embed(const uint8_t*, int, const int*, int, int, int,
        // float*); token ids are checked against the vocabulary by callers.
        unsafe { b.launch(grid1(count * n_hc * d)) }?;
        Ok(())
    }

    /// Routes `count` tokens (logits rows of `n_expert`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_router(
        &self,
        logits: DPtr<f32>,
        count: usize,
        n_expert: usize,
        bias: Option<DPtr<f32>>,
        hash: Option<(DPtr<i32>, DPtr<i32>)>,
        k: usize,
        scale: f32,
        experts: DPtr<i32>,
        weights: DPtr<f32>,
    ) -> Result<()> {
        let la = logits.addr;
        let ba = bias.map_or(0, |p| p.addr);
        let (ha, ta) = hash.map_or((0, 0), |(h, t)| (h.addr, t.addr));
        let (ea, wa) = (experts.addr, weights.addr);
        let (n, ki) = (i(n_expert), i(k));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::Router));
        b.arg(&la)
            .arg(&n)
            .arg(&ba)
            .arg(&ha)
            .arg(&ta)
            .arg(&ki)
            .arg(&scale);
        b.arg(&ea).arg(&wa);
        // SAFETY: router(const float*, int, const float*, const int*, const
        // int*, int, float, int*, float*); one warp per token; n_expert <=
        // 512 and k <= 64 are checked when the model loads, hash tables
        // hold valid expert ids (checked at upload).
        unsafe { b.launch(cfg((count as u32, 1, 1), 32, 0)) }?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_swiglu(
        &self,
        g: DPtr<f32>,
        u: DPtr<f32>,
        n: usize,
        clamp: f32,
        weights: Option<DPtr<f32>>,
        weight: f32,
        mid: DPtr<f32>,
    ) -> Result<()> {
        let slots = g.len() / n;
        let (ga, ua, wa, ma) = (g.addr, u.addr, weights.map_or(0, |p| p.addr), mid.addr);
        let (ni, si) = (i(n), i(slots));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::Swiglu));
        b.arg(&ga)
            .arg(&ua)
            .arg(&ni)
            .arg(&si)
            .arg(&clamp)
            .arg(&wa)
            .arg(&weight)
            .arg(&ma);
        // SAFETY: swiglu(const float*, const float*, int, int, float, const
        // float* or null, float, float*); one thread per value.
        unsafe { b.launch(grid1(n * slots)) }?;
        Ok(())
    }

    pub(crate) fn k_moe_sum(
        &self,
        down: DPtr<f32>,
        tokens: usize,
        k: usize,
        shared: DPtr<f32>,
        out: DPtr<f32>,
    ) -> Result<()> {
        let d = out.len() / tokens.max(1);
        let (da, sa, oa) = (down.addr, shared.addr, out.addr);
        let (t, ki, di) = (i(tokens), i(k), i(d));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::MoeSum));
        b.arg(&da).arg(&t).arg(&ki).arg(&di).arg(&sa).arg(&oa);
        // SAFETY: moe_sum(const float*, int, int, int, const float*, float*).
        unsafe { b.launch(grid1(tokens * d)) }?;
        Ok(())
    }

    pub(crate) fn k_compressor_pool(
        &self,
        kv: DPtr<f32>,
        score: DPtr<f32>,
        ratio: usize,
        d: usize,
        out: DPtr<f32>,
    ) -> Result<()> {
        let width = if ratio == 4 { 2 * d } else { d };
        let (ka, sa, oa) = (kv.addr, score.addr, out.addr);
        let (r, di, w) = (i(ratio), i(d), i(width));
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::CompressorPool));
        b.arg(&ka).arg(&sa).arg(&r).arg(&di).arg(&w).arg(&oa);
        // SAFETY: compressor_pool(const float*, const float*, int, int, int,
        // float*); one thread per channel.
        unsafe { b.launch(grid1(d)) }?;
        Ok(())
    }

    pub(crate) fn k_indexer_round_trip(&self, v: DPtr<f32>, dim: usize) -> Result<()> {
        let (va, d) = (v.addr, i(dim));
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::IndexerRoundTrip));
        b.arg(&va).arg(&d);
        // SAFETY: indexer_round_trip(float*, int); one block of `dim`
        // threads per vector, dim <= 1024 (the kernel's shared buffer).
        unsafe { b.launch(cfg(((v.len() / dim) as u32, 1, 1), dim as u32, 0)) }?;
        Ok(())
    }

    /// One compressor's walk over a chunk (kernels/forward.cu).
    pub(crate) fn k_compressor_scan(&self, a: &ScanArgs) -> Result<()> {
        let (ka, sa, pa, na, fa) = (
            a.kvp.addr,
            a.scp.addr,
            a.ape.addr,
            a.norm.addr,
            a.inv_freq.addr,
        );
        let (fk, fs, ra) = (a.fkv.addr, a.fsc.addr, a.rows_out.addr);
        let (t, p0, r, d, w) = (i(a.tokens), i(a.pos0), i(a.ratio), i(a.d), i(a.width));
        let (pairs, qat, nope, f16) =
            (i(a.inv_freq.len()), a.qat, i(a.nope), i32::from(a.f16_rows));
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::CompressorScan));
        b.arg(&ka).arg(&sa).arg(&t).arg(&p0).arg(&r).arg(&d).arg(&w);
        b.arg(&pa)
            .arg(&na)
            .arg(&a.eps)
            .arg(&fa)
            .arg(&pairs)
            .arg(&qat)
            .arg(&nope)
            .arg(&f16);
        b.arg(&fk).arg(&fs).arg(&ra);
        // SAFETY: compressor_scan(...) as declared in kernels/forward.cu;
        // d <= 1024 (its shared buffers), one block of round_up(d, 32)
        // threads; the caller sizes rows_out for every row the chunk emits.
        let threads = (a.d.div_ceil(32) * 32) as u32;
        unsafe { b.launch(cfg((1, 1, 1), threads, 0)) }?;
        Ok(())
    }

    pub(crate) fn k_ring_write(
        &self,
        cur: DPtr<f32>,
        tokens: usize,
        pos0: usize,
        window: usize,
        ring: DPtr<f32>,
    ) -> Result<()> {
        let hd = cur.len() / tokens.max(1);
        let (ca, ra) = (cur.addr, ring.addr);
        let (t, p, w, h) = (i(tokens), i(pos0), i(window), i(hd));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::RingWrite));
        b.arg(&ca).arg(&t).arg(&p).arg(&w).arg(&h).arg(&ra);
        // SAFETY: ring_write(const float*, int, int, int, int, float*); the
        // ring holds `window` rows of hd.
        unsafe { b.launch(grid1(tokens * hd)) }?;
        Ok(())
    }

    /// Indexer scores of `tokens` tokens over at most `n_max` rows each.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_indexer_scores(
        &self,
        qi: DPtr<f32>,
        wts: DPtr<f32>,
        rows: DPtr<f32>,
        tokens: usize,
        pos0: usize,
        ratio: usize,
        nh: usize,
        d: usize,
        s: f32,
        n_max: usize,
        stride: usize,
        scores: DPtr<f32>,
    ) -> Result<()> {
        let (qa, wa, ra, sa) = (qi.addr, wts.addr, rows.addr, scores.addr);
        let (p0, r, h, di, st) = (i(pos0), i(ratio), i(nh), i(d), i(stride));
        let mut b = self
            .stream
            .launch_builder(self.kernel(Kernel::IndexerScores));
        b.arg(&qa)
            .arg(&wa)
            .arg(&ra)
            .arg(&p0)
            .arg(&r)
            .arg(&h)
            .arg(&di)
            .arg(&s)
            .arg(&st)
            .arg(&sa);
        // SAFETY: indexer_scores(const float*, const float*, const float*,
        // int, int, int, int, float, int, float*); rows visible to a token
        // are below (pos+1)/ratio <= n_max <= stride.
        let grid = ((n_max as u32).div_ceil(WARPS).max(1), tokens as u32, 1);
        unsafe { b.launch(cfg(grid, 32 * WARPS, 0)) }?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_top_k(
        &self,
        scores: DPtr<f32>,
        tokens: usize,
        pos0: usize,
        ratio: usize,
        stride: usize,
        k: usize,
        sel: DPtr<i32>,
        n_sel: DPtr<i32>,
    ) -> Result<()> {
        let (sa, la, na) = (scores.addr, sel.addr, n_sel.addr);
        let (p0, r, st, ki) = (i(pos0), i(ratio), i(stride), i(k));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::TopK));
        b.arg(&sa)
            .arg(&p0)
            .arg(&r)
            .arg(&st)
            .arg(&ki)
            .arg(&la)
            .arg(&na);
        // SAFETY: top_k(const float*, int, int, int, int, int*, int*); one
        // block per token, sel holds k ids per token.
        unsafe { b.launch(cfg((tokens as u32, 1, 1), 1024, 0)) }?;
        Ok(())
    }

    /// Attention of a chunk (kernels/forward.cu `attention`).
    pub(crate) fn k_attention(&self, a: &AttnArgs) -> Result<()> {
        let (qa, ca, ra, pa) = (a.q.addr, a.cur.addr, a.ring.addr, a.comp.addr);
        let (sa, na) = a.sel.map_or((0, 0), |(s, n)| (s.addr, n.addr));
        let (ka, oa) = (a.sinks.addr, a.out.addr);
        let (w, r, k, p0, hd) = (i(a.window), i(a.ratio), i(a.sel_k), i(a.pos0), i(a.hd));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::Attention));
        b.arg(&qa)
            .arg(&ca)
            .arg(&ra)
            .arg(&w)
            .arg(&pa)
            .arg(&r)
            .arg(&sa)
            .arg(&na)
            .arg(&k);
        b.arg(&p0).arg(&hd).arg(&ka).arg(&a.scale).arg(&oa);
        let grid = (a.sinks.len() as u32, a.tokens as u32, 1);
        // SAFETY: attention(...) as declared in kernels/forward.cu; one
        // block per (head, token); `max_keys` floats of dynamic shared
        // memory bound every token's key count (checked by the caller
        // against the 48 KiB default).
        unsafe { b.launch(cfg(grid, 256, (a.max_keys * 4) as u32)) }?;
        Ok(())
    }

    /// Q8_0 weights shared by `count` activation vectors of `cols`, the
    /// vector of slot s at `s * a_stride` values (a multiple of 32) and its
    /// output at `s * y_stride`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_mm_q8_0_tiles(
        &self,
        w: DPtr<u8>,
        rows: usize,
        cols: usize,
        qs: DPtr<i8>,
        scales: DPtr<f32>,
        count: usize,
        (a_stride, y_stride): (usize, usize),
        y: DPtr<f32>,
    ) -> Result<()> {
        let (wa, qa, sa, ya) = (w.addr, qs.addr, scales.addr, y.addr);
        let (r, c, n, ast, yst) = (i(rows), i(cols), i(count), i(a_stride), i(y_stride));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::MmQ80Tiles));
        b.arg(&wa)
            .arg(&r)
            .arg(&c)
            .arg(&qa)
            .arg(&sa)
            .arg(&n)
            .arg(&ast)
            .arg(&yst)
            .arg(&ya);
        let grid = (
            (count as u32).div_ceil(TILE_Q8),
            (rows as u32).div_ceil(WARPS),
            1,
        );
        // SAFETY: mm_q8_0_tiles(const uint8_t*, int, int, const int8_t*,
        // const float*, int, int, int, float*); the activation holds a code
        // at (count-1)*a_stride + cols - 1 (4-byte aligned rows: a_stride
        // and cols are multiples of 32), y a value at (count-1)*y_stride +
        // rows - 1 (the callers size both).
        unsafe { b.launch(cfg(grid, 32 * WARPS, 0)) }?;
        Ok(())
    }

    /// Groups `experts` (one id per slot) by expert into `offsets`/`order`.
    pub(crate) fn k_moe_group(
        &self,
        experts: DPtr<i32>,
        n_expert: usize,
        offsets: DPtr<i32>,
        order: DPtr<i32>,
    ) -> Result<()> {
        let (ea, oa, ra) = (experts.addr, offsets.addr, order.addr);
        let (n, ne) = (i(experts.len()), i(n_expert));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::MoeGroup));
        b.arg(&ea).arg(&n).arg(&ne).arg(&oa).arg(&ra);
        // SAFETY: moe_group(const int*, int, int, int*, int*); ids are below
        // n_expert <= 512 (router output), offsets holds n_expert + 1 and
        // order n values.
        unsafe { b.launch(cfg((1, 1, 1), 32, 0)) }?;
        Ok(())
    }

    /// IQ2_XXS or Q2_K experts over slots grouped by [`Gpu::k_moe_group`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_mm_grouped(
        &self,
        kind: MatKernel,
        w: DPtr<u8>,
        w_stride: usize,
        n_expert: usize,
        groups: (DPtr<i32>, DPtr<i32>),
        rows: usize,
        cols: usize,
        act: DPtr<u8>,
        act_div: usize,
        act_stride: usize,
        y: DPtr<f32>,
    ) -> Result<()> {
        check_word_aligned(kind, w, w_stride)?;
        let k = match kind {
            MatKernel::Iq2Xxs => Kernel::MmIq2XxsGrouped,
            MatKernel::Q2K => Kernel::MmQ2KGrouped,
            _ => unreachable!("only IQ2_XXS and Q2_K have grouped kernels"),
        };
        let (wa, oa, ra, aa, ya) = (w.addr, groups.0.addr, groups.1.addr, act.addr, y.addr);
        let stride = w_stride as i64;
        let (r, c, div, st) = (i(rows), i(cols), i(act_div.max(1)), i(act_stride));
        let g = self.iq2_grid_addr();
        let mut b = self.stream.launch_builder(self.kernel(k));
        b.arg(&wa)
            .arg(&stride)
            .arg(&oa)
            .arg(&ra)
            .arg(&r)
            .arg(&c)
            .arg(&aa)
            .arg(&div)
            .arg(&st);
        if kind == MatKernel::Iq2Xxs {
            b.arg(&g);
        }
        b.arg(&ya);
        let grid = (n_expert as u32, (rows as u32).div_ceil(WARPS), 1);
        // SAFETY: mm_{iq2_xxs,q2_k}_grouped as declared in
        // kernels/forward.cu; offsets/order come from moe_group over the
        // same slots, the Q8_K activation and y are sized for them.
        unsafe { b.launch(cfg(grid, 32 * WARPS, 0)) }?;
        Ok(())
    }

    pub(crate) fn k_argmax(&self, x: DPtr<f32>, out: DPtr<i32>) -> Result<()> {
        let (xa, oa, n) = (x.addr, out.addr, i(x.len()));
        let mut b = self.stream.launch_builder(self.kernel(Kernel::Argmax));
        b.arg(&xa).arg(&n).arg(&oa);
        // SAFETY: argmax(const float*, int, int*); one block.
        unsafe { b.launch(cfg((1, 1, 1), 1024, 0)) }?;
        Ok(())
    }

    /// A draw from `logits` (sample.cu's `sample`). The caller owns the
    /// sizes: `keys` holds the next power of two >= `logits.len()` values,
    /// `cums` `logits.len()`, `out` one; `top_k` is 0 or below the length.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_sample(
        &self,
        logits: DPtr<f32>,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        unit: f64,
        keys: DPtr<u64>,
        cums: DPtr<f64>,
        out: DPtr<i32>,
    ) -> Result<()> {
        let (xa, n, k) = (logits.addr, i(logits.len()), i(top_k));
        let (ka, ca, oa) = (keys.addr, cums.addr, out.addr);
        let mut b = self.stream.launch_builder(self.kernel(Kernel::Sample));
        b.arg(&xa)
            .arg(&n)
            .arg(&temperature)
            .arg(&k)
            .arg(&top_p)
            .arg(&min_p)
            .arg(&unit)
            .arg(&ka)
            .arg(&ca)
            .arg(&oa);
        // SAFETY: sample(const float*, int, float, int, float, float,
        // double, unsigned long long*, double*, int*) as declared in
        // kernels/sample.cu; one block of SAMPLE_THREADS; the buffers are
        // sized as documented above.
        unsafe { b.launch(cfg((1, 1, 1), SAMPLE_THREADS, 0)) }?;
        Ok(())
    }

    /// The log-sum-exp, `token`'s logit and the `k` largest of `logits`
    /// (sample.cu's `top_logits`). The caller owns the sizes: `k` at most
    /// the length, `keys` the next power of two >= `k` values, `ids` and
    /// `vals` `k`, `lse_tok` two; `token` below the length.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn k_top_logits(
        &self,
        logits: DPtr<f32>,
        token: Option<u32>,
        k: usize,
        keys: DPtr<u64>,
        ids: DPtr<i32>,
        vals: DPtr<f32>,
        lse_tok: DPtr<f32>,
    ) -> Result<()> {
        let (xa, n, kk) = (logits.addr, i(logits.len()), i(k));
        let tok = token.map_or(-1, |t| t as i32);
        let (ka, ia, va, la) = (keys.addr, ids.addr, vals.addr, lse_tok.addr);
        let mut b = self.stream.launch_builder(self.kernel(Kernel::TopLogits));
        b.arg(&xa)
            .arg(&n)
            .arg(&tok)
            .arg(&kk)
            .arg(&ka)
            .arg(&ia)
            .arg(&va)
            .arg(&la);
        // SAFETY: top_logits(const float*, int, int, int, unsigned long
        // long*, int*, float*, float*) as declared in kernels/sample.cu; one
        // block of SAMPLE_THREADS; the buffers are sized as documented above.
        unsafe { b.launch(cfg((1, 1, 1), SAMPLE_THREADS, 0)) }?;
        Ok(())
    }
}

/// Arguments of [`Gpu::k_compressor_scan`].
pub(crate) struct ScanArgs {
    pub kvp: DPtr<f32>,
    pub scp: DPtr<f32>,
    pub tokens: usize,
    pub pos0: usize,
    pub ratio: usize,
    pub d: usize,
    pub width: usize,
    pub ape: DPtr<f32>,
    pub norm: DPtr<f32>,
    pub eps: f32,
    pub inv_freq: DPtr<f32>,
    /// 0 none, 1 FP8 on `nope` dims, 2 Hadamard + FP4.
    pub qat: i32,
    pub nope: usize,
    pub f16_rows: bool,
    pub fkv: DPtr<f32>,
    pub fsc: DPtr<f32>,
    pub rows_out: DPtr<f32>,
}

/// Arguments of [`Gpu::k_attention`].
pub(crate) struct AttnArgs {
    pub q: DPtr<f32>,
    pub cur: DPtr<f32>,
    pub ring: DPtr<f32>,
    pub window: usize,
    pub comp: DPtr<f32>,
    pub ratio: usize,
    pub sel: Option<(DPtr<i32>, DPtr<i32>)>,
    pub sel_k: usize,
    pub pos0: usize,
    pub tokens: usize,
    pub hd: usize,
    pub sinks: DPtr<f32>,
    pub scale: f32,
    pub max_keys: usize,
    pub out: DPtr<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: u64) -> DPtr<u8> {
        DPtr {
            addr,
            len: 1 << 20,
            _t: PhantomData,
        }
    }

    #[test]
    fn word_loads_need_aligned_k_quant_matrices() {
        for kind in [MatKernel::Q2K, MatKernel::Iq2Xxs] {
            assert!(check_word_aligned(kind, at(0x1000), 84 * 8).is_ok());
            assert!(check_word_aligned(kind, at(0x1002), 84 * 8).is_err());
            assert!(check_word_aligned(kind, at(0x1000), 66).is_err());
        }
        assert!(check_word_aligned(MatKernel::Q8_0, at(0x1001), 34).is_ok());
    }
}
