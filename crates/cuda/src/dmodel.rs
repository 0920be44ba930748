//! The model's weights on the device, bound per layer as the forward pass
//! reads them. Every tensor is copied once at load (issue 6 item 2): GGUF
//! bytes unchanged where a kernel reads the format directly (F32, F16,
//! Q8_0, MXFP4, Q2_K, Q4_K, IQ2_XXS), BF16 widened to f32, and in the f32
//! reference mode every matrix decoded to f32 so the GPU can be compared
//! with the CPU's `Numerics::F32` without activation quantization.

use cudarc::driver::CudaSlice;
use gguf::GgmlType;
use model::weights::{CompressorWeights, Experts, HcWeights, IndexerWeights, LayerWeights, Mat};
use model::{ModelConfig, Numerics};

use crate::error::{CudaError, Result};
use crate::kern::{DPtr, MatKernel};
use crate::ops::Gpu;

/// Which activation a matrix kernel multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActKind {
    F32,
    Q8_0,
    Q8K,
}

/// Decodes row `r` of matrix (expert) `e` to f32: `(e, r, out)`.
type RowDecoder<'f> = dyn Fn(usize, usize, &mut [f32]) -> model::Result<()> + 'f;

/// A device buffer with its address.
pub struct DBuf<T> {
    _data: CudaSlice<T>,
    pub ptr: DPtr<T>,
}

impl<T: cudarc::driver::DeviceRepr> DBuf<T> {
    pub fn upload(gpu: &Gpu, host: &[T]) -> Result<Self> {
        let data = gpu.stream.clone_htod(host)?;
        Ok(DBuf {
            ptr: gpu.ptr(&data),
            _data: data,
        })
    }
}

/// One matrix, or `n` same-shape expert matrices back to back.
pub struct DMat {
    pub kind: MatKernel,
    pub rows: usize,
    pub cols: usize,
    /// Bytes of one matrix (one expert).
    pub stride: usize,
    pub w: DBuf<u8>,
}

impl DMat {
    pub fn act(&self) -> ActKind {
        match self.kind {
            MatKernel::F32 | MatKernel::F16 => ActKind::F32,
            MatKernel::Q8_0 | MatKernel::Mxfp4 => ActKind::Q8_0,
            MatKernel::Q2K | MatKernel::Q4K | MatKernel::Iq2Xxs => ActKind::Q8K,
        }
    }

    pub fn row_bytes(&self) -> usize {
        self.stride / self.rows.max(1)
    }

    #[allow(clippy::too_many_arguments)]
    fn upload(
        gpu: &Gpu,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        n: usize,
        data: &[u8],
        decode: &RowDecoder<'_>,
        num: Numerics,
        sink: &mut dyn FnMut(u64),
    ) -> Result<Self> {
        let direct = match ty {
            GgmlType::F32 => Some(MatKernel::F32),
            GgmlType::F16 => Some(MatKernel::F16),
            GgmlType::Q8_0 => Some(MatKernel::Q8_0),
            GgmlType::Mxfp4 => Some(MatKernel::Mxfp4),
            GgmlType::Q2K => Some(MatKernel::Q2K),
            GgmlType::Q4K => Some(MatKernel::Q4K),
            GgmlType::Iq2Xxs => Some(MatKernel::Iq2Xxs),
            _ => None,
        };
        let (kind, w) = match direct {
            Some(kind) if num == Numerics::Quantized || kind == MatKernel::F32 => {
                (kind, DBuf::upload(gpu, data)?)
            }
            _ => {
                let mut f = vec![0f32; rows * cols];
                let mut bytes = Vec::with_capacity(n * rows * cols * 4);
                for e in 0..n {
                    for (r, row) in f.chunks_mut(cols).enumerate() {
                        decode(e, r, row)?;
                    }
                    bytes.extend(f.iter().flat_map(|v| v.to_le_bytes()));
                }
                (MatKernel::F32, DBuf::upload(gpu, &bytes)?)
            }
        };
        sink(data.len() as u64);
        Ok(DMat {
            kind,
            rows,
            cols,
            stride: w.ptr.len() / n.max(1),
            w,
        })
    }

