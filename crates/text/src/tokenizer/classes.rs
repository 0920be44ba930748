//! Character classes of the V4 pre-tokenizer regexes (`\p{L}`, `\p{M}`, `\p{N}`, `\p{P}`,
//! `\p{S}`, `\s` and the CJK/kana ranges), looked up once per character.

use unicode_general_category::{get_general_category, GeneralCategory as G};

pub(crate) const L: u16 = 1;
pub(crate) const M: u16 = 2;
pub(crate) const N: u16 = 4;
pub(crate) const P: u16 = 8;
pub(crate) const S: u16 = 16;
/// Oniguruma's `\s`: the Unicode White_Space property.
pub(crate) const WS: u16 = 32;
/// The step-2 ranges: U+4E00–U+9FA5, U+3040–U+309F, U+30A0–U+30FF.
pub(crate) const CJK: u16 = 64;
/// The 32 ASCII punctuation/symbol characters of alternative A1.
pub(crate) const ASCII_PUNCT: u16 = 128;
/// `[A-Za-z]`.
pub(crate) const ASCII_ALPHA: u16 = 256;
/// CR or LF.
pub(crate) const NEWLINE: u16 = 512;
/// U+0020, the optional prefix of alternative A3.
pub(crate) const SPACE: u16 = 1024;

/// ASCII classes, computed at compile time so the common case is one table load.
static ASCII: [u16; 128] = {
    let mut t = [0u16; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphabetic() {
            L | ASCII_ALPHA
        } else if b.is_ascii_digit() {
            N
        } else if b == b'\r' || b == b'\n' {
            WS | NEWLINE
        } else if b == b' ' {
            WS | SPACE
        } else if matches!(b, 9..=13) {
            WS
        } else if matches!(
            b,
            b'$' | b'+' | b'<' | b'=' | b'>' | b'^' | b'`' | b'|' | b'~'
        ) {
            S | ASCII_PUNCT
        } else if b.is_ascii_punctuation() {
            P | ASCII_PUNCT
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Class bits of `c`.
#[inline]
pub(crate) fn class(c: char) -> u16 {
    let cp = c as u32;
    if cp < 128 {
        return ASCII[cp as usize];
    }
    let ws = matches!(
        cp,
        0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
    );
    if ws {
        return WS;
    }
    let cjk = if matches!(cp, 0x4E00..=0x9FA5 | 0x3040..=0x309F | 0x30A0..=0x30FF) {
        CJK
    } else {
        0
    };
    let cat = match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => L,
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => M,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => N,
        G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => P,
        G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol | G::OtherSymbol => S,
        _ => 0,
    };
    cat | cjk
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_examples() {
        assert_eq!(class('a'), L | ASCII_ALPHA);
        assert_eq!(class('5'), N);
        assert_eq!(class('\n'), WS | NEWLINE);
        assert_eq!(class(' '), WS | SPACE);
        assert_eq!(class('²'), N);
        assert_eq!(class('-'), P | ASCII_PUNCT);
        assert_eq!(class('+'), S | ASCII_PUNCT);
        assert_eq!(class('—'), P);
        assert_eq!(class('€'), S);
        assert_eq!(class('😀'), S);
        assert_eq!(class('\u{0301}'), M);
        assert_eq!(class('\u{3000}'), WS);
        assert_eq!(class('\u{200B}'), 0);
        assert_eq!(class('中'), L | CJK);
        assert_eq!(class('゛'), S | CJK);
        assert_eq!(class('\u{1F}'), 0);
    }
}
