//! `ds4rs serve`: the OpenAI- and Anthropic-compatible HTTP server (the
//! `server` crate) over a model file on the CPU backend.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use engine::{vocab, CpuBackend};

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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let backend = Arc::new(
        CpuBackend::load(&args.model, model::Options::default())
            .with_context(|| format!("loading {}", args.model.display()))?,
    );
    let header = backend.file().header();
    let tok = vocab::tokenizer(header)
        .with_context(|| format!("tokenizer of {}", args.model.display()))?;
    let eos = vocab::eos_id(header).with_context(|| args.model.display().to_string())?;
    let mut config = server::Config::new(args.ctx);
    config.max_tokens = args.tokens;
    config.api_key = args.api_key;
    config.cors = args.cors;
    config.trace = args.trace;
    config.max_body = args.max_body;
    let router = server::router(backend, tok, eos, config)?;
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
        server::serve(listener, router).await.context("serving")
    })
}
