//! CPU dot kernels: quantized weight rows times quantized activations
//! (spec §5.3-§5.6, plus MXFP4 x Q8_0 activation for ds4f-mxfp4 files).
//!
//! Each kernel has a scalar reference ([`Isa::Scalar`]) that defines the
//! result and an AVX2 path ([`Isa::Avx2`]) that is bit-identical to it (see
//! `avx2` for why that holds), so the engine's output does not depend on the
//! machine it runs on. [`Isa::detect`] picks the fastest available path; the
//! `*_with` functions take an explicit one for tests and benchmarks.
//!
//! Which activation a weight type takes: Q2_K, Q4_K, IQ2_XXS -> Q8_K blocks;
//! Q8_0, MXFP4 -> ds4's Q8_0 activation ([`Activation::quantize_for`](super::Activation::quantize_for) picks).
//! Kernels take an [`ActRef`], so an owned [`Activation`](super::Activation),
//! a `&[BlockQ8K]` or an `&ActQ8_0` can be passed directly.

mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;

use rayon::prelude::*;

use super::activation::{ActQ8_0, ActRef, BlockQ8K};
use super::QuantError;
use crate::GgmlType;

/// Instruction-set path of the dot kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable reference, strict §5 float order.
    Scalar,
    /// x86-64 AVX2; bit-identical to `Scalar`.
    Avx2,
}

impl Isa {
    /// The fastest path this CPU supports (checked at run time).
    pub fn detect() -> Isa {
        if Isa::Avx2.is_available() {
            Isa::Avx2
        } else {
            Isa::Scalar
        }
    }

    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 => false,
        }
    }
}

/// Weight type + activation after `check`: every row of the right length
/// can be passed to `row_dot` without further tests.
#[derive(Clone, Copy)]
enum Bound<'a> {
    Q8_0(&'a ActQ8_0),
    Mxfp4(&'a ActQ8_0),
    Q2K(&'a [BlockQ8K]),
    Q4K(&'a [BlockQ8K]),
    Iq2Xxs(&'a [BlockQ8K]),
}

/// Validates the ISA and the type/activation pairing; returns the bound
/// kernel and the weight-row length in bytes it expects.
fn check(isa: Isa, ty: GgmlType, act: ActRef<'_>) -> Result<(Bound<'_>, usize), QuantError> {
    if !isa.is_available() {
        return Err(QuantError::IsaUnavailable(isa));
    }
    let bound = match (ty, act) {
        (GgmlType::Q8_0, ActRef::Q8_0(a)) => Bound::Q8_0(a),
        (GgmlType::Mxfp4, ActRef::Q8_0(a)) => Bound::Mxfp4(a),
        (GgmlType::Q2K, ActRef::Q8K(b)) => Bound::Q2K(b),
        (GgmlType::Q4K, ActRef::Q8K(b)) => Bound::Q4K(b),
        (GgmlType::Iq2Xxs, ActRef::Q8K(b)) => Bound::Iq2Xxs(b),
        (GgmlType::Q8_0 | GgmlType::Mxfp4, ActRef::Q8K(_)) => {
            return Err(QuantError::ActivationMismatch { ty, want: "Q8_0" })
        }
        (GgmlType::Q2K | GgmlType::Q4K | GgmlType::Iq2Xxs, ActRef::Q8_0(_)) => {
            return Err(QuantError::ActivationMismatch { ty, want: "Q8_K" })
        }
        _ => return Err(QuantError::Unsupported { ty, op: "vec_dot" }),
    };
    let blocks = match act {
        ActRef::Q8_0(a) => a.blocks(),
        ActRef::Q8K(b) => b.len(),
    };
    Ok((bound, blocks * ty.block_bytes()))
}

/// One row's dot product; `row.len()` must be the length `check` returned.
fn row_dot(isa: Isa, k: Bound<'_>, row: &[u8]) -> f32 {
    match isa {
        Isa::Scalar => match k {
            Bound::Q8_0(a) => scalar::q8_0(row, a.qs(), a.scales()),
            Bound::Mxfp4(a) => scalar::mxfp4(row, a.qs(), a.scales()),
            Bound::Q2K(y) => scalar::q2_k(row, y),
            Bound::Q4K(y) => scalar::q4_k(row, y),
            Bound::Iq2Xxs(y) => scalar::iq2_xxs(row, y),
        },
        // SAFETY: `check` returned Ok only if AVX2 was detected, and the
        // kernels' loads stay within `row` (its length is one weight block
        // per activation block, also checked) and the activation buffers.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe {
            match k {
                Bound::Q8_0(a) => avx2::q8_0(row, a.qs(), a.scales()),
                Bound::Mxfp4(a) => avx2::mxfp4(row, a.qs(), a.scales()),
                Bound::Q2K(y) => avx2::q2_k(row, y),
                Bound::Q4K(y) => avx2::q4_k(row, y),
                Bound::Iq2Xxs(y) => avx2::iq2_xxs(row, y),
            }
        },
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 => unreachable!("check() rejects Avx2 off x86-64"),
    }
}

/// Dot product of one weight row of type `ty` (raw block bytes, one block
/// per activation block) with a quantized activation, on the best ISA.
pub fn vec_dot<'a>(
    ty: GgmlType,
    row: &[u8],
    act: impl Into<ActRef<'a>>,
) -> Result<f32, QuantError> {
    vec_dot_with(Isa::detect(), ty, row, act)
}

/// [`vec_dot`] on an explicit ISA (errors if this CPU lacks it).
pub fn vec_dot_with<'a>(
    isa: Isa,
    ty: GgmlType,
    row: &[u8],
    act: impl Into<ActRef<'a>>,
) -> Result<f32, QuantError> {
    let (k, row_bytes) = check(isa, ty, act.into())?;
    if row.len() != row_bytes {
        return Err(QuantError::SizeMismatch {
            what: "weight row bytes",
            expected: row_bytes,
            got: row.len(),
        });
    }
    Ok(row_dot(isa, k, row))
}

/// `out[r] = dot(weights row r, act)` for a row-major `rows x cols` matrix
/// of `ty`, rows split across the rayon pool.
///
/// Each output is computed by exactly one single-threaded row kernel, so
/// the result is independent of the thread count and equals [`vec_dot`]
/// per row. `act` must cover `cols` values in whole blocks of its format.
pub fn matvec<'a>(
    ty: GgmlType,
    weights: &[u8],
    rows: usize,
    cols: usize,
    act: impl Into<ActRef<'a>>,
    out: &mut [f32],
) -> Result<(), QuantError> {
    matvec_with(Isa::detect(), ty, weights, rows, cols, act, out)
}

