//! Stop strings (prompt-format.md §11): matched over the whole generated
//! text, across token boundaries; the text is cut at the earliest match and
//! the stop string itself is never emitted. Until a tail can no longer start
//! a match it is held back (the last `max_len - 1` bytes).

/// Streams text through, holding back what might begin a stop string.
#[derive(Clone, Debug)]
pub struct StopMatcher {
    stops: Vec<String>,
    hold: usize,
    pending: String,
    hit: bool,
}

impl StopMatcher {
    /// Empty strings are ignored, as ds4 does.
    pub fn new(stops: &[String]) -> Self {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let hold = stops.iter().map(|s| s.len() - 1).max().unwrap_or(0);
        StopMatcher {
            stops,
            hold,
            pending: String::new(),
            hit: false,
        }
    }

    /// Whether a stop string matched.
    pub fn hit(&self) -> bool {
        self.hit
    }

    /// Adds text; returns what can be emitted now. After a match it returns
    /// the text before the match and then nothing.
    pub fn push(&mut self, text: &str) -> String {
        if self.hit {
            return String::new();
        }
        self.pending.push_str(text);
        let earliest = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = earliest {
            self.hit = true;
            self.pending.truncate(at);
            return std::mem::take(&mut self.pending);
        }
        let mut cut = self.pending.len().saturating_sub(self.hold);
        while !self.pending.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = self.pending.split_off(cut);
        std::mem::replace(&mut self.pending, rest)
    }

    /// Ends the text: releases the held tail (nothing after a match).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for p in pieces {
            out += &m.push(p);
        }
        out += &m.finish();
        (out, m.hit())
    }

    #[test]
    fn matches_across_pieces_and_cuts_before_the_match() {
        assert_eq!(
            run(&["STOP"], &["hello S", "T", "OP and more"]),
            ("hello ".into(), true)
        );
        // The earliest match wins, even when a later one completes first.
        assert_eq!(run(&["x", "abc"], &["zab", "cx"]), ("z".into(), true));
        assert_eq!(run(&["abc", "b"], &["ab"]), ("a".into(), true));
        assert_eq!(run(&["STOP"], &["no S", "TO", "P?"]), ("no ".into(), true));
    }

    #[test]
    fn releases_everything_without_a_match() {
        assert_eq!(
            run(&["STOP", ""], &["ST", "O", "€P"]),
            ("STO€P".into(), false)
        );
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn holds_back_only_a_possible_prefix_length() {
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.push("abcdef"), "abcd");
        assert_eq!(m.push("g"), "e");
        // The held tail never splits a character: all of "€" stays back.
        assert_eq!(m.push("€"), "fg");
    }
}
