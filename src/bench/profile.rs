//! `--profile`: a few training steps launched operation by operation with CUDA events around
//! each, summarised per kernel and per product shape, every operation written to a CSV; with
//! `--mode frozen-core`, what the frozen-core step leaves out of the full one.

use crate::backend::Backend;
use crate::batch::Batch;
use crate::cuda::CudaBackend;
use crate::cuda::profile::{KernelTotal, OpTime, summary};
use crate::error::Result;
use crate::train::config::TrainHyper;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Steps that `--profile` launches operation by operation.
pub const PROFILE_STEPS: usize = 5;

/// What `--profile` measured: every operation of one step (each the fastest of its runs) and
/// the per-kernel totals (`crate::cuda::profile::summary`).
pub struct Profiled {
    pub ops: Vec<OpTime>,
    pub totals: Vec<KernelTotal>,
    pub runs: usize,
    pub emulated: bool,
    pub csv: PathBuf,
}

/// Operations, products and FLOPs of one profiled step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpCounts {
    pub operations: usize,
    pub products: usize,
    pub flops: f64,
}

/// `PROFILE_STEPS` steps of `b` on `batch` with the trainable set `mask`, the first step's
/// index `first`, profiled; every operation written to `csv`.
pub fn profile(
    b: &mut CudaBackend,
    batch: &Batch,
    train: &TrainHyper,
    first: usize,
    mask: &[u8],
    csv: &Path,
) -> Result<Profiled> {
    let emulated = b.gpu().is_emulated();
    b.set_trainable(mask)?;
    let steps = (0..PROFILE_STEPS)
        .map(|i| b.profile_step(batch, &super::timing::hyper(train, first + i)))
        .collect::<Result<Vec<_>>>()?;
    Profiled::new(&steps, csv, emulated)
}

/// `path` with `.suffix` before its extension (`p.csv` → `p.full.csv`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{suffix}"),
    };
    path.with_file_name(name)
}

impl Profiled {
    /// Summarises `steps` (one Vec of operations per profiled step) and writes every
    /// operation to `csv`.
    pub fn new(steps: &[Vec<OpTime>], csv: &Path, emulated: bool) -> Result<Profiled> {
        let (ops, totals) = summary(steps).ok_or_else(|| {
            crate::error::internal("profiled steps issued different operations".to_string())
        })?;
        let mut text = String::from("index,file,kernel,grid,block,note,flops,us\n");
        for (i, op) in ops.iter().enumerate() {
            let (g, b) = (op.grid, op.block);
            text += &format!(
                "{i},{},{},{}x{}x{},{}x{}x{},{},{},{:.3}\n",
                op.file,
                op.name,
                g.0,
                g.1,
                g.2,
                b.0,
                b.1,
                b.2,
                op.note,
                op.flops,
                op.secs * 1e6
            );
        }
        crate::fsutil::write_atomic(csv, text.as_bytes())?;
        Ok(Profiled {
            ops,
            totals,
            runs: steps.len(),
            emulated,
            csv: csv.to_path_buf(),
        })
    }

    /// Seconds of the step: the sum of its operations.
    pub fn secs(&self) -> f64 {
        self.ops.iter().map(|o| o.secs).sum()
    }

    pub fn counts(&self) -> OpCounts {
        OpCounts {
            operations: self.ops.len(),
            products: self.ops.iter().filter(|o| o.flops > 0.0).count(),
            flops: self.ops.iter().map(|o| o.flops).sum(),
        }
    }

    /// The text report: the totals per kernel and per product shape, beside the graph step's
    /// `step_ms`.
    pub fn lines(&self, step_ms: f64) -> Vec<String> {
        let sum = self.secs();
        let clock = if self.emulated {
            "CPU time of the kernel emulator, not GPU time"
        } else {
            "GPU time between CUDA events"
        };
        let mut out = vec![
            format!(
                "profile: one training step launched operation by operation, each operation \
                 the fastest of {} runs ({clock}): {} operations, {:.3} ms in all (the graph \
                 step: {step_ms:.3} ms); every operation in {}",
                self.runs,
                self.ops.len(),
                sum * 1e3,
                self.csv.display()
            ),
            "| kernel | file | calls | ms/step | share |".to_string(),
            "|---|---|---|---|---|".to_string(),
        ];
        for t in &self.totals {
            out.push(format!(
                "| {} | {} | {} | {:.3} | {:.1} % |",
                t.name,
                t.file,
                t.calls,
                t.secs * 1e3,
                100.0 * t.secs / sum.max(f64::MIN_POSITIVE)
            ));
        }
        // Products by shape: where the matrix time goes.
        let mut shapes: BTreeMap<(&str, &str), (usize, f64, f64)> = BTreeMap::new();
        for op in self.ops.iter().filter(|o| o.flops > 0.0) {
            let e = shapes.entry((op.note.as_str(), op.name)).or_default();
            e.0 += 1;
            e.1 += op.secs;
            e.2 += op.flops;
        }
        let mut shapes: Vec<_> = shapes.into_iter().collect();
        shapes.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        out.push("| product (M x N x K, batch) | kernel | calls | ms/step | TFLOP/s |".to_string());
        out.push("|---|---|---|---|---|".to_string());
        for ((shape, name), (calls, secs, flops)) in shapes {
            out.push(format!(
                "| {shape} | {name} | {calls} | {:.3} | {:.1} |",
                secs * 1e3,
                flops / secs.max(f64::MIN_POSITIVE) / 1e12
            ));
        }
        out
    }
}

/// What the frozen-core step saves against the full step, from their profiles.
pub fn saving_line(full: &Profiled, frozen: &Profiled) -> String {
    let (f, z) = (full.counts(), frozen.counts());
    format!(
        "frozen-core vs full step: {} vs {} operations ({} fewer), {} vs {} products, \
         {:.3} vs {:.3} GFLOP ({:.3} GFLOP, {:.1} % fewer), {:.3} vs {:.3} ms in the profile; \
         the full step's operations in {}",
        z.operations,
        f.operations,
        f.operations.saturating_sub(z.operations),
        z.products,
        f.products,
        z.flops / 1e9,
        f.flops / 1e9,
        (f.flops - z.flops) / 1e9,
        100.0 * (f.flops - z.flops) / f.flops.max(f64::MIN_POSITIVE),
        frozen.secs() * 1e3,
        full.secs() * 1e3,
        full.csv.display()
    )
}