/// [`matvec`] on an explicit ISA.
pub fn matvec_with<'a>(
    isa: Isa,
    ty: GgmlType,
    weights: &[u8],
    rows: usize,
    cols: usize,
    act: impl Into<ActRef<'a>>,
    out: &mut [f32],
) -> Result<(), QuantError> {
    let (k, row_bytes) = check(isa, ty, act.into())?;
    let want_row = ty
        .row_bytes(cols as u64)
        .ok_or(QuantError::NotBlockMultiple {
            ty,
            n: cols,
            block: ty.block_elems(),
        })? as usize;
    if want_row != row_bytes {
        return Err(QuantError::SizeMismatch {
            what: "activation values (in whole blocks)",
            expected: cols,
            got: row_bytes / ty.block_bytes() * ty.block_elems(),
        });
    }
    let total = rows
        .checked_mul(row_bytes)
        .ok_or(QuantError::SizeMismatch {
            what: "weight bytes",
            expected: usize::MAX,
            got: weights.len(),
        })?;
    if weights.len() != total {
        return Err(QuantError::SizeMismatch {
            what: "weight bytes",
            expected: total,
            got: weights.len(),
        });
    }
    if out.len() != rows {
        return Err(QuantError::SizeMismatch {
            what: "output rows",
            expected: rows,
            got: out.len(),
        });
    }
    if row_bytes == 0 {
        out.fill(0.0);
        return Ok(());
    }
    out.par_iter_mut()
        .zip(weights.par_chunks_exact(row_bytes))
        .with_min_len(16)
        .for_each(|(o, row)| *o = row_dot(isa, k, row));
    Ok(())
}

/// Q8_0 row x ds4 Q8_0 activation (§5.3).
pub fn dot_q8_0(isa: Isa, row: &[u8], act: &ActQ8_0) -> Result<f32, QuantError> {
    vec_dot_with(isa, GgmlType::Q8_0, row, act)
}

/// MXFP4 row x ds4 Q8_0 activation.
pub fn dot_mxfp4(isa: Isa, row: &[u8], act: &ActQ8_0) -> Result<f32, QuantError> {
    vec_dot_with(isa, GgmlType::Mxfp4, row, act)
}

/// Q2_K row x Q8_K blocks (§5.4).
pub fn dot_q2_k(isa: Isa, row: &[u8], act: &[BlockQ8K]) -> Result<f32, QuantError> {
    vec_dot_with(isa, GgmlType::Q2K, row, act)
}

/// Q4_K row x Q8_K blocks (§5.5).
pub fn dot_q4_k(isa: Isa, row: &[u8], act: &[BlockQ8K]) -> Result<f32, QuantError> {
    vec_dot_with(isa, GgmlType::Q4K, row, act)
}

/// IQ2_XXS row x Q8_K blocks (§5.6).
pub fn dot_iq2_xxs(isa: Isa, row: &[u8], act: &[BlockQ8K]) -> Result<f32, QuantError> {
    vec_dot_with(isa, GgmlType::Iq2Xxs, row, act)
}
