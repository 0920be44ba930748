//! Terminal output shared by one-shot and interactive generation: the
//! prefill progress bar, the streamed reasoning/answer, the stats line.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use engine::{Event, Stats};
use text::dsml;

/// `ds4rs: prompt: N tokens, prefill: X t/s, generated: M tokens, generation: Y t/s`
/// on stderr (prompt tokens: those evaluated, i.e. beyond the reused prefix).
pub fn print_stats(s: &Stats) {
    eprintln!(
        "ds4rs: prompt: {} tokens, prefill: {:.2} t/s, generated: {} tokens, generation: {:.2} t/s",
        s.prompt_tokens,
        s.prefill_tps(),
        s.generated_tokens,
        s.gen_tps()
    );
}

/// Prefill progress on stderr, shown only once prefill has run a second.
pub struct Progress {
    start: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            start: Instant::now(),
            bar: None,
        }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        if self.bar.is_none() && done < total && self.start.elapsed().as_secs_f64() > 1.0 {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "processing {len} input tokens: {pos}/{len} {wide_bar} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            if done >= total {
                bar.finish_and_clear();
            }
        }
    }
}

/// Streams reasoning and answer to stdout: reasoning dim on a terminal,
/// the answer on a fresh line after it.
pub struct Printer {
    out: std::io::Stdout,
    tty: bool,
    in_reasoning: bool,
    line_open: bool,
    wrote: bool,
}

impl Printer {
    pub fn new() -> Self {
        let out = std::io::stdout();
        let tty = out.is_terminal();
        Printer {
            out,
            tty,
            in_reasoning: false,
            line_open: false,
            wrote: false,
        }
    }

    fn write(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        // A closed stdout (`| head`) ends the output, not the generation.
        let _ = self.out.write_all(s.as_bytes());
        let _ = self.out.flush();
        self.line_open = !s.ends_with('\n');
        self.wrote = true;
    }

    pub fn event(&mut self, e: Event) {
        match e {
            Event::Text(dsml::Event::Reasoning(r)) => {
                if !self.in_reasoning {
                    self.in_reasoning = true;
                    if self.tty {
                        let _ = self.out.write_all(b"\x1b[90m");
                    }
                }
                self.write(&r);
            }
            Event::Text(dsml::Event::Content(c)) => {
                self.end_reasoning();
                self.write(&c);
            }
            _ => {}
        }
    }

    fn end_reasoning(&mut self) {
        if self.in_reasoning {
            self.in_reasoning = false;
            if self.tty {
                let _ = self.out.write_all(b"\x1b[0m");
            }
            if self.line_open {
                self.write("\n");
            }
        }
    }

    /// Output always ends with a newline, even an empty answer's (§1.5).
    pub fn finish(&mut self) {
        self.end_reasoning();
        if self.line_open || !self.wrote {
            self.write("\n");
        }
    }
}
