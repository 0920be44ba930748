//! HF's added-token splitting, for callers that want the `tokenizers` library's exact
//! behaviour on trusted text: every added token (not only the renderer's control tokens) is
//! cut out before pre-tokenization, leftmost-longest, in two passes — first the tokens HF
//! matches on raw text (`normalized: false`), then, inside the remaining spans, the others.

use aho_corasick::{AhoCorasick, MatchKind};

use crate::{Error, Result};

/// One pass of added-token matching.
struct Pass {
    matcher: AhoCorasick,
    ids: Vec<u32>,
}

/// The two-pass matcher.
pub(crate) struct AddedTokens {
    passes: Vec<Pass>,
}

/// A span of text between added tokens, or an added token.
pub(crate) enum Span<'a> {
    Text(&'a str),
    Token(u32),
}

impl AddedTokens {
    /// `raw` and `normalized` are (content, id) lists for the first and second pass.
    pub(crate) fn new(raw: Vec<(String, u32)>, normalized: Vec<(String, u32)>) -> Result<Self> {
        let mut passes = Vec::new();
        for list in [raw, normalized] {
            let (patterns, ids): (Vec<String>, Vec<u32>) =
                list.into_iter().filter(|(s, _)| !s.is_empty()).unzip();
            let matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .map_err(|e| Error::Vocab(format!("added tokens: {e}")))?;
            passes.push(Pass { matcher, ids });
        }
        Ok(AddedTokens { passes })
    }

    /// Splits `text` into text spans and added tokens, in order.
    pub(crate) fn split<'a>(&self, text: &'a str) -> Vec<Span<'a>> {
        let mut spans = vec![Span::Text(text)];
        for pass in &self.passes {
            let mut next = Vec::with_capacity(spans.len());
            for span in spans {
                let Span::Text(t) = span else {
                    next.push(span);
                    continue;
                };
                let mut last = 0;
                for m in pass.matcher.find_iter(t) {
                    if m.start() > last {
                        next.push(Span::Text(&t[last..m.start()]));
                    }
                    next.push(Span::Token(pass.ids[m.pattern().as_usize()]));
                    last = m.end();
                }
                if last < t.len() {
                    next.push(Span::Text(&t[last..]));
                }
            }
            spans = next;
        }
        spans
    }
}
