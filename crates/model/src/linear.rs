//! Matrix-vector products in the two numerics modes (model.md §11.1).
//!
//! `Numerics::Quantized` is ds4's CPU reference: F16/F32 weights multiply
//! f32 activations; Q8_0 and MXFP4 weights multiply ds4's Q8_0 activation;
//! K-quant and IQ2 weights multiply Q8_K activations; every float sum in
//! the order of `gguf::order` (lane order; block order for wide rows), as
//! the GPU sums. `Numerics::F32` never
//! quantizes an activation: every weight row is decoded to f32 and the dot
//! product is accumulated in f64, the mode the oracle comparison uses.

use gguf::order;
use gguf::quant::{self, ActRef, Activation};
use gguf::GgmlType;
use rayon::prelude::*;

use crate::error::Result;
use crate::weights::Mat;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Numerics {
    /// Activations quantized as ds4's CPU path does (the default).
    #[default]
    Quantized,
    /// Activations never quantized, weights decoded to f32, f64 sums.
    F32,
}

/// Weight types whose activations are quantized in `Numerics::Quantized`.
fn takes_quantized(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q8_0 | GgmlType::Mxfp4 | GgmlType::Q2K | GgmlType::Q4K | GgmlType::Iq2Xxs
    )
}

/// An input vector prepared for one weight type: quantize once, multiply by
/// many matrices (the six experts' gate and up projections share one).
pub enum Input<'x> {
    Plain(&'x [f32]),
    Quantized(Activation),
}

impl<'x> Input<'x> {
    pub fn new(ty: GgmlType, x: &'x [f32], numerics: Numerics) -> Result<Self> {
        Ok(if numerics == Numerics::Quantized && takes_quantized(ty) {
            Input::Quantized(Activation::quantize_for(ty, x)?)
        } else {
            Input::Plain(x)
        })
    }
}

/// Rows per rayon task for the f32 paths.
const MIN_ROWS_PER_TASK: usize = 8;

impl Mat<'_> {
    /// `y = W x`.
    pub fn matvec(&self, x: &[f32], y: &mut [f32], numerics: Numerics) -> Result<()> {
        let input = Input::new(self.ty, x, numerics)?;
        self.matvec_input(&input, y, numerics)
    }

    /// `y = W x` with an input already prepared for this weight type.
    pub fn matvec_input(&self, input: &Input<'_>, y: &mut [f32], numerics: Numerics) -> Result<()> {
        debug_assert_eq!(y.len(), self.rows);
        match input {
            Input::Quantized(a) => {
                quant::matvec(self.ty, self.data, self.rows, self.cols, ActRef::from(a), y)?;
            }
            Input::Plain(x) => {
                debug_assert_eq!(x.len(), self.cols);
                let rb = self.row_bytes();
                let f64_sums = numerics == Numerics::F32;
                let wide = order::is_wide(self.rows, self.cols);
                y.par_iter_mut()
                    .zip(self.data.par_chunks_exact(rb.max(1)))
                    .with_min_len(MIN_ROWS_PER_TASK)
                    .try_for_each_init(
                        || vec![0f32; self.cols],
                        |row, (out, bytes)| -> Result<()> {
                            decode_row(self.ty, bytes, row)?;
                            *out = if f64_sums {
                                dot_f64(row, x)
                            } else if wide {
                                order::block_dot(row, x, order::WIDE_THREADS)
                            } else {
                                dot_f32(row, x)
                            };
                            Ok(())
                        },
                    )?;
            }
        }
        Ok(())
    }

    /// Row `r` decoded to f32.
    pub fn decode_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        decode_row(self.ty, self.row(r), out)
    }
}

fn decode_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes(c.try_into().expect("4 bytes"));
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        _ => quant::dequantize(ty, bytes, out)?,
    }
    Ok(())
}

/// f32 products summed in f32 (ds4's F16 x f32 class), in lane order so
/// the GPU gives the same bits (`gguf::order`).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    order::lane_dot(a, b)
}

/// Exact-as-practical dot product for the f32 reference mode.
pub fn dot_f64(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = 0f64;
    for (x, y) in a.iter().zip(b) {
        acc += f64::from(*x) * f64::from(*y);
    }
    acc as f32
}
