//! The tensor table of a ds4 GGUF (model.md §1.4, gguf-and-quants.md §2.11)
//! for any `ModelConfig` and storage recipe, declared once and shared by
//! `synth` (what to draw) and `convert` (what to read), plus the streaming
//! write of such a file.
//!
//! Order (ds4's published files get theirs from a template we do not have,
//! and ds4 binds by name, so the order is ours; this one follows the
//! forward pass so a layer's tensors are contiguous in the file):
//! 1. globals: `token_embd`, `output_hc_base`, `output_hc_fn`,
//!    `output_hc_scale`, `output_norm`, `output` (the order of §2.11);
//! 2. for each layer `blk.{il}`: `hc_attn_{fn,scale,base}`, `attn_norm`,
//!    `attn_q_a`, `attn_q_a_norm`, `attn_q_b`, `attn_kv`, `attn_kv_a_norm`,
//!    `attn_sinks`, `attn_output_a`, `attn_output_b`, then for ratio ≠ 0
//!    `attn_compressor_{ape,kv,gate,norm}`, then for ratio 4
//!    `indexer.attn_q_b`, `indexer.proj`, `indexer_compressor_{ape,kv,gate,norm}`,
//!    then `hc_ffn_{fn,scale,base}`, `ffn_norm`, `ffn_gate_inp`,
//!    `exp_probs_b.bias` (top-k layers) or `ffn_gate_tid2eid` (hash layers),
//!    `ffn_{gate,up,down}_exps`, `ffn_{gate,up,down}_shexp`.
//!
//! Recipes (the 1-D tensors are F32 and the hash tables I32 in all of them):
//! * `q2`: ds4's published 2-bit file: IQ2_XXS routed gate/up, Q2_K routed
//!   down; Q8_0 attention projections, shared experts and output head; F16
//!   embedding, HC `fn`, router, compressor/indexer matrices and `ape`.
//! * `q4`: ds4's 4-bit file: Q4_K routed experts, the rest as `q2`.
//! * `q8_0`: `q2` with Q8_0 routed experts: ds4's exact non-routed layout and
//!   an 8-bit expert path, the closest quantized file to the f32 weights.
//! * `f16`: every matrix (experts and ds4's Q8_0 ones included) F16.
//! * `f32`: every float tensor F32, the lossless reference for the oracle.
//!
//! Routed IQ2_XXS/Q2_K/Q4_K need the input dim to be a multiple of 256 and
//! Q8_0 one of 32; `layout` refuses a shape that breaks that by name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use gguf::{GgmlType, GgufBuilder, MetaValue, TensorWriter};

use crate::config::{AttentionKind, ModelConfig};
use crate::error::{ModelError, Result};

/// How the tensors of a file are stored (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe {
    F32,
    F16,
    Q8_0,
    Q2,
    Q4,
}

impl Recipe {
    pub const ALL: [Recipe; 5] = [
        Recipe::F32,
        Recipe::F16,
        Recipe::Q8_0,
        Recipe::Q2,
        Recipe::Q4,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Recipe::F32 => "f32",
            Recipe::F16 => "f16",
            Recipe::Q8_0 => "q8_0",
            Recipe::Q2 => "q2",
            Recipe::Q4 => "q4",
        }
    }

    /// Storage of a matrix of family `fam` under this recipe.
    fn matrix_type(self, fam: Family) -> GgmlType {
        use GgmlType as T;
        match (self, fam) {
            (Recipe::F32, _) => T::F32,
            (Recipe::F16, _) => T::F16,
            (_, Family::Dense) => T::F16,
            (_, Family::Projection) => T::Q8_0,
            (Recipe::Q8_0, Family::RoutedGateUp | Family::RoutedDown) => T::Q8_0,
            (Recipe::Q2, Family::RoutedGateUp) => T::Iq2Xxs,
            (Recipe::Q2, Family::RoutedDown) => T::Q2K,
            (Recipe::Q4, Family::RoutedGateUp | Family::RoutedDown) => T::Q4K,
        }
    }
}

impl std::str::FromStr for Recipe {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Recipe::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown recipe {s:?} (expected f32, f16, q8_0, q2 or q4)"))
    }
}

impl std::fmt::Display for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The storage families of model.md §1.4 / gguf-and-quants.md §6.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// F16 in ds4's files: embedding, HC `fn`, router, compressor, indexer.
    Dense,
    /// Q8_0 in ds4's files: attention projections, shared experts, output.
    Projection,
    RoutedGateUp,
    RoutedDown,
}

