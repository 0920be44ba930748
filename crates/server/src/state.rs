//! What every handler shares: the worker, the tokenizer and the settings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use text::Tokenizer;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::responses_binding::ResponsesBinding;
use crate::tool_memory::ToolMemory;
use crate::worker::WorkerHandle;

/// Cheap to clone: axum hands a copy to every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The shared parts; the tokenizer renders prompts on connection tasks so
/// the engine worker only ever runs the model.
pub struct Inner {
    pub worker: WorkerHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub eos: u32,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Tool-call id → sampled DSML, for exact replay.
    pub tool_memory: Arc<ToolMemory>,
    /// The last Responses turn, for continuing it (visible transcript).
    pub responses_binding: Arc<ResponsesBinding>,
    requests: AtomicU64,
}

impl AppState {
    pub fn new(
        worker: WorkerHandle,
        tokenizer: Arc<Tokenizer>,
        eos: u32,
        config: Config,
        metrics: Arc<Metrics>,
    ) -> Self {
        let tool_memory = Arc::new(ToolMemory::new(config.tool_memory_max_ids));
        AppState(Arc::new(Inner {
            worker,
            tokenizer,
            eos,
            config,
            metrics,
            tool_memory,
            responses_binding: Arc::default(),
            requests: AtomicU64::new(0),
        }))
    }

    /// The next `chatcmpl-<n>` id: one process-wide counter from 1, shared
    /// by the endpoints as in ds4.
    pub fn next_id(&self) -> String {
        self.next_id_with("chatcmpl-")
    }

    /// [`AppState::next_id`] with another prefix (`cmpl-`).
    pub fn next_id_with(&self, prefix: &str) -> String {
        let n = self.0.requests.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{prefix}{n}")
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
