//! Binding the GGUF tensors of a DeepSeek V4 model (model.md §1.4,
//! attention.md §2) by exact name, type class and shape.
//!
//! Shapes are derived from the `ModelConfig`, never from constants. Types
//! are checked by class rather than against ds4's single published layout,
//! so the f32/f16/q8_0 files `convert` writes for the oracle load too:
//! projection matrices may be F32, F16, BF16 or Q8_0; routed experts any
//! type the CPU kernels decode; norms, scales, biases and sinks F32.

use gguf::{GgmlType, GgufFile};

use crate::config::{AttentionKind, ModelConfig};
use crate::error::{ModelError, Result};

/// A 2-D weight: `rows` output rows of `cols` inputs, in its GGUF type.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    pub name: &'a str,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> Mat<'a> {
    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Rows `[start, start + n)` as a matrix of their own.
    pub fn rows(&self, start: usize, n: usize) -> Mat<'a> {
        let rb = self.row_bytes();
        Mat {
            rows: n,
            data: &self.data[start * rb..(start + n) * rb],
            ..*self
        }
    }
}

/// A 3-D routed-expert tensor: `n` experts of `rows x cols` each.
#[derive(Clone, Copy, Debug)]
pub struct Experts<'a> {
    pub name: &'a str,
    pub ty: GgmlType,
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> Experts<'a> {
    pub fn expert(&self, e: usize) -> Mat<'a> {
        let per = self.data.len() / self.n;
        Mat {
            name: self.name,
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            data: &self.data[e * per..(e + 1) * per],
        }
    }
}

/// The three parts of a hyper-connection parameter set (model.md §5.1).
#[derive(Clone, Debug)]
pub struct HcWeights<'a> {
    pub func: Mat<'a>,
    pub scale: Vec<f32>,
    pub base: Vec<f32>,
}

/// A compressor: projection pair, positional bias and output norm.
#[derive(Clone, Debug)]
pub struct CompressorWeights<'a> {
    pub kv: Mat<'a>,
    pub gate: Mat<'a>,
    /// `ape[phase][j]`, widened from F16 (attention.md §2 notes).
    pub ape: Vec<f32>,
    pub norm: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct IndexerWeights<'a> {
    pub q_b: Mat<'a>,
    pub proj: Mat<'a>,
    pub compressor: CompressorWeights<'a>,
}

#[derive(Clone, Debug)]
pub struct LayerWeights<'a> {
    pub hc_attn: HcWeights<'a>,
    pub hc_ffn: HcWeights<'a>,
    pub attn_norm: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    pub q_a: Mat<'a>,
    pub q_a_norm: Vec<f32>,
    pub q_b: Mat<'a>,
    pub kv: Mat<'a>,
    pub kv_norm: Vec<f32>,
    pub sinks: Vec<f32>,
    pub out_a: Mat<'a>,
    pub out_b: Mat<'a>,
    pub compressor: Option<CompressorWeights<'a>>,
    pub indexer: Option<IndexerWeights<'a>>,
    pub router: Mat<'a>,
    pub router_bias: Option<Vec<f32>>,
    /// Hash layers only: `n_expert_used` expert ids per token.
    pub tid2eid: Option<Vec<i32>>,
    pub gate_exps: Experts<'a>,
    pub up_exps: Experts<'a>,
    pub down_exps: Experts<'a>,
    pub gate_shexp: Mat<'a>,
    pub up_shexp: Mat<'a>,
    pub down_shexp: Mat<'a>,
}

#[derive(Clone, Debug)]
pub struct Weights<'a> {
    pub token_embd: Mat<'a>,
    pub output_hc: HcWeights<'a>,
    pub output_norm: Vec<f32>,
    pub output: Mat<'a>,
    pub layers: Vec<LayerWeights<'a>>,
}

const MATRIX_TYPES: &[GgmlType] = &[GgmlType::F32, GgmlType::F16, GgmlType::Bf16, GgmlType::Q8_0];
const EXPERT_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q4K,
    GgmlType::Iq2Xxs,
    GgmlType::Mxfp4,
];

struct Binder<'a> {
    file: &'a GgufFile,
}