/// What a tensor holds: how `synth` draws it. `gain` is the standard
/// deviation in units of `1/sqrt(fan_in)`, the scales the oracle's tiny
/// models use (tools/reference/oracle) so activations stay O(1) through
/// every layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    /// Token embedding rows (unit variance).
    Embedding,
    /// A matrix `y = W x`.
    Matrix { gain: f32 },
    /// Routed experts, one matrix per expert.
    Experts { gain: f32 },
    /// An RMSNorm weight (around 1).
    Norm,
    /// The HC `scale` triple / single (around 1).
    HcScale,
    /// The HC `base` bias.
    HcBase,
    /// Attention sinks, one logit per head.
    Sinks,
    /// The router's selection bias (`exp_probs_b`).
    RouterBias,
    /// A compressor's positional bias `ape`.
    Ape,
    /// A hash layer's token → experts table.
    HashTable,
}

/// Where a GGUF tensor comes from in DeepSeek's official checkpoint
/// (model.md §1.7, gguf-and-quants.md §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Official {
    /// One official tensor (its 2-D shape is the GGUF shape reversed).
    Tensor(String),
    /// `layers.{layer}.ffn.experts.{e}.w{part}.weight` for every expert `e`,
    /// stacked along the GGUF's third dim (`part` 1 gate, 2 down, 3 up).
    Experts { layer: usize, part: u8 },
}

impl Official {
    /// The official name of expert `e`'s matrix.
    pub fn expert_name(layer: usize, e: usize, part: u8) -> String {
        format!("layers.{layer}.ffn.experts.{e}.w{part}.weight")
    }
}

/// One row of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub ty: GgmlType,
    /// GGUF dims, `ne0` (the input dim of a matrix) first.
    pub dims: Vec<u64>,
    pub role: Role,
    pub official: Official,
}

impl TensorSpec {
    /// Input width (`ne0`).
    pub fn cols(&self) -> usize {
        self.dims[0] as usize
    }

    /// Rows over all experts: every dim but `ne0`, multiplied.
    pub fn rows(&self) -> usize {
        self.dims[1..].iter().product::<u64>() as usize
    }

    pub fn row_bytes(&self) -> usize {
        self.cols() / self.ty.block_elems() * self.ty.block_bytes()
    }

    pub fn n_bytes(&self) -> u64 {
        self.rows() as u64 * self.row_bytes() as u64
    }
}

/// The full tensor table of `cfg` stored as `recipe`, in file order.
pub fn layout(cfg: &ModelConfig, recipe: Recipe) -> Result<Vec<TensorSpec>> {
    let mut t = Table {
        recipe,
        specs: Vec::new(),
    };
    let d = cfg.n_embd;
    let (hc, mix) = (cfg.hc_dim(), cfg.hc_mix());

    t.matrix(
        "token_embd.weight",
        "embed.weight",
        Family::Dense,
        Role::Embedding,
        d,
        cfg.n_vocab,
    );
    t.small(
        "output_hc_base.weight",
        "hc_head_base",
        Role::HcBase,
        cfg.n_hc,
    );
    t.matrix(
        "output_hc_fn.weight",
        "hc_head_fn",
        Family::Dense,
        Role::Matrix { gain: 1.0 },
        hc,
        cfg.n_hc,
    );
    t.small("output_hc_scale.weight", "hc_head_scale", Role::HcScale, 1);
    t.small("output_norm.weight", "norm.weight", Role::Norm, d);
    t.matrix(
        "output.weight",
        "head.weight",
        Family::Projection,
        Role::Matrix { gain: 2.0 },
        d,
        cfg.n_vocab,
    );

    for il in 0..cfg.n_layer {
        t.layer(cfg, il, hc, mix);
    }

    for s in &t.specs {
        let be = s.ty.block_elems();
        if !s.cols().is_multiple_of(be) {
            return Err(ModelError::Layout {
                name: s.name.clone(),
                ty: s.ty,
                msg: format!(
                    "its input dim {} is not a multiple of the {be}-element block (recipe {recipe})",
                    s.cols()
                ),
            });
        }
    }
    Ok(t.specs)
}

struct Table {
    recipe: Recipe,
    specs: Vec<TensorSpec>,
}

impl Table {
    fn push(&mut self, name: String, ty: GgmlType, dims: &[usize], role: Role, official: Official) {
        self.specs.push(TensorSpec {
            name,
            ty,
            dims: dims.iter().map(|&x| x as u64).collect(),
            role,
            official,
        });
    }

