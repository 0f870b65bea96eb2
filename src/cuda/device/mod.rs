//! The GPU handle: one device behind an engine (the CUDA driver, or the CPU kernel emulator),
//! device memory as typed `(pointer, length)` views of owned buffers, graphs, and timing.
//!
//! Launchers take `Dev<T>` views rather than borrowed slices: a training step is captured once
//! as a CUDA graph and replayed, so every buffer lives in long-lived allocations (`Buffer<T>`)
//! owned by the backend and kernels address sub-ranges of them. `memory.rs` says what this
//! guarantees. The files: `engine.rs` (the engine interface), `driver.rs` (CUDA), `emulator.rs`
//! (the kernel emulator), `view.rs` (`Dev`, `Tensor`), `memory.rs` (buffers, copies, the live
//! allocations), `graph.rs` (capture, replay), `timing.rs` (profiling), `args.rs` (kernel
//! arguments).

mod args;
mod driver;
mod emulator;
mod engine;
mod graph;
mod memory;
mod timing;
mod view;

pub use args::{ArgValue, Args, grid_1d};
pub use graph::{EmuGraph, Graph};
pub use memory::{Buffer, MemCounter, TensorBuf};
pub use view::{Dev, Tensor};

use super::emu;
use super::kernels::KernelFile;
use super::nvrtc::Arch;
use super::settings::{GemmSwitches, Settings};
use crate::error::{Error, Result};
use cudarc::driver::{CudaStream, LaunchConfig, result};
use engine::Engine;
use memory::Ledger;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// What `available()` reports about a device.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability, e.g. (8, 6).
    pub arch: (u32, u32),
    pub total_mem: usize,
    pub multiprocessors: u32,
    /// Driver API version, e.g. 12040 for 12.4.
    pub driver_version: i32,
    /// NVRTC version, e.g. (12, 9).
    pub nvrtc_version: (i32, i32),
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cuda:{} {} (sm_{}{}, {} SMs, {:.1} GiB, driver {}.{}, NVRTC {}.{})",
            self.ordinal,
            self.name,
            self.arch.0,
            self.arch.1,
            self.multiprocessors,
            self.total_mem as f64 / (1u64 << 30) as f64,
            self.driver_version / 1000,
            (self.driver_version % 1000) / 10,
            self.nvrtc_version.0,
            self.nvrtc_version.1
        )
    }
}

/// Converts a driver error into `Error::Cuda` with what was being done.
pub fn drv<T>(r: std::result::Result<T, result::DriverError>, what: &str) -> Result<T> {
    r.map_err(|e| Error::Cuda(format!("{what}: {e}")))
}

/// One GPU: context, working stream, compiled kernel modules; or the kernel emulator.
pub struct Gpu {
    engine: Box<dyn Engine>,
    pub info: DeviceInfo,
    pub arch: Arch,
    /// The live allocations and the bytes allocated.
    ledger: Arc<Ledger>,
    /// Whether the stream is being captured into a graph (no allocation, no sync allowed).
    capturing: Cell<bool>,
    /// The operation times being recorded (`profile_start`), if any.
    profile: RefCell<Option<super::profile::Recorder>>,
    /// How the bf16 products load their operands.
    gemm: GemmSwitches,
}

impl Gpu {
    /// Opens the device of `settings`, or the kernel emulator when it asks for one. Every
    /// failure (no driver, no device, no NVRTC, an unusable driver) is an `Error::Cuda` saying
    /// what is missing.
    pub fn open(settings: &Settings) -> Result<Gpu> {
        if let Some(order) = settings.emulator {
            let mut g = Gpu::emulated_on(order, settings.emulator_workers());
            g.gemm = settings.gemm;
            return Ok(g);
        }
        let (engine, info) = driver::CudaEngine::open(settings.ordinal)?;
        Ok(Gpu {
            engine: Box::new(engine),
            arch: Arch::new(info.arch.0, info.arch.1),
            info,
            ledger: Arc::new(Ledger::default()),
            capturing: Cell::new(false),
            profile: RefCell::new(None),
            gemm: settings.gemm,
        })
    }

    /// The CPU kernel emulator as a device (see `emu`), running the threads of a block in
    /// `order` between barriers, on one worker thread per core: named "kernel emulator (CPU)",
    /// sm_86 by convention, memory limited only by the host.
    pub fn emulated(order: emu::Order) -> Gpu {
        Gpu::emulated_on(order, Settings::default().emulator_workers())
    }

    /// `emulated`, on `workers` threads per launch.
    pub fn emulated_on(order: emu::Order, workers: u32) -> Gpu {
        let ledger = Arc::new(Ledger::default());
        Gpu {
            engine: Box::new(emulator::EmuEngine::new(order, workers, ledger.clone())),
            info: DeviceInfo {
                ordinal: 0,
                name: "kernel emulator (CPU)".into(),
                arch: (8, 6),
                total_mem: 0,
                multiprocessors: 1,
                driver_version: 0,
                nvrtc_version: (0, 0),
            },
            arch: Arch::new(8, 6),
            ledger,
            capturing: Cell::new(false),
            profile: RefCell::new(None),
            gemm: GemmSwitches::default(),
        }
    }

    /// How the bf16 products load their operands (`Settings::gemm`).
    pub fn gemm_switches(&self) -> GemmSwitches {
        self.gemm
    }

    /// Whether this is the kernel emulator rather than a GPU.
    pub fn is_emulated(&self) -> bool {
        self.engine.is_emulated()
    }

    /// The CUDA stream (for timing with events); an error on the emulator.
    pub fn stream(&self) -> Result<&Arc<CudaStream>> {
        self.engine.stream().ok_or_else(|| {
            Error::Cuda("the CUDA stream is not available on the kernel emulator".into())
        })
    }

    /// Compiles and loads every kernel of every file now (so that nothing is compiled or
    /// looked up while a graph is being captured).
    pub fn load_all(&self) -> Result<()> {
        self.engine.load_all()
    }

    /// Waits until the stream is idle; reports asynchronous kernel faults.
    pub fn sync(&self) -> Result<()> {
        self.engine.sync()
    }

    /// Launches `name` of `file` with `cfg` and the arguments `args`.
    ///
    /// # Safety
    /// `args` must match the kernel's C signature in type and order, and every pointer must
    /// address live device memory of this `Gpu` of the extent the kernel touches for `cfg` —
    /// the buffers behind the `Dev` views passed must not have been dropped — for this launch
    /// and, when it is captured into a graph, for every replay of that graph.
    pub unsafe fn launch(
        &self,
        file: &KernelFile,
        name: &'static str,
        cfg: LaunchConfig,
        args: &Args,
    ) -> Result<()> {
        let capturing = self.capturing.get();
        self.engine.prepare(file, name, &cfg, capturing)?;
        self.timed(file.name, name, cfg.grid_dim, cfg.block_dim, || {
            // SAFETY: the caller's contract above is the engine's.
            unsafe { self.engine.launch(file, name, cfg, args, capturing) }
        })
    }
}

#[cfg(test)]
mod tests;
