//! Run-time activation quantizers of ds4's CPU backend (spec §5.1, §5.2).
//!
//! Quantized matvecs multiply integer weight codes with integer activation
//! codes; these functions produce the activation side. Both are the strict
//! (no fast-math) reference forms, which makes every integer the kernels see
//! reproducible (§5.7).
//!
//! Both scan for the largest magnitude and round codes; the forms below
//! (integer max over bit patterns, `round_i8`) vectorize, unlike the
//! literal serial scan and `f32::round_ties_even`, which is a libm call on
//! baseline x86-64 (no SSE4.1). Together that made them ~3x faster; a test
//! pins them to the literal spec code.

use super::float::nearest_int;
use super::QuantError;
use crate::GgmlType;

/// One Q8_K activation block (spec §3.6): 256 codes with an f32 scale and
/// the 16-element partial sums the K-quant kernels use for their min term.
///
/// `#[repr(C)]` with exactly ggml's 292-byte layout so a slice of blocks can
/// be handed to GPU code sharing ds4's CUDA layout unchanged.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; 256],
    pub bsums: [i16; 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl BlockQ8K {
    pub const ZERO: BlockQ8K = BlockQ8K {
        d: 0.0,
        qs: [0; 256],
        bsums: [0; 16],
    };

    /// The block's ggml/GGUF byte encoding (little-endian fields).
    pub fn to_bytes(&self) -> [u8; 292] {
        let mut b = [0u8; 292];
        b[0..4].copy_from_slice(&self.d.to_le_bytes());
        for (o, &q) in b[4..260].iter_mut().zip(&self.qs) {
            *o = q as u8;
        }
        for (o, s) in b[260..292].chunks_exact_mut(2).zip(self.bsums) {
            o.copy_from_slice(&s.to_le_bytes());
        }
        b
    }
}

/// ds4's `clamp(lrint(v), -128, 127)`: half to even, saturating for
/// out-of-range and infinite `v`, NaN -> 0 (equal to
/// `(v.round_ties_even() as i32).clamp(-128, 127)` for every input).
/// Clamping first keeps `v` in `nearest_int`'s exact range.
#[inline]
fn round_i8(v: f32) -> i8 {
    let v = if v.is_nan() {
        0.0
    } else {
        v.clamp(-128.0, 127.0)
    };
    nearest_int(v) as i8
}

/// `max |x|` as ds4's scan `if |x| > amax: amax = |x|` (from 0) computes
/// it: NaN never wins. Done on the bit patterns (which order like the
/// values for non-NaN magnitudes) so the loop vectorizes; the float form
/// is a serial compare chain.
fn abs_max(x: &[f32]) -> f32 {
    let m = x
        .iter()
        .map(|v| {
            let b = v.to_bits() & 0x7FFF_FFFF;
            if b > 0x7F80_0000 {
                0
            } else {
                b
            }
        })
        .max()
        .unwrap_or(0);
    f32::from_bits(m)
}

/// §5.1 for one 256-value block.
///
/// The scale is `1 / iscale` with `iscale = -127 / mx` (two roundings), the
/// strict form. ds4's shipped `-ffast-math` x86 build computes
/// `mx * (-1/127)` instead and differs by one ulp in about a quarter of the
/// blocks (§5.7); the codes and bsums are identical either way.
pub fn quantize_q8_k_block(x: &[f32; 256]) -> BlockQ8K {
    let amax = abs_max(x);
    if amax == 0.0 {
        return BlockQ8K::ZERO;
    }
    // The first element of largest magnitude, as the C scan
    // (`if |x| > amax`) leaves it.
    let mx = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
    let iscale = -127.0 / mx;
    let mut b = BlockQ8K::ZERO;
    for (q, &v) in b.qs.iter_mut().zip(x) {
        *q = round_i8(iscale * v);
    }
    for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
        *s = q.iter().map(|&q| q as i16).sum();
    }
    b.d = 1.0 / iscale;
    b
}

