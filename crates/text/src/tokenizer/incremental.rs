//! Streaming detokenization that never emits a broken UTF-8 sequence: a token may end in the
//! middle of a character, and a client that receives half a character replaces it with U+FFFD
//! and later sends the corrupted text back, which breaks prefix caching.

use super::Tokenizer;

/// Turns ids into text chunks as they are sampled. Bytes of an unfinished character are held
/// until it completes; bytes that can never form a character become U+FFFD, exactly where
/// [`String::from_utf8_lossy`] over the whole output would put them.
#[derive(Debug, Default, Clone)]
pub struct IncrementalDecoder {
    pending: Vec<u8>,
}

impl IncrementalDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one id; returns the text that became complete (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        if let Some(b) = tokenizer.token_bytes(id) {
            self.pending.extend_from_slice(b);
        }
        self.take_complete()
    }

    /// Adds raw bytes; returns the text that became complete.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        self.take_complete()
    }

    /// Ends the stream: an unfinished character becomes U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    // The prefix up to `valid` was just checked, so this cannot fail.
                    out.push_str(std::str::from_utf8(&self.pending[start..valid]).unwrap_or(""));
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start = valid + n;
                        }
                        None => {
                            start = valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_split_characters_and_replaces_invalid_bytes() {
        let bytes = "a€b😀".as_bytes();
        let mut d = IncrementalDecoder::new();
        let mut out = String::new();
        for b in bytes {
            out += &d.push_bytes(std::slice::from_ref(b));
        }
        assert_eq!(out + &d.finish(), "a€b😀");

        let mut d = IncrementalDecoder::new();
        assert_eq!(d.push_bytes(&[0xE2, 0x82]), "");
        assert_eq!(d.push_bytes(b"x\xFFy"), "\u{FFFD}x\u{FFFD}y");
        assert_eq!(d.push_bytes(&[0xF0, 0x9F]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
