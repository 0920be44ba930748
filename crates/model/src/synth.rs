//! Random-weight models in ds4's exact layout (`ds4rs synth`): for testing
//! loaders, kernels and memory plans at full scale without the real weights.
//!
//! Speed: quantized tensors are drawn directly as random blocks (codes,
//! sub-block scales, grid and sign indices are all uniform random bytes;
//! only the block scale `d`, and `dmin` for the K-quants, are set), never
//! quantized from floats, so the 81 GiB Flash q2 file costs a PRNG pass and
//! a disk write. Rows are generated in parallel while the previous batch is
//! written.
//!
//! Determinism: every row has its own PRNG stream keyed by (seed, tensor
//! index, row), so the bytes depend on the seed only, not on thread count
//! or batch size.
//!
//! Scales: each block scale is set so the decoded weights have the standard
//! deviation the tensor's [`Role`] asks for (measured once per type on
//! random blocks), with `dmin` chosen so K-quant blocks have zero mean; the
//! roles use the oracle's scales, which keep activations O(1) and routing
//! spread over many experts through every layer.

use std::path::Path;

use gguf::quant::f32_to_f16;
use gguf::{GgmlType, MetaValue};
use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::layout::{self, Recipe, Role, TensorSpec};

/// DeepSeek V4 Pro's shape as transformers' `DeepseekV4Config` defaults give
/// it (transformers 5.24, `configuration_deepseek_v4.py`): the dims of
/// Flash (its defaults are Flash's numbers) with the default *Pro* layer
/// schedule, two heavily compressed layers (ratio 128) then CSA/HCA
/// alternating from HCA (attention.md §16.2 item 7), 3 hash layers.
pub fn pro_shape() -> ModelConfig {
    let mut cfg = ModelConfig::flash();
    cfg.compress_ratios = (0..cfg.n_layer)
        .map(|l| match l {
            0 | 1 => 128,
            l if (l - 2) % 2 == 1 => 4,
            _ => 128,
        })
        .collect();
    cfg
}

/// Keeps the first `n` layers (and their per-layer metadata).
pub fn truncate_layers(cfg: &mut ModelConfig, n: usize) -> Result<()> {
    if n == 0 || n > cfg.n_layer {
        return Err(ModelError::Metadata {
            key: "deepseek4.block_count".into(),
            msg: format!("cannot keep {n} layers of {}", cfg.n_layer),
        });
    }
    cfg.n_layer = n;
    cfg.n_hash_layer = cfg.n_hash_layer.min(n);
    cfg.compress_ratios.truncate(n);
    cfg.swiglu_clamp.truncate(n);
    Ok(())
}

/// Checks the per-layer arrays of a shape given as JSON match its layer
/// count and that the hash table can hold distinct experts.
pub fn check_shape(cfg: &ModelConfig) -> Result<()> {
    let bad = |key: &str, msg: String| {
        Err(ModelError::Metadata {
            key: format!("deepseek4.{key}"),
            msg,
        })
    };
    if cfg.compress_ratios.len() != cfg.n_layer {
        return bad(
            "attention.compress_ratios",
            format!(
                "has {} entries for {} layers",
                cfg.compress_ratios.len(),
                cfg.n_layer
            ),
        );
    }
    if cfg.swiglu_clamp.len() != cfg.n_layer {
        return bad(
            "swiglu_clamp_exp",
            format!(
                "has {} entries for {} layers",
                cfg.swiglu_clamp.len(),
                cfg.n_layer
            ),
        );
    }
    if cfg.n_expert_used > cfg.n_expert {
        return bad(
            "expert_used_count",
            format!(
                "{} exceeds expert_count {}",
                cfg.n_expert_used, cfg.n_expert
            ),
        );
    }
    Ok(())
}

