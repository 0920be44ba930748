//! `ds4rs selftest`: the GPU kernel checks, for a GPU machine that has no
//! Rust toolchain (the binary is built elsewhere and carried there).

#[derive(clap::Args)]
pub struct Args {
    /// GPU ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let gpu = cuda::Gpu::new(args.device)?;
    println!("device {}: {}", args.device, gpu.name());
    let checks = cuda::selftest::run(&gpu)?;
    let failed = checks.iter().filter(|c| !c.pass).count();
    for c in &checks {
        let verdict = if c.pass { "ok  " } else { "FAIL" };
        println!(
            "{verdict} {:<56} worst error / bound = {:.3e}",
            c.name, c.worst
        );
    }
    println!("{} passed, {failed} failed", checks.len() - failed);
    anyhow::ensure!(failed == 0, "{failed} GPU checks failed");
    Ok(())
}
