//! The interactive chat of `ds4rs run` without a prompt
//! (programs-and-tests.md §1.6).
//!
//! Like ds4, the REPL keeps a token transcript (BOS, Think-Max prefix,
//! system text, then every turn verbatim, reasoning included, each closed by
//! EOS) and one session; each turn `sync`s the session to the transcript, so
//! only the new suffix is prefilled. Ctrl+C during a turn sets the cancel
//! flag the generation loop reads at token (and prefill chunk) boundaries;
//! an interrupted turn keeps its partial answer, or is dropped if nothing
//! was generated yet. At the prompt, Ctrl+C clears the line and Ctrl+D
//! leaves. A line ending in `\` continues on the next line.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use engine::{generate, Backend, Finish, GenerateOptions, Sampler, SamplerConfig, Session};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Config, Editor};
use text::render::{render, Control, Message, RenderOptions, Role, Thinking};
use text::Tokenizer;

use super::output::{print_stats, Printer, Progress};
use super::Args;

const HELP: &str = "\
Commands:
  /help          this list
  /think         reasoning on (default)
  /think-max     maximum reasoning effort (needs --ctx >= 393216)
  /nothink       answer without reasoning
  /ctx N         new session of N tokens (the conversation is kept)
  /read FILE     send FILE's content as the next message
  /quit, /exit   leave (also Ctrl+D)
End a line with \\ to continue on the next one; Ctrl+C stops a reply.";

const HISTORY_MAX: usize = 512;

enum Flow {
    Continue,
    Quit,
}

/// Generic over the backend, so the CUDA backend plugs in unchanged.
pub struct Repl<B: Backend> {
    backend: Arc<B>,
    tok: Tokenizer,
    eos: u32,
    system: String,
    max_tokens: usize,
    ctx: usize,
    mode: Thinking,
    sampler: Sampler,
    session: Session<B>,
    transcript: Vec<u32>,
    header_len: usize,
    cancel: Arc<AtomicBool>,
}

impl<B: Backend> Repl<B> {
    pub fn new(
        backend: Arc<B>,
        tok: Tokenizer,
        eos: u32,
        args: &Args,
        mode: Thinking,
        sampler: SamplerConfig,
    ) -> anyhow::Result<Self> {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
            .context("installing the Ctrl+C handler")?;
        let mut repl = Repl {
            session: Session::new(backend.clone(), args.ctx),
            backend,
            tok,
            eos,
            system: args.system.clone(),
            max_tokens: args.tokens,
            ctx: args.ctx,
            mode,
            sampler: Sampler::new(sampler)?,
            transcript: Vec::new(),
            header_len: 0,
            cancel,
        };
        repl.set_mode(mode)?;
        Ok(repl)
    }

    fn options(&self) -> RenderOptions {
        RenderOptions {
            thinking: self.mode,
            context_size: Some(self.ctx as u64),
        }
    }

    /// Switches the thinking mode and re-renders the transcript header
    /// (BOS, Think-Max prefix when in effect, system text).
    fn set_mode(&mut self, mode: Thinking) -> anyhow::Result<()> {
        self.mode = mode;
        let messages: Vec<Message> = if self.system.is_empty() {
            Vec::new()
        } else {
            vec![Message::new(Role::System, self.system.as_str())]
        };
        let header = render(&messages, &[], &self.options())
            .and_then(|r| r.token_ids(&self.tok))
            .context("rendering the system prompt")?;
        self.transcript
            .splice(..self.header_len, header.iter().copied());
        self.header_len = header.len();
        Ok(())
    }

    fn control(&self, c: Control) -> anyhow::Result<u32> {
        self.tok
            .token_to_id(c.as_str())
            .with_context(|| format!("the vocabulary has no {:?}", c.as_str()))
    }

    pub fn run(mut self) -> anyhow::Result<()> {
        let config = Config::builder()
            .max_history_size(HISTORY_MAX)?
            .auto_add_history(false)
            .build();
        let mut ed: Editor<(), FileHistory> = Editor::with_config(config)?;
        let history = history_path();
        // A missing history file is the normal first run.
        let _ = ed.load_history(&history);
        println!("{HELP}");
        while let Some(input) = read_input(&mut ed)? {
            let line = input.trim();
            if line.is_empty() {
                continue;
            }
            ed.add_history_entry(input.as_str())?;
            if let Err(e) = ed.save_history(&history) {
                eprintln!("ds4rs: saving history to {}: {e}", history.display());
            }
            if line.starts_with('/') {
                if let Flow::Quit = self.command(line)? {
                    break;
                }
            } else {
                self.turn(&input)?;
            }
        }
        Ok(())
    }

