//! Choosing the backend (`--device auto|cpu|cuda`, SPEC §7): `cuda` opens the GPU backend or
//! fails with its message; `auto` tries it and falls back to the CPU reference with a one-line
//! notice; `cpu` is the reference backend on `threads` threads (0 = every core).

use crate::backend::Backend;
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::model::ModelConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// The GPU if one can be used, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Threads for the CPU backend: `threads`, or every core when 0.
pub fn cpu_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// A backend for `cfg` on `device`.
pub fn open(device: Device, cfg: &ModelConfig, threads: usize) -> Result<Box<dyn Backend>> {
    let cpu =
        || -> Box<dyn Backend> { Box::new(CpuBackend::new(cfg.clone(), cpu_threads(threads))) };
    if device != Device::Cpu && crate::cuda::emu::requested()?.is_some() {
        eprintln!(
            "note: NDT_CUDA_EMU is set: the CUDA kernels run on the CPU kernel emulator \
             (slow; for checking them)"
        );
    }
    match device {
        Device::Cpu => Ok(cpu()),
        Device::Cuda => crate::cuda::open_backend(cfg.clone()),
        Device::Auto => match crate::cuda::open_backend(cfg.clone()) {
            Ok(b) => Ok(b),
            Err(Error::Cuda(why)) => {
                eprintln!("note: no usable GPU ({why}); running on the CPU");
                Ok(cpu())
            }
            Err(e) => Err(e),
        },
    }
}