/// Writes a random model of shape `cfg` stored as `recipe` to `out`, with
/// `metadata` (the model keys plus whatever tokenizer keys the caller
/// adds). `progress` receives the tensor bytes as they are written.
pub fn synth(
    cfg: &ModelConfig,
    recipe: Recipe,
    seed: u64,
    metadata: Vec<(String, MetaValue)>,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    check_shape(cfg)?;
    let specs = layout::layout(cfg, recipe)?;
    let b = layout::builder(metadata, &specs)?;
    let calib = Calibration::measure();
    layout::write_file(out, b, |tw| {
        for (ti, spec) in specs.iter().enumerate() {
            let gen = RowGen::new(spec, ti as u64, seed, &calib, cfg.n_expert);
            let rows = spec.rows();
            let rb = spec.row_bytes();
            let per_batch = (BATCH_BYTES / rb).clamp(1, rows.max(1));
            let mut cur = vec![0u8; per_batch.min(rows) * rb];
            let mut next = cur.clone();
            gen.fill(0, &mut cur);
            let mut row0 = 0;
            while row0 < rows {
                let n = per_batch.min(rows - row0);
                let after = row0 + n;
                let m = per_batch.min(rows - after);
                let (w, _) = rayon::join(
                    || layout::write_chunks(tw, &cur[..n * rb], progress),
                    || gen.fill(after, &mut next[..m * rb]),
                );
                w?;
                std::mem::swap(&mut cur, &mut next);
                row0 = after;
            }
        }
        Ok(())
    })
}

/// Rows generated per batch (about 16 MiB), written while the next is made.
const BATCH_BYTES: usize = 16 << 20;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for
/// random weights; one stream per row.
struct Rng(u64);

