//! Graphs: a training step captured once and replayed (a CUDA graph, or the emulator's list of
//! recorded operations).

use super::Gpu;
use super::emulator::EmuOp;
use crate::error::Result;
use cudarc::driver::CudaGraph;

/// A captured training step, replayed with `Gpu::replay`.
pub enum Graph {
    Cuda(CudaGraph),
    Emu(EmuGraph),
}

/// The recorded operations of an emulated graph.
pub struct EmuGraph(pub(super) Vec<EmuOp>);

impl Gpu {
    /// Captures the stream operations `enqueue` issues into a graph (allocation and first
    /// module loads are refused meanwhile). The capture ends whatever `enqueue` returns.
    ///
    /// Every launch `enqueue` issues is replayed by `replay` with the same arguments: the
    /// `unsafe` contract of `Gpu::launch` holds for each replay, so the buffers a graph's
    /// launches address must outlive the graph's last replay.
    pub fn capture(&self, enqueue: impl FnOnce() -> Result<()>) -> Result<Graph> {
        self.engine.begin_capture()?;
        self.capturing.set(true);
        let enqueued = enqueue();
        self.capturing.set(false);
        let graph = self.engine.end_capture();
        enqueued?;
        graph
    }

    /// Replays a graph made by `capture` on this device.
    pub fn replay(&self, g: &Graph) -> Result<()> {
        self.engine.replay(g)
    }
}
