//! The engine interface: what runs the kernels and owns the memory behind a `Gpu`. Two engines
//! implement it, the CUDA driver (`driver.rs`) and the CPU kernel emulator (`emulator.rs`);
//! `Gpu` holds one as `Box<dyn Engine>` and calls it at this one dispatch point, so no other
//! file of the device layer asks which engine it runs on.
//!
//! The interface works in bytes and raw addresses; `Gpu` (in `memory.rs`) checks every address
//! against its live allocations before it calls an `unsafe` method here.

use super::args::Args;
use super::graph::Graph;
use crate::cuda::emu;
use crate::cuda::kernels::KernelFile;
use crate::cuda::profile::Stamp;
use crate::error::{Error, Result};
use cudarc::driver::{CudaSlice, CudaStream, LaunchConfig};
use std::sync::Arc;

/// Where an allocation lives: on the GPU, or in host pages for the kernel emulator.
pub(super) enum Mem {
    Cuda(CudaSlice<u8>),
    Host(emu::HostMem),
}

/// What runs the kernels of a `Gpu`. `capturing` tells a method that a graph is being captured.
pub(super) trait Engine: Send {
    /// Whether this is the kernel emulator.
    fn is_emulated(&self) -> bool;
    /// The CUDA stream, if the engine has one.
    fn stream(&self) -> Option<&Arc<CudaStream>>;
    /// Compiles and loads every kernel now.
    fn load_all(&self) -> Result<()>;
    /// A zeroed allocation of `bytes` (> 0); `context` ends an error message ("on DEVICE ...").
    fn alloc(&self, bytes: usize, context: &str) -> Result<Mem>;
    /// Copies `src` to device address `dst`; `src` may be reused on return.
    ///
    /// # Safety
    /// `dst .. dst + src.len()` lies inside a live allocation of this engine.
    unsafe fn upload(&self, dst: u64, src: &[u8]) -> Result<()>;
    /// Copies `dst.len()` bytes from device address `src` into `dst`, waiting for the stream.
    ///
    /// # Safety
    /// `src .. src + dst.len()` lies inside a live allocation of this engine.
    unsafe fn download(&self, src: u64, dst: &mut [u8]) -> Result<()>;
    /// Enqueues (or records, while capturing) a copy of `bytes` from `src` to `dst`.
    ///
    /// # Safety
    /// Both ranges lie inside live allocations of this engine, and stay live until the copy
    /// and every replay of a graph that records it have run.
    unsafe fn copy(&self, dst: u64, src: u64, bytes: usize, capturing: bool) -> Result<()>;
    /// Enqueues (or records) setting `bytes` bytes at `dst` to zero. # Safety: as `copy`.
    unsafe fn zero(&self, dst: u64, bytes: usize, capturing: bool) -> Result<()>;
    /// Enqueues (or records) filling `n` 32-bit words at `dst` with `bits`. # Safety: as `copy`.
    unsafe fn fill32(&self, dst: u64, n: usize, bits: u32, capturing: bool) -> Result<()>;
    /// Everything a launch needs before it is enqueued (a module load, a check of the entry and
    /// the configuration); outside the timed part of a launch.
    fn prepare(
        &self,
        file: &KernelFile,
        name: &'static str,
        cfg: &LaunchConfig,
        capturing: bool,
    ) -> Result<()>;
    /// Enqueues (or records) a launch prepared by `prepare`.
    ///
    /// # Safety
    /// As `Gpu::launch`.
    unsafe fn launch(
        &self,
        file: &KernelFile,
        name: &'static str,
        cfg: LaunchConfig,
        args: &Args,
        capturing: bool,
    ) -> Result<()>;
    /// Waits until the stream is idle; reports asynchronous faults.
    fn sync(&self) -> Result<()>;
    /// Device-wide used memory in bytes, if the engine can tell.
    fn used_mem(&self) -> Result<Option<usize>>;
    /// Starts capturing the stream's operations into a graph.
    fn begin_capture(&self) -> Result<()>;
    /// Ends the capture begun by `begin_capture` (whether or not the enqueueing succeeded).
    fn end_capture(&self) -> Result<Graph>;
    /// Replays a graph made by this engine.
    fn replay(&self, g: &Graph) -> Result<()>;
    /// Runs `f` and stamps its duration (events on a GPU, wall time on the emulator).
    fn bracket(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<Stamp>;
}

/// Refuses a kernel not in `file`'s entry list.
pub(super) fn check_entry(file: &KernelFile, name: &str) -> Result<()> {
    if !file.entries.contains(&name) {
        return Err(Error::Internal(format!(
            "kernels/{}: no kernel '{name}' in its entry list",
            file.name
        )));
    }
    Ok(())
}
