//! `--trace FILE`: a plain-text log of what the engine worker did per job —
//! the rendered prompt, how much of it the live session reused, the parser
//! events and the raw generated text — for diagnosing an agent session
//! after the fact (why a cache missed, what DSML the model really wrote).
//! Best effort: a failing write disables the trace, never the server.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use text::dsml;

use crate::error::ServerError;

/// The worker's trace file, if any. Only the worker thread writes it.
pub struct Trace(Option<BufWriter<File>>);

impl Trace {
    pub fn open(path: Option<&Path>) -> Result<Self, ServerError> {
        match path {
            None => Ok(Trace(None)),
            Some(p) => File::create(p)
                .map(|f| Trace(Some(BufWriter::new(f))))
                .map_err(|e| ServerError::Trace(p.display().to_string(), e)),
        }
    }

    fn write(&mut self, text: &str) {
        if let Some(w) = &mut self.0 {
            if let Err(e) = w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
                eprintln!("ds4rs: trace disabled: {e}");
                self.0 = None;
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// A job's prompt after the session reached it.
    pub fn prompt(&mut self, id: &str, prompt: &str, tokens: usize, cached: usize) {
        self.write(&format!(
            "=== {id}: prompt {tokens} tokens, {cached} reused from the live session\n{prompt}\n--- events\n"
        ));
    }

    pub fn event(&mut self, e: &dsml::Event) {
        if self.enabled() {
            self.write(&format!("{e:?}\n"));
        }
    }

    /// The end of a job: how it finished and the raw text generated.
    pub fn finish(&mut self, outcome: &str, generated: &str) {
        self.write(&format!("--- {outcome}\n{generated}\n=== end\n\n"));
    }
}
