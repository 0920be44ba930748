//! `--backend auto|cpu|cuda`: which engine backend runs the model. Commands
//! hand a [`WithBackend`] job to [`with_backend`], which loads the chosen
//! backend and runs the job generically over it, so a new backend is one
//! match arm in [`with_backend`] (and one line in [`resolve`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use engine::{vocab, Backend, CpuBackend};
use gguf::GgufFile;
use text::Tokenizer;

/// The `--backend` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// CUDA when this build has it and a GPU runs it, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// A backend that can run here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda,
}

/// What a command does once the model is loaded, for any backend.
pub trait WithBackend {
    type Output;
    /// Runs with the loaded `backend`, the model's tokenizer and its EOS id.
    fn run<B: Backend + 'static>(
        self,
        backend: Arc<B>,
        tokenizer: Tokenizer,
        eos: u32,
    ) -> anyhow::Result<Self::Output>;
}

/// The backend `kind` selects in this build, or why it cannot run. Auto
/// takes the GPU when this build has CUDA and GPU 0 opens.
pub fn resolve(kind: BackendKind) -> anyhow::Result<Resolved> {
    match kind {
        BackendKind::Cpu => Ok(Resolved::Cpu),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Ok(Resolved::Cuda),
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => anyhow::bail!(
            "--backend cuda: this ds4rs was built without CUDA support; rebuild with \
             `cargo build --release --features cuda` (needs nvcc), or use --backend cpu"
        ),
        #[cfg(feature = "cuda")]
        BackendKind::Auto if cuda::Gpu::new(0).is_ok() => Ok(Resolved::Cuda),
        BackendKind::Auto => Ok(Resolved::Cpu),
    }
}

/// Loads `model` on the backend `kind` selects (the GPU's memory plan
/// reserves attention state for `ctx` tokens) and runs `job` over it.
pub fn with_backend<W: WithBackend>(
    kind: BackendKind,
    model: &Path,
    // Only the GPU's memory plan needs it: CPU states are sized per session.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))] ctx: usize,
    job: W,
) -> anyhow::Result<W::Output> {
    let resolved = resolve(kind)?;
    let (tokenizer, eos) = vocabulary(model)?;
    match resolved {
        Resolved::Cpu => {
            let backend = CpuBackend::load(model, model::Options::default())
                .with_context(|| format!("loading {}", model.display()))?;
            job.run(Arc::new(backend), tokenizer, eos)
        }
        #[cfg(feature = "cuda")]
        Resolved::Cuda => {
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "upload {bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
                )
                .expect("valid template"),
            );
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            let mut report = |e: cuda::LoadEvent<'_>| match e {
                cuda::LoadEvent::Plan { plan, free, total } => eprintln!(
                    "ds4rs: GPU memory plan (ctx {ctx}): {plan}; {:.2} of {:.2} GiB free",
                    gib(free),
                    gib(total)
                ),
                cuda::LoadEvent::Upload { done, total } => {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            };
            let backend =
                engine::GpuBackend::load(model, model::Options::default(), ctx, &mut report)
                    .with_context(|| {
                        format!(
                        "--backend cuda: loading {} on the GPU (--backend cpu runs it on the CPU)",
                        model.display()
                    )
                    })?;
            bar.finish_and_clear();
            job.run(Arc::new(backend), tokenizer, eos)
        }
    }
}

/// The model file's tokenizer and EOS id, read from its header.
fn vocabulary(model: &Path) -> anyhow::Result<(Tokenizer, u32)> {
    let file = GgufFile::open(model).with_context(|| format!("reading {}", model.display()))?;
    let tok = vocab::tokenizer(file.header())
        .with_context(|| format!("tokenizer of {}", model.display()))?;
    let eos = vocab::eos_id(file.header()).with_context(|| model.display().to_string())?;
    Ok((tok, eos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_the_cpu() {
        assert_eq!(resolve(BackendKind::Cpu).unwrap(), Resolved::Cpu);
    }

    /// Without a GPU (CI), auto falls back to the CPU.
    #[test]
    fn auto_without_a_gpu_is_the_cpu() {
        #[cfg(feature = "cuda")]
        let gpu = cuda::Gpu::new(0).is_ok();
        #[cfg(not(feature = "cuda"))]
        let gpu = false;
        if !gpu {
            assert_eq!(resolve(BackendKind::Auto).unwrap(), Resolved::Cpu);
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_explains_itself() {
        let err = resolve(BackendKind::Cuda).unwrap_err().to_string();
        assert!(
            err.contains("--backend cuda") && err.contains("--backend cpu"),
            "{err}"
        );
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_with_the_feature_is_the_gpu() {
        assert_eq!(resolve(BackendKind::Cuda).unwrap(), Resolved::Cuda);
    }
}
