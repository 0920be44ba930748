//! `ds4rs serve`: DeepSeek V4 Flash behind the OpenAI Chat Completions,
//! Responses and legacy Completions protocols and Anthropic Messages, so
//! coding agents can talk to the engine unchanged
//! (`shared/spec/server-api.md`).
//!
//! Shape: axum handles connections on tokio; every request is parsed,
//! rendered and tokenized on its connection task, then queued to the single
//! engine worker thread ([`worker`]), which owns the model and the live
//! session so consecutive requests reuse their common token prefix. Replies
//! stream back over a per-request channel, so a long generation never blocks
//! `/health` or a request still being parsed.
//!
//! * [`config`]: listener-independent settings.
//! * [`worker`]: the engine thread and its job queue.
//! * [`json_body`]: bodies to typed requests, with a nesting limit.
//! * [`params`]: request knobs shared by the APIs (thinking, sampling, limits).
//! * [`prompt`]: render + tokenize + context check.
//! * [`turn`]: a finished turn folded from the worker's replies; usage.
//! * [`request`]: what each endpoint's pure `parse(bytes)` yields, and the
//!   one path from there to a queued job.
//! * [`chat`], [`completions`], [`messages`], [`responses`], [`models`]: the
//!   endpoints; [`responses_input`], [`responses_tools`],
//!   [`responses_items`]: the Responses API's items and tools.
//! * [`tool_memory`]: tool-call id → sampled DSML, for exact replay.
//! * [`chat_roles`]: chat role rules applied before rendering;
//!   [`messages_input`]: Anthropic content blocks to the renderer's messages.
//! * [`chat_stream`], [`completions_stream`], [`messages_stream`],
//!   [`responses_stream`]: their SSE grammars, over [`sse`].
//! * [`ids`]: tool-call ids, seeds, timestamps; [`state`]: shared handler state.
//! * [`metrics`]: `GET /metrics` counters, shared with the worker.
//! * [`trace`]: the worker's `--trace` log.
//! * [`http`]: CORS, preflight, API key, body limit, fallbacks.

pub mod chat;
pub mod chat_roles;
pub mod chat_stream;
pub mod completions;
pub mod completions_stream;
pub mod config;
pub mod error;
pub mod http;
pub mod ids;
pub mod json_body;
pub mod messages;
pub mod messages_input;
pub mod messages_stream;
pub mod metrics;
pub mod models;
pub mod params;
pub mod prompt;
pub mod request;
pub mod responses;
pub mod responses_binding;
pub mod responses_input;
pub mod responses_items;
pub mod responses_stream;
pub mod responses_tools;
pub mod sse;
pub mod state;
pub mod tool_memory;
pub mod trace;
pub mod turn;
pub mod worker;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use engine::Backend;
use text::Tokenizer;

pub use config::Config;
pub use error::{ApiError, Flavor, ServerError};
pub use state::AppState;

/// The server's routes over a model; starts the engine worker thread, which
/// lives as long as the router (and its clones) do.
pub fn router<B: Backend + 'static>(
    backend: Arc<B>,
    tokenizer: Tokenizer,
    eos: u32,
    config: Config,
) -> Result<Router, ServerError> {
    app(backend, tokenizer, eos, config).map(|a| a.router)
}

/// The routes and the worker behind them, so a caller can shut it down.
pub struct App {
    pub router: Router,
    worker: worker::WorkerHandle,
}

impl App {
    /// Begins shutdown (spec §10.4): new requests get 503, the running job
    /// stops at its next token, queued jobs are refused.
    pub fn shutdown(&self) {
        self.worker.shutdown();
    }
}

/// [`router`], keeping the worker handle.
pub fn app<B: Backend + 'static>(
    backend: Arc<B>,
    tokenizer: Tokenizer,
    eos: u32,
    config: Config,
) -> Result<App, ServerError> {
    let tokenizer = Arc::new(tokenizer);
    let metrics = Arc::new(metrics::Metrics::default());
    let trace = trace::Trace::open(config.trace.as_deref())?;
    let worker = worker::spawn(
        backend,
        tokenizer.clone(),
        config.ctx,
        metrics.clone(),
        trace,
    )?;
    let state = AppState::new(worker.clone(), tokenizer, eos, config, metrics);
    let router = http::layers(
        Router::new()
            .route("/health", get(models::health))
            .route("/metrics", get(metrics::handle))
            .route("/v1/models", get(models::list))
            .route("/v1/models/{id}", get(models::one))
            .route("/v1/chat/completions", post(chat::handle))
            .route("/v1/completions", post(completions::handle))
            .route("/v1/messages", post(messages::handle))
            .route("/v1/responses", post(responses::handle)),
        state,
    );
    Ok(App { router, worker })
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// Serves `app` until `signal` resolves, then shuts down cleanly: stops
/// accepting, cancels the running job and refuses queued ones (so their
/// clients get an answer at once rather than after minutes of prefill),
/// and returns once every open connection has been answered.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    app: App,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let worker = app.worker.clone();
    axum::serve(listener, app.router)
        .with_graceful_shutdown(async move {
            signal.await;
            worker.shutdown();
        })
        .await
}
