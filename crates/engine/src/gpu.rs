//! The CUDA backend: `cuda::GpuModel` (weights and states resident on one
//! GPU) behind the [`Backend`] trait, so sessions, snapshots, the server and
//! the bench run on it unchanged.
//!
//! Logits stay on the device ([`cuda::DeviceLogits`]): the next token is
//! picked there (`cuda::DeviceSampler`), and only its id, or the few values
//! of a log-probability report, come back per generated token.
//!
//! `Backend::new_state` cannot fail, but allocating device memory can, so a
//! new state is only a promise: its buffers are allocated by the first call
//! that evaluates or imports, and an allocation failure surfaces there as an
//! error instead of a panic.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use cuda::{DeviceLogits, DeviceSampler, Gpu, GpuModel, GpuState, LoadEvent, GPU_CHUNK};
use gguf::GgufFile;
use model::state::State;
use model::{ModelConfig, Options};

use crate::backend::{Backend, ModelIdentity, Prefilled, StateImage};
use crate::cpu::identity_of;
use crate::error::Result;
use crate::image;
use crate::sampler::{Pick, TopLogits};

pub struct GpuBackend {
    model: GpuModel,
    sampler: DeviceSampler,
    file: GgufFile,
    identity: ModelIdentity,
    chunk: usize,
}

/// A GPU sequence state, allocated on first use.
#[derive(Clone)]
pub struct GpuSeq {
    ctx: usize,
    state: Option<GpuState>,
}

impl GpuBackend {
    /// Opens GPU 0, checks the memory plan for `ctx` and uploads the
    /// weights, reporting both to `report`.
    pub fn load(
        path: &Path,
        opts: Options,
        ctx: usize,
        report: &mut dyn FnMut(LoadEvent<'_>),
    ) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let gpu = Gpu::new(0)?;
        let model = GpuModel::load(gpu, &file, opts, ctx, report)?;
        let sampler = DeviceSampler::new(&model.gpu, model.cfg.n_vocab)?;
        Ok(GpuBackend {
            identity: identity_of(&file),
            model,
            sampler,
            file,
            chunk: GPU_CHUNK,
        })
    }

    /// The mapped GGUF (for its tokenizer metadata).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    pub fn model(&self) -> &GpuModel {
        &self.model
    }

    fn state<'s>(&self, seq: &'s mut GpuSeq) -> Result<&'s mut GpuState> {
        if seq.state.is_none() {
            seq.state = Some(self.model.new_state(seq.ctx)?);
        }
        Ok(seq.state.as_mut().expect("allocated above"))
    }
}

impl Backend for GpuBackend {
    type State = GpuSeq;
    type Logits = DeviceLogits;

    fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }

    fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    fn device_name(&self) -> String {
        self.model.gpu.name().to_owned()
    }

    fn prefill_chunk(&self) -> usize {
        self.chunk
    }

    fn new_state(&self, ctx: usize) -> GpuSeq {
        GpuSeq { ctx, state: None }
    }

    fn n_tokens(&self, seq: &GpuSeq) -> usize {
        seq.state.as_ref().map_or(0, GpuState::n_tokens)
    }

    fn ctx(&self, seq: &GpuSeq) -> usize {
        seq.ctx
    }

    fn prefill(
        &self,
        seq: &mut GpuSeq,
        tokens: &[u32],
        progress: &mut dyn FnMut(usize),
        cancel: &AtomicBool,
    ) -> Result<Prefilled<DeviceLogits>> {
        let state = self.state(seq)?;
        let mut done = 0;
        let mut logits = None;
        while done < tokens.len() {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let pos = state.n_tokens();
            let len = (self.chunk - pos % self.chunk).min(tokens.len() - done);
            logits = Some(
                self.model
                    .forward_device(state, &tokens[done..done + len])?,
            );
            done += len;
            progress(done);
        }
        Ok(Prefilled {
            consumed: done,
            logits,
        })
    }

    fn decode(&self, seq: &mut GpuSeq, token: u32) -> Result<DeviceLogits> {
        let state = self.state(seq)?;
        Ok(self.model.forward_device(state, &[token])?)
    }

    fn logits_to_host<'l>(&self, logits: &'l DeviceLogits) -> Result<Cow<'l, [f32]>> {
        Ok(Cow::Owned(logits.download(&self.model.gpu)?))
    }

    fn logits_from_host(&self, logits: Vec<f32>) -> Result<DeviceLogits> {
        Ok(DeviceLogits::upload(&self.model.gpu, &logits)?)
    }

    fn pick(&self, logits: &DeviceLogits, pick: &Pick) -> Result<u32> {
        Ok(self.sampler.pick(&self.model.gpu, logits, pick)?)
    }

    fn top_logits(&self, logits: &DeviceLogits, token: Option<u32>, n: usize) -> Result<TopLogits> {
        Ok(self.sampler.top_logits(&self.model.gpu, logits, token, n)?)
    }

    fn export(&self, seq: &GpuSeq) -> Result<StateImage> {
        let cfg = self.config();
        let host = match &seq.state {
            None => State::new(cfg, seq.ctx),
            Some(s) => self.model.download_state(s)?,
        };
        Ok(image::to_image(cfg, &host))
    }

    fn import(&self, img: &StateImage) -> Result<GpuSeq> {
        let host = image::from_image(self.config(), img)?;
        Ok(GpuSeq {
            ctx: img.ctx,
            state: Some(self.model.upload_state(&host)?),
        })
    }
}
