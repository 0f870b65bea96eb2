//! `ndt bench`: times training steps and evaluation passes of a model config on a device
//! (`crate::bench`), and prints the report as text or as one JSON object (docs/bench.md).

use crate::bench::{self, Mode, Setup, Under};
use crate::cpu::CpuBackend;
use crate::cuda::Precision;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::train::device::{Device, cpu_threads};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model preset (small, paper) or a run-config TOML file.
    #[arg(long, default_value = "paper")]
    pub config: String,
    /// Backend: auto uses the GPU when one can be used, else the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// CPU threads (0 = every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// GEMM precision on the GPU: bf16 (tensor cores) or f32.
    #[arg(long, default_value = "bf16", value_parser = ["bf16", "f32"])]
    pub precision: String,
    /// Trials per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Time bins per trial.
    #[arg(long, default_value_t = 150)]
    pub bins: usize,
    /// Neurons of the session.
    #[arg(long, default_value_t = 1000)]
    pub neurons: usize,
    /// Masking scheme of the batch (forward uses causal attention).
    #[arg(long, default_value = "forward")]
    pub scheme: String,
    /// Timed training steps (after the warm-up).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first (kernel compilation, graph capture, caches).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed evaluation passes.
    #[arg(long, default_value_t = 20)]
    pub evals: usize,
    /// Print one JSON object (docs/bench.md) instead of text; with a FILE, write it there
    /// and print the text as well.
    #[arg(long, value_name = "FILE")]
    pub json: Option<Option<PathBuf>>,
    /// Allocate what a training step on this batch needs on the GPU, print it and run
    /// nothing (whether a batch size fits, without running the kernels).
    #[arg(long)]
    pub memory_only: bool,
    /// After the timed steps, launch a few training steps operation by operation with CUDA
    /// events around each, print the GPU time per kernel and per product shape, and write
    /// every operation's time to this CSV file (GPU only). With `--mode frozen-core`, the CSV
    /// holds the frozen-core step and `CSV` with `.full` before its extension the full one.
    #[arg(long, value_name = "CSV")]
    pub profile: Option<PathBuf>,
    /// What a timed step trains: `full` (every tensor), or `frozen-core`: the step of a
    /// frozen-core finetune (the session's stitchers and token train, the core is frozen)
    /// timed beside the full step, alternating, with the ratio of the two.
    #[arg(long, value_enum, default_value = "full")]
    pub mode: Mode,
}

/// The backend `a` asks for, opened for `cfg` (CUDA: with `settings`, in `a`'s precision).
fn open(a: &Args, cfg: &ModelConfig, settings: &crate::cuda::Settings) -> Result<Under> {
    let prec = if a.precision == "f32" {
        Precision::F32
    } else {
        Precision::Bf16
    };
    let cpu = || {
        let threads = cpu_threads(a.threads);
        Under::Cpu(Box::new(CpuBackend::new(cfg.clone(), threads)), threads)
    };
    let cuda = || -> Result<Under> {
        let settings = crate::cuda::Settings {
            precision: prec,
            ..*settings
        };
        Ok(Under::Cuda(Box::new(crate::cuda::open_cuda(
            cfg.clone(),
            &settings,
        )?)))
    };
    match a.device {
        Device::Cpu => Ok(cpu()),
        Device::Cuda => cuda(),
        Device::Auto => match cuda() {
            Ok(u) => Ok(u),
            Err(Error::Cuda(why)) => {
                eprintln!("note: no usable GPU ({why}); running on the CPU");
                Ok(cpu())
            }
            Err(e) => Err(e),
        },
    }
}

pub fn run(a: Args, cuda: &crate::cuda::Settings) -> Result<()> {
    let setup = Setup {
        config: a.config.clone(),
        batch_size: a.batch_size,
        bins: a.bins,
        neurons: a.neurons,
        scheme: a.scheme.clone(),
        steps: a.steps,
        warmup: a.warmup,
        evals: a.evals,
        mode: a.mode,
        memory_only: a.memory_only,
        profile: a.profile.clone(),
    };
    let plan = bench::plan(&setup, a.device)?;
    let mut under = open(&a, &plan.model, cuda)?;
    let report = bench::run(&plan, &mut under)?;
    match &a.json {
        Some(None) => println!("{}", report.json_text()?),
        Some(Some(path)) => {
            crate::fsutil::write_atomic(path, format!("{}\n", report.json_text()?).as_bytes())?;
            report.lines().iter().for_each(|l| println!("{l}"));
        }
        None => report.lines().iter().for_each(|l| println!("{l}")),
    }
    Ok(())
}
