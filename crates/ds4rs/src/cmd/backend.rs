//! `--backend auto|cpu|cuda`: which engine backend runs the model. Commands
//! hand a [`WithBackend`] job to [`with_backend`], which loads the chosen
//! backend and runs the job generically over it, so a new backend is one
//! match arm in [`with_backend`] (and one line in [`resolve`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
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

/// The backend `kind` selects in this build, or why it cannot run.
pub fn resolve(kind: BackendKind) -> anyhow::Result<Resolved> {
    match kind {
        // The GPU forward pass is not part of the engine yet: auto is the
        // CPU until `engine::GpuBackend` lands.
        BackendKind::Auto | BackendKind::Cpu => Ok(Resolved::Cpu),
        BackendKind::Cuda if !cfg!(feature = "cuda") => bail!(
            "--backend cuda: this ds4rs was built without CUDA support; rebuild with \
             `cargo build --release --features cuda` (needs nvcc), or use --backend cpu"
        ),
        BackendKind::Cuda => bail!(
            "--backend cuda: the GPU forward pass is not part of this build yet (only the \
             kernels are, see `ds4rs selftest`); use --backend cpu"
        ),
    }
}

/// Loads `model` on the backend `kind` selects and runs `job` over it.
pub fn with_backend<W: WithBackend>(
    kind: BackendKind,
    model: &Path,
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
    fn auto_and_cpu_run_on_the_cpu_and_cuda_explains_itself() {
        assert_eq!(resolve(BackendKind::Auto).unwrap(), Resolved::Cpu);
        assert_eq!(resolve(BackendKind::Cpu).unwrap(), Resolved::Cpu);
        let err = resolve(BackendKind::Cuda).unwrap_err().to_string();
        assert!(
            err.contains("--backend cuda") && err.contains("--backend cpu"),
            "{err}"
        );
    }
}