    /// A matrix of `rows` outputs over `cols` inputs (GGUF `[cols, rows]`).
    fn matrix(&mut self, name: &str, off: &str, fam: Family, role: Role, cols: usize, rows: usize) {
        let ty = self.recipe.matrix_type(fam);
        self.push(
            name.into(),
            ty,
            &[cols, rows],
            role,
            Official::Tensor(off.into()),
        );
    }

    /// A 1-D F32 tensor.
    fn small(&mut self, name: &str, off: &str, role: Role, n: usize) {
        self.push(
            name.into(),
            GgmlType::F32,
            &[n],
            role,
            Official::Tensor(off.into()),
        );
    }

    /// A compressor (attention.md §8): `width` = 2·d for ratio 4, else d.
    fn compressor(&mut self, g: &str, o: &str, ratio: usize, d: usize, n_embd: usize) {
        let width = if ratio == 4 { 2 * d } else { d };
        let ape_ty = match self.recipe {
            Recipe::F32 => GgmlType::F32,
            _ => GgmlType::F16,
        };
        self.push(
            format!("{g}_ape.weight"),
            ape_ty,
            &[width, ratio],
            Role::Ape,
            Official::Tensor(format!("{o}.ape")),
        );
        for (gs, os) in [("kv", "wkv"), ("gate", "wgate")] {
            self.matrix(
                &format!("{g}_{gs}.weight"),
                &format!("{o}.{os}.weight"),
                Family::Dense,
                Role::Matrix { gain: 1.0 },
                n_embd,
                width,
            );
        }
        self.small(
            &format!("{g}_norm.weight"),
            &format!("{o}.norm.weight"),
            Role::Norm,
            d,
        );
    }

    fn hc(&mut self, g: &str, o: &str, hc: usize, mix: usize) {
        self.matrix(
            &format!("{g}_fn.weight"),
            &format!("{o}_fn"),
            Family::Dense,
            Role::Matrix { gain: 1.0 },
            hc,
            mix,
        );
        self.small(
            &format!("{g}_scale.weight"),
            &format!("{o}_scale"),
            Role::HcScale,
            3,
        );
        self.small(
            &format!("{g}_base.weight"),
            &format!("{o}_base"),
            Role::HcBase,
            mix,
        );
    }

