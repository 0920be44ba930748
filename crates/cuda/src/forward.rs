//! The whole model on one GPU (cuda-design.md): weights resident, the
//! attention state of each sequence resident, every op of prefill and
//! decode a kernel of `kernels/*.cu`.
//!
//! A call runs its tokens in chunks, layer-major as the CPU forward does:
//! every matrix product takes the whole chunk (one launch, weights read once
//! through L2), the compressors walk the chunk's positions in order inside
//! one kernel, and attention runs every (head, token) pair at once, each
//! token reading its own raw window and compressed rows. Each token's
//! arithmetic is the same whatever chunk it falls in, so one-shot prefill,
//! chunked prefill and decode agree bit for bit, as on the CPU.

use std::sync::Mutex;

use cudarc::driver::CudaSlice;
use gguf::GgufFile;
use model::state::{Frontier, LayerState, State};
use model::{AttentionKind, Logits, ModelConfig, ModelError, NoTrace, Numerics, Options, Trace};

use crate::dmodel::{ActKind, DBuf, DCompressor, DEmbed, DHc, DLayer, DMat};
use crate::error::{CudaError, Result};
use crate::kern::{Act, AttnArgs, DPtr, MatKernel, ScanArgs, Slots};
use crate::ops::{Gpu, MAX_KEYS};
use crate::sample::{DeviceLogits, DeviceSampler};
use crate::weights::MemoryPlan;

/// Tokens per chunk of a forward call: bounds the workspace (and the
/// logits buffer of `Logits::All`).
pub const GPU_CHUNK: usize = 512;

/// A compressor's device state: its emitted rows and its frontier.
#[derive(Clone)]
struct CompState {
    rows: CudaSlice<f32>,
    fkv: CudaSlice<f32>,
    fsc: CudaSlice<f32>,
}

#[derive(Clone)]
struct DLayerState {
    raw: CudaSlice<f32>,
    comp: Option<CompState>,
    index: Option<CompState>,
}

/// A sequence's attention state on the device. `Clone` copies it on the
/// device (an in-memory checkpoint); cudarc's clone panics only when the
/// device cannot allocate the copy.
#[derive(Clone)]
pub struct GpuState {
    n_tokens: usize,
    ctx: usize,
    layers: Vec<DLayerState>,
}

impl GpuState {
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    pub fn ctx(&self) -> usize {
        self.ctx
    }
}

/// Scratch of one chunk, allocated once for `t` tokens and reused.
struct Workspace {
    t: usize,
    /// Row stride of the indexer scores (compressed rows a state may hold).
    stride: usize,
    bufs: Vec<CudaSlice<f32>>,
    ints: Vec<CudaSlice<i32>>,
    /// Owners of the quantized-activation scratch `views` points into.
    _q8_qs: CudaSlice<i8>,
    _q8k: CudaSlice<u8>,
    /// The buffers' addresses by name, taken once: a device buffer never
    /// moves, and a decode step should not rebuild them.
    views: Ws,
}

/// The workspace buffers that `run` also reads as whole `CudaSlice`s
/// (cudarc's copies take slices, not addresses): the f32 buffer of the
/// logits and the i32 buffer of the greedy token.
const LOGITS_BUF: usize = 32;
const BEST_BUF: usize = 4;

/// Named views of a workspace's buffers (index order of `Workspace::new`).
#[derive(Clone, Copy)]
struct Ws {
    h: [DPtr<f32>; 2],
    hn: DPtr<f32>,
    mix: DPtr<f32>,
    pre: DPtr<f32>,
    post: DPtr<f32>,
    comb: DPtr<f32>,
    xin: DPtr<f32>,
    x: DPtr<f32>,
    qr: DPtr<f32>,
    qrn: DPtr<f32>,
    q: DPtr<f32>,
    q2: DPtr<f32>,
    kvp: DPtr<f32>,
    cur: DPtr<f32>,
    ckv: DPtr<f32>,
    csc: DPtr<f32>,
    qi: DPtr<f32>,
    iw: DPtr<f32>,
    scores: DPtr<f32>,
    heads: DPtr<f32>,
    low: DPtr<f32>,
    aout: DPtr<f32>,
    rlog: DPtr<f32>,
    rw: DPtr<f32>,
    g: DPtr<f32>,
    u: DPtr<f32>,
    mid: DPtr<f32>,
    down: DPtr<f32>,
    sh: DPtr<f32>,
    fout: DPtr<f32>,
    hw: DPtr<f32>,
    logits: DPtr<f32>,
    q8_sc: DPtr<f32>,
    tokens: DPtr<i32>,
    experts: DPtr<i32>,
    sel: DPtr<i32>,
    n_sel: DPtr<i32>,
    best: DPtr<i32>,
    offsets: DPtr<i32>,
    order: DPtr<i32>,
    q8_qs: DPtr<i8>,
    q8k: DPtr<u8>,
}