impl<'a> Binder<'a> {
    fn tensor(&self, name: &str, types: &[GgmlType], shape: &[usize]) -> Result<gguf::Tensor<'a>> {
        let t = self
            .file
            .tensor(name)
            .map_err(|_| ModelError::MissingTensor(name.to_owned()))?;
        if !types.contains(&t.ty()) {
            return Err(ModelError::TensorType {
                name: name.to_owned(),
                found: t.ty(),
                expected: types
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(" or "),
            });
        }
        let want: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        if t.dims() != want.as_slice() {
            return Err(ModelError::TensorShape {
                name: name.to_owned(),
                found: t.dims().to_vec(),
                expected: want,
            });
        }
        Ok(t)
    }

    fn has(&self, name: &str) -> bool {
        self.file.header().tensor_info(name).is_some()
    }

    /// A matrix of `rows` outputs and `cols` inputs (GGUF `[cols, rows]`).
    fn mat(&self, name: &str, types: &[GgmlType], cols: usize, rows: usize) -> Result<Mat<'a>> {
        let t = self.tensor(name, types, &[cols, rows])?;
        Ok(Mat {
            name: t.name(),
            ty: t.ty(),
            rows,
            cols,
            data: t.data,
        })
    }

    fn experts(&self, name: &str, cols: usize, rows: usize, n: usize) -> Result<Experts<'a>> {
        let t = self.tensor(name, EXPERT_TYPES, &[cols, rows, n])?;
        Ok(Experts {
            name: t.name(),
            ty: t.ty(),
            n,
            rows,
            cols,
            data: t.data,
        })
    }

    /// A small F32 tensor of the given shape, copied out of the map.
    fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.tensor(name, &[GgmlType::F32], shape)?;
        Ok(t.data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    /// A small F16 or F32 tensor widened to f32.
    fn widened(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.tensor(name, &[GgmlType::F16, GgmlType::F32], shape)?;
        let mut out = vec![0.0; shape.iter().product()];
        gguf::quant::dequantize(t.ty(), t.data, &mut out)?;
        Ok(out)
    }

    fn hc(
        &self,
        prefix: &str,
        cfg: &ModelConfig,
        outputs: usize,
        scales: usize,
    ) -> Result<HcWeights<'a>> {
        Ok(HcWeights {
            func: self.mat(
                &format!("{prefix}_fn.weight"),
                MATRIX_TYPES,
                cfg.hc_dim(),
                outputs,
            )?,
            scale: self.f32s(&format!("{prefix}_scale.weight"), &[scales])?,
            base: self.f32s(&format!("{prefix}_base.weight"), &[outputs])?,
        })
    }

    fn compressor(
        &self,
        prefix: &str,
        cfg: &ModelConfig,
        ratio: usize,
        d: usize,
    ) -> Result<CompressorWeights<'a>> {
        let width = if ratio == 4 { 2 * d } else { d };
        Ok(CompressorWeights {
            kv: self.mat(
                &format!("{prefix}_kv.weight"),
                MATRIX_TYPES,
                cfg.n_embd,
                width,
            )?,
            gate: self.mat(
                &format!("{prefix}_gate.weight"),
                MATRIX_TYPES,
                cfg.n_embd,
                width,
            )?,
            ape: self.widened(&format!("{prefix}_ape.weight"), &[width, ratio])?,
            norm: self.f32s(&format!("{prefix}_norm.weight"), &[d])?,
        })
    }

    fn layer(&self, cfg: &ModelConfig, il: usize) -> Result<LayerWeights<'a>> {
        let p = format!("blk.{il}.");
        let n = |s: &str| format!("{p}{s}");
        let d = cfg.n_embd;
        let kind = cfg.attention_kind(il);
        let ratio = cfg.compress_ratios[il];
        let compressor = match kind {
            AttentionKind::Window => None,
            _ => Some(self.compressor(&n("attn_compressor"), cfg, ratio, cfg.head_dim)?),
        };
        let indexer = match kind {
            AttentionKind::Sparse => Some(IndexerWeights {
                q_b: self.mat(
                    &n("indexer.attn_q_b.weight"),
                    MATRIX_TYPES,
                    cfg.q_lora_rank,
                    cfg.indexer_heads * cfg.indexer_head_dim,
                )?,
                proj: self.mat(
                    &n("indexer.proj.weight"),
                    MATRIX_TYPES,
                    d,
                    cfg.indexer_heads,
                )?,
                compressor: self.compressor(
                    &n("indexer_compressor"),
                    cfg,
                    ratio,
                    cfg.indexer_head_dim,
                )?,
            }),
            _ => None,
        };
        let tid2eid = if cfg.is_hash_layer(il) {
            let name = n("ffn_gate_tid2eid.weight");
            let t = self.tensor(&name, &[GgmlType::I32], &[cfg.n_expert_used, cfg.n_vocab])?;
            Some(
                t.data
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
            )
        } else {
            None
        };
        let bias_name = n("exp_probs_b.bias");
        let router_bias = if self.has(&bias_name) {
            Some(self.f32s(&bias_name, &[cfg.n_expert])?)
        } else {
            None
        };
        let gate_exps = self.experts(&n("ffn_gate_exps.weight"), d, cfg.n_ff_exp, cfg.n_expert)?;
        let up_exps = self.experts(&n("ffn_up_exps.weight"), d, cfg.n_ff_exp, cfg.n_expert)?;
        if up_exps.ty != gate_exps.ty {
            return Err(ModelError::TensorType {
                name: up_exps.name.to_owned(),
                found: up_exps.ty,
                expected: format!("{} (the gate type of the layer)", gate_exps.ty),
            });
        }
        Ok(LayerWeights {
            hc_attn: self.hc(&n("hc_attn"), cfg, cfg.hc_mix(), 3)?,
            hc_ffn: self.hc(&n("hc_ffn"), cfg, cfg.hc_mix(), 3)?,
            attn_norm: self.f32s(&n("attn_norm.weight"), &[d])?,
            ffn_norm: self.f32s(&n("ffn_norm.weight"), &[d])?,
            q_a: self.mat(&n("attn_q_a.weight"), MATRIX_TYPES, d, cfg.q_lora_rank)?,
            q_a_norm: self.f32s(&n("attn_q_a_norm.weight"), &[cfg.q_lora_rank])?,
            q_b: self.mat(
                &n("attn_q_b.weight"),
                MATRIX_TYPES,
                cfg.q_lora_rank,
                cfg.n_head * cfg.head_dim,
            )?,
            kv: self.mat(&n("attn_kv.weight"), MATRIX_TYPES, d, cfg.head_dim)?,
            kv_norm: self.f32s(&n("attn_kv_a_norm.weight"), &[cfg.head_dim])?,
            sinks: self.f32s(&n("attn_sinks.weight"), &[cfg.n_head])?,
            out_a: self.mat(
                &n("attn_output_a.weight"),
                MATRIX_TYPES,
                cfg.n_head / cfg.o_groups * cfg.head_dim,
                cfg.o_groups * cfg.o_lora_rank,
            )?,
            out_b: self.mat(
                &n("attn_output_b.weight"),
                MATRIX_TYPES,
                cfg.o_groups * cfg.o_lora_rank,
                d,
            )?,
            compressor,
            indexer,
            router: self.mat(&n("ffn_gate_inp.weight"), MATRIX_TYPES, d, cfg.n_expert)?,
            router_bias,
            tid2eid,
            gate_exps,
            up_exps,
            down_exps: self.experts(&n("ffn_down_exps.weight"), cfg.n_ff_exp, d, cfg.n_expert)?,
            gate_shexp: self.mat(&n("ffn_gate_shexp.weight"), MATRIX_TYPES, d, cfg.n_ff_exp)?,
            up_shexp: self.mat(&n("ffn_up_shexp.weight"), MATRIX_TYPES, d, cfg.n_ff_exp)?,
            down_shexp: self.mat(&n("ffn_down_shexp.weight"), MATRIX_TYPES, cfg.n_ff_exp, d)?,
        })
    }
}

impl<'a> Weights<'a> {
    /// Binds every tensor the forward pass reads; the first missing or
    /// mis-shaped tensor is reported by name with what was expected.
    pub fn bind(file: &'a GgufFile, cfg: &ModelConfig) -> Result<Self> {
        let b = Binder { file };
        let layers = (0..cfg.n_layer)
            .map(|il| b.layer(cfg, il))
            .collect::<Result<Vec<_>>>()?;
        Ok(Weights {
            token_embd: b.mat("token_embd.weight", MATRIX_TYPES, cfg.n_embd, cfg.n_vocab)?,
            output_hc: b.hc("output_hc", cfg, cfg.n_hc, 1)?,
            output_norm: b.f32s("output_norm.weight", &[cfg.n_embd])?,
            output: b.mat("output.weight", MATRIX_TYPES, cfg.n_embd, cfg.n_vocab)?,
            layers,
        })
    }
}
