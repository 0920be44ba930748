//! Server settings that do not depend on the listener.

use std::path::PathBuf;
use std::time::Duration;

/// What `ds4rs serve` was started with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Context size of the live session, in tokens.
    pub ctx: usize,
    /// Output limit when a request gives none (ds4's `--tokens`).
    pub max_tokens: usize,
    /// When set, requests must carry it as `Authorization: Bearer K` or
    /// `x-api-key: K` (off by default: agents are configured with dummy keys).
    pub api_key: Option<String>,
    /// Send `Access-Control-Allow-*` headers on every response.
    pub cors: bool,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Silence after which a streaming response gets an SSE comment line,
    /// so clients and proxies do not time out during a long prefill.
    pub keepalive: Duration,
    /// Where the worker logs prompts, cache reuse and output (`--trace`).
    pub trace: Option<PathBuf>,
    /// Tool-call ids whose sampled DSML is remembered for exact replay
    /// (`--tool-memory-max-ids`); 0 turns exact replay off
    /// (`--disable-exact-dsml-tool-replay`).
    pub tool_memory_max_ids: usize,
}

impl Config {
    /// ds4's defaults for a context of `ctx` tokens: 393216 output tokens at
    /// most, 64 MiB bodies, no key, no CORS, keepalive after 5 s,
    /// no trace, exact DSML replay of up to 100000 tool-call ids.
    pub fn new(ctx: usize) -> Self {
        Config {
            ctx,
            max_tokens: 393_216,
            api_key: None,
            cors: false,
            max_body: 64 << 20,
            keepalive: Duration::from_secs(5),
            trace: None,
            tool_memory_max_ids: 100_000,
        }
    }
}
