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

/// A backend for `cfg` on `device` (CUDA: with `cuda`).
pub fn open(
    device: Device,
    cfg: &ModelConfig,
    threads: usize,
    cuda: &crate::cuda::Settings,
) -> Result<Box<dyn Backend>> {
    let cpu =
        || -> Box<dyn Backend> { Box::new(CpuBackend::new(cfg.clone(), cpu_threads(threads))) };
    if device != Device::Cpu && cuda.emulator.is_some() {
        eprintln!(
            "note: NDT_CUDA_EMU is set: the CUDA kernels run on the CPU kernel emulator \
             (slow; for checking them)"
        );
    }
    match device {
        Device::Cpu => Ok(cpu()),
        Device::Cuda => crate::cuda::open_backend(cfg.clone(), cuda),
        Device::Auto => match crate::cuda::open_backend(cfg.clone(), cuda) {
            Ok(b) => Ok(b),
            Err(Error::Cuda(why)) => {
                eprintln!("note: no usable GPU ({why}); running on the CPU");
                Ok(cpu())
            }
            Err(e) => Err(e),
        },
    }
}

/// The backend a worker keeps from one job to the next: a job whose model config equals the
/// previous job's gets the same backend back (for CUDA: its context, compiled modules,
/// workspace and captured graphs; for the CPU: its thread pool and workspace), reset to a fresh
/// backend's state (every parameter trainable, zero moments; the trainer sets the parameters).
/// Another config opens a new backend on the same device choice.
pub struct Worker {
    pub device: Device,
    pub threads: usize,
    pub cuda: crate::cuda::Settings,
    kept: Option<(ModelConfig, Box<dyn Backend>)>,
}

impl Worker {
    pub fn new(device: Device, threads: usize, cuda: crate::cuda::Settings) -> Worker {
        Worker {
            device,
            threads,
            cuda,
            kept: None,
        }
    }

    /// A backend for `cfg`, as a newly opened one behaves.
    pub fn backend(&mut self, cfg: &ModelConfig) -> Result<&mut dyn Backend> {
        let reuse = matches!(&self.kept, Some((c, _)) if c == cfg);
        if reuse {
            if let Some((_, b)) = self.kept.as_mut() {
                let n = crate::model::ParamTable::new(cfg).total;
                let zeros = vec![0f32; n];
                b.set_trainable(&vec![1u8; n])?;
                b.set_moments(&zeros, &zeros)?;
            }
        } else {
            // The old backend goes first, so two never hold device memory at once.
            self.kept = None;
            let b = open(self.device, cfg, self.threads, &self.cuda)?;
            self.kept = Some((cfg.clone(), b));
        }
        match self.kept.as_mut() {
            Some((_, b)) => Ok(b.as_mut()),
            None => Err(crate::error::internal("worker without a backend")),
        }
    }
}
