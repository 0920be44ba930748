//! ggml block formats used by ds4's DeepSeek V4 Flash files: decoding
//! (spec §3), byte-exact weight quantizers (§4), run-time activation
//! quantizers (§5.1, §5.2) and CPU dot kernels (§5.3-§5.6).
//!
//! Everything decodes from raw little-endian bytes: tensor data comes from
//! a memory map with no alignment guarantee, so nothing here reinterprets
//! `&[u8]` as wider types. All entry points validate sizes and return
//! [`QuantError`] instead of panicking on malformed input.
//!
//! Float arithmetic follows the strict evaluation rule of §1 (binary32, the
//! written order, no FMA), which is what makes the quantizers byte-exact
//! with gguf-tools and the kernels bit-exact with ds4's strict scalar code.

mod activation;
mod dequant;
mod dot;
mod float;
mod iq2xxs;
mod kquants;
pub mod tables;

use rayon::prelude::*;

use crate::GgmlType;

pub use activation::{quantize_q8_k, quantize_q8_k_block, ActQ8_0, ActRef, Activation, BlockQ8K};
pub use dot::{
    dot_iq2_xxs, dot_mxfp4, dot_q2_k, dot_q4_k, dot_q8_0, matvec, matvec_with, vec_dot,
    vec_dot_with, Isa,
};
pub use float::{bf16_to_f32, e8m0_to_f32_half, f16_to_f32, f32_to_bf16, f32_to_f16, nearest_int};

/// Why a quantization-layer call was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("{op} does not support tensor type {ty}")]
    Unsupported { ty: GgmlType, op: &'static str },
    #[error("{n} values is not a whole number of {ty} blocks of {block}")]
    NotBlockMultiple {
        ty: GgmlType,
        n: usize,
        block: usize,
    },
    #[error("{what}: expected {expected}, got {got}")]
    SizeMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{ty} weights need a {want} activation")]
    ActivationMismatch { ty: GgmlType, want: &'static str },
    #[error("instruction set {0:?} is not available on this CPU")]
    IsaUnavailable(Isa),
}

/// Elements decoded per rayon task: large tensors are split so a whole-
/// tensor decode uses every core; small ones stay on the calling thread.
const PAR_CHUNK_ELEMS: usize = 1 << 16;

/// Decodes `dst.len()` elements of type `ty` from `src` (exactly their
/// bytes) into f32.
///
/// Supported: F32, F16, BF16, I32 (converted as values), Q8_0, Q2_K, Q4_K,
/// IQ2_XXS, MXFP4, Q8_K. The output is bit-identical to gguf's quants.py
/// and to ds4's decoders (§3, §8.1). Large inputs are decoded in parallel;
/// blocks are independent, so the result does not depend on threading.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let decode = dequant::decoder(ty).ok_or(QuantError::Unsupported {
        ty,
        op: "dequantize",
    })?;
    let (be, bb) = (ty.block_elems(), ty.block_bytes());
    if !dst.len().is_multiple_of(be) {
        return Err(QuantError::NotBlockMultiple {
            ty,
            n: dst.len(),
            block: be,
        });
    }
    let want = dst.len() / be * bb;
    if src.len() != want {
        return Err(QuantError::SizeMismatch {
            what: "source bytes",
            expected: want,
            got: src.len(),
        });
    }
    if dst.len() <= PAR_CHUNK_ELEMS {
        decode(src, dst);
        return Ok(());
    }
    let blocks_per_chunk = PAR_CHUNK_ELEMS / be;
    dst.par_chunks_mut(blocks_per_chunk * be)
        .zip(src.par_chunks(blocks_per_chunk * bb))
        .for_each(|(d, s)| decode(s, d));
    Ok(())
}

/// Rows quantized per rayon task; rows are independent (§4), so the bytes
/// do not depend on how they are split.
const PAR_MIN_ROWS: usize = 4;

