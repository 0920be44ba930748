//! Device context, the loaded kernels, and one safe entry point per kernel.
//! The `unsafe` here is confined to kernel launches, whose argument lists
//! are checked against the kernel signatures in `kernels/ds4.cu` by the
//! shape checks in front of each launch.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use crate::error::{CudaError, Result};
use crate::FATBIN;

/// Warps per block of the row-per-warp kernels.
const WARPS: u32 = 8;

fn shape(what: &'static str, ok: bool, expected: String, got: String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(CudaError::Shape {
            what,
            expected,
            got,
        })
    }
}

fn warp_grid(items: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((items as u32).div_ceil(WARPS), 1, 1),
        block_dim: (32 * WARPS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The kernels `Gpu::new` loads, by their `extern "C"` names.
pub const KERNELS: [&str; 3] = ["quantize_q8_0_act", "matvec_q8_0", "matvec_f16"];

/// One GPU with the ds4rs kernels loaded.
pub struct Gpu {
    pub stream: Arc<CudaStream>,
    name: String,
    quantize_q8_0_act: CudaFunction,
    matvec_q8_0: CudaFunction,
    matvec_f16: CudaFunction,
}

/// A Q8_0-quantized activation on the device: int8 codes and f32 scales
/// (ds4's layout, gguf-and-quants.md §5.2).
pub struct DeviceActQ8_0 {
    pub len: usize,
    pub qs: CudaSlice<i8>,
    pub scales: CudaSlice<f32>,
}

impl Gpu {
    /// Opens GPU `ordinal` and loads the kernels.
    pub fn new(ordinal: usize) -> Result<Self> {
        // SAFETY: only probes whether the driver library can be loaded.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(CudaError::NoDriver);
        }
        let ctx = CudaContext::new(ordinal)?;
        let name = ctx.name()?;
        let module = ctx.load_module(Ptx::from_binary(FATBIN.to_vec()))?;
        let [quantize_q8_0_act, matvec_q8_0, matvec_f16] = KERNELS.map(|k| module.load_function(k));
        Ok(Gpu {
            stream: ctx.default_stream(),
            name,
            quantize_q8_0_act: quantize_q8_0_act?,
            matvec_q8_0: matvec_q8_0?,
            matvec_f16: matvec_f16?,
        })
    }

    /// The card's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// ds4's Q8_0 activation of `x` (`n` values, padded with zeros to 32).
    pub fn quantize_q8_0_act(&self, x: &CudaSlice<f32>) -> Result<DeviceActQ8_0> {
        let n = x.len();
        let nb = n.div_ceil(32);
        let mut qs = self.stream.alloc_zeros::<i8>(nb * 32)?;
        let mut scales = self.stream.alloc_zeros::<f32>(nb)?;
        let n_i = n as i32;
        let mut b = self.stream.launch_builder(&self.quantize_q8_0_act);
        b.arg(x).arg(&n_i).arg(&mut qs).arg(&mut scales);
        // SAFETY: quantize_q8_0_act(const float*, int, int8_t*, float*); qs
        // holds nb*32 codes and scales nb values, as the kernel writes.
        unsafe { b.launch(warp_grid(nb)) }?;
        Ok(DeviceActQ8_0 { len: n, qs, scales })
    }

    /// `y = W x` for a Q8_0 matrix of `rows x cols` (raw GGUF bytes).
    pub fn matvec_q8_0(
        &self,
        w: &CudaSlice<u8>,
        rows: usize,
        cols: usize,
        x: &DeviceActQ8_0,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        shape(
            "Q8_0 columns",
            cols.is_multiple_of(32) && x.len == cols,
            format!("{} (multiple of 32)", x.len),
            cols.to_string(),
        )?;
        shape(
            "Q8_0 weight bytes",
            w.len() == rows * cols / 32 * 34,
            (rows * cols / 32 * 34).to_string(),
            w.len().to_string(),
        )?;
        shape(
            "output rows",
            y.len() == rows,
            rows.to_string(),
            y.len().to_string(),
        )?;
        let (r, c) = (rows as i32, cols as i32);
        let mut b = self.stream.launch_builder(&self.matvec_q8_0);
        b.arg(w).arg(&r).arg(&c).arg(&x.qs).arg(&x.scales).arg(y);
        // SAFETY: matvec_q8_0(const uint8_t*, int, int, const int8_t*,
        // const float*, float*); sizes checked above.
        unsafe { b.launch(warp_grid(rows)) }?;
        Ok(())
    }

    /// `y = W x` for an F16 matrix of `rows x cols` (raw GGUF bytes).
    pub fn matvec_f16(
        &self,
        w: &CudaSlice<u8>,
        rows: usize,
        cols: usize,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
    ) -> Result<()> {
        shape(
            "F16 weight bytes",
            w.len() == rows * cols * 2,
            (rows * cols * 2).to_string(),
            w.len().to_string(),
        )?;
        shape(
            "input length",
            x.len() == cols,
            cols.to_string(),
            x.len().to_string(),
        )?;
        shape(
            "output rows",
            y.len() == rows,
            rows.to_string(),
            y.len().to_string(),
        )?;
        let (r, c) = (rows as i32, cols as i32);
        let mut b = self.stream.launch_builder(&self.matvec_f16);
        b.arg(w).arg(&r).arg(&c).arg(x).arg(y);
        // SAFETY: matvec_f16(const uint16_t*, int, int, const float*, float*);
        // the byte buffer holds rows*cols halves, checked above.
        unsafe { b.launch(warp_grid(rows)) }?;
        Ok(())
    }
}