/// The widest activation any matrix of the model reads (values per token).
fn max_act(c: &ModelConfig) -> usize {
    [
        c.hc_dim(),
        c.n_head * c.head_dim,
        c.n_expert_used * c.n_ff_exp,
        c.o_groups * c.o_lora_rank,
        c.q_lora_rank,
        c.n_embd,
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
}

impl Workspace {
    fn sizes(c: &ModelConfig, t: usize, stride: usize) -> (Vec<usize>, Vec<usize>) {
        let (d, hcd, nhc) = (c.n_embd, c.hc_dim(), c.n_hc);
        let heads = c.n_head * c.head_dim;
        let slots = c.n_expert_used * c.n_ff_exp;
        let f = vec![
            t * hcd,                                    // h0
            t * hcd,                                    // h1
            t * hcd,                                    // hn
            t * c.hc_mix().max(nhc),                    // mix
            t * nhc,                                    // pre
            t * nhc,                                    // post
            t * nhc * nhc,                              // comb
            t * d,                                      // xin
            t * d,                                      // x
            t * c.q_lora_rank,                          // qr
            t * c.q_lora_rank,                          // qrn
            t * heads,                                  // q
            t * heads,                                  // q2
            t * c.head_dim,                             // kvp
            t * c.head_dim,                             // cur
            t * 2 * c.head_dim.max(c.indexer_head_dim), // ckv
            t * 2 * c.head_dim.max(c.indexer_head_dim), // csc
            t * c.indexer_heads * c.indexer_head_dim,   // qi
            t * c.indexer_heads,                        // iw
            t * stride,                                 // scores
            t * heads,                                  // heads
            t * c.o_groups * c.o_lora_rank,             // low
            t * d,                                      // aout
            t * c.n_expert,                             // rlog
            t * c.n_expert_used,                        // rw
            t * slots,                                  // g
            t * slots,                                  // u
            t * slots,                                  // mid
            t * c.n_expert_used * d,                    // down
            t * d,                                      // sh
            t * d,                                      // fout
            t * nhc,                                    // hw
            t * c.n_vocab,                              // logits
            (t * max_act(c)).div_ceil(32),              // q8_sc
        ];
        let i = vec![
            t,                   // tokens
            t * c.n_expert_used, // experts
            t * c.indexer_top_k, // sel
            t,                   // n_sel
            1,                   // best
            c.n_expert + 1,      // offsets
            t * c.n_expert_used, // order
        ];
        (f, i)
    }

    fn new(gpu: &Gpu, c: &ModelConfig, t: usize, stride: usize) -> Result<Self> {
        let (f, i) = Self::sizes(c, t, stride);
        let bufs = f
            .iter()
            .map(|&n| gpu.stream.alloc_zeros::<f32>(n.max(1)))
            .collect::<Result<Vec<_>, _>>()?;
        let ints = i
            .iter()
            .map(|&n| gpu.stream.alloc_zeros::<i32>(n.max(1)))
            .collect::<Result<Vec<_>, _>>()?;
        let qmax = (t * max_act(c)).div_ceil(256) * 256;
        let q8_qs = gpu.stream.alloc_zeros::<i8>(qmax.max(32))?;
        let q8k = gpu.stream.alloc_zeros::<u8>((qmax / 256).max(1) * 292)?;
        let views = Self::name(gpu, &bufs, &ints, &q8_qs, &q8k);
        Ok(Workspace {
            t,
            stride,
            bufs,
            ints,
            _q8_qs: q8_qs,
            _q8k: q8k,
            views,
        })
    }

    fn name(
        gpu: &Gpu,
        bufs: &[CudaSlice<f32>],
        ints: &[CudaSlice<i32>],
        q8_qs: &CudaSlice<i8>,
        q8k: &CudaSlice<u8>,
    ) -> Ws {
        let f: Vec<DPtr<f32>> = bufs.iter().map(|b| gpu.ptr(b)).collect();
        let i: Vec<DPtr<i32>> = ints.iter().map(|b| gpu.ptr(b)).collect();
        Ws {
            h: [f[0], f[1]],
            hn: f[2],
            mix: f[3],
            pre: f[4],
            post: f[5],
            comb: f[6],
            xin: f[7],
            x: f[8],
            qr: f[9],
            qrn: f[10],
            q: f[11],
            q2: f[12],
            kvp: f[13],
            cur: f[14],
            ckv: f[15],
            csc: f[16],
            qi: f[17],
            iw: f[18],
            scores: f[19],
            heads: f[20],
            low: f[21],
            aout: f[22],
            rlog: f[23],
            rw: f[24],
            g: f[25],
            u: f[26],
            mid: f[27],
            down: f[28],
            sh: f[29],
            fout: f[30],
            hw: f[31],
            logits: f[LOGITS_BUF],
            q8_sc: f[33],
            tokens: i[0],
            experts: i[1],
            sel: i[2],
            n_sel: i[3],
            best: i[BEST_BUF],
            offsets: i[5],
            order: i[6],
            q8_qs: gpu.ptr(q8_qs),
            q8k: gpu.ptr(q8k),
        }
    }
}

/// Options of the GPU model: the CPU's numerics switches.
pub struct GpuModel {
    pub gpu: Gpu,
    pub cfg: ModelConfig,
    pub opts: Options,
    embed: DEmbed,
    layers: Vec<DLayer>,
    output_hc: DHc,
    output_norm: DBuf<f32>,
    output: DMat,
    ws: Mutex<Option<Workspace>>,
}

/// Where a traced forward sends its intermediate vectors (the CPU
/// forward's stage names), for stage-by-stage comparisons.
struct Tracer<'t> {
    on: bool,
    sink: &'t mut dyn Trace,
}

/// What the forward hands back from a call.
enum Want {
    Logits(Logits),
    Greedy,
    /// The last position's logits, left on the device.
    Device,
}

enum Got {
    Logits(Vec<f32>),
    Token(u32),
    Device(DeviceLogits),
}

/// Device bytes the weights take in `numerics` (f32 mode decodes every
/// matrix; BF16 is always widened).
fn weight_bytes(file: &GgufFile, numerics: Numerics) -> u64 {
    file.tensors()
        .iter()
        .map(|t| {
            let n: u64 = t.dims.iter().product();
            match (numerics, t.ty) {
                (_, gguf::GgmlType::Bf16) => n * 4,
                (Numerics::F32, gguf::GgmlType::F32) => t.n_bytes,
                (Numerics::F32, ty) if ty != gguf::GgmlType::I32 => n * 4,
                _ => t.n_bytes,
            }
        })
        .sum()
}

/// What [`GpuModel::load`] reports while it works.
pub enum LoadEvent<'p> {
    /// The memory plan, before anything is allocated, with the card's free
    /// and total bytes.
    Plan {
        plan: &'p MemoryPlan,
        free: u64,
        total: u64,
    },
    /// Weight bytes uploaded so far, of `total`.
    Upload { done: u64, total: u64 },
}

