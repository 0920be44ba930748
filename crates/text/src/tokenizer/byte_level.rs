//! GPT-2 byte-level alphabet: every byte has a printable stand-in character, so BPE can run on
//! arbitrary bytes while the vocabulary stays a list of strings.

/// The stand-in character of byte `b` (printable Latin-1 bytes map to themselves, the other
/// 68 bytes to U+0100.. in increasing byte order).
pub(crate) const fn byte_char(b: u8) -> char {
    let mut n = 0u32;
    let mut x = 0u32;
    // Count the non-printable bytes below `b` to find its shifted code point.
    while x < b as u32 {
        if !printable(x as u8) {
            n += 1;
        }
        x += 1;
    }
    if printable(b) {
        match char::from_u32(b as u32) {
            Some(c) => c,
            None => '\0',
        }
    } else {
        match char::from_u32(0x100 + n) {
            Some(c) => c,
            None => '\0',
        }
    }
}

const fn printable(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Inverse of [`byte_char`] for code points below U+0144 (the alphabet's highest); -1 marks
/// characters outside the alphabet.
static CHAR_BYTE: [i16; 0x144] = {
    let mut t = [-1i16; 0x144];
    let mut b = 0usize;
    while b < 256 {
        t[byte_char(b as u8) as usize] = b as i16;
        b += 1;
    }
    t
};

/// Inverse of [`byte_char`]: `None` for characters outside the 256-character alphabet.
pub(crate) fn char_byte(c: char) -> Option<u8> {
    let v = *CHAR_BYTE.get(c as usize)?;
    u8::try_from(v).ok()
}

/// Byte-level decoding of one token string, as HF's ByteLevel decoder does it: when every
/// character is in the alphabet the token stands for those bytes, otherwise (added tokens
/// such as `<｜User｜>`) for its own UTF-8 bytes.
pub(crate) fn token_bytes(token: &str) -> Vec<u8> {
    token
        .chars()
        .map(char_byte)
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_else(|| token.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_matches_gpt2() {
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'\t'), 'ĉ');
        assert_eq!(byte_char(0xA0), 'ł');
        assert_eq!(byte_char(0xAD), 'Ń');
        assert_eq!(byte_char(b'a'), 'a');
        for b in 0..=255u8 {
            assert_eq!(char_byte(byte_char(b)), Some(b));
        }
        assert_eq!(char_byte('｜'), None);
    }

    #[test]
    fn added_tokens_decode_verbatim() {
        assert_eq!(token_bytes("<｜User｜>"), "<｜User｜>".as_bytes());
        assert_eq!(token_bytes("ĠhiĊ"), b" hi\n");
    }
}
