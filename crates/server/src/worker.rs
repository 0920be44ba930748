//! The engine worker: one OS thread owning the model's live session. Jobs
//! run strictly one at a time in arrival order (spec §10.1), so the session
//! always holds the previous request's tokens and the next request only
//! prefills what differs — the live-session reuse of kv-cache.md.
//!
//! Each job carries its own reply channel and cancel flag: the connection
//! side sets the flag when its client goes away, and the worker stops at the
//! next chunk or token boundary (or skips the job if it has not started).
//!
//! Shutdown (spec §10.4): [`WorkerHandle::shutdown`] refuses new jobs, stops
//! the running one at its next token (finish `error`) and answers every
//! queued one with [`Reply::ShuttingDown`] (a 503) instead of prefilling it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use engine::{generate, Backend, Event, Finish, GenerateOptions, Sampler, SamplerConfig, Session};
use text::{dsml, Tokenizer};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::trace::Trace;

/// One generation request, ready for the engine.
pub struct Job {
    /// The response id, for the trace.
    pub id: String,
    pub prompt: Vec<u32>,
    /// Another token sequence for the same request that continues the live
    /// session further (a Responses continuation, see
    /// [`crate::responses_binding`]); used when it shares more with the
    /// session than `prompt` does once the job runs.
    pub alt: Option<Vec<u32>>,
    pub options: GenerateOptions,
    pub sampler: SamplerConfig,
    pub cancel: Arc<AtomicBool>,
    pub replies: UnboundedSender<Reply>,
}

/// What the worker reports about a job, in order: `Prefilled`, any number of
/// `Text`, then `Done`; or `Failed` at any point.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The prompt is in the session; `cached` of its tokens were reused.
    Prefilled {
        prompt: usize,
        cached: usize,
    },
    Text(dsml::Event),
    Done {
        finish: Finish,
        completion_tokens: usize,
        /// The stop string that matched, for a [`Finish::StopString`].
        stop: Option<String>,
        /// The prompt actually used followed by every generated token: what
        /// the session holds (its last token may not be evaluated yet).
        live: Vec<u32>,
    },
    Failed(String),
    /// The server is shutting down; the job was not run (or was stopped
    /// during its prefill).
    ShuttingDown,
}

/// The connection side's handle on the worker.
#[derive(Clone)]
pub struct WorkerHandle {
    jobs: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    /// Jobs whose replies someone is still reading.
    in_flight: Arc<AtomicUsize>,
    shutdown: Arc<AtomicBool>,
    /// The cancel flag of the job the worker is running.
    running: Arc<Mutex<Option<Arc<AtomicBool>>>>,
}

impl WorkerHandle {
    /// Queues a job; `None` when the worker has stopped.
    pub fn submit(
        &self,
        id: String,
        prompt: Vec<u32>,
        alt: Option<Vec<u32>>,
        options: GenerateOptions,
        sampler: SamplerConfig,
    ) -> Option<(UnboundedReceiver<Reply>, CancelOnDrop)> {
        if self.shutdown.load(Ordering::SeqCst) {
            return None;
        }
        let (tx, rx) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        self.queued.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            id,
            prompt,
            alt,
            options,
            sampler,
            cancel: cancel.clone(),
            replies: tx,
        };
        if self.jobs.send(job).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Some((
            rx,
            CancelOnDrop {
                cancel,
                in_flight: self.in_flight.clone(),
            },
        ))
    }

    /// Jobs waiting or running.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Jobs whose replies are still being read (requests being answered).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Starts shutdown: no new jobs, the running one stops at its next
    /// token, queued ones are refused.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cancel) = running.as_ref() {
            cancel.store(true, Ordering::SeqCst);
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

/// Cancels its job when dropped: held by the code that reads the replies, so
/// a client that disconnects (axum drops the handler or the stream) stops
/// its generation. Also what the in-flight count follows.
pub struct CancelOnDrop {
    cancel: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the worker thread over a session of `ctx` tokens.
pub fn spawn<B: Backend + 'static>(
    backend: Arc<B>,
    tokenizer: Arc<Tokenizer>,
    ctx: usize,
    metrics: Arc<Metrics>,
    mut trace: Trace,
) -> Result<WorkerHandle, ServerError> {
    let (jobs, rx) = mpsc::channel::<Job>();
    let handle = WorkerHandle {
        jobs,
        queued: Arc::new(AtomicUsize::new(0)),
        in_flight: Arc::new(AtomicUsize::new(0)),
        shutdown: Arc::new(AtomicBool::new(false)),
        running: Arc::new(Mutex::new(None)),
    };
    let h = handle.clone();
    std::thread::Builder::new()
        .name("ds4rs-engine".into())
        .spawn(move || {
            let mut session = Session::new(backend, ctx);
            for job in rx {
                *h.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(job.cancel.clone());
                // Checked after publishing the flag, so a shutdown that
                // begins now either sees this job or is seen here.
                if h.is_shutting_down() {
                    let _ = job.replies.send(Reply::ShuttingDown);
                } else {
                    let cancelled = job.cancel.load(Ordering::Relaxed)
                        || run(&mut session, &tokenizer, &metrics, &mut trace, &h, job);
                    // Jobs stopped by shutdown are not client cancellations.
                    if cancelled && !h.is_shutting_down() {
                        Metrics::add(&metrics.cancelled, 1);
                    }
                }
                *h.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
                h.queued.fetch_sub(1, Ordering::Relaxed);
            }
        })
        .map_err(ServerError::Worker)?;
    Ok(handle)
}

