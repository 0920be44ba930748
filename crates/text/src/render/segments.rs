//! A rendered prompt as text spans and control tokens. Keeping control tokens out of band is
//! what makes client text safe: a user who types `<｜User｜>` gets those characters encoded as
//! text, while the renderer's own `<｜User｜>` becomes id 128803.

use crate::{Error, Result, Tokenizer};

/// The control tokens the reference encoder emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Bos,
    Eos,
    User,
    Assistant,
    ThinkStart,
    ThinkEnd,
    Dsml,
    LatestReminder,
}

impl Control {
    /// Every control token, in no particular order.
    pub const ALL: [Control; 8] = [
        Control::Bos,
        Control::Eos,
        Control::User,
        Control::Assistant,
        Control::ThinkStart,
        Control::ThinkEnd,
        Control::Dsml,
        Control::LatestReminder,
    ];

    /// The token's string in the vocabulary.
    pub const fn as_str(self) -> &'static str {
        match self {
            Control::Bos => "<｜begin▁of▁sentence｜>",
            Control::Eos => "<｜end▁of▁sentence｜>",
            Control::User => "<｜User｜>",
            Control::Assistant => "<｜Assistant｜>",
            Control::ThinkStart => "<think>",
            Control::ThinkEnd => "</think>",
            Control::Dsml => "｜DSML｜",
            Control::LatestReminder => "<｜latest_reminder｜>",
        }
    }
}

/// One piece of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text, byte-pair encoded as text whatever it contains.
    Text(String),
    /// A control token, emitted as its id.
    Control(Control),
}

/// A rendered prompt. Adjacent text is kept in one segment, because HF encodes the text
/// between two control tokens as one span and splitting it would change the pieces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    segments: Vec<Segment>,
}

impl Rendered {
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The prompt as one string, control tokens spelled out.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Control(c) => out.push_str(c.as_str()),
            }
        }
        out
    }

    /// The prompt's token ids.
    pub fn token_ids(&self, tokenizer: &Tokenizer) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for s in &self.segments {
            match s {
                Segment::Text(t) => tokenizer.encode_into(t, &mut ids),
                Segment::Control(c) => ids.push(
                    tokenizer
                        .token_to_id(c.as_str())
                        .ok_or_else(|| Error::MissingToken(c.as_str().to_string()))?,
                ),
            }
        }
        Ok(ids)
    }

    /// Appends client-supplied text: never turns into control tokens.
    pub(crate) fn text_push(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(Segment::Text(last)) = self.segments.last_mut() {
            last.push_str(text);
        } else {
            self.segments.push(Segment::Text(text.to_string()));
        }
    }

    pub(crate) fn control(&mut self, c: Control) {
        self.segments.push(Segment::Control(c));
    }

    /// Appends renderer-owned template text, in which control-token strings are the
    /// control tokens (as HF would split them in the reference encoder's output).
    pub(crate) fn template(&mut self, mut text: &str) {
        while !text.is_empty() {
            let next = Control::ALL
                .iter()
                .filter_map(|c| text.find(c.as_str()).map(|at| (at, *c)))
                .min_by_key(|(at, _)| *at);
            match next {
                Some((at, c)) => {
                    self.text_push(&text[..at]);
                    self.control(c);
                    text = &text[at + c.as_str().len()..];
                }
                None => {
                    self.text_push(text);
                    return;
                }
            }
        }
    }
}