    fn layer(&mut self, cfg: &ModelConfig, il: usize, hc: usize, mix: usize) {
        let g = |s: &str| format!("blk.{il}.{s}");
        let o = |s: &str| format!("layers.{il}.{s}");
        let d = cfg.n_embd;
        let proj = |t: &mut Table, gs: &str, os: &str, gain: f32, cols: usize, rows: usize| {
            t.matrix(
                &g(gs),
                &o(os),
                Family::Projection,
                Role::Matrix { gain },
                cols,
                rows,
            )
        };

        self.hc(&g("hc_attn"), &o("hc_attn"), hc, mix);
        self.small(
            &g("attn_norm.weight"),
            &o("attn_norm.weight"),
            Role::Norm,
            d,
        );
        proj(
            self,
            "attn_q_a.weight",
            "attn.wq_a.weight",
            1.0,
            d,
            cfg.q_lora_rank,
        );
        self.small(
            &g("attn_q_a_norm.weight"),
            &o("attn.q_norm.weight"),
            Role::Norm,
            cfg.q_lora_rank,
        );
        proj(
            self,
            "attn_q_b.weight",
            "attn.wq_b.weight",
            1.0,
            cfg.q_lora_rank,
            cfg.n_head * cfg.head_dim,
        );
        proj(
            self,
            "attn_kv.weight",
            "attn.wkv.weight",
            1.0,
            d,
            cfg.head_dim,
        );
        self.small(
            &g("attn_kv_a_norm.weight"),
            &o("attn.kv_norm.weight"),
            Role::Norm,
            cfg.head_dim,
        );
        self.small(
            &g("attn_sinks.weight"),
            &o("attn.attn_sink"),
            Role::Sinks,
            cfg.n_head,
        );
        proj(
            self,
            "attn_output_a.weight",
            "attn.wo_a.weight",
            1.0,
            cfg.n_head / cfg.o_groups * cfg.head_dim,
            cfg.o_groups * cfg.o_lora_rank,
        );
        proj(
            self,
            "attn_output_b.weight",
            "attn.wo_b.weight",
            2.0,
            cfg.o_groups * cfg.o_lora_rank,
            d,
        );

        let ratio = cfg.compress_ratios[il];
        let kind = cfg.attention_kind(il);
        if kind != AttentionKind::Window {
            self.compressor(
                &g("attn_compressor"),
                &o("attn.compressor"),
                ratio,
                cfg.head_dim,
                d,
            );
        }
        if kind == AttentionKind::Sparse {
            self.matrix(
                &g("indexer.attn_q_b.weight"),
                &o("attn.indexer.wq_b.weight"),
                Family::Dense,
                Role::Matrix { gain: 1.0 },
                cfg.q_lora_rank,
                cfg.indexer_heads * cfg.indexer_head_dim,
            );
            self.matrix(
                &g("indexer.proj.weight"),
                &o("attn.indexer.weights_proj.weight"),
                Family::Dense,
                Role::Matrix { gain: 1.0 },
                d,
                cfg.indexer_heads,
            );
            self.compressor(
                &g("indexer_compressor"),
                &o("attn.indexer.compressor"),
                ratio,
                cfg.indexer_head_dim,
                d,
            );
        }

        self.hc(&g("hc_ffn"), &o("hc_ffn"), hc, mix);
        self.small(&g("ffn_norm.weight"), &o("ffn_norm.weight"), Role::Norm, d);
        self.matrix(
            &g("ffn_gate_inp.weight"),
            &o("ffn.gate.weight"),
            Family::Dense,
            Role::Matrix { gain: 1.0 },
            d,
            cfg.n_expert,
        );
        if cfg.is_hash_layer(il) {
            self.push(
                g("ffn_gate_tid2eid.weight"),
                GgmlType::I32,
                &[cfg.n_expert_used, cfg.n_vocab],
                Role::HashTable,
                Official::Tensor(o("ffn.gate.tid2eid")),
            );
        } else {
            self.small(
                &g("exp_probs_b.bias"),
                &o("ffn.gate.bias"),
                Role::RouterBias,
                cfg.n_expert,
            );
        }
        for (gs, part, fam, gain, cols, rows) in [
            ("gate", 1, Family::RoutedGateUp, 4.0, d, cfg.n_ff_exp),
            ("up", 3, Family::RoutedGateUp, 4.0, d, cfg.n_ff_exp),
            ("down", 2, Family::RoutedDown, 0.15, cfg.n_ff_exp, d),
        ] {
            self.push(
                g(&format!("ffn_{gs}_exps.weight")),
                self.recipe.matrix_type(fam),
                &[cols, rows, cfg.n_expert],
                Role::Experts { gain },
                Official::Experts { layer: il, part },
            );
        }
        proj(
            self,
            "ffn_gate_shexp.weight",
            "ffn.shared_experts.w1.weight",
            2.0,
            d,
            cfg.n_ff_exp,
        );
        proj(
            self,
            "ffn_up_shexp.weight",
            "ffn.shared_experts.w3.weight",
            2.0,
            d,
            cfg.n_ff_exp,
        );
        proj(
            self,
            "ffn_down_shexp.weight",
            "ffn.shared_experts.w2.weight",
            0.4,
            cfg.n_ff_exp,
            d,
        );
    }
}

/// The builder of a file with `metadata` and the tensors of `specs`.
pub fn builder(metadata: Vec<(String, MetaValue)>, specs: &[TensorSpec]) -> Result<GgufBuilder> {
    let mut b = GgufBuilder::new();
    for (k, v) in metadata {
        b.add_metadata(k, v)?;
    }
    for s in specs {
        b.add_tensor(s.name.clone(), s.ty, &s.dims)?;
    }
    Ok(b)
}

/// Writes a GGUF to `path` through `path.partial`, renamed at the end so a
/// file at `path` is always complete; on any error the partial file is
/// removed. `fill` receives the tensor writer and writes every tensor in
/// declaration order.
pub fn write_file<F>(path: &Path, b: GgufBuilder, fill: F) -> Result<()>
where
    F: FnOnce(&mut TensorWriter<BufWriter<File>>) -> Result<()>,
{
    let partial = partial_path(path);
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| ModelError::Io { path, source }
    };
    let run = || -> Result<()> {
        let f = File::create(&partial).map_err(io(&partial))?;
        let mut tw = b.begin(BufWriter::with_capacity(8 << 20, f))?;
        fill(&mut tw)?;
        let w = tw.finish()?;
        let f = w.into_inner().map_err(|e| ModelError::Io {
            path: partial.display().to_string(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io(&partial))?;
        std::fs::rename(&partial, path).map_err(io(path))
    };
    let r = run();
    if r.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    r
}

fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Writes `data` to the current tensor in 16 MiB chunks, reporting each to
/// `progress` (bytes), so a big tensor moves the progress bar as it goes.
pub fn write_chunks<W: Write>(
    tw: &mut TensorWriter<W>,
    data: &[u8],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    for c in data.chunks(16 << 20) {
        tw.write_data(c)?;
        progress(c.len() as u64);
    }
    Ok(())
}