/// Quantizes `src` (row-major, `src.len() / ncols` rows of `ncols` values)
/// to `ty`, rows concatenated as in a GGUF tensor.
///
/// Byte-exact with gguf-tools' quants.c built strictly (§4, vectors §8.3).
/// `imp` (length `ncols`, shared by all rows) selects the importance-
/// weighted Q2_K/Q4_K paths and is required by IQ2_XXS in ds4; when it is
/// `None` for IQ2_XXS the synthetic vector of §4.7 (column sums of squares
/// over the given rows) is used, so pass one expert's matrix at a time to
/// reproduce deepseek4-quantize. Q8_0/F16/BF16/F32 ignore `imp`.
pub fn quantize(
    ty: GgmlType,
    src: &[f32],
    ncols: usize,
    imp: Option<&[f32]>,
) -> Result<Vec<u8>, QuantError> {
    // Per-block quantizer; its importance slice is empty when there is none.
    type BlockFn = fn(&[f32], &[f32], &mut [u8]);
    let block_fn: BlockFn = match ty {
        GgmlType::F32 => |x, _, o| o.copy_from_slice(&x[0].to_le_bytes()),
        GgmlType::F16 => |x, _, o| o.copy_from_slice(&f32_to_f16(x[0]).to_le_bytes()),
        GgmlType::Bf16 => |x, _, o| o.copy_from_slice(&f32_to_bf16(x[0]).to_le_bytes()),
        GgmlType::Q8_0 => |x, _, o| kquants::quantize_q8_0_block(x, o),
        GgmlType::Q4K => |x, w, o| kquants::quantize_q4_k_block(x, (!w.is_empty()).then_some(w), o),
        GgmlType::Q2K => |x, w, o| kquants::quantize_q2_k_block(x, (!w.is_empty()).then_some(w), o),
        GgmlType::Iq2Xxs => iq2xxs::quantize_iq2_xxs_block,
        _ => return Err(QuantError::Unsupported { ty, op: "quantize" }),
    };
    let (be, bb) = (ty.block_elems(), ty.block_bytes());
    if ncols == 0 || !ncols.is_multiple_of(be) {
        return Err(QuantError::NotBlockMultiple {
            ty,
            n: ncols,
            block: be,
        });
    }
    if !src.len().is_multiple_of(ncols) {
        return Err(QuantError::SizeMismatch {
            what: "values (a whole number of rows)",
            expected: src.len() / ncols * ncols,
            got: src.len(),
        });
    }
    if let Some(imp) = imp {
        if imp.len() != ncols {
            return Err(QuantError::SizeMismatch {
                what: "importance vector length",
                expected: ncols,
                got: imp.len(),
            });
        }
    }
    let imp: Vec<f32> = match (ty, imp) {
        (GgmlType::Iq2Xxs, None) => synthetic_importance(src, ncols),
        (GgmlType::Q4K | GgmlType::Q2K | GgmlType::Iq2Xxs, Some(imp)) => imp.to_vec(),
        _ => Vec::new(),
    };
    let row_bytes = ncols / be * bb;
    let mut out = vec![0u8; src.len() / ncols * row_bytes];
    out.par_chunks_mut(row_bytes)
        .zip(src.par_chunks(ncols))
        .with_min_len(PAR_MIN_ROWS)
        .for_each(|(o, x)| {
            for (b, (ob, xb)) in o.chunks_exact_mut(bb).zip(x.chunks_exact(be)).enumerate() {
                let w = if imp.is_empty() {
                    &[][..]
                } else {
                    &imp[b * be..b * be + be]
                };
                block_fn(xb, w, ob);
            }
        });
    Ok(out)
}

/// §4.7: `imp[c] = sum over rows, in row order, of x[r][c]^2`, the vector
/// deepseek4-quantize uses for IQ2_XXS when no imatrix entry exists.
pub fn synthetic_importance(src: &[f32], ncols: usize) -> Vec<f32> {
    let mut imp = vec![0.0f32; ncols];
    for row in src.chunks_exact(ncols) {
        for (s, &v) in imp.iter_mut().zip(row) {
            *s += v * v;
        }
    }
    imp
}
