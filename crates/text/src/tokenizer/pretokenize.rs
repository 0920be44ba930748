//! The V4 pre-tokenizer: three regex splits with HF's "Isolated" behaviour, each applied to the
//! pieces of the previous one, written out as a hand scanner (no regex engine) for speed.
//!
//! 1. `\p{N}{1,3}` — numbers in groups of up to three.
//! 2. `[一-龥぀-ゟ゠-ヿ]+` — runs of CJK ideographs and kana.
//! 3. `[!-/:-@\[-`{-~][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ | ␠?[\p{P}\p{S}]+[\r\n]* |
//!    \s*[\r\n]+ | \s+(?!\S) | \s+` — alternatives tried in order at each position.
//!
//! Characters where no alternative matches collect into "gap" pieces; nothing is dropped.

use super::classes::{class, CJK, L, M, N, P, S, WS};

/// Calls `emit` with every piece of `text`, left to right.
pub(crate) fn pretokenize(text: &str, emit: &mut impl FnMut(&str)) {
    split_numbers(text, &mut |piece, is_number| {
        if is_number {
            // A number group has no letter, space, punctuation or symbol: steps 2 and 3 keep
            // it whole as a single gap piece.
            emit(piece)
        } else {
            split_cjk(piece, &mut |p| split_main(p, emit))
        }
    });
}

#[inline]
fn char_at(s: &str, pos: usize) -> Option<char> {
    s[pos..].chars().next()
}

/// Step 1: isolates `\p{N}{1,3}` matches.
fn split_numbers(text: &str, emit: &mut impl FnMut(&str, bool)) {
    let mut rest_start = 0;
    let mut pos = 0;
    while let Some(c) = char_at(text, pos) {
        if class(c) & N == 0 {
            pos += c.len_utf8();
            continue;
        }
        if rest_start < pos {
            emit(&text[rest_start..pos], false);
        }
        let start = pos;
        let mut count = 0;
        while count < 3 {
            match char_at(text, pos) {
                Some(d) if class(d) & N != 0 => {
                    pos += d.len_utf8();
                    count += 1;
                }
                _ => break,
            }
        }
        emit(&text[start..pos], true);
        rest_start = pos;
    }
    if rest_start < text.len() {
        emit(&text[rest_start..], false);
    }
}

/// Step 2: isolates runs of CJK/kana characters.
fn split_cjk(text: &str, emit: &mut impl FnMut(&str)) {
    let mut start = 0;
    let mut in_cjk = false;
    for (i, c) in text.char_indices() {
        let cjk = class(c) & CJK != 0;
        if cjk != in_cjk && i > start {
            emit(&text[start..i]);
            start = i;
        }
        in_cjk = cjk;
    }
    if start < text.len() {
        emit(&text[start..]);
    }
}

/// Step 3: the six-alternative regex; matches and the gaps between them become pieces.
fn split_main(s: &str, emit: &mut impl FnMut(&str)) {
    let mut pos = 0;
    let mut gap: Option<usize> = None;
    while let Some(c) = char_at(s, pos) {
        match match_at(s, pos, c) {
            Some(end) => {
                if let Some(g) = gap.take() {
                    emit(&s[g..pos]);
                }
                emit(&s[pos..end]);
                pos = end;
            }
            None => {
                gap.get_or_insert(pos);
                pos += c.len_utf8();
            }
        }
    }
    if let Some(g) = gap {
        emit(&s[g..]);
    }
}

/// End of the run of characters whose class intersects `mask`, starting at `pos`.
#[inline]
fn run(s: &str, mut pos: usize, mask: u8) -> usize {
    while let Some(c) = char_at(s, pos) {
        if class(c) & mask == 0 {
            break;
        }
        pos += c.len_utf8();
    }
    pos
}

#[inline]
fn newline_run(s: &str, pos: usize) -> usize {
    pos + s.as_bytes()[pos..]
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// End of the step-3 match starting at `pos` (whose character is `c`), trying the
/// alternatives in regex order, or `None` when no alternative matches here.
fn match_at(s: &str, pos: usize, c: char) -> Option<usize> {
    let cls = class(c);
    let after = pos + c.len_utf8();
    let next = char_at(s, after);
    let next_cls = next.map_or(0, class);

    // A1: one ASCII punctuation/symbol character, then ASCII letters.
    if c.is_ascii_punctuation() && next.is_some_and(|n| n.is_ascii_alphabetic()) {
        let end = after
            + s.as_bytes()[after..]
                .iter()
                .take_while(|b| b.is_ascii_alphabetic())
                .count();
        return Some(end);
    }
    // A2: an optional prefix character (not CR, LF, letter, punctuation or symbol), then
    // letters and marks.
    if c != '\r' && c != '\n' && cls & (L | P | S) == 0 && next_cls & (L | M) != 0 {
        return Some(run(s, after, L | M));
    }
    if cls & (L | M) != 0 {
        return Some(run(s, after, L | M));
    }
    // A3: an optional space, punctuation/symbols, then any CR/LF run.
    if c == ' ' && next_cls & (P | S) != 0 {
        let end = run(s, after, P | S);
        return Some(newline_run(s, end));
    }
    if cls & (P | S) != 0 {
        let end = run(s, after, P | S);
        return Some(newline_run(s, end));
    }
    if cls & WS == 0 {
        return None;
    }
    let ws_end = run(s, pos, WS);
    // A4: whitespace up to and including the run's last CR/LF (greedy `\s*` backtracks).
    if let Some(last_nl) = s.as_bytes()[pos..ws_end]
        .iter()
        .rposition(|&b| b == b'\r' || b == b'\n')
    {
        return Some(pos + last_nl + 1);
    }
    // A5: whitespace not followed by a non-space: the whole run at the end of the piece,
    // otherwise all but its last character (which may prefix the next word).
    if ws_end == s.len() {
        return Some(ws_end);
    }
    let last_start = s[..ws_end]
        .char_indices()
        .next_back()
        .map_or(pos, |(i, _)| i);
    if last_start > pos {
        return Some(last_start);
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
