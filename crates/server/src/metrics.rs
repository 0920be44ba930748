//! `GET /metrics`: Prometheus text counters an operator watches on a long
//! agent session — requests, tokens, time in prefill and decode (rates are
//! their ratios), cache reuse, cancellations and the queue depth.

use std::fmt::Write;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, Flavor};
use crate::state::AppState;

/// Counters shared by the handlers and the engine worker.
#[derive(Default)]
pub struct Metrics {
    pub chat_requests: AtomicU64,
    pub completions_requests: AtomicU64,
    pub messages_requests: AtomicU64,
    pub responses_requests: AtomicU64,
    /// Requests answered with a 4xx or 5xx before generation.
    pub rejected: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub cached_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    prefill_us: AtomicU64,
    decode_us: AtomicU64,
    /// Jobs stopped because their client went away.
    pub cancelled: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The response of one request to an endpoint: counts it in `endpoint`
    /// and, when `reply` refuses it, in `rejected`, the refusal in
    /// `flavor`'s error shape.
    pub async fn counted(
        metrics: Arc<Metrics>,
        endpoint: fn(&Metrics) -> &AtomicU64,
        flavor: Flavor,
        reply: impl Future<Output = Result<Response, ApiError>>,
    ) -> Response {
        Metrics::add(endpoint(&metrics), 1);
        reply.await.unwrap_or_else(|e| {
            Metrics::add(&metrics.rejected, 1);
            e.with_flavor(flavor).into_response()
        })
    }

    pub fn add_prefill(&self, t: Duration) {
        self.prefill_us
            .fetch_add(t.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn add_decode(&self, t: Duration) {
        self.decode_us
            .fetch_add(t.as_micros() as u64, Ordering::Relaxed);
    }

    /// The exposition text; `replay` is (exact, canonical) tool-call turns
    /// and `memory_ids` the ids the tool memory holds.
    fn render(
        &self,
        queued: usize,
        in_flight: usize,
        replay: (u64, u64),
        memory_ids: usize,
    ) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let secs = |c: &AtomicU64| get(c) as f64 / 1e6;
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        metric(
            "ds4rs_requests_total",
            "counter",
            "Generation requests received, by endpoint.",
            &[
                (r#"{endpoint="chat"}"#, get(&self.chat_requests).to_string()),
                (
                    r#"{endpoint="completions"}"#,
                    get(&self.completions_requests).to_string(),
                ),
                (
                    r#"{endpoint="messages"}"#,
                    get(&self.messages_requests).to_string(),
                ),
                (
                    r#"{endpoint="responses"}"#,
                    get(&self.responses_requests).to_string(),
                ),
            ],
        );
        let one = |c: &AtomicU64| [("", get(c).to_string())];
        metric(
            "ds4rs_rejected_requests_total",
            "counter",
            "Requests refused before generation (bad request, context overflow).",
            &one(&self.rejected),
        );
        metric(
            "ds4rs_prompt_tokens_total",
            "counter",
            "Prompt tokens of executed requests.",
            &one(&self.prompt_tokens),
        );
        metric(
            "ds4rs_cached_prompt_tokens_total",
            "counter",
            "Prompt tokens reused from the live session instead of prefilled.",
            &one(&self.cached_tokens),
        );
        metric(
            "ds4rs_completion_tokens_total",
            "counter",
            "Tokens generated.",
            &one(&self.completion_tokens),
        );
        metric(
            "ds4rs_prefill_seconds_total",
            "counter",
            "Time spent prefilling prompts.",
            &[("", secs(&self.prefill_us).to_string())],
        );
        metric(
            "ds4rs_decode_seconds_total",
            "counter",
            "Time spent generating tokens.",
            &[("", secs(&self.decode_us).to_string())],
        );
        metric(
            "ds4rs_cancelled_total",
            "counter",
            "Jobs stopped because their client disconnected.",
            &one(&self.cancelled),
        );
        metric(
            "ds4rs_queue_depth",
            "gauge",
            "Jobs waiting for or running on the engine.",
            &[("", queued.to_string())],
        );
        metric(
            "ds4rs_requests_in_flight",
            "gauge",
            "Generation requests still being answered (replies being read).",
            &[("", in_flight.to_string())],
        );
        metric(
            "ds4rs_tool_replay_total",
            "counter",
            "Past assistant tool-call turns rendered from the sampled DSML (exact) or from JSON (canonical).",
            &[
                (r#"{kind="exact"}"#, replay.0.to_string()),
                (r#"{kind="canonical"}"#, replay.1.to_string()),
            ],
        );
        metric(
            "ds4rs_tool_memory_ids",
            "gauge",
            "Tool-call ids whose sampled DSML is remembered.",
            &[("", memory_ids.to_string())],
        );
        s
    }
}

pub async fn handle(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(
            state.worker.queued(),
            state.worker.in_flight(),
            state.tool_memory.replay_counts(),
            state.tool_memory.len(),
        ),
    )
        .into_response()
}