/// Runs one job; true when it was cut short because its client left.
fn run<B: Backend>(
    session: &mut Session<B>,
    tokenizer: &Tokenizer,
    metrics: &Metrics,
    trace: &mut Trace,
    handle: &WorkerHandle,
    mut job: Job,
) -> bool {
    let send = |r: Reply| job.replies.send(r).is_ok();
    let mut sampler = match Sampler::new(job.sampler) {
        Ok(s) => s,
        Err(e) => {
            send(Reply::Failed(e.to_string()));
            return false;
        }
    };
    if let Some(alt) = job.alt.take() {
        if common_prefix(session.tokens(), &alt) > common_prefix(session.tokens(), &job.prompt) {
            job.prompt = alt;
        }
    }
    // Synced here rather than inside `generate` so the cache numbers are
    // known before the first token (Anthropic's message_start carries them).
    let t0 = std::time::Instant::now();
    let synced = sync(session, &job.prompt, &job.cancel);
    metrics.add_prefill(t0.elapsed());
    let evaluated = match synced {
        Ok(n) => n,
        Err(e) => {
            send(Reply::Failed(e.to_string()));
            return false;
        }
    };
    if session.tokens() != job.prompt.as_slice() {
        // Cancelled during prefill.
        if handle.is_shutting_down() {
            send(Reply::ShuttingDown);
        }
        return true;
    }
    let prompt = job.prompt.len();
    let cached = prompt.saturating_sub(evaluated);
    Metrics::add(&metrics.prompt_tokens, prompt);
    Metrics::add(&metrics.cached_tokens, cached);
    if trace.enabled() {
        let text = String::from_utf8_lossy(&tokenizer.decode(&job.prompt)).into_owned();
        trace.prompt(&job.id, &text, prompt, cached);
    }
    if !send(Reply::Prefilled { prompt, cached }) {
        return true;
    }
    let room = session.ctx().saturating_sub(prompt);
    job.options.max_tokens = job.options.max_tokens.min(room);
    let cancel = job.cancel.clone();
    let replies = job.replies.clone();
    let result = generate(
        session,
        tokenizer,
        &job.prompt,
        &job.options,
        &mut sampler,
        &mut |_, _| {},
        &mut |e| {
            if let Event::Text(t) = e {
                trace.event(&t);
                if replies.send(Reply::Text(t)).is_err() {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        },
        &job.cancel,
    );
    match result {
        Ok(g) => {
            Metrics::add(&metrics.completion_tokens, g.tokens.len());
            if trace.enabled() {
                let text = String::from_utf8_lossy(&tokenizer.decode(&g.tokens)).into_owned();
                let outcome = format!("finish {:?}, {} tokens", g.finish, g.tokens.len());
                trace.finish(&outcome, &text);
            }
            metrics.add_decode(g.stats.gen_time);
            let stop = (g.finish == Finish::StopString)
                .then(|| matched_stop(tokenizer, &g.tokens, &job.options.stop_strings))
                .flatten();
            let mut live = job.prompt;
            live.extend_from_slice(&g.tokens);
            send(Reply::Done {
                finish: g.finish,
                completion_tokens: g.tokens.len(),
                stop,
                live,
            });
            g.finish == Finish::Cancelled
        }
        Err(e) => {
            trace.finish(&format!("failed: {e}"), "");
            send(Reply::Failed(e.to_string()));
            false
        }
    }
}

/// Brings the session to `prompt` with its rewind anchor one token short of
/// the end. The next request usually diverges exactly there: a thinking
/// chat's history replaces the prompt's final `<think>` with `</think>`, and
/// a regeneration repeats the prompt. The session keeps its anchor where its
/// last prefill ended, so prefilling all but the last token and decoding
/// that one makes those rewinds restore the anchor instead of re-prefilling
/// the whole conversation. Returns the tokens evaluated.
fn sync<B: Backend>(
    session: &mut Session<B>,
    prompt: &[u32],
    cancel: &AtomicBool,
) -> engine::Result<usize> {
    let progress = &mut |_, _| {};
    let Some((&last, head)) = prompt.split_last().filter(|(_, h)| !h.is_empty()) else {
        return session.sync(prompt, progress, cancel);
    };
    if session.tokens() == prompt && session.has_logits() {
        return Ok(0);
    }
    let common = session
        .tokens()
        .iter()
        .zip(head)
        .take_while(|(a, b)| a == b)
        .count();
    // `sync` would step back one more token to have logits to return; a
    // rewind to exactly `head` lands on the anchor, logits included.
    let evaluated = if common == head.len() && session.len() > head.len() {
        session.rewind(head.len(), progress, cancel)?
    } else {
        session.sync(head, progress, cancel)?
    };
    if session.tokens() != head {
        return Ok(evaluated); // cancelled
    }
    session.decode(last)?;
    Ok(evaluated + 1)
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The stop string that ended the output: the one matching earliest.
fn matched_stop(tokenizer: &Tokenizer, tokens: &[u32], stops: &[String]) -> Option<String> {
    let text = String::from_utf8_lossy(&tokenizer.decode(tokens)).into_owned();
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, s)| s.clone())
}