    pub fn mat(gpu: &Gpu, m: &Mat<'_>, num: Numerics, sink: &mut dyn FnMut(u64)) -> Result<Self> {
        let decode = |_: usize, r: usize, out: &mut [f32]| m.decode_row(r, out);
        Self::upload(gpu, m.ty, m.rows, m.cols, 1, m.data, &decode, num, sink)
    }

    pub fn experts(
        gpu: &Gpu,
        e: &Experts<'_>,
        num: Numerics,
        sink: &mut dyn FnMut(u64),
    ) -> Result<Self> {
        let decode = |i: usize, r: usize, out: &mut [f32]| e.expert(i).decode_row(r, out);
        Self::upload(gpu, e.ty, e.rows, e.cols, e.n, e.data, &decode, num, sink)
    }
}

pub struct DHc {
    pub func: DMat,
    pub scale: DBuf<f32>,
    pub base: DBuf<f32>,
}

impl DHc {
    pub fn upload(
        gpu: &Gpu,
        w: &HcWeights<'_>,
        num: Numerics,
        sink: &mut dyn FnMut(u64),
    ) -> Result<Self> {
        Ok(DHc {
            func: DMat::mat(gpu, &w.func, num, sink)?,
            scale: DBuf::upload(gpu, &w.scale)?,
            base: DBuf::upload(gpu, &w.base)?,
        })
    }
}

pub struct DCompressor {
    pub kv: DMat,
    pub gate: DMat,
    pub ape: DBuf<f32>,
    pub norm: DBuf<f32>,
}

impl DCompressor {
    fn upload(
        gpu: &Gpu,
        w: &CompressorWeights<'_>,
        num: Numerics,
        sink: &mut dyn FnMut(u64),
    ) -> Result<Self> {
        Ok(DCompressor {
            kv: DMat::mat(gpu, &w.kv, num, sink)?,
            gate: DMat::mat(gpu, &w.gate, num, sink)?,
            ape: DBuf::upload(gpu, &w.ape)?,
            norm: DBuf::upload(gpu, &w.norm)?,
        })
    }
}

pub struct DIndexer {
    pub q_b: DMat,
    pub proj: DMat,
    pub comp: DCompressor,
}

impl DIndexer {
    fn upload(
        gpu: &Gpu,
        w: &IndexerWeights<'_>,
        num: Numerics,
        sink: &mut dyn FnMut(u64),
    ) -> Result<Self> {
        Ok(DIndexer {
            q_b: DMat::mat(gpu, &w.q_b, num, sink)?,
            proj: DMat::mat(gpu, &w.proj, num, sink)?,
            comp: DCompressor::upload(gpu, &w.compressor, num, sink)?,
        })
    }
}

pub struct DLayer {
    pub hc_attn: DHc,
    pub hc_ffn: DHc,
    pub attn_norm: DBuf<f32>,
    pub ffn_norm: DBuf<f32>,
    pub q_a: DMat,
    pub q_a_norm: DBuf<f32>,
    pub q_b: DMat,
    pub kv: DMat,
    pub kv_norm: DBuf<f32>,
    pub sinks: DBuf<f32>,
    pub out_a: DMat,
    pub out_b: DMat,
    pub compressor: Option<DCompressor>,
    pub indexer: Option<DIndexer>,
    pub router: DMat,
    pub router_bias: Option<DBuf<f32>>,
    pub hash: Option<DBuf<i32>>,
    pub gate_exps: DMat,
    pub up_exps: DMat,
    pub down_exps: DMat,
    pub gate_shexp: DMat,
    pub up_shexp: DMat,
    pub down_shexp: DMat,
    /// RoPE frequencies of this layer (model::rope::Rope::for_layer).
    pub inv_freq: DBuf<f32>,
}

