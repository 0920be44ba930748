//! `ds4rs selftest`: the GPU kernel checks, for a GPU machine that has no
//! Rust toolchain (the binary is built elsewhere and carried there); with
//! `--model`, also the memory plan and weight upload of a model file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct Args {
    /// GPU ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Also plan, upload and verify the weights of this GGUF.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Context size the memory plan reserves attention state for.
    #[arg(long, default_value_t = 32768)]
    pub ctx: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let gpu = cuda::Gpu::new(args.device)?;
    println!("device {}: {}", args.device, gpu.name());
    let checks = cuda::selftest::run(&gpu)?;
    let mut failed = checks.iter().filter(|c| !c.pass).count();
    for c in &checks {
        let verdict = if c.pass { "ok  " } else { "FAIL" };
        println!(
            "{verdict} {:<56} worst error / bound = {:.3e}",
            c.name, c.worst
        );
    }
    let mut total = checks.len();
    if let Some(path) = &args.model {
        total += 1;
        if !upload(&gpu, path, args.ctx)? {
            failed += 1;
        }
    }
    println!("{} passed, {failed} failed", total - failed);
    anyhow::ensure!(failed == 0, "{failed} GPU checks failed");
    Ok(())
}

/// Plans, uploads and reads back every tensor; true when all bytes match.
fn upload(gpu: &cuda::Gpu, path: &PathBuf, ctx: usize) -> anyhow::Result<bool> {
    let file = gguf::GgufFile::open(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = model::ModelConfig::from_gguf(file.header())?;
    let plan = cuda::MemoryPlan::new(&file, &cfg, ctx);
    let (free, total) = gpu.mem_info()?;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "memory plan (ctx {ctx}): {plan}; free {:.2} of {:.2} GiB",
        gib(free),
        gib(total)
    );
    plan.check(free)?;
    let bar = ProgressBar::new(plan.weights).with_style(
        ProgressStyle::with_template(
            "upload {bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
        )
        .expect("valid template"),
    );
    let start = Instant::now();
    let weights = cuda::DeviceWeights::upload(gpu, &file, &|b| bar.set_position(b))?;
    let secs = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    println!(
        "uploaded {} tensors, {:.2} GiB in {secs:.2} s ({:.2} GiB/s from the page cache)",
        weights.len(),
        gib(weights.bytes),
        gib(weights.bytes) / secs
    );
    let mut same = true;
    for t in file.tensors() {
        let dev = weights.get(&t.name).context("uploaded tensor missing")?;
        if gpu.stream.clone_dtoh(dev)? != file.tensor_data(t) {
            println!("FAIL weight read-back of {}", t.name);
            same = false;
        }
    }
    println!(
        "{} weight upload read back byte for byte",
        if same { "ok  " } else { "FAIL" }
    );
    Ok(same)
}