    fn command(&mut self, line: &str) -> anyhow::Result<Flow> {
        let (cmd, arg) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(c, a)| (c, a.trim()));
        match cmd {
            "/help" => println!("{HELP}"),
            "/think" => {
                self.set_mode(Thinking::High)?;
                println!("Thinking mode: high.");
            }
            "/think-max" => {
                self.set_mode(Thinking::Max)?;
                if self.options().resolved_thinking() == Thinking::Max {
                    println!("Thinking mode: max.");
                } else {
                    println!(
                        "Thinking mode: high (ctx below {}).",
                        text::render::THINK_MAX_MIN_CONTEXT
                    );
                    super::warn_think_max(self.ctx);
                }
            }
            "/nothink" => {
                self.set_mode(Thinking::Off)?;
                println!("Thinking mode: none.");
            }
            "/ctx" => match arg.parse::<usize>() {
                Ok(n) if n > 0 => {
                    self.ctx = n;
                    self.session = Session::new(self.backend.clone(), n);
                    // Think-Max gating depends on the context.
                    self.set_mode(self.mode)?;
                    eprintln!("ds4rs: new session, ctx={n}");
                }
                _ => eprintln!("ds4rs: /ctx needs a positive integer"),
            },
            "/read" if arg.is_empty() => eprintln!("ds4rs: /read needs a file path"),
            "/read" => match std::fs::read_to_string(arg) {
                Ok(text) => self.turn(&text)?,
                Err(e) => eprintln!("ds4rs: failed to open prompt file {arg}: {e}"),
            },
            "/quit" | "/exit" => return Ok(Flow::Quit),
            other => {
                eprintln!("ds4rs: unknown command: {other}");
                eprintln!("ds4rs: type /help for commands");
            }
        }
        Ok(Flow::Continue)
    }

    /// One user message and the reply. Engine failures are reported and
    /// the transcript rolled back; the REPL goes on.
    fn turn(&mut self, text: &str) -> anyhow::Result<()> {
        let before = self.transcript.len();
        let thinking = self.options().resolved_thinking() != Thinking::Off;
        self.transcript.push(self.control(Control::User)?);
        self.transcript.extend(self.tok.encode(text));
        self.transcript.push(self.control(Control::Assistant)?);
        self.transcript.push(self.control(if thinking {
            Control::ThinkStart
        } else {
            Control::ThinkEnd
        })?);
        if self.transcript.len() >= self.ctx {
            eprintln!(
                "ds4rs: prompt processing failed: the conversation ({} tokens) does not fit \
                 ctx={}; start a larger session with /ctx N",
                self.transcript.len(),
                self.ctx
            );
            self.transcript.truncate(before);
            return Ok(());
        }
        self.cancel.store(false, Ordering::Relaxed);
        let opts = GenerateOptions {
            max_tokens: self.max_tokens.min(self.ctx - self.transcript.len() - 1),
            stop_tokens: vec![self.eos],
            stop_strings: Vec::new(),
            thinking,
            tools: false,
            logprobs: 0,
        };
        let mut printer = Printer::new();
        let mut progress = Progress::new();
        let result = generate(
            &mut self.session,
            &self.tok,
            &self.transcript,
            &opts,
            &mut self.sampler,
            &mut |done, total| progress.update(done, total),
            &mut |e| printer.event(e),
            &self.cancel,
        );
        printer.finish();
        match result {
            Err(e) => {
                eprintln!("ds4rs: generation failed: {e}");
                self.transcript.truncate(before);
            }
            Ok(g) => {
                if g.finish == Finish::Cancelled {
                    eprintln!("ds4rs: interrupted");
                }
                if g.finish == Finish::Cancelled && g.tokens.is_empty() {
                    self.transcript.truncate(before);
                } else {
                    self.transcript.extend(&g.tokens);
                    self.transcript.push(self.eos);
                }
                print_stats(&g.stats);
            }
        }
        Ok(())
    }
}

/// `$HOME/.ds4rs_history` (HOME falling back to the current directory).
fn history_path() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
        .join(".ds4rs_history")
}

/// One message: lines ending in `\` continue it. `None` at end of input.
fn read_input(ed: &mut Editor<(), FileHistory>) -> anyhow::Result<Option<String>> {
    let mut text = String::new();
    loop {
        let prompt = if text.is_empty() { "ds4> " } else { "...> " };
        match ed.readline(prompt) {
            Ok(line) => match line.strip_suffix('\\') {
                Some(head) => {
                    text.push_str(head);
                    text.push('\n');
                }
                None => {
                    text.push_str(&line);
                    return Ok(Some(text));
                }
            },
            Err(ReadlineError::Interrupted) => text.clear(),
            Err(ReadlineError::Eof) => return Ok(None),
            Err(e) => return Err(e).context("reading the terminal"),
        }
    }
}
