//! The JSON-lines training log (`RUN/log.jsonl`): one object per finished epoch, and one with
//! `"diverged": true` when a run stops on a non-finite loss.

use crate::error::{Result, io_at};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLine {
    /// 1-based epoch.
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Target-weighted mean Poisson NLL of the epoch's training batches.
    pub train_loss: f64,
    /// Validation loss under the fixed masking draw (None when not validated this epoch).
    pub val_loss: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// β₁ of the epoch's last step.
    pub beta1: f64,
    /// Mean global gradient norm (before clipping) over the epoch.
    pub grad_norm: f64,
    /// Wall-clock seconds of the epoch's training steps and its validation.
    pub time_s: f64,
    /// Wall-clock seconds of the epoch's training steps alone (the backend's `train_step`
    /// calls); absent in logs written before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_s: Option<f64>,
    /// Whether this epoch set a new best validation loss.
    pub best: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diverged: bool,
}

/// Appends one line (and flushes it).
pub fn append(path: &Path, line: &EpochLine) -> Result<()> {
    let mut text = serde_json::to_string(line)
        .map_err(|e| crate::error::internal(format!("log line: {e}")))?;
    text.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_at(path))?;
    f.write_all(text.as_bytes()).map_err(io_at(path))?;
    f.flush().map_err(io_at(path))
}

/// Reads the log (unparsable lines, such as a line cut short by a crash, are skipped).
pub fn read(path: &Path) -> Result<Vec<EpochLine>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Keeps the lines of epochs `<= epoch` that did not diverge (used when resuming, so the log
/// matches the state the run restarts from): the kept lines keep their bytes, and the file is
/// rewritten (atomically) only when something is dropped, such as the lines of epochs finished
/// after the last state was written, a diverged line or a line cut short by a crash.
pub fn truncate(path: &Path, epoch: usize) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_at(path)(e)),
    };
    let mut keep = String::with_capacity(text.len());
    for raw in text.split_inclusive('\n') {
        if !raw.ends_with('\n') {
            continue;
        }
        if let Ok(l) = serde_json::from_str::<EpochLine>(raw.trim_end())
            && l.epoch <= epoch
            && !l.diverged
        {
            keep.push_str(raw);
        }
    }
    if keep == text && path.exists() {
        return Ok(());
    }
    crate::fsutil::write_atomic(path, keep.as_bytes())
}
