//! DSML parsing never panics, and streaming gives the complete parse however the text is
//! split. The sampling tracker must not panic on the same text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use text::dsml::{parse, ParseOptions, ParsedMessage, SamplingTracker, StreamParser};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let options = ParseOptions {
        thinking: flags & 1 != 0,
        tools: flags & 2 == 0,
    };
    let text = String::from_utf8_lossy(rest);
    let whole = parse(&text, options);

    // Split into pieces of 1..=8 characters, sizes driven by `flags`.
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut p = StreamParser::new(options);
    let mut tracker = SamplingTracker::new();
    let mut events = Vec::new();
    let mut i = 0;
    let mut k = usize::from(flags >> 2);
    while i < chars.len() {
        let n = (k % 8 + 1).min(chars.len() - i);
        let start = chars[i].0;
        let end = chars.get(i + n).map_or(text.len(), |c| c.0);
        events.extend(p.push(&text[start..end]));
        tracker.push(&text[start..end]);
        i += n;
        k = k.wrapping_mul(31).wrapping_add(7);
    }
    events.extend(p.finish());
    assert_eq!(ParsedMessage::from_events(options, events), whole);
});