impl Rng {
    fn for_row(seed: u64, tensor: u64, row: u64) -> Rng {
        let k = mix(mix(seed ^ 0x5851_F42D_4C95_7F2D) ^ tensor);
        Rng(mix(k ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let v = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&v[..rest.len()]);
    }

    /// An approximately standard normal value: the Irwin-Hall sum of the
    /// four 16-bit uniforms of one draw, centred and scaled to unit
    /// variance (bounded at ±3.46; no transcendental functions, so the
    /// float tensors cost about as much as the random blocks).
    fn normal(&mut self) -> f32 {
        let v = self.next_u64();
        let sum = (v & 0xFFFF) + ((v >> 16) & 0xFFFF) + ((v >> 32) & 0xFFFF) + (v >> 48);
        (sum as f32 - 131_070.0) * (1.0 / 37_837.6)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where a block type keeps its f16 scales (gguf-and-quants.md §3).
fn scale_offsets(ty: GgmlType) -> (usize, Option<usize>) {
    match ty {
        GgmlType::Q8_0 | GgmlType::Iq2Xxs => (0, None),
        GgmlType::Q4K => (0, Some(2)),
        GgmlType::Q2K => (80, Some(82)),
        _ => unreachable!("only block types are calibrated"),
    }
}

/// Per block type: the RMS of decoded random blocks with `d = 1`, and the
/// `dmin / d` ratio that centres them.
struct Calibration {
    types: Vec<(GgmlType, f32, f32)>,
}

impl Calibration {
    const TYPES: [GgmlType; 4] = [
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q4K,
        GgmlType::Iq2Xxs,
    ];

    fn measure() -> Self {
        let types = Self::TYPES
            .iter()
            .map(|&ty| {
                let (bb, be) = (ty.block_bytes(), ty.block_elems());
                let n = 512;
                let mut raw = vec![0u8; n * bb];
                Rng::for_row(0, u64::MAX, ty.id() as u64).fill(&mut raw);
                let stats = |d: f32, dmin: f32| {
                    let mut blocks = raw.clone();
                    for b in blocks.chunks_exact_mut(bb) {
                        set_scales(ty, b, d, dmin);
                    }
                    let mut y = vec![0f32; n * be];
                    gguf::quant::dequantize(ty, &blocks, &mut y).expect("whole blocks");
                    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
                    let ms = y.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / y.len() as f64;
                    (mean, ms)
                };
                let ratio = match scale_offsets(ty).1 {
                    Some(_) => (stats(1.0, 0.0).0 / -stats(0.0, 1.0).0) as f32,
                    None => 0.0,
                };
                let rms = stats(1.0, ratio).1.sqrt() as f32;
                (ty, rms, ratio)
            })
            .collect();
        Calibration { types }
    }

    fn get(&self, ty: GgmlType) -> (f32, f32) {
        let &(_, rms, ratio) = self
            .types
            .iter()
            .find(|t| t.0 == ty)
            .expect("calibrated type");
        (rms, ratio)
    }
}

fn set_scales(ty: GgmlType, block: &mut [u8], d: f32, dmin: f32) {
    let (od, omin) = scale_offsets(ty);
    block[od..od + 2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    if let Some(o) = omin {
        block[o..o + 2].copy_from_slice(&f32_to_f16(dmin).to_le_bytes());
    }
}

/// How the rows of one tensor are drawn.
struct RowGen {
    ty: GgmlType,
    tensor: u64,
    seed: u64,
    row_bytes: usize,
    kind: Draw,
}

enum Draw {
    /// Gaussian floats.
    Normal { mean: f32, std: f32 },
    /// Random blocks with these f16 scales.
    Blocks { d: f32, dmin: f32 },
    /// Distinct expert ids in `0..n_expert`.
    Experts { n_expert: usize },
}

impl RowGen {
    fn new(
        spec: &TensorSpec,
        tensor: u64,
        seed: u64,
        calib: &Calibration,
        n_expert: usize,
    ) -> Self {
        let fan_in = (spec.cols() as f32).sqrt();
        let (mean, std) = match spec.role {
            Role::Embedding => (0.0, 1.0),
            Role::Matrix { gain } | Role::Experts { gain } => (0.0, gain / fan_in),
            Role::Norm => (1.0, 0.2),
            Role::HcScale => (1.0, 0.25),
            Role::HcBase | Role::Ape | Role::Sinks => (0.0, 0.5),
            Role::RouterBias => (0.0, 0.1),
            Role::HashTable => (0.0, 0.0),
        };
        let kind = match spec.ty {
            GgmlType::I32 => Draw::Experts { n_expert },
            GgmlType::F32 | GgmlType::F16 => Draw::Normal { mean, std },
            ty => {
                let (rms, ratio) = calib.get(ty);
                let d = std / rms;
                Draw::Blocks { d, dmin: d * ratio }
            }
        };
        RowGen {
            ty: spec.ty,
            tensor,
            seed,
            row_bytes: spec.row_bytes(),
            kind,
        }
    }

    /// Fills `out` with rows `row0..` (whole rows), in parallel.
    fn fill(&self, row0: usize, out: &mut [u8]) {
        out.par_chunks_mut(self.row_bytes)
            .enumerate()
            .for_each(|(i, row)| {
                let mut rng = Rng::for_row(self.seed, self.tensor, (row0 + i) as u64);
                self.row(&mut rng, row);
            });
    }

    fn row(&self, rng: &mut Rng, out: &mut [u8]) {
        match self.kind {
            Draw::Normal { mean, std } => {
                if self.ty == GgmlType::F32 {
                    for c in out.chunks_exact_mut(4) {
                        c.copy_from_slice(&(mean + std * rng.normal()).to_le_bytes());
                    }
                } else {
                    for c in out.chunks_exact_mut(2) {
                        c.copy_from_slice(&f32_to_f16(mean + std * rng.normal()).to_le_bytes());
                    }
                }
            }
            Draw::Blocks { d, dmin } => {
                rng.fill(out);
                for b in out.chunks_exact_mut(self.ty.block_bytes()) {
                    set_scales(self.ty, b, d, dmin);
                }
            }
            Draw::Experts { n_expert } => {
                let k = out.len() / 4;
                let mut ids: Vec<i32> = Vec::with_capacity(k);
                while ids.len() < k {
                    let e = rng.below(n_expert) as i32;
                    if !ids.contains(&e) {
                        ids.push(e);
                    }
                }
                for (c, e) in out.chunks_exact_mut(4).zip(ids) {
                    c.copy_from_slice(&e.to_le_bytes());
                }
            }
        }
    }
}