/// Whether a Q8_0 slot launch is the grouped output projection of several
/// tokens (matrix `s % groups`, activation `s`), which the tile kernel
/// serves one group at a time.
fn grouped_tiles(slots: &Slots) -> bool {
    slots.ids.is_none()
        && slots.w_mod > 1
        && slots.act_div == 1
        && slots.count > slots.w_mod
        && slots.count.is_multiple_of(slots.w_mod)
        && slots.act_stride.is_multiple_of(32)
}

impl GpuModel {
    /// Checks the memory plan for `ctx` against the card, then uploads every
    /// weight, reporting both to `report`.
    pub fn load(
        gpu: Gpu,
        file: &GgufFile,
        opts: Options,
        ctx: usize,
        report: &mut dyn FnMut(LoadEvent<'_>),
    ) -> Result<Self> {
        let m = model::Model::load(file, opts)?;
        let c = m.cfg.clone();
        Self::check_shapes(&c)?;
        let mut plan = MemoryPlan::new(file, &c, ctx);
        plan.weights = weight_bytes(file, opts.numerics);
        let t = GPU_CHUNK;
        let (f, i) = Workspace::sizes(&c, t, Self::stride(&c, ctx));
        plan.workspace += (f.iter().sum::<usize>() * 4 + i.iter().sum::<usize>() * 4) as u64
            + (t * max_act(&c) * 3) as u64
            + DeviceSampler::bytes(c.n_vocab);
        let (free, card) = gpu.mem_info()?;
        report(LoadEvent::Plan {
            plan: &plan,
            free,
            total: card,
        });
        plan.check(free)?;
        let total = plan.weights;
        let mut done = 0u64;
        let mut sink = |b: u64| {
            done += b;
            report(LoadEvent::Upload { done, total });
        };
        let w = &m.weights;
        let num = opts.numerics;
        let embed = DEmbed::upload(&gpu, &w.token_embd, &mut sink)?;
        let mut layers = Vec::with_capacity(c.n_layer);
        for (il, lw) in w.layers.iter().enumerate() {
            layers.push(DLayer::upload(&gpu, &c, il, lw, num, &mut sink)?);
        }
        let output_hc = DHc::upload(&gpu, &w.output_hc, num, &mut sink)?;
        let output_norm = DBuf::upload(&gpu, &w.output_norm)?;
        let output = DMat::mat(&gpu, &w.output, num, &mut sink)?;
        gpu.stream.synchronize()?;
        Ok(GpuModel {
            gpu,
            cfg: c,
            opts,
            embed,
            layers,
            output_hc,
            output_norm,
            output,
            ws: Mutex::new(None),
        })
    }

    /// The limits the kernels are written for.
    fn check_shapes(c: &ModelConfig) -> Result<()> {
        let bad = |what: &str| Err(CudaError::Unsupported(what.to_owned()));
        if c.n_expert > 512 || c.n_expert_used > 64 || c.n_expert_used > c.n_expert {
            return bad("more than 512 experts or 64 per token");
        }
        if c.n_hc == 0 || c.n_hc > 8 {
            return bad("hyper-connection streams outside 1..=8");
        }
        if c.head_dim > 1024 || !c.nope_dim().is_multiple_of(64) {
            return bad("head dim above 1024 or a non-RoPE part not in 64-blocks");
        }
        let id = c.indexer_head_dim;
        if c.indexer_heads > 0 && (!id.is_power_of_two() || !(32..=1024).contains(&id)) {
            return bad("indexer head dim not a power of two in 32..=1024");
        }
        if !c.o_groups.is_power_of_two() && c.o_groups > 0 && !c.n_head.is_multiple_of(c.o_groups) {
            return bad("output groups that do not divide the heads");
        }
        Ok(())
    }

    /// Row stride of the indexer scores for a context of `ctx`.
    fn stride(c: &ModelConfig, ctx: usize) -> usize {
        (0..c.n_layer)
            .filter(|&il| c.attention_kind(il) == AttentionKind::Sparse)
            .map(|il| ctx / c.compress_ratios[il].max(1) + 1)
            .max()
            .unwrap_or(1)
    }

    /// An empty state for `ctx` positions.
    pub fn new_state(&self, ctx: usize) -> Result<GpuState> {
        self.upload_state(&State::new(&self.cfg, ctx))
    }

    fn comp_state(
        &self,
        rows: &[f32],
        cap_rows: usize,
        d: usize,
        f: &Frontier,
    ) -> Result<CompState> {
        let s = &self.gpu.stream;
        let mut buf = s.alloc_zeros::<f32>((cap_rows * d).max(1))?;
        if !rows.is_empty() {
            s.memcpy_htod(rows, &mut buf.slice_mut(0..rows.len()))?;
        }
        Ok(CompState {
            rows: buf,
            fkv: s.clone_htod(&f.kv)?,
            fsc: s.clone_htod(&f.score)?,
        })
    }

    /// A device copy of a CPU-layout state (which the caller has checked
    /// against this model's shapes).
    pub fn upload_state(&self, st: &State) -> Result<GpuState> {
        let c = &self.cfg;
        let layers = st
            .layers
            .iter()
            .enumerate()
            .map(|(il, l)| {
                let ratio = c.compress_ratios[il].max(1);
                let cap = st.ctx / ratio + 1;
                Ok(DLayerState {
                    raw: self.gpu.stream.clone_htod(&l.raw)?,
                    comp: l
                        .comp_frontier
                        .as_ref()
                        .map(|f| self.comp_state(&l.comp, cap, c.head_dim, f))
                        .transpose()?,
                    index: l
                        .index_frontier
                        .as_ref()
                        .map(|f| self.comp_state(&l.index, cap, c.indexer_head_dim, f))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuState {
            n_tokens: st.n_tokens,
            ctx: st.ctx,
            layers,
        })
    }

    /// The state in the CPU's layout (what snapshots store).
    pub fn download_state(&self, st: &GpuState) -> Result<State> {
        let c = &self.cfg;
        let s = &self.gpu.stream;
        let mut out = State::new(c, st.ctx);
        out.n_tokens = st.n_tokens;
        for (il, (l, o)) in st.layers.iter().zip(out.layers.iter_mut()).enumerate() {
            o.raw = s.clone_dtoh(&l.raw)?;
            let ratio = c.compress_ratios[il].max(1);
            let n = st.n_tokens / ratio;
            let fetch = |cs: &CompState, d: usize, f: &mut Option<Frontier>| -> Result<Vec<f32>> {
                if let Some(f) = f.as_mut() {
                    f.kv = s.clone_dtoh(&cs.fkv)?;
                    f.score = s.clone_dtoh(&cs.fsc)?;
                }
                Ok(s.clone_dtoh(&cs.rows.slice(0..n * d))?)
            };
            let LayerState {
                comp,
                comp_frontier,
                index,
                index_frontier,
                ..
            } = o;
            if let Some(cs) = &l.comp {
                *comp = fetch(cs, c.head_dim, comp_frontier)?;
            }
            if let Some(cs) = &l.index {
                *index = fetch(cs, c.indexer_head_dim, index_frontier)?;
            }
        }
        Ok(out)
    }

    /// Runs `tokens` at the state's next positions; returns the logits asked
    /// for (`n_vocab` per position).
    pub fn forward(&self, st: &mut GpuState, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        let mut tr = Tracer {
            on: false,
            sink: &mut NoTrace,
        };
        match self.run(st, tokens, Want::Logits(which), &mut tr)? {
            Got::Logits(l) => Ok(l),
            Got::Token(_) | Got::Device(_) => unreachable!("logits were asked for"),
        }
    }

    /// [`GpuModel::forward`] recording the CPU forward's stages into
    /// `trace` (every stage copied back: slow, for comparisons only).
    pub fn forward_traced(
        &self,
        st: &mut GpuState,
        tokens: &[u32],
        which: Logits,
        trace: &mut dyn Trace,
    ) -> Result<Vec<f32>> {
        let mut tr = Tracer {
            on: true,
            sink: trace,
        };
        match self.run(st, tokens, Want::Logits(which), &mut tr)? {
            Got::Logits(l) => Ok(l),
            Got::Token(_) | Got::Device(_) => unreachable!("logits were asked for"),
        }
    }

    /// Runs `tokens` and returns the greedy choice after the last one,
    /// picked on the device: only the token id crosses the bus.
    pub fn forward_greedy(&self, st: &mut GpuState, tokens: &[u32]) -> Result<u32> {
        let mut tr = Tracer {
            on: false,
            sink: &mut NoTrace,
        };
        match self.run(st, tokens, Want::Greedy, &mut tr)? {
            Got::Token(t) => Ok(t),
            Got::Logits(_) | Got::Device(_) => unreachable!("a token was asked for"),
        }
    }

    /// Runs `tokens` and returns the logits after the last one in a device
    /// buffer of their own (a copy of the workspace's row, which the next
    /// call overwrites): nothing crosses the bus, and `DeviceSampler` picks
    /// from them in place.
    pub fn forward_device(&self, st: &mut GpuState, tokens: &[u32]) -> Result<DeviceLogits> {
        let mut tr = Tracer {
            on: false,
            sink: &mut NoTrace,
        };
        match self.run(st, tokens, Want::Device, &mut tr)? {
            Got::Device(l) => Ok(l),
            Got::Logits(_) | Got::Token(_) => unreachable!("device logits were asked for"),
        }
    }

    /// Records the indexer's scores and selection of the chunk's tokens
    /// that had more visible rows than the top-k (those the CPU traces).
    #[allow(clippy::too_many_arguments)]
    fn rec_selection(
        &self,
        tr: &mut Tracer<'_>,
        il: usize,
        p0: usize,
        t: usize,
        ratio: usize,
        stride: usize,
        scores: DPtr<f32>,
        sel: DPtr<i32>,
    ) -> Result<()> {
        let k = self.cfg.indexer_top_k;
        let sc = self.gpu.download(scores)?;
        let mut ids = vec![0i32; sel.len()];
        // SAFETY: `sel` addresses `sel.len()` i32 of a live workspace
        // buffer and the stream is idle (`download` synchronized it).
        unsafe { cudarc::driver::result::memcpy_dtoh_sync(&mut ids, sel.addr()) }?;
        for i in 0..t {
            let n = (p0 + i + 1) / ratio;
            if n > k {
                tr.sink
                    .record("index_scores", il, p0 + i, &sc[i * stride..i * stride + n]);
                let row: Vec<f32> = ids[i * k..(i + 1) * k].iter().map(|&c| c as f32).collect();
                tr.sink.record("index_selected", il, p0 + i, &row);
            }
        }
        Ok(())
    }

    /// Records `t` rows of `v` as `stage` of positions p0.. when tracing.
    fn rec(
        &self,
        tr: &mut Tracer<'_>,
        stage: &'static str,
        il: usize,
        p0: usize,
        t: usize,
        v: DPtr<f32>,
    ) -> Result<()> {
        if tr.on {
            let host = self.gpu.download(v)?;
            let w = host.len() / t.max(1);
            for (i, row) in host.chunks(w.max(1)).enumerate().take(t) {
                tr.sink.record(stage, il, p0 + i, row);
            }
        }
        Ok(())
    }

    fn run(
        &self,
        st: &mut GpuState,
        tokens: &[u32],
        want: Want,
        tr: &mut Tracer<'_>,
    ) -> Result<Got> {
        let c = &self.cfg;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= c.n_vocab) {
            return Err(ModelError::TokenOutOfRange {
                token,
                n_vocab: c.n_vocab,
            }
            .into());
        }
        if st.n_tokens + tokens.len() > st.ctx {
            return Err(ModelError::ContextFull {
                pos: st.n_tokens + tokens.len() - 1,
                ctx: st.ctx,
            }
            .into());
        }
        let mut guard = self.ws.lock().unwrap_or_else(|p| p.into_inner());
        let stride = Self::stride(c, st.ctx);
        if guard.as_ref().is_none_or(|w| w.stride < stride) {
            *guard = None;
            *guard = Some(Workspace::new(&self.gpu, c, GPU_CHUNK, stride)?);
        }
        let wsb = guard.as_mut().expect("allocated above");
        let ws = wsb.views;
        let mut logits = Vec::new();
        let n_chunks = tokens.len().div_ceil(wsb.t);
        let mut last = None;
        let mut kept = None;
        for (ci, chunk) in tokens.chunks(wsb.t).enumerate() {
            let ids: Vec<i32> = chunk.iter().map(|&t| t as i32).collect();
            self.gpu
                .stream
                .memcpy_htod(&ids, &mut wsb.ints[0].slice_mut(0..ids.len()))?;
            self.chunk(&ws, st, chunk.len(), wsb.stride, tr)?;
            let t = chunk.len();
            let rows = match want {
                Want::Logits(Logits::All) => Some((0, t)),
                Want::Logits(Logits::Last) | Want::Greedy | Want::Device if ci + 1 == n_chunks => {
                    Some((t - 1, 1))
                }
                _ => None,
            };
            if let Some((r0, nr)) = rows {
                self.head(&ws, r0, nr)?;
                let out = ws.logits.at(0, nr * c.n_vocab);
                match want {
                    Want::Greedy => {
                        self.gpu.k_argmax(out, ws.best.at(0, 1))?;
                        let mut b = [0i32];
                        self.gpu
                            .stream
                            .memcpy_dtoh(&wsb.ints[BEST_BUF].slice(0..1), &mut b)?;
                        last = Some(b[0] as u32);
                    }
                    Want::Device => {
                        let row = wsb.bufs[LOGITS_BUF].slice(0..c.n_vocab);
                        kept = Some(DeviceLogits::new(self.gpu.stream.clone_dtod(&row)?));
                    }
                    Want::Logits(_) => {
                        let mut host = vec![0f32; nr * c.n_vocab];
                        self.gpu.stream.memcpy_dtoh(
                            &wsb.bufs[LOGITS_BUF].slice(0..nr * c.n_vocab),
                            &mut host,
                        )?;
                        logits.extend(host);
                    }
                }
            }
        }
        self.gpu.stream.synchronize()?;
        Ok(match want {
            Want::Greedy => Got::Token(last.unwrap_or(0)),
            Want::Device => match kept {
                Some(l) => Got::Device(l),
                None => {
                    return Err(CudaError::Shape {
                        what: "tokens of a forward call",
                        expected: "at least one".into(),
                        got: "none".into(),
                    })
                }
            },
            Want::Logits(_) => Got::Logits(logits),
        })
    }

    /// `y = W x` for every slot, quantizing `x` as the weight's kernel wants.
    fn linear(
        &self,
        ws: &Ws,
        m: &DMat,
        rows: usize,
        x: DPtr<f32>,
        slots: Slots,
        y: DPtr<f32>,
    ) -> Result<()> {
        let act = self.quantize(ws, m.act(), x)?;
        self.apply(m, rows, act, slots, y)
    }

    /// `x` as kernels of activation kind `kind` read it (quantized into the
    /// workspace's one activation buffer of that kind, which the next
    /// quantization of that kind overwrites).
    fn quantize(&self, ws: &Ws, kind: ActKind, x: DPtr<f32>) -> Result<Act> {
        let g = &self.gpu;
        let n = x.len();
        Ok(match kind {
            ActKind::F32 => Act::F32(x),
            ActKind::Q8_0 => {
                let nb = n.div_ceil(32);
                let (qs, scales) = (ws.q8_qs.at(0, nb * 32), ws.q8_sc.at(0, nb));
                g.k_quantize_q8_0(x, qs, scales)?;
                Act::Q8_0 { qs, scales }
            }
            ActKind::Q8K => {
                let q = ws.q8k.at(0, n / 256 * 292);
                g.k_quantize_q8_k(x, q)?;
                Act::Q8K(q)
            }
        })
    }

    /// `y = W act` for every slot; Q8_0 weights shared by several tokens
    /// take the weight-reusing tile kernel.
    fn apply(&self, m: &DMat, rows: usize, act: Act, slots: Slots, y: DPtr<f32>) -> Result<()> {
        let g = &self.gpu;
        if let (MatKernel::Q8_0, Act::Q8_0 { qs, scales }) = (m.kind, act) {
            let shared = slots.ids.is_none() && slots.w_mod == 1 && slots.act_div == 1;
            if shared && slots.count > 1 && slots.act_stride == m.cols {
                let strides = (m.cols, rows);
                return g.k_mm_q8_0_tiles(
                    m.w.ptr,
                    rows,
                    m.cols,
                    qs,
                    scales,
                    slots.count,
                    strides,
                    y,
                );
            }
            if grouped_tiles(&slots) {
                return self.q8_0_groups(m, rows, (qs, scales), &slots, y);
            }
        }
        g.k_mm(m.kind, m.w.ptr, rows, m.cols, act, slots, y)
    }

    /// The output groups of a prefill chunk (slot s = token * groups + g
    /// takes matrix g and activation s): one tile launch per group, each
    /// reusing its matrix across the chunk's tokens, instead of one slot per
    /// (token, group) reading the weights again. Same sums as the slot
    /// kernel (the tiles and slot kernels agree bit for bit).
    fn q8_0_groups(
        &self,
        m: &DMat,
        rows: usize,
        (qs, scales): (DPtr<i8>, DPtr<f32>),
        slots: &Slots,
        y: DPtr<f32>,
    ) -> Result<()> {
        let (groups, ast) = (slots.w_mod, slots.act_stride);
        let tokens = slots.count / groups;
        for gi in 0..groups {
            let w = m.w.ptr.at(gi * slots.w_stride, slots.w_stride);
            let (q, s) = (
                qs.at(gi * ast, qs.len() - gi * ast),
                scales.at(gi * ast / 32, scales.len() - gi * ast / 32),
            );
            let strides = (groups * ast, groups * rows);
            self.gpu.k_mm_q8_0_tiles(
                w,
                rows,
                m.cols,
                q,
                s,
                tokens,
                strides,
                y.at(gi * rows, y.len() - gi * rows),
            )?;
        }
        Ok(())
    }

    /// `t` activation vectors through two matrices of the same input (q_a
    /// and kv; the shared expert's gate and up), quantizing the input once
    /// when both read the same activation kind.
    fn mat2(
        &self,
        ws: &Ws,
        (m1, y1): (&DMat, DPtr<f32>),
        (m2, y2): (&DMat, DPtr<f32>),
        x: DPtr<f32>,
        t: usize,
    ) -> Result<()> {
        if m1.act() != m2.act() || m1.cols != m2.cols {
            self.mat(ws, m1, x, t, y1)?;
            return self.mat(ws, m2, x, t, y2);
        }
        let act = self.quantize(ws, m1.act(), x.at(0, t * m1.cols))?;
        for (m, y) in [(m1, y1), (m2, y2)] {
            self.apply(
                m,
                m.rows,
                act,
                Slots::tokens(t, m.cols),
                y.at(0, t * m.rows),
            )?;
        }
        Ok(())
    }

    /// `t` activation vectors through one matrix.
    fn mat(&self, ws: &Ws, m: &DMat, x: DPtr<f32>, t: usize, y: DPtr<f32>) -> Result<()> {
        self.linear(
            ws,
            m,
            m.rows,
            x.at(0, t * m.cols),
            Slots::tokens(t, m.cols),
            y.at(0, t * m.rows),
        )
    }

    /// HC-pre of `t` tokens of `h`: leaves the sublayer input in `ws.xin`
    /// and the split in `ws.pre/post/comb`.
    fn hc_pre(&self, ws: &Ws, hc: &DHc, h: DPtr<f32>, t: usize) -> Result<()> {
        let (g, c) = (&self.gpu, &self.cfg);
        let (hcd, n) = (c.hc_dim(), c.n_hc);
        let hn = ws.hn.at(0, t * hcd);
        g.k_rms_norm(h, None, hcd, c.hc_eps, hn)?;
        let mix = ws.mix.at(0, t * c.hc_mix());
        self.mat(ws, &hc.func, hn, t, mix)?;
        g.k_hc_split(
            mix,
            t,
            n,
            hc.scale.ptr,
            hc.base.ptr,
            c.sinkhorn_iters,
            c.hc_eps,
            ws.pre.at(0, t * n),
            ws.post.at(0, t * n),
            ws.comb.at(0, t * n * n),
        )?;
        g.k_hc_weighted_sum(h, ws.pre.at(0, t * n), t, n, ws.xin.at(0, t * c.n_embd))
    }

    /// Feeds the chunk to one compressor, appending the rows it completes.
    #[allow(clippy::too_many_arguments)]
    fn compress(
        &self,
        ws: &Ws,
        w: &DCompressor,
        cs: &CompState,
        il: usize,
        t: usize,
        p0: usize,
        d: usize,
        qat: i32,
    ) -> Result<()> {
        let (g, c) = (&self.gpu, &self.cfg);
        let ratio = c.compress_ratios[il];
        let width = if ratio == 4 { 2 * d } else { d };
        let (ckv, csc) = (ws.ckv.at(0, t * width), ws.csc.at(0, t * width));
        self.mat(ws, &w.kv, ws.x, t, ckv)?;
        self.mat(ws, &w.gate, ws.x, t, csc)?;
        let n0 = p0 / ratio;
        let n1 = (p0 + t) / ratio;
        let rows = g.ptr(&cs.rows);
        g.k_compressor_scan(&ScanArgs {
            kvp: ckv,
            scp: csc,
            tokens: t,
            pos0: p0,
            ratio,
            d,
            width,
            ape: w.ape.ptr,
            norm: w.norm.ptr,
            eps: c.rms_eps,
            inv_freq: self.layers[il].inv_freq.ptr,
            qat: if self.opts.qat { qat } else { 0 },
            nope: d - c.n_rot,
            f16_rows: self.opts.f16_rows,
            fkv: g.ptr(&cs.fkv),
            fsc: g.ptr(&cs.fsc),
            rows_out: rows.at(n0 * d, (n1 - n0) * d),
        })
    }

    /// One chunk of `t` tokens (ids already in `ws.tokens`) through every
    /// layer; the final HC state is left in `ws.h[0]`.
    fn chunk(
        &self,
        ws: &Ws,
        st: &mut GpuState,
        t: usize,
        stride: usize,
        tr: &mut Tracer<'_>,
    ) -> Result<()> {
        let (g, c) = (&self.gpu, &self.cfg);
        let p0 = st.n_tokens;
        let (d, hcd, n_hc) = (c.n_embd, c.hc_dim(), c.n_hc);
        let tok = ws.tokens.at(0, t);
        let h = ws.h[0].at(0, t * hcd);
        let h2 = ws.h[1].at(0, t * hcd);
        g.k_embed(self.embed.table.ptr, self.embed.is_f16, tok, t, d, n_hc, h)?;
        for il in 0..c.n_layer {
            self.attention(ws, &st.layers[il], il, t, p0, stride, h, h2, tr)?;
            self.rec(tr, "hc_attn_post", il, p0, t, h2)?;
            self.ffn(ws, il, t, p0, tok, h2, h, tr)?;
            self.rec(tr, "hc_ffn_post", il, p0, t, h)?;
        }
        st.n_tokens += t;
        Ok(())
    }

    /// The attention half of layer `il`: `h` in, `out` = HC-post of it.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        ws: &Ws,
        ls: &DLayerState,
        il: usize,
        t: usize,
        p0: usize,
        stride: usize,
        h: DPtr<f32>,
        out: DPtr<f32>,
        tr: &mut Tracer<'_>,
    ) -> Result<()> {
        let (g, c) = (&self.gpu, &self.cfg);
        let w = &self.layers[il];
        let (d, hd, nh, n_hc) = (c.n_embd, c.head_dim, c.n_head, c.n_hc);
        let eps = c.rms_eps;
        let freq = w.inv_freq.ptr;
        self.hc_pre(ws, &w.hc_attn, h, t)?;
        self.rec(tr, "hc_attn_pre", il, p0, t, ws.xin.at(0, t * d))?;
        let x = ws.x.at(0, t * d);
        g.k_rms_norm(ws.xin.at(0, t * d), Some(w.attn_norm.ptr), d, eps, x)?;
        self.rec(tr, "attn_norm", il, p0, t, x)?;

        // Q path and the shared K=V row (attention.md §4).
        let ql = c.q_lora_rank;
        let (qr, qrn) = (ws.qr.at(0, t * ql), ws.qrn.at(0, t * ql));
        let (kvp, cur) = (ws.kvp.at(0, t * hd), ws.cur.at(0, t * hd));
        self.mat2(ws, (&w.q_a, qr), (&w.kv, kvp), x, t)?;
        g.k_rms_norm(qr, Some(w.q_a_norm.ptr), ql, eps, qrn)?;
        self.rec(tr, "attn_q_residual", il, p0, t, qrn)?;
        let (q, q2) = (ws.q.at(0, t * nh * hd), ws.q2.at(0, t * nh * hd));
        self.mat(ws, &w.q_b, qrn, t, q)?;
        g.k_rms_norm(q, None, hd, eps, q2)?;
        g.k_rope(q2, hd, freq, p0, nh, false)?;
        self.rec(tr, "attn_q", il, p0, t, q2)?;
        g.k_rms_norm(kvp, Some(w.kv_norm.ptr), hd, eps, cur)?;
        g.k_rope(cur, hd, freq, p0, 1, false)?;
        if self.opts.qat {
            g.k_fp8_round_trip(cur, hd, c.nope_dim())?;
        }
        if self.opts.f16_rows {
            g.k_f16_round(cur)?;
        }
        self.rec(tr, "attn_kv", il, p0, t, cur)?;

        // Compressors (§8) and the indexer's selection (§10).
        let ratio = c.compress_ratios[il];
        if let (Some(cw), Some(cs)) = (&w.compressor, &ls.comp) {
            self.compress(ws, cw, cs, il, t, p0, hd, 1)?;
        }
        if let (Some(iw), Some(is)) = (&w.indexer, &ls.index) {
            self.compress(ws, &iw.comp, is, il, t, p0, c.indexer_head_dim, 2)?;
        }
        let n_last = (p0 + t).checked_div(ratio).unwrap_or(0);
        let k = c.indexer_top_k;
        let sel = match (c.attention_kind(il), &w.indexer, &ls.index) {
            (AttentionKind::Sparse, Some(iw), Some(is)) if n_last > k => {
                let (ih, id) = (c.indexer_heads, c.indexer_head_dim);
                let qi = ws.qi.at(0, t * ih * id);
                self.mat(ws, &iw.q_b, qrn, t, qi)?;
                g.k_rope(qi, id, freq, p0, ih, false)?;
                if self.opts.qat {
                    g.k_indexer_round_trip(qi, id)?;
                }
                let iwt = ws.iw.at(0, t * ih);
                self.mat(ws, &iw.proj, x, t, iwt)?;
                let s = 1.0 / ((id * ih) as f32).sqrt();
                let scores = ws.scores.at(0, t * stride);
                g.k_indexer_scores(
                    qi,
                    iwt,
                    g.ptr(&is.rows),
                    t,
                    p0,
                    ratio,
                    ih,
                    id,
                    s,
                    n_last,
                    stride,
                    scores,
                )?;
                let (sel, n_sel) = (ws.sel.at(0, t * k), ws.n_sel.at(0, t));
                g.k_top_k(scores, t, p0, ratio, stride, k, sel, n_sel)?;
                if tr.on {
                    self.rec_selection(tr, il, p0, t, ratio, stride, scores, sel)?;
                }
                Some((sel, n_sel))
            }
            _ => None,
        };

        // Sink attention over raw and compressed rows (§9).
        let window = c.sliding_window;
        let n_comp_keys = match (&sel, &ls.comp) {
            (Some(_), _) => k,
            (None, Some(_)) => n_last,
            (None, None) => 0,
        };
        let max_keys = window.min(p0 + t) + n_comp_keys;
        if max_keys > MAX_KEYS {
            return Err(CudaError::Unsupported(format!(
                "layer {il}: {max_keys} attention keys at position {} (at most {MAX_KEYS})",
                p0 + t - 1
            )));
        }
        let heads = ws.heads.at(0, t * nh * hd);
        let ring = g.ptr(&ls.raw);
        g.k_attention(&AttnArgs {
            q: q2,
            cur,
            ring,
            window,
            comp: ls.comp.as_ref().map_or(DPtr::null(), |cs| g.ptr(&cs.rows)),
            ratio: if ls.comp.is_some() { ratio } else { 0 },
            sel,
            sel_k: k,
            pos0: p0,
            tokens: t,
            hd,
            sinks: w.sinks.ptr,
            scale: 1.0 / (hd as f32).sqrt(),
            max_keys,
            out: heads,
        })?;
        g.k_rope(heads, hd, freq, p0, nh, true)?;
        self.rec(tr, "attn_heads", il, p0, t, heads)?;
        g.k_ring_write(cur, t, p0, window, ring)?;

        // Grouped output projection (§11).
        let (groups, rank) = (c.o_groups, c.o_lora_rank);
        let group_in = nh / groups * hd;
        let low = ws.low.at(0, t * groups * rank);
        let slots = Slots {
            count: t * groups,
            ids: None,
            w_mod: groups,
            w_stride: rank * w.out_a.row_bytes(),
            act_div: 1,
            act_stride: group_in,
        };
        self.linear(ws, &w.out_a, rank, heads, slots, low)?;
        self.rec(tr, "attn_o_a", il, p0, t, low)?;
        let aout = ws.aout.at(0, t * d);
        self.mat(ws, &w.out_b, low, t, aout)?;
        self.rec(tr, "attn_out", il, p0, t, aout)?;
        g.k_hc_post(
            aout,
            h,
            ws.post.at(0, t * n_hc),
            ws.comb.at(0, t * n_hc * n_hc),
            t,
            n_hc,
            d,
            out,
        )
    }

    /// The MoE half of layer `il`: `h` in, `out` = HC-post of it.
    #[allow(clippy::too_many_arguments)]
    fn ffn(
        &self,
        ws: &Ws,
        il: usize,
        t: usize,
        p0: usize,
        tok: DPtr<i32>,
        h: DPtr<f32>,
        out: DPtr<f32>,
        tr: &mut Tracer<'_>,
    ) -> Result<()> {
        let (g, c) = (&self.gpu, &self.cfg);
        let w = &self.layers[il];
        let (d, n_hc, k, nf) = (c.n_embd, c.n_hc, c.n_expert_used, c.n_ff_exp);
        self.hc_pre(ws, &w.hc_ffn, h, t)?;
        self.rec(tr, "hc_ffn_pre", il, p0, t, ws.xin.at(0, t * d))?;
        let x = ws.x.at(0, t * d);
        g.k_rms_norm(ws.xin.at(0, t * d), Some(w.ffn_norm.ptr), d, c.rms_eps, x)?;
        self.rec(tr, "ffn_norm", il, p0, t, x)?;
        let rlog = ws.rlog.at(0, t * c.n_expert);
        self.mat(ws, &w.router, x, t, rlog)?;
        let (experts, rw) = (ws.experts.at(0, t * k), ws.rw.at(0, t * k));
        g.k_router(
            rlog,
            t,
            c.n_expert,
            w.router_bias.as_ref().map(|b| b.ptr),
            w.hash.as_ref().map(|h| (h.ptr, tok)),
            k,
            c.expert_weights_scale,
            experts,
            rw,
        )?;
        let clamp = c.swiglu_clamp[il];
        let (gb, ub, mid) = (
            ws.g.at(0, t * k * nf),
            ws.u.at(0, t * k * nf),
            ws.mid.at(0, t * k * nf),
        );
        let slots = |m: &DMat, act_div: usize, act_stride: usize| Slots {
            count: t * k,
            ids: Some(experts),
            w_mod: 1,
            w_stride: m.stride,
            act_div,
            act_stride,
        };
        let down = ws.down.at(0, t * k * d);
        let grouped = |m: &DMat| t > 1 && matches!(m.kind, MatKernel::Iq2Xxs | MatKernel::Q2K);
        if grouped(&w.gate_exps) || grouped(&w.down_exps) {
            g.k_moe_group(
                experts,
                c.n_expert,
                ws.offsets.at(0, c.n_expert + 1),
                ws.order.at(0, t * k),
            )?;
        }
        let groups = (ws.offsets.at(0, c.n_expert + 1), ws.order.at(0, t * k));
        let experts_mm = |m: &DMat,
                          rows: usize,
                          x: DPtr<f32>,
                          act_div: usize,
                          act_stride: usize,
                          y: DPtr<f32>| {
            if grouped(m) {
                let q = ws.q8k.at(0, x.len() / 256 * 292);
                g.k_quantize_q8_k(x, q)?;
                g.k_mm_grouped(
                    m.kind, m.w.ptr, m.stride, c.n_expert, groups, rows, m.cols, q, act_div,
                    act_stride, y,
                )
            } else {
                self.linear(ws, m, rows, x, slots(m, act_div, act_stride), y)
            }
        };
        experts_mm(&w.gate_exps, nf, x, k, d, gb)?;
        experts_mm(&w.up_exps, nf, x, k, d, ub)?;
        g.k_swiglu(gb, ub, nf, clamp, Some(rw), 1.0, mid)?;
        experts_mm(&w.down_exps, d, mid, 1, nf, down)?;

        let (gs, us, ms) = (ws.g.at(0, t * nf), ws.u.at(0, t * nf), ws.mid.at(0, t * nf));
        self.mat2(ws, (&w.gate_shexp, gs), (&w.up_shexp, us), x, t)?;
        g.k_swiglu(gs, us, nf, clamp, None, 1.0, ms)?;
        let sh = ws.sh.at(0, t * d);
        self.mat(ws, &w.down_shexp, ms, t, sh)?;
        self.rec(tr, "moe_shared", il, p0, t, sh)?;
        self.rec(tr, "moe_weights", il, p0, t, rw)?;
        let fout = ws.fout.at(0, t * d);
        g.k_moe_sum(down, t, k, sh, fout)?;
        self.rec(tr, "ffn_out", il, p0, t, fout)?;
        g.k_hc_post(
            fout,
            h,
            ws.post.at(0, t * n_hc),
            ws.comb.at(0, t * n_hc * n_hc),
            t,
            n_hc,
            d,
            out,
        )
    }

    /// The output head (model.md §8) of chunk rows `r0..r0+nr` of the final
    /// HC state, logits into `ws.logits`.
    fn head(&self, ws: &Ws, r0: usize, nr: usize) -> Result<()> {
        let (g, c) = (&self.gpu, &self.cfg);
        let (d, hcd, n) = (c.n_embd, c.hc_dim(), c.n_hc);
        let h = ws.h[0].at(r0 * hcd, nr * hcd);
        let hn = ws.hn.at(0, nr * hcd);
        g.k_rms_norm(h, None, hcd, c.hc_eps, hn)?;
        let mix = ws.mix.at(0, nr * n);
        self.mat(ws, &self.output_hc.func, hn, nr, mix)?;
        let hw = ws.hw.at(0, nr * n);
        g.k_hc_head_weights(
            mix,
            n,
            self.output_hc.scale.ptr,
            self.output_hc.base.ptr,
            c.hc_eps,
            hw,
        )?;
        let z = ws.xin.at(0, nr * d);
        g.k_hc_weighted_sum(h, hw, nr, n, z)?;
        let zn = ws.x.at(0, nr * d);
        g.k_rms_norm(z, Some(self.output_norm.ptr), d, c.rms_eps, zn)?;
        self.mat(ws, &self.output, zn, nr, ws.logits.at(0, nr * c.n_vocab))
    }
}