impl DLayer {
    pub fn upload(
        gpu: &Gpu,
        cfg: &ModelConfig,
        il: usize,
        w: &LayerWeights<'_>,
        num: Numerics,
        sink: &mut dyn FnMut(u64),
    ) -> Result<Self> {
        let hash = match &w.tid2eid {
            Some(t) => {
                if let Some(&bad) = t
                    .iter()
                    .find(|&&e| usize::try_from(e).map_or(true, |e| e >= cfg.n_expert))
                {
                    return Err(CudaError::Unsupported(format!(
                        "layer {il}: hash table entry {bad} is not an expert id below {}",
                        cfg.n_expert
                    )));
                }
                Some(DBuf::upload(gpu, t)?)
            }
            None => None,
        };
        let rope = model::rope::Rope::for_layer(cfg, il);
        Ok(DLayer {
            hc_attn: DHc::upload(gpu, &w.hc_attn, num, sink)?,
            hc_ffn: DHc::upload(gpu, &w.hc_ffn, num, sink)?,
            attn_norm: DBuf::upload(gpu, &w.attn_norm)?,
            ffn_norm: DBuf::upload(gpu, &w.ffn_norm)?,
            q_a: DMat::mat(gpu, &w.q_a, num, sink)?,
            q_a_norm: DBuf::upload(gpu, &w.q_a_norm)?,
            q_b: DMat::mat(gpu, &w.q_b, num, sink)?,
            kv: DMat::mat(gpu, &w.kv, num, sink)?,
            kv_norm: DBuf::upload(gpu, &w.kv_norm)?,
            sinks: DBuf::upload(gpu, &w.sinks)?,
            out_a: DMat::mat(gpu, &w.out_a, num, sink)?,
            out_b: DMat::mat(gpu, &w.out_b, num, sink)?,
            compressor: w
                .compressor
                .as_ref()
                .map(|c| DCompressor::upload(gpu, c, num, sink))
                .transpose()?,
            indexer: w
                .indexer
                .as_ref()
                .map(|i| DIndexer::upload(gpu, i, num, sink))
                .transpose()?,
            router: DMat::mat(gpu, &w.router, num, sink)?,
            router_bias: w
                .router_bias
                .as_ref()
                .map(|b| DBuf::upload(gpu, b))
                .transpose()?,
            hash,
            gate_exps: DMat::experts(gpu, &w.gate_exps, num, sink)?,
            up_exps: DMat::experts(gpu, &w.up_exps, num, sink)?,
            down_exps: DMat::experts(gpu, &w.down_exps, num, sink)?,
            gate_shexp: DMat::mat(gpu, &w.gate_shexp, num, sink)?,
            up_shexp: DMat::mat(gpu, &w.up_shexp, num, sink)?,
            down_shexp: DMat::mat(gpu, &w.down_shexp, num, sink)?,
            inv_freq: DBuf::upload(gpu, rope.inv_freq())?,
        })
    }
}

/// The embedding table, f16 or f32 (anything else widened to f32).
pub struct DEmbed {
    pub is_f16: bool,
    pub table: DBuf<u8>,
}

impl DEmbed {
    pub fn upload(gpu: &Gpu, m: &Mat<'_>, sink: &mut dyn FnMut(u64)) -> Result<Self> {
        let e = match m.ty {
            GgmlType::F16 => DEmbed {
                is_f16: true,
                table: DBuf::upload(gpu, m.data)?,
            },
            GgmlType::F32 => DEmbed {
                is_f16: false,
                table: DBuf::upload(gpu, m.data)?,
            },
            _ => {
                let mut bytes = Vec::with_capacity(m.rows * m.cols * 4);
                let mut row = vec![0f32; m.cols];
                for r in 0..m.rows {
                    m.decode_row(r, &mut row)?;
                    bytes.extend(row.iter().flat_map(|v| v.to_le_bytes()));
                }
                DEmbed {
                    is_f16: false,
                    table: DBuf::upload(gpu, &bytes)?,
                }
            }
        };
        sink(m.data.len() as u64);
        Ok(e)
    }
}
