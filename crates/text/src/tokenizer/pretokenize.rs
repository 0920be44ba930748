//! The V4 pre-tokenizer: three regex splits with HF's "Isolated" behaviour, each applied to the
//! pieces of the previous one, written out as a hand scanner (no regex engine) for speed.
//!
//! 1. `\p{N}{1,3}` — numbers in groups of up to three.
//! 2. `[一-龥぀-ゟ゠-ヿ]+` — runs of CJK ideographs and kana.
//! 3. `[!-/:-@\[-`{-~][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ | ␠?[\p{P}\p{S}]+[\r\n]* |
//!    \s*[\r\n]+ | \s+(?!\S) | \s+` — alternatives tried in order at each position.
//!
//! Characters where no alternative matches collect into "gap" pieces; nothing is dropped.

use super::classes::{class, ASCII_ALPHA, ASCII_PUNCT, CJK, L, M, N, NEWLINE, P, S, SPACE, WS};

/// The text's characters: byte offsets (plus the end) and classes, computed once so every
/// step below is index arithmetic.
struct Chars<'a> {
    text: &'a str,
    off: Vec<usize>,
    cls: Vec<u16>,
}

impl<'a> Chars<'a> {
    fn new(text: &'a str) -> Self {
        let mut off = Vec::with_capacity(text.len() + 1);
        let mut cls = Vec::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            off.push(i);
            cls.push(class(c));
        }
        off.push(text.len());
        Chars { text, off, cls }
    }

    /// The text of characters `a..b`.
    fn slice(&self, a: usize, b: usize) -> &'a str {
        &self.text[self.off[a]..self.off[b]]
    }

    /// End of the run of characters from `i` (before `end`) whose class meets `mask`.
    #[inline]
    fn run(&self, mut i: usize, end: usize, mask: u16) -> usize {
        while i < end && self.cls[i] & mask != 0 {
            i += 1;
        }
        i
    }
}

/// Calls `emit` with every piece of `text`, left to right.
pub(crate) fn pretokenize<'a>(text: &'a str, emit: &mut impl FnMut(&'a str)) {
    let chars = Chars::new(text);
    let n = chars.cls.len();
    split_numbers(&chars, 0, n, &mut |a, b, is_number| {
        if is_number {
            // A number group has no letter, space, punctuation or symbol: steps 2 and 3 keep
            // it whole as a single gap piece.
            emit(chars.slice(a, b))
        } else {
            split_cjk(&chars, a, b, &mut |a, b| split_main(&chars, a, b, emit))
        }
    });
}

/// Step 1: isolates `\p{N}{1,3}` matches in characters `a..b`.
fn split_numbers(c: &Chars, a: usize, b: usize, emit: &mut impl FnMut(usize, usize, bool)) {
    let mut rest = a;
    let mut i = a;
    while i < b {
        if c.cls[i] & N == 0 {
            i += 1;
            continue;
        }
        if rest < i {
            emit(rest, i, false);
        }
        let j = c.run(i, b.min(i + 3), N);
        emit(i, j, true);
        i = j;
        rest = j;
    }
    if rest < b {
        emit(rest, b, false);
    }
}

/// Step 2: isolates runs of CJK/kana characters in `a..b`.
fn split_cjk(c: &Chars, a: usize, b: usize, emit: &mut impl FnMut(usize, usize)) {
    let mut start = a;
    while start < b {
        let in_cjk = c.cls[start] & CJK != 0;
        let mut j = start + 1;
        while j < b && (c.cls[j] & CJK != 0) == in_cjk {
            j += 1;
        }
        emit(start, j);
        start = j;
    }
}

/// Step 3: the six-alternative regex over `a..b`; matches and the gaps between them become
/// pieces.
fn split_main<'a>(c: &Chars<'a>, a: usize, b: usize, emit: &mut impl FnMut(&'a str)) {
    let mut pos = a;
    let mut gap: Option<usize> = None;
    while pos < b {
        match match_at(c, pos, b) {
            Some(end) => {
                if let Some(g) = gap.take() {
                    emit(c.slice(g, pos));
                }
                emit(c.slice(pos, end));
                pos = end;
            }
            None => {
                gap.get_or_insert(pos);
                pos += 1;
            }
        }
    }
    if let Some(g) = gap {
        emit(c.slice(g, b));
    }
}

/// End of the step-3 match starting at character `pos` (the piece ends at `end`), trying the
/// alternatives in regex order, or `None` when no alternative matches here.
fn match_at(c: &Chars, pos: usize, end: usize) -> Option<usize> {
    let cls = c.cls[pos];
    let next = if pos + 1 < end { c.cls[pos + 1] } else { 0 };

    // A1: one ASCII punctuation/symbol character, then ASCII letters.
    if cls & ASCII_PUNCT != 0 && next & ASCII_ALPHA != 0 {
        return Some(c.run(pos + 1, end, ASCII_ALPHA));
    }
    // A2: an optional prefix character (not CR, LF, letter, punctuation or symbol), then
    // letters and marks.
    if (cls & (NEWLINE | L | P | S) == 0 && next & (L | M) != 0) || cls & (L | M) != 0 {
        return Some(c.run(pos + 1, end, L | M));
    }
    // A3: an optional space, punctuation/symbols, then any CR/LF run.
    if (cls & SPACE != 0 && next & (P | S) != 0) || cls & (P | S) != 0 {
        let j = c.run(pos + 1, end, P | S);
        return Some(c.run(j, end, NEWLINE));
    }
    if cls & WS == 0 {
        return None;
    }
    let ws_end = c.run(pos, end, WS);
    // A4: whitespace up to and including the run's last CR/LF (greedy `\s*` backtracks).
    if let Some(last_nl) = (pos..ws_end).rev().find(|&k| c.cls[k] & NEWLINE != 0) {
        return Some(last_nl + 1);
    }
    // A5: whitespace not followed by a non-space: the whole run at the end of the piece,
    // otherwise all but its last character (which may prefix the next word).
    if ws_end == end {
        return Some(ws_end);
    }
    if ws_end - 1 > pos {
        return Some(ws_end - 1);
    }
    // A6: a single whitespace character before a non-space.
    Some(ws_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        pretokenize(text, &mut |p| out.push(p.to_string()));
        out
    }

    #[test]
    fn spec_worked_splits() {
        assert_eq!(pieces("    int"), ["   ", " int"]);
        assert_eq!(pieces("   \n  x"), ["   \n", " ", " x"]);
        assert_eq!(pieces("a\n\n\nb"), ["a", "\n\n\n", "b"]);
        assert_eq!(pieces("__init__"), ["__", "init", "__"]);
        assert_eq!(pieces("Xの"), ["X", "の"]);
        assert_eq!(pieces(" 中文"), [" ", "中文"]);
        assert_eq!(pieces(".append(x)"), [".append", "(x", ")"]);
        assert_eq!(pieces("a — b\n"), ["a", " —", " b", "\n"]);
        assert_eq!(pieces(" —\n"), [" —\n"]);
        assert_eq!(pieces("x\u{a0}\u{a0}y"), ["x", "\u{a0}", "\u{a0}y"]);
        assert_eq!(pieces("1234567"), ["123", "456", "7"]);
        assert_eq!(pieces("\u{1}\u{2}x"), ["\u{1}", "\u{2}x"]);
    }
}
