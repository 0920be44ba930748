//! `ds4rs serve`: the OpenAI- and Anthropic-compatible HTTP server (the
//! `server` crate) over a model file, on the backend `--backend` picks.
//!
//! Lifecycle (spec §10.4, §10.5): one server per machine (ds4's lock
//! file); the first Ctrl+C or SIGTERM stops accepting, stops the running
//! generation at its next token, refuses queued requests with 503, waits
//! for every open response to finish and exits 0; a second one exits at
//! once with status 130.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use engine::Backend;
use text::Tokenizer;

use super::backend::{with_backend, BackendKind, WithBackend};
use super::instance_lock::{self, LockError};

#[derive(clap::Args)]
pub struct Args {
    /// Address or host name to listen on (`localhost` means 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at startup).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// GGUF model file (with its tokenizer).
    #[arg(short, long, default_value = "ds4flash.gguf")]
    pub model: PathBuf,
    /// Backend: auto (CUDA when built with it and usable, else CPU), cpu or cuda.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendKind,
    /// Context size of the live session, in tokens.
    #[arg(long, default_value_t = 32768)]
    pub ctx: usize,
    /// Output tokens when a request sets no limit.
    #[arg(long, default_value_t = 393_216)]
    pub tokens: usize,
    /// Require this key (`Authorization: Bearer K` or `x-api-key: K`).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Send CORS allow headers for browser clients.
    #[arg(long)]
    pub cors: bool,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_body: usize,
    /// Log rendered prompts, cache reuse, parser events and generated text.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Render past tool calls from their JSON instead of the DSML the model
    /// sampled (costs prefix reuse in tool loops).
    #[arg(long)]
    pub disable_exact_dsml_tool_replay: bool,
    /// Tool-call ids whose sampled DSML is kept for exact replay.
    #[arg(long, default_value_t = 100_000)]
    pub tool_memory_max_ids: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let _lock = match instance_lock::acquire() {
        Ok(l) => l,
        Err(e @ LockError::Held(_)) => {
            // ds4's status for this case, so scripts can tell it apart.
            eprintln!("ds4rs: {e}");
            std::process::exit(2);
        }
        Err(e) => return Err(e.into()),
    };
    let model = args.model.clone();
    with_backend(args.backend, &model, args.ctx, Serve(args))
}

/// The server over whichever backend was loaded.
struct Serve(Args);

impl WithBackend for Serve {
    type Output = ();

    fn run<B: Backend + 'static>(
        self,
        backend: Arc<B>,
        tok: Tokenizer,
        eos: u32,
    ) -> anyhow::Result<()> {
        let args = self.0;
        let mut config = server::Config::new(args.ctx);
        config.max_tokens = args.tokens;
        config.api_key = args.api_key;
        config.cors = args.cors;
        config.trace = args.trace;
        config.max_body = args.max_body;
        config.tool_memory_max_ids = if args.disable_exact_dsml_tool_replay {
            0
        } else {
            args.tool_memory_max_ids
        };
        let app = server::app(backend, tok, eos, config)?;
        let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        rt.block_on(async {
            // ds4 maps `localhost` to IPv4 only; other names and IPv6 literals
            // resolve as the system does.
            let host = match args.host.as_str() {
                "localhost" => "127.0.0.1",
                h => h,
            };
            let listener = tokio::net::TcpListener::bind((host, args.port))
                .await
                .with_context(|| format!("binding {host} port {}", args.port))?;
            // The bound address, so `--port 0` reports the port it got.
            let bound = listener.local_addr().context("reading the bound address")?;
            eprintln!("ds4rs: listening on http://{bound}");
            server::serve_until(listener, app, first_signal())
                .await
                .context("serving")?;
            eprintln!("ds4rs: stopped");
            Ok(())
        })
    }
}

/// Resolves at the first SIGINT or SIGTERM; a second one exits the process
/// at once with status 130.
async fn first_signal() {
    signal().await;
    eprintln!("ds4rs: shutting down (again to exit at once)");
    tokio::spawn(async {
        signal().await;
        eprintln!("ds4rs: exiting now");
        std::process::exit(130);
    });
}

async fn signal() {
    let ctrl_c = async {
        // Without a handler there is nothing to wait for.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
