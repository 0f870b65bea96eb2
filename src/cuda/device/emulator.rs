//! The CPU kernel emulator engine (`NDT_CUDA_EMU=1`, see `crate::cuda::emu`): memory in host
//! pages, stream operations run at once, or recorded while a graph is captured and run again
//! on each replay.

use super::args::Args;
use super::engine::{Engine, Mem, check_entry};
use super::graph::{EmuGraph, Graph};
use super::memory::Ledger;
use crate::cuda::emu;
use crate::cuda::kernels::KernelFile;
use crate::cuda::profile::Stamp;
use crate::error::{Error, Result};
use cudarc::driver::{CudaStream, LaunchConfig};
use std::cell::RefCell;
use std::sync::Arc;

pub(super) struct EmuEngine {
    /// The operations of a graph being captured.
    recorded: RefCell<Vec<EmuOp>>,
    order: emu::Order,
    /// Worker threads per launch.
    workers: u32,
    /// The live allocations of the `Gpu` (a replay checks its memory operations against them).
    live: Arc<Ledger>,
}

/// One stream operation of an emulated graph.
pub(super) enum EmuOp {
    Launch {
        file: KernelFile,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: Vec<Vec<u8>>,
    },
    Copy {
        dst: u64,
        src: u64,
        bytes: usize,
    },
    Fill32 {
        dst: u64,
        n: usize,
        bits: u32,
    },
    Zero {
        dst: u64,
        bytes: usize,
    },
}

impl EmuEngine {
    pub(super) fn new(order: emu::Order, workers: u32, live: Arc<Ledger>) -> EmuEngine {
        EmuEngine {
            recorded: RefCell::new(Vec::new()),
            order,
            workers,
            live,
        }
    }

    /// Runs an operation now, or records it while a graph is captured.
    fn op(&self, op: EmuOp, capturing: bool) -> Result<()> {
        if capturing {
            self.recorded.borrow_mut().push(op);
            return Ok(());
        }
        self.run(&op)
    }

    /// Performs one operation. The memory operations are checked against the live allocations
    /// first: a graph replayed after one of its buffers was freed is an error, not a write to
    /// freed pages.
    fn run(&self, op: &EmuOp) -> Result<()> {
        match op {
            EmuOp::Launch {
                file,
                name,
                grid,
                block,
                args,
            } => {
                let a: Vec<&[u8]> = args.iter().map(|v| v.as_slice()).collect();
                emu::launch(file, name, *grid, *block, &a, self.order, self.workers)
            }
            EmuOp::Copy { dst, src, bytes } => {
                self.live.check(*dst, *bytes, "device copy (dst)")?;
                self.live.check(*src, *bytes, "device copy (src)")?;
                // SAFETY: both ranges lie inside live host allocations (checked above).
                unsafe { std::ptr::copy(*src as *const u8, *dst as *mut u8, *bytes) };
                Ok(())
            }
            EmuOp::Zero { dst, bytes } => {
                self.live.check(*dst, *bytes, "zeroing device memory")?;
                // SAFETY: the range lies inside a live host allocation (checked above).
                unsafe { std::ptr::write_bytes(*dst as *mut u8, 0, *bytes) };
                Ok(())
            }
            EmuOp::Fill32 { dst, n, bits } => {
                self.live
                    .check(*dst, n.saturating_mul(4), "filling device memory")?;
                if !dst.is_multiple_of(4) {
                    return Err(Error::Internal(format!(
                        "filling device memory: {dst:#x} is not 4-byte aligned"
                    )));
                }
                // SAFETY: the range lies inside a live host allocation (checked above), which
                // is page-aligned, and views of it are aligned to their element type.
                let d = unsafe { std::slice::from_raw_parts_mut(*dst as *mut u32, *n) };
                d.fill(*bits);
                Ok(())
            }
        }
    }
}

impl Engine for EmuEngine {
    fn is_emulated(&self) -> bool {
        true
    }

    fn stream(&self) -> Option<&Arc<CudaStream>> {
        None
    }

    fn load_all(&self) -> Result<()> {
        for f in crate::cuda::kernels::ALL {
            emu::prepare(f)?;
        }
        Ok(())
    }

    fn alloc(&self, bytes: usize, _context: &str) -> Result<Mem> {
        Ok(Mem::Host(emu::HostMem::new(bytes)?))
    }

    unsafe fn upload(&self, dst: u64, src: &[u8]) -> Result<()> {
        // SAFETY: the caller guarantees `src.len()` live bytes at `dst`.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    unsafe fn download(&self, src: u64, dst: &mut [u8]) -> Result<()> {
        // SAFETY: the caller guarantees `dst.len()` live bytes at `src`.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    unsafe fn copy(&self, dst: u64, src: u64, bytes: usize, capturing: bool) -> Result<()> {
        self.op(EmuOp::Copy { dst, src, bytes }, capturing)
    }

    unsafe fn zero(&self, dst: u64, bytes: usize, capturing: bool) -> Result<()> {
        self.op(EmuOp::Zero { dst, bytes }, capturing)
    }

    unsafe fn fill32(&self, dst: u64, n: usize, bits: u32, capturing: bool) -> Result<()> {
        self.op(EmuOp::Fill32 { dst, n, bits }, capturing)
    }

    fn prepare(
        &self,
        file: &KernelFile,
        name: &'static str,
        cfg: &LaunchConfig,
        _capturing: bool,
    ) -> Result<()> {
        check_entry(file, name)?;
        if cfg.shared_mem_bytes != 0 {
            return Err(Error::Internal(format!(
                "kernels/{}: {name} launched with dynamic shared memory, which the \
                 kernel emulator does not model",
                file.name
            )));
        }
        Ok(())
    }

    unsafe fn launch(
        &self,
        file: &KernelFile,
        name: &'static str,
        cfg: LaunchConfig,
        args: &Args,
        capturing: bool,
    ) -> Result<()> {
        let op = EmuOp::Launch {
            file: *file,
            name,
            grid: cfg.grid_dim,
            block: cfg.block_dim,
            args: args.0.iter().map(|a| a.bytes().to_vec()).collect(),
        };
        self.op(op, capturing)
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn used_mem(&self) -> Result<Option<usize>> {
        Ok(None)
    }

    fn begin_capture(&self) -> Result<()> {
        self.recorded.borrow_mut().clear();
        Ok(())
    }

    fn end_capture(&self) -> Result<Graph> {
        let ops = std::mem::take(&mut *self.recorded.borrow_mut());
        Ok(Graph::Emu(EmuGraph(ops)))
    }

    fn replay(&self, g: &Graph) -> Result<()> {
        match g {
            Graph::Emu(ops) => {
                for op in &ops.0 {
                    self.run(op)?;
                }
                Ok(())
            }
            Graph::Cuda(_) => Err(Error::Internal(
                "a CUDA graph replayed on the kernel emulator".into(),
            )),
        }
    }

    fn bracket(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<Stamp> {
        let t0 = std::time::Instant::now();
        f()?;
        Ok(Stamp::Secs(t0.elapsed().as_secs_f64()))
    }
}
