//! Memory accounting: the peak of a timed run (device memory allocated by ndt on a GPU, the
//! process's resident high-water mark on the CPU) and `--memory-only`, a training step's device
//! memory allocated and not run.

use crate::batch::Batch;
use crate::cuda::CudaBackend;
use crate::error::Result;

/// Peak bytes and what they count.
#[derive(Clone, Copy, Debug)]
pub struct Peak {
    pub bytes: u64,
    /// What was measured, in words (`peak device memory allocated`, ...).
    pub kind: &'static str,
    /// Bytes of the GPU's activation workspace (part of the peak); none on the CPU.
    pub workspace: Option<u64>,
}

/// What `--memory-only` allocated for a training step.
pub struct MemoryOnly {
    pub peak: Peak,
    /// The workspace's buffers, largest first: name and bytes.
    pub buffers: Vec<(&'static str, usize)>,
}

/// What `MemoryOnly::peak` counts.
pub const MEMORY_ONLY_KIND: &str = "device memory of a training step (allocated, not run)";

/// Allocates what a training step on `batch` needs on `b`, and runs nothing.
pub fn memory_only(b: &mut CudaBackend, batch: &Batch) -> Result<MemoryOnly> {
    b.reserve(batch)?;
    let mut buffers = b.workspace_buffers();
    buffers.sort_by_key(|b| std::cmp::Reverse(b.1));
    Ok(MemoryOnly {
        peak: Peak {
            bytes: b.device_memory().1 as u64,
            kind: MEMORY_ONLY_KIND,
            workspace: Some(b.workspace_bytes() as u64),
        },
        buffers,
    })
}

/// Resident-memory high-water mark of this process, from /proc (Linux).
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `KIND: X GiB`, with the activation workspace's share where there is one.
pub fn memory_line(peak: &Peak) -> String {
    let gib = |v: u64| v as f64 / (1u64 << 30) as f64;
    match peak.workspace {
        Some(w) => format!(
            "{}: {:.3} GiB ({:.3} GiB activation workspace, the rest parameters, gradients \
             and optimizer state)",
            peak.kind,
            gib(peak.bytes),
            gib(w)
        ),
        None => format!("{}: {:.3} GiB", peak.kind, gib(peak.bytes)),
    }
}

/// The text lines of `--memory-only` (after the header).
pub fn memory_only_lines(m: &MemoryOnly) -> Vec<String> {
    let mib = |v: usize| v as f64 / (1u64 << 20) as f64;
    let list: Vec<String> = m
        .buffers
        .iter()
        .map(|&(name, bytes)| format!("{name} {:.1}", mib(bytes)))
        .collect();
    vec![
        memory_line(&m.peak),
        format!(
            "workspace buffers (MiB, src/cuda/workspace.rs): {}",
            list.join(", ")
        ),
    ]
}
