//! Compiles `kernels/*.cu` into one fatbin: sm_90a machine code for Hopper
//! plus compute_90 PTX that the driver can JIT for any newer GPU. nvcc is
//! found through `NVCC`, then `PATH`, then `/usr/local/cuda`, then the PyPI
//! package `nvidia-cuda-nvcc` (which CI installs), so a machine without the
//! CUDA toolkit still compiles every kernel.

use std::path::{Path, PathBuf};
use std::process::Command;

fn python_nvcc() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import nvidia, os; print(next(iter(nvidia.__path__)))",
        ])
        .output()
        .ok()?;
    let base = String::from_utf8(out.stdout).ok()?;
    let p = Path::new(base.trim()).join("cu13/bin/nvcc");
    p.exists().then_some(p)
}

fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NVCC") {
        return Some(PathBuf::from(p));
    }
    let on_path = Command::new("nvcc").arg("--version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return Some(PathBuf::from("nvcc"));
    }
    let local = Path::new("/usr/local/cuda/bin/nvcc");
    if local.exists() {
        return Some(local.to_path_buf());
    }
    python_nvcc()
}

fn main() {
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-changed=kernels");
    let nvcc = find_nvcc().unwrap_or_else(|| {
        panic!(
            "nvcc not found: set NVCC, put the CUDA toolkit on PATH, or \
             `pip install nvidia-cuda-nvcc==13.0.88`"
        )
    });
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("ds4.fatbin");
    let status = Command::new(&nvcc)
        .args([
            "-fatbin",
            "-O3",
            "-std=c++17",
            "-gencode=arch=compute_90a,code=sm_90a",
            "-gencode=arch=compute_90,code=compute_90",
            "-o",
        ])
        .arg(&out)
        .arg("kernels/ds4.cu")
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", nvcc.display()));
    assert!(
        status.success(),
        "{} failed on kernels/ds4.cu",
        nvcc.display()
    );
}