/// §5.1 over a vector whose length is a multiple of 256.
pub fn quantize_q8_k(x: &[f32]) -> Result<Vec<BlockQ8K>, QuantError> {
    if !x.len().is_multiple_of(256) {
        return Err(QuantError::NotBlockMultiple {
            ty: GgmlType::Q8K,
            n: x.len(),
            block: 256,
        });
    }
    Ok(x.chunks_exact(256)
        .map(|c| quantize_q8_k_block(c.try_into().expect("chunk of 256")))
        .collect())
}

/// ds4's "Q8_0 activation" (§5.2): int8 codes in blocks of 32 with one f32
/// scale per block, consumed by the Q8_0 and MXFP4 weight kernels.
///
/// Unlike GGML's `block_q8_0` the scale stays f32 and rounding is
/// half-to-even, so this is a separate type rather than Q8_0 blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct ActQ8_0 {
    /// Number of activation values represented (the last block may be
    /// partial; its missing codes are 0).
    len: usize,
    /// `blocks * 32` codes.
    qs: Vec<i8>,
    /// One scale per block.
    scales: Vec<f32>,
}

impl ActQ8_0 {
    /// Quantizes `x` (any length) per §5.2.
    ///
    /// Strict form: `d = amax / 127`, `id = 1 / d`. ds4's shipped
    /// `-ffast-math` build computes `d = amax * (1/127)` and `id = 127 /
    /// amax` (one rounding), which moves a few codes per 4096-wide vector
    /// and a Q8_0 matvec output by ~1e-3 relative (§5.7); we keep the strict,
    /// compiler-independent definition as the engine's reference.
    pub fn quantize(x: &[f32]) -> ActQ8_0 {
        let nb = x.len().div_ceil(32);
        let mut qs = vec![0i8; nb * 32];
        let mut scales = vec![0.0f32; nb];
        for ((xb, qb), s) in x.chunks(32).zip(qs.chunks_exact_mut(32)).zip(&mut scales) {
            let amax = abs_max(xb);
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (q, &v) in qb.iter_mut().zip(xb) {
                *q = round_i8(v * id);
            }
            *s = d;
        }
        ActQ8_0 {
            len: x.len(),
            qs,
            scales,
        }
    }

    /// Builds an activation from codes and scales produced elsewhere (e.g.
    /// dumped from ds4), checking that there is one scale per 32 codes.
    pub fn from_parts(len: usize, qs: Vec<i8>, scales: Vec<f32>) -> Result<ActQ8_0, QuantError> {
        let nb = len.div_ceil(32);
        if qs.len() != nb * 32 {
            return Err(QuantError::SizeMismatch {
                what: "Q8_0 activation codes",
                expected: nb * 32,
                got: qs.len(),
            });
        }
        if scales.len() != nb {
            return Err(QuantError::SizeMismatch {
                what: "Q8_0 activation scales",
                expected: nb,
                got: scales.len(),
            });
        }
        Ok(ActQ8_0 { len, qs, scales })
    }

    /// Number of activation values.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of 32-value blocks.
    pub fn blocks(&self) -> usize {
        self.scales.len()
    }

    /// The codes, `blocks() * 32` of them (padding codes are 0).
    pub fn qs(&self) -> &[i8] {
        &self.qs
    }

    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// `scale * code` per value, the activation the kernels effectively see.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut y: Vec<f32> = self
            .qs
            .chunks_exact(32)
            .zip(&self.scales)
            .flat_map(|(q, &d)| q.iter().map(move |&q| d * q as f32))
            .collect();
        y.truncate(self.len);
        y
    }
}

/// A quantized activation vector in the format a weight type's kernel
/// consumes: Q8_K for the K/IQ types, ds4's Q8_0 activation for Q8_0 and
/// MXFP4.
#[derive(Clone, Debug, PartialEq)]
pub enum Activation {
    Q8K(Vec<BlockQ8K>),
    Q8_0(ActQ8_0),
}

