//! Per-operation timing of the stream (`ndt bench --profile`): with profiling on, every kernel
//! launch, copy and memset is bracketed by two CUDA events, so a training step launched
//! operation by operation (not replayed as a graph) yields the GPU time of each. On the kernel
//! emulator the same records hold the CPU time of each emulated operation, which says nothing
//! about a GPU but runs the same code. Nothing is recorded while a graph is being captured.

use super::device::drv;
use crate::error::Result;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One timed stream operation.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    /// Kernel file (`gemm.cu`), or `memory` for copies and memsets.
    pub file: &'static str,
    /// Kernel name, `copy` or `memset`.
    pub name: &'static str,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// What the launcher said about the call (a product's shape), or empty.
    pub note: String,
    /// Floating-point operations of the call when the launcher counted them (products), else 0.
    pub flops: f64,
    pub secs: f64,
}

/// How one pending record is timed.
pub(crate) enum Stamp {
    Events(CudaEvent, CudaEvent),
    Secs(f64),
}

/// The records of a profile in progress.
#[derive(Default)]
pub(crate) struct Recorder {
    pending: Vec<(OpTime, Stamp)>,
    /// The note and FLOP count for the next operation.
    pub(crate) note: Option<(String, f64)>,
}

impl Recorder {
    pub(crate) fn push(&mut self, mut op: OpTime, stamp: Stamp) {
        if let Some((note, flops)) = self.note.take() {
            op.note = note;
            op.flops = flops;
        }
        self.pending.push((op, stamp));
    }

    /// The times, once the stream has finished every recorded operation.
    pub(crate) fn finish(self) -> Result<Vec<OpTime>> {
        self.pending
            .into_iter()
            .map(|(mut op, stamp)| {
                op.secs = match stamp {
                    Stamp::Secs(s) => s,
                    Stamp::Events(a, b) => {
                        drv(a.elapsed_ms(&b), "reading a profiling event")? as f64 / 1e3
                    }
                };
                Ok(op)
            })
            .collect()
    }
}

/// Two events recorded around `f` on `stream`.
pub(crate) fn bracket<R>(
    ctx: &Arc<CudaContext>,
    stream: &Arc<CudaStream>,
    f: impl FnOnce() -> Result<R>,
) -> Result<(R, Stamp)> {
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let start = drv(ctx.new_event(flags), "creating a profiling event")?;
    let end = drv(ctx.new_event(flags), "creating a profiling event")?;
    drv(start.record(stream), "recording a profiling event")?;
    let r = f()?;
    drv(end.record(stream), "recording a profiling event")?;
    Ok((r, Stamp::Events(start, end)))
}

/// One row of `summary`: every operation of one kernel (or copy, or memset).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTotal {
    pub file: &'static str,
    pub name: &'static str,
    /// Operations per step.
    pub calls: usize,
    /// Seconds per step.
    pub secs: f64,
}

/// Per kernel, the calls and seconds of one step, from `steps` profiled steps that each issued
/// the same operations in the same order (each operation's time is the fastest of its
/// `steps` runs); largest first. `None` when the steps did not issue the same operations.
pub fn summary(steps: &[Vec<OpTime>]) -> Option<(Vec<OpTime>, Vec<KernelTotal>)> {
    let first = steps.first()?;
    let same = steps.iter().all(|s| {
        s.len() == first.len()
            && s.iter().zip(first).all(|(a, b)| {
                (a.file, a.name, a.grid, a.block) == (b.file, b.name, b.grid, b.block)
            })
    });
    if !same {
        return None;
    }
    let fastest: Vec<OpTime> = first
        .iter()
        .enumerate()
        .map(|(i, op)| OpTime {
            secs: steps
                .iter()
                .map(|s| s[i].secs)
                .fold(f64::INFINITY, f64::min),
            ..op.clone()
        })
        .collect();
    let mut by: BTreeMap<(&'static str, &'static str), (usize, f64)> = BTreeMap::new();
    for op in &fastest {
        let e = by.entry((op.file, op.name)).or_default();
        e.0 += 1;
        e.1 += op.secs;
    }
    let mut totals: Vec<KernelTotal> = by
        .into_iter()
        .map(|((file, name), (calls, secs))| KernelTotal {
            file,
            name,
            calls,
            secs,
        })
        .collect();
    totals.sort_by(|a, b| b.secs.total_cmp(&a.secs));
    Some((fastest, totals))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &'static str, grid: u32, secs: f64) -> OpTime {
        OpTime {
            file: "f.cu",
            name,
            grid: (grid, 1, 1),
            block: (128, 1, 1),
            note: String::new(),
            flops: 0.0,
            secs,
        }
    }

    #[test]
    fn summary_takes_each_operations_fastest_run_and_sums_per_kernel() {
        let a = vec![op("g", 4, 3.0), op("s", 1, 1.0), op("g", 8, 2.0)];
        let b = vec![op("g", 4, 1.0), op("s", 1, 5.0), op("g", 8, 4.0)];
        let (fastest, totals) = summary(&[a, b]).unwrap();
        let secs: Vec<f64> = fastest.iter().map(|o| o.secs).collect();
        assert_eq!(secs, [1.0, 1.0, 2.0]);
        assert_eq!(totals.len(), 2);
        assert_eq!(
            (totals[0].name, totals[0].calls, totals[0].secs),
            ("g", 2, 3.0)
        );
        assert_eq!(
            (totals[1].name, totals[1].calls, totals[1].secs),
            ("s", 1, 1.0)
        );
    }

    #[test]
    fn summary_refuses_steps_that_differ() {
        let a = vec![op("g", 4, 1.0)];
        let b = vec![op("g", 5, 1.0)];
        assert!(summary(&[a, b]).is_none());
        assert!(summary(&[]).is_none());
    }
}
