//! Predictions in IBL BrainWideBench's on-disk format (`ibl-bwb-eval` 0.1.0, suite TS2), so
//! that its own scorer (`python -m ibl_bwb_eval.scoring.ts2`) can score an ndt model.
//!
//! A prediction file is what `ibl_bwb_eval.predictions.PredictionsWriter` writes:
//!
//! ```text
//! DIR/{label}/{task}/{recording_id}/seed_{seed}.safetensors
//!   predictions        F32 [windows, time, units]  log-rates of the held-out entries
//!   window_timestamps  F64 [windows]               the alignment key (here: the trial index)
//!   metadata: label, task, seed, ibl_bwb_eval_version = "0.1.0", recording_id, split
//! ```
//!
//! with `task` `ts2-co_smoothing` (every unit held out alone, all bins: `[trials, T, N]`) or
//! `ts2-forecasting` (the bins from the forward-prediction onset to the end of the trial:
//! `[trials, T − onset, N]`). The matching ground truth, which the scorer reads from
//! `GT/{task}/{recording_id}/ground_truth.safetensors`, holds `targets` (F32 counts, the same
//! shape) and the same `window_timestamps`. ndt's stores keep no absolute trial times, so a
//! window is named by its trial's index in the session.

use crate::error::{Result, internal, usage};
use crate::scheme::Scheme;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The `ibl_bwb_eval.__version__` whose layout this writes.
pub const BWB_EVAL_VERSION: &str = "0.1.0";

/// Where and under which names predictions go.
#[derive(Clone, Debug, PartialEq)]
pub struct BwbOpts {
    /// Submission root (`DIR` above).
    pub dir: PathBuf,
    /// Ground-truth root (`GT` above), if it is to be written.
    pub ground_truth: Option<PathBuf>,
    /// The submission's label (a path component).
    pub label: String,
    /// The training seed the file is filed under.
    pub seed: u64,
}

/// The TS2 task id of an ndt task, if BrainWideBench scores it.
pub fn task_id(scheme: Scheme) -> Option<&'static str> {
    match scheme {
        Scheme::CoSmooth => Some("ts2-co_smoothing"),
        Scheme::Forward => Some("ts2-forecasting"),
        _ => None,
    }
}

/// One task's held-out predictions and counts, `[windows, time, units]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskPredictions {
    pub task: &'static str,
    pub recording_id: String,
    pub split: String,
    /// One per window (trial index).
    pub window_timestamps: Vec<f64>,
    pub time: usize,
    pub units: usize,
    pub log_rates: Vec<f32>,
    pub targets: Vec<f32>,
}

fn view<'a>(
    name: &str,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: &'a [u8],
) -> Result<TensorView<'a>> {
    TensorView::new(dtype, shape, bytes).map_err(|e| internal(format!("tensor {name}: {e}")))
}

fn write(
    path: &Path,
    tensors: Vec<(String, TensorView<'_>)>,
    meta: HashMap<String, String>,
) -> Result<()> {
    let buf = safetensors::tensor::serialize(tensors, Some(meta))
        .map_err(|e| internal(format!("serialize {}: {e}", path.display())))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(crate::error::io_at(parent))?;
    }
    crate::fsutil::write_atomic(path, &buf)
}

/// Checks the names that become path components.
pub fn check_names(opts: &BwbOpts, recording_id: &str) -> Result<()> {
    crate::store::check_id("--bwb-label", &opts.label).map_err(usage)?;
    crate::store::check_id("recording id (session id)", recording_id).map_err(usage)?;
    Ok(())
}

/// Writes one task's prediction file (and its ground truth when asked); returns the
/// prediction file's path.
pub fn write_task(opts: &BwbOpts, p: &TaskPredictions) -> Result<PathBuf> {
    check_names(opts, &p.recording_id)?;
    let n = p.window_timestamps.len();
    let len = n * p.time * p.units;
    if p.log_rates.len() != len || p.targets.len() != len {
        return Err(internal(format!(
            "{}: {} predictions and {} targets for [{n}, {}, {}]",
            p.task,
            p.log_rates.len(),
            p.targets.len(),
            p.time,
            p.units
        )));
    }
    let shape = vec![n, p.time, p.units];
    let ts = bytemuck::cast_slice::<f64, u8>(&p.window_timestamps);
    let path = opts
        .dir
        .join(&opts.label)
        .join(p.task)
        .join(&p.recording_id)
        .join(format!("seed_{}.safetensors", opts.seed));
    let meta: HashMap<String, String> = [
        ("label", opts.label.clone()),
        ("task", p.task.to_string()),
        ("seed", opts.seed.to_string()),
        ("ibl_bwb_eval_version", BWB_EVAL_VERSION.to_string()),
        ("recording_id", p.recording_id.clone()),
        ("split", p.split.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write(
        &path,
        vec![
            (
                "predictions".into(),
                view(
                    "predictions",
                    Dtype::F32,
                    shape.clone(),
                    bytemuck::cast_slice(&p.log_rates),
                )?,
            ),
            (
                "window_timestamps".into(),
                view("window_timestamps", Dtype::F64, vec![n], ts)?,
            ),
        ],
        meta,
    )?;
    if let Some(gt) = &opts.ground_truth {
        let gpath = gt
            .join(p.task)
            .join(&p.recording_id)
            .join("ground_truth.safetensors");
        let meta: HashMap<String, String> = [
            ("task".to_string(), p.task.to_string()),
            ("recording_id".to_string(), p.recording_id.clone()),
            ("split".to_string(), p.split.clone()),
        ]
        .into_iter()
        .collect();
        write(
            &gpath,
            vec![
                (
                    "targets".into(),
                    view(
                        "targets",
                        Dtype::F32,
                        shape,
                        bytemuck::cast_slice(&p.targets),
                    )?,
                ),
                (
                    "window_timestamps".into(),
                    view("window_timestamps", Dtype::F64, vec![n], ts)?,
                ),
            ],
            meta,
        )?;
    }
    Ok(path)
}
