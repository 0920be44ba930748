//! GGML tensor type ids and their block geometry (gguf-and-quants.md §2.6).
//!
//! Sizes are the real GGML sizes, not ds4.c's table (which is wrong for a few
//! types ds4 never uses, §9.5). MXFP4 (id 39) is included because ds4's
//! `ds4f-mxfp4` files store routed experts natively in it.

use std::fmt;

/// A GGML tensor element type as stored in a GGUF tensor-info record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    Iq2Xxs,
    Iq2Xs,
    Iq3Xxs,
    Iq1S,
    Iq4Nl,
    Iq3S,
    Iq2S,
    Iq4Xs,
    I8,
    I16,
    I32,
    I64,
    F64,
    Iq1M,
    Bf16,
    Mxfp4,
}

/// (type, id, name, block elements, block bytes)
const TABLE: &[(GgmlType, u32, &str, usize, usize)] = &[
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    (GgmlType::Q2K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4K, 12, "Q4_K", 256, 144),
    (GgmlType::Q5K, 13, "Q5_K", 256, 176),
    (GgmlType::Q6K, 14, "Q6_K", 256, 210),
    (GgmlType::Q8K, 15, "Q8_K", 256, 292),
    (GgmlType::Iq2Xxs, 16, "IQ2_XXS", 256, 66),
    (GgmlType::Iq2Xs, 17, "IQ2_XS", 256, 74),
    (GgmlType::Iq3Xxs, 18, "IQ3_XXS", 256, 98),
    (GgmlType::Iq1S, 19, "IQ1_S", 256, 50),
    (GgmlType::Iq4Nl, 20, "IQ4_NL", 32, 18),
    (GgmlType::Iq3S, 21, "IQ3_S", 256, 110),
    (GgmlType::Iq2S, 22, "IQ2_S", 256, 82),
    (GgmlType::Iq4Xs, 23, "IQ4_XS", 256, 136),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::Iq1M, 29, "IQ1_M", 256, 56),
    (GgmlType::Bf16, 30, "BF16", 1, 2),
    (GgmlType::Mxfp4, 39, "MXFP4", 32, 17),
];

impl GgmlType {
    fn entry(self) -> &'static (GgmlType, u32, &'static str, usize, usize) {
        TABLE
            .iter()
            .find(|e| e.0 == self)
            .expect("every GgmlType variant has a TABLE row")
    }

    /// The type for a GGUF type id, or `None` for ids GGML does not define.
    pub fn from_id(id: u32) -> Option<Self> {
        TABLE.iter().find(|e| e.1 == id).map(|e| e.0)
    }

    /// The type for its GGML name (`"IQ2_XXS"`), matched case-insensitively
    /// with `-` and `_` ignored, as ds4's tools match user-typed names.
    pub fn from_name(name: &str) -> Option<Self> {
        let norm = |s: &str| -> String {
            s.chars()
                .filter(|c| *c != '-' && *c != '_')
                .flat_map(char::to_lowercase)
                .collect()
        };
        let want = norm(name);
        TABLE.iter().find(|e| norm(e.2) == want).map(|e| e.0)
    }

    pub fn id(self) -> u32 {
        self.entry().1
    }

    /// The GGML name, e.g. `"Q2_K"`.
    pub fn name(self) -> &'static str {
        self.entry().2
    }

    /// Elements per block (1 for plain types).
    pub fn block_elems(self) -> usize {
        self.entry().3
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.entry().4
    }

    /// Bytes of a row of `ne0` elements, or `None` when `ne0` is not a whole
    /// number of blocks or the size overflows.
    pub fn row_bytes(self, ne0: u64) -> Option<u64> {
        let be = self.block_elems() as u64;
        if !ne0.is_multiple_of(be) {
            return None;
        }
        (ne0 / be).checked_mul(self.block_bytes() as u64)
    }

    /// Bytes of `n_elements` elements, rounding up to whole blocks as ds4 does.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let be = self.block_elems() as u64;
        n_elements
            .div_ceil(be)
            .checked_mul(self.block_bytes() as u64)
    }

    /// Every type this crate knows, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TABLE.iter().map(|e| e.0)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for t in GgmlType::all() {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(31), None);
        assert_eq!(GgmlType::from_name("iq2-xxs"), Some(GgmlType::Iq2Xxs));
        assert_eq!(GgmlType::from_name("q4k"), Some(GgmlType::Q4K));
    }

    #[test]
    fn ds4_sizes() {
        assert_eq!(GgmlType::Q2K.row_bytes(4096), Some(16 * 84));
        assert_eq!(GgmlType::Iq2Xxs.row_bytes(2048), Some(8 * 66));
        assert_eq!(GgmlType::Q8_0.row_bytes(4096), Some(128 * 34));
        assert_eq!(GgmlType::Mxfp4.row_bytes(64), Some(34));
        assert_eq!(GgmlType::Q4K.row_bytes(100), None);
        assert_eq!(GgmlType::Q8_0.bytes_for(33), Some(68));
    }
}