impl Activation {
    /// Quantizes `x` for multiplication with weights of type `ty`.
    pub fn quantize_for(ty: GgmlType, x: &[f32]) -> Result<Activation, QuantError> {
        match ty {
            GgmlType::Q2K | GgmlType::Q4K | GgmlType::Iq2Xxs => {
                Ok(Activation::Q8K(quantize_q8_k(x)?))
            }
            GgmlType::Q8_0 | GgmlType::Mxfp4 => Ok(Activation::Q8_0(ActQ8_0::quantize(x))),
            _ => Err(QuantError::Unsupported { ty, op: "vec_dot" }),
        }
    }

    /// Number of activation values represented.
    pub fn len(&self) -> usize {
        match self {
            Activation::Q8K(b) => b.len() * 256,
            Activation::Q8_0(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values the quantized codes stand for (`d * q`), for reference
    /// computations and tests.
    pub fn dequantize(&self) -> Vec<f32> {
        match self {
            Activation::Q8K(blocks) => blocks
                .iter()
                .flat_map(|b| b.qs.iter().map(move |&q| b.d * q as f32))
                .collect(),
            Activation::Q8_0(a) => a.dequantize(),
        }
    }
}

/// A borrowed quantized activation, what the dot kernels take. Built from
/// an [`Activation`], a slice of Q8_K blocks or an [`ActQ8_0`] via `From`,
/// so callers that keep their own buffers need not wrap them.
#[derive(Clone, Copy, Debug)]
pub enum ActRef<'a> {
    Q8K(&'a [BlockQ8K]),
    Q8_0(&'a ActQ8_0),
}

impl<'a> From<&'a Activation> for ActRef<'a> {
    fn from(a: &'a Activation) -> Self {
        match a {
            Activation::Q8K(b) => ActRef::Q8K(b),
            Activation::Q8_0(a) => ActRef::Q8_0(a),
        }
    }
}

impl<'a> From<&'a [BlockQ8K]> for ActRef<'a> {
    fn from(b: &'a [BlockQ8K]) -> Self {
        ActRef::Q8K(b)
    }
}

impl<'a> From<&'a Vec<BlockQ8K>> for ActRef<'a> {
    fn from(b: &'a Vec<BlockQ8K>) -> Self {
        ActRef::Q8K(b)
    }
}

impl<'a> From<&'a ActQ8_0> for ActRef<'a> {
    fn from(a: &'a ActQ8_0) -> Self {
        ActRef::Q8_0(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §5.1 / §5.2 written literally (serial float scans, `lrint` as
    /// `round_ties_even`), to pin the vectorized forms to the spec.
    fn literal_q8_k(x: &[f32; 256]) -> BlockQ8K {
        let (mut amax, mut mx) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                mx = v;
            }
        }
        if amax == 0.0 {
            return BlockQ8K::ZERO;
        }
        let iscale = -127.0 / mx;
        let mut b = BlockQ8K::ZERO;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = ((iscale * v).round_ties_even() as i32).clamp(-128, 127) as i8;
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
        b
    }

    fn literal_q8_0(x: &[f32]) -> (Vec<i8>, Vec<f32>) {
        let mut qs = vec![0i8; x.len().div_ceil(32) * 32];
        let mut scales = Vec::new();
        for (xb, qb) in x.chunks(32).zip(qs.chunks_exact_mut(32)) {
            let mut amax = 0.0f32;
            for &v in xb {
                if v.abs() > amax {
                    amax = v.abs();
                }
            }
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (q, &v) in qb.iter_mut().zip(xb) {
                *q = ((v * id).round_ties_even() as i32).clamp(-128, 127) as i8;
            }
            scales.push(d);
        }
        (qs, scales)
    }

    #[test]
    fn round_i8_is_saturating_lrint() {
        let mut s = 0x9E37_79B9u32;
        let specials = [
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7FC0_1234),
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            127.5,
            -128.5,
            126.5,
            -127.5,
            1e30,
        ];
        for i in 0..1_000_000u32 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let v = match i {
                i if (i as usize) < specials.len() => specials[i as usize],
                i if i % 2 == 0 => f32::from_bits(s),
                _ => (s as i32 as f32) / 8_388_608.0 * 200.0,
            };
            let want = if v.is_nan() {
                0
            } else {
                (v.round_ties_even() as i32).clamp(-128, 127) as i8
            };
            assert_eq!(round_i8(v), want, "{v:e} ({:#010x})", v.to_bits());
        }
    }

    #[test]
    fn vectorized_forms_equal_the_literal_spec() {
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for case in 0..400 {
            let mut x = [0.0f32; 256];
            for v in x.iter_mut() {
                let r = next();
                let u = (r >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                *v = match case % 5 {
                    0 => u,
                    1 => (u * 8.0).round(), // many ties in |x|, both signs
                    2 => u * 1e-30,
                    3 => f32::from_bits(r as u32 & 0x807F_FFFF), // subnormals, -0
                    _ => u * 3e38,
                };
            }
            if case % 7 == 0 {
                x[(next() % 256) as usize] = f32::NAN;
            }
            let got = quantize_q8_k_block(&x);
            let want = literal_q8_k(&x);
            assert_eq!(got.qs, want.qs, "case {case}");
            assert_eq!(got.bsums, want.bsums, "case {case}");
            assert_eq!(got.d.to_bits(), want.d.to_bits(), "case {case}");
            let a = ActQ8_0::quantize(&x[..250]);
            let (qs, scales) = literal_q8_0(&x[..250]);
            assert_eq!(a.qs(), &qs[..], "case {case}");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a.scales()), bits(&scales), "case {case}");
        }
    }

    #[test]
    fn q8_k_largest_element_is_minus_127() {
        let mut x = [0.0f32; 256];
        for (i, v) in x.iter_mut().enumerate() {
            *v = (i as f32 - 100.0) * 0.01;
        }
        let b = quantize_q8_k_block(&x);
        // mx = 1.55 at index 255 -> code -127, d negative.
        assert_eq!(b.qs[255], -127);
        assert!(b.d < 0.0);
        for j in 0..16 {
            let s: i32 = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            assert_eq!(b.bsums[j] as i32, s);
        }
        assert_eq!(quantize_q8_k_block(&[0.0; 256]), BlockQ8K::ZERO);
    }

    #[test]
    fn q8_k_first_index_wins_ties() {
        let mut x = [0.0f32; 256];
        x[3] = -2.0;
        x[10] = 2.0;
        let b = quantize_q8_k_block(&x);
        assert_eq!((b.qs[3], b.qs[10]), (-127, 127));
    }

    #[test]
    fn q8_0_act_is_half_even_with_partial_tail() {
        let mut x = vec![0.0f32; 40];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -3.5;
        x[33] = -1.0;
        let a = ActQ8_0::quantize(&x);
        assert_eq!(a.blocks(), 2);
        assert_eq!(&a.qs()[0..3], &[127, 2, -4]);
        assert_eq!(a.scales()[0], 1.0);
        assert_eq!(a.qs()[33], -127);
        assert!(a.qs()[40..].iter().all(|&q| q == 0));
        assert_eq!(a.dequantize().len(), 40);
    }

    #[test]
    fn block_bytes_layout() {
        let mut x = [0.0f32; 256];
        x[0] = 1.0;
        let b = quantize_q8_k_block(&x);
        let bytes = b.to_bytes();
        assert_eq!(&bytes[0..4], &b.d.to_le_bytes());
        assert_eq!(bytes[4] as i8, -127);
        assert_eq!(i16::from_le_bytes([bytes[260], bytes[261]]), -127);
    }
}
