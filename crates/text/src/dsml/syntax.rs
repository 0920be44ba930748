//! The tag literals of the three tool-call spellings the model produces: the trained one
//! (`<｜DSML｜…`), the "short" one with the first bar missing (`<DSML｜…`) and plain XML
//! (`<tool_calls>`, `<invoke`, `<parameter`). The opening tag that starts a block fixes the
//! spelling of every other tag in it.

/// One spelling's six literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    pub open: &'static str,
    pub close: &'static str,
    pub invoke_open: &'static str,
    pub invoke_close: &'static str,
    pub param_open: &'static str,
    pub param_close: &'static str,
}

pub(crate) const FULL: Syntax = Syntax {
    open: "<｜DSML｜tool_calls>",
    close: "</｜DSML｜tool_calls>",
    invoke_open: "<｜DSML｜invoke",
    invoke_close: "</｜DSML｜invoke>",
    param_open: "<｜DSML｜parameter",
    param_close: "</｜DSML｜parameter>",
};

pub(crate) const SHORT: Syntax = Syntax {
    open: "<DSML｜tool_calls>",
    close: "</DSML｜tool_calls>",
    invoke_open: "<DSML｜invoke",
    invoke_close: "</DSML｜invoke>",
    param_open: "<DSML｜parameter",
    param_close: "</DSML｜parameter>",
};

pub(crate) const PLAIN: Syntax = Syntax {
    open: "<tool_calls>",
    close: "</tool_calls>",
    invoke_open: "<invoke",
    invoke_close: "</invoke>",
    param_open: "<parameter",
    param_close: "</parameter>",
};

pub(crate) const ALL: [Syntax; 3] = [FULL, SHORT, PLAIN];

/// Whether `s` is a proper, non-empty prefix of `lit`: more text may complete it.
pub(crate) fn partial(s: &str, lit: &str) -> bool {
    !s.is_empty() && s.len() < lit.len() && lit.starts_with(s)
}

/// Start of the longest suffix of `s` that is a proper prefix of `lit` (`s.len()` if none):
/// the part of `s` that must wait for more text.
pub(crate) fn held_suffix(s: &str, lit: &str) -> usize {
    let max = lit.len().saturating_sub(1).min(s.len());
    (1..=max)
        .rev()
        .map(|k| s.len() - k)
        .find(|&i| s.is_char_boundary(i) && lit.starts_with(&s[i..]))
        .unwrap_or(s.len())
}

/// The value of attribute `key` in a tag's text: first `key="`, up to the next `"`.
pub(crate) fn attribute<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("{key}=\"");
    let at = tag.find(&pat)? + pat.len();
    let len = tag[at..].find('"')?;
    Some(&tag[at..at + len])
}

/// A tag's text read as `key="value"` pairs separated by whitespace, or `None` when it is
/// not exactly that.
fn strict_attributes(tag: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut rest = tag;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if rest.is_empty() {
            return Some(out);
        }
        let eq = rest.find("=\"")?;
        let key = &rest[..eq];
        if key.is_empty() || key.contains(|c: char| c.is_ascii_whitespace() || c == '"') {
            return None;
        }
        let value_start = &rest[eq + 2..];
        let close = value_start.find('"')?;
        out.push((key, &value_start[..close]));
        rest = &value_start[close + 1..];
        if !rest.is_empty() && !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
            return None;
        }
    }
}

/// The attributes of an invoke or parameter tag whose text starts the buffer (right after
/// the tag's literal).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    /// More text is needed to find where the tag ends.
    Wait,
    /// Not a usable tag.
    Bad,
    /// The tag ends after `len` bytes (its `>` included).
    Done {
        len: usize,
        name: String,
        string: Option<String>,
    },
}

/// Reads a tag. The usual case is well-formed attributes up to the first `>`. A name that
/// itself contains `"` or `>` is read as the reference parser reads it: up to the first
/// `ending` marker (`" string="true">` and the like), which then must appear.
pub(crate) fn read_tag(buf: &str, endings: &[&str]) -> Tag {
    let Some(gt) = buf.find('>') else {
        return Tag::Wait;
    };
    if let Some(attrs) = strict_attributes(&buf[..gt]) {
        let get = |k: &str| {
            attrs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        };
        return match get("name") {
            Some(name) => Tag::Done {
                len: gt + 1,
                name,
                string: get("string"),
            },
            None => Tag::Bad,
        };
    }
    let Some((at, ending)) = endings
        .iter()
        .filter_map(|e| buf.find(e).map(|at| (at, *e)))
        .min_by_key(|(at, _)| *at)
    else {
        return Tag::Wait;
    };
    let head = buf.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let Some(name_start) = head.strip_prefix("name=\"") else {
        return Tag::Bad;
    };
    let start = buf.len() - name_start.len();
    if start > at {
        return Tag::Bad;
    }
    let string = attribute(ending, "string").map(str::to_string);
    Tag::Done {
        len: at + ending.trim_end_matches('\n').len(),
        name: buf[start..at].to_string(),
        string,
    }
}

/// Ends of a parameter tag with a quote or `>` in its name.
pub(crate) const PARAM_TAG_ENDINGS: [&str; 2] = ["\" string=\"true\">", "\" string=\"false\">"];
/// End of an invoke tag with a quote or `>` in its name.
pub(crate) const INVOKE_TAG_ENDINGS: [&str; 1] = ["\">\n"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_attributes() {
        assert_eq!(held_suffix("abc</｜DS", FULL.param_close), 3);
        assert_eq!(held_suffix("abc", FULL.param_close), 3);
        assert_eq!(held_suffix("<", "<"), 1);
        assert!(partial("</", FULL.close));
        assert!(!partial(FULL.close, FULL.close));
        assert_eq!(
            attribute(" name=\"x\" string=\"true\"", "string"),
            Some("true")
        );
        assert_eq!(attribute(" name=\"x", "name"), None);
        let done = |len, name: &str, string: Option<&str>| Tag::Done {
            len,
            name: name.into(),
            string: string.map(Into::into),
        };
        let p = &PARAM_TAG_ENDINGS;
        assert_eq!(read_tag(" name=\"a\">v", p), done(10, "a", None));
        assert_eq!(
            read_tag(" name=\"k<1>\" string=\"true\">v", p),
            done(27, "k<1>", Some("true"))
        );
        assert_eq!(
            read_tag(" name=\"x\"y\" string=\"false\">", p),
            done(27, "x\"y", Some("false"))
        );
        assert_eq!(read_tag(" name=\"k<1>", p), Tag::Wait);
        assert_eq!(read_tag(" string=\"true\">", p), Tag::Bad);
        assert_eq!(
            read_tag(" name=\"a>b\">\n", &INVOKE_TAG_ENDINGS),
            done(12, "a>b", None)
        );
    }
}
