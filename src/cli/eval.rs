//! `ndt eval`: the evaluation tasks of SPEC §5 on a session's test split: bits per spike
//! (per-neuron mean (MtM), pooled (nlb_tools), pooled over units with spikes (BrainWideBench))
//! and Poisson D² of co-smoothing, forward prediction, inter- and intra-region prediction, the
//! classical baselines beside them, choice decoding from intermediate features, and (`--bwb`)
//! the co-smoothing and forward predictions in IBL BrainWideBench's submission layout.

use crate::error::{Result, internal, usage};
use crate::eval::bwb::BwbOpts;
use crate::eval::glm::GlmSettings;
use crate::eval::tasks::{EvalOpts, bin_ms, format_table};
use crate::scheme::Scheme;
use crate::store::{Dataset, SplitName};
use crate::train::device::Device;
use crate::train::run::{Exec, evaluate_checkpoint, resolve_sessions};
use std::path::PathBuf;

/// Evaluate a checkpoint on one session (which the checkpoint must have stitchers for: a
/// finetuned model, or a model trained on that session).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint (safetensors).
    pub ckpt: PathBuf,
    /// Dataset directory.
    pub dataset: PathBuf,
    /// Session id.
    #[arg(long)]
    pub session: String,
    /// Split to evaluate on (choice decoding fits on the others' train and val trials).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Tasks: comma-separated (co-smooth, forward, inter-region, intra-region) or `all`.
    #[arg(long, default_value = "all")]
    pub tasks: String,
    /// Skip choice decoding.
    #[arg(long)]
    pub no_choice: bool,
    /// Block (1-based) whose output feeds choice decoding [default: 3, the paper's; skipped
    /// with the reason when the model has fewer blocks]. A block the model does not have is an
    /// error.
    #[arg(long)]
    pub choice_block: Option<usize>,
    /// Also score the classical baselines beside the model: the mean-rate predictor on every
    /// task and, for co-smoothing, the smoothed-spikes Poisson GLM (one GLM per neuron, fit on
    /// train+val: minutes on a recording of a few hundred neurons, so it is asked for).
    #[arg(long)]
    pub baselines: bool,
    /// Gaussian kernel standard deviation (ms) of the smoothed-spikes GLM baseline.
    #[arg(long, default_value_t = 50.0)]
    pub glm_kernel_ms: f64,
    /// L2 penalty alpha of the baseline's Poisson GLMs (scikit-learn PoissonRegressor's scaling).
    #[arg(long, default_value_t = 0.01)]
    pub glm_alpha: f64,
    /// Write co-smoothing and forward predictions in IBL BrainWideBench's layout under this
    /// directory: DIR/LABEL/ts2-{co_smoothing,forecasting}/SESSION/seed_SEED.safetensors.
    #[arg(long)]
    pub bwb: Option<PathBuf>,
    /// The submission label BrainWideBench files the predictions under.
    #[arg(long, default_value = "ndt")]
    pub bwb_label: String,
    /// The training seed the predictions are filed under (seed_SEED.safetensors).
    #[arg(long)]
    pub bwb_seed: Option<u64>,
    /// Also write the matching ground truth (counts) for BrainWideBench's scorer under this
    /// directory: DIR/ts2-{co_smoothing,forecasting}/SESSION/ground_truth.safetensors.
    #[arg(long)]
    pub bwb_ground_truth: Option<PathBuf>,
    /// Rows (mask x trial) per forward pass.
    #[arg(long, default_value_t = 64)]
    pub rows: usize,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// CPU threads (0 = every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn run(a: Args, cuda: &crate::cuda::Settings) -> Result<()> {
    let split: SplitName = a
        .split
        .parse()
        .map_err(|m: String| usage(format!("--split: {m}")))?;
    let tasks = Scheme::parse_list(&a.tasks).map_err(|m| usage(format!("--tasks: {m}")))?;
    let ds = Dataset::open(&a.dataset)?;
    let session = resolve_sessions(&ds, &a.session)?;
    if session.len() != 1 {
        return Err(usage("--session takes one session id"));
    }
    if !(a.glm_alpha.is_finite() && a.glm_alpha > 0.0) {
        return Err(usage(format!(
            "--glm-alpha {}: must be positive (the GLM has no unique optimum without a penalty)",
            a.glm_alpha
        )));
    }
    let glm = GlmSettings {
        kernel_sd_ms: a.glm_kernel_ms,
        alpha: a.glm_alpha,
        ..GlmSettings::default()
    };
    if a.baselines && tasks.contains(&Scheme::CoSmooth) {
        // A kernel the session's bins cannot carry is a usage error here (sweeps skip it).
        crate::eval::glm::gaussian_window(
            glm.kernel_sd_ms,
            bin_ms(ds.session(session[0]).bin_size_s),
        )?;
    }
    let bwb = match (&a.bwb, a.bwb_seed) {
        (Some(dir), Some(seed)) => {
            let o = BwbOpts {
                dir: dir.clone(),
                ground_truth: a.bwb_ground_truth.clone(),
                label: a.bwb_label.clone(),
                seed,
            };
            crate::eval::bwb::check_names(&o, &ds.session(session[0]).id)?;
            Some(o)
        }
        (Some(_), None) => {
            return Err(usage(
                "--bwb needs --bwb-seed (the training seed the predictions are filed under)",
            ));
        }
        (None, _) if a.bwb_seed.is_some() || a.bwb_ground_truth.is_some() => {
            return Err(usage("--bwb-seed and --bwb-ground-truth go with --bwb DIR"));
        }
        _ => None,
    };
    let opts = EvalOpts {
        split,
        tasks,
        choice: !a.no_choice,
        choice_block: a.choice_block,
        rows_per_pass: a.rows.max(1),
        baselines: a.baselines,
        glm,
        bwb,
        ..EvalOpts::default()
    };
    let exec = Exec {
        device: a.device,
        threads: a.threads,
        cuda: *cuda,
        ..Exec::default()
    };
    let report = evaluate_checkpoint(&a.ckpt, &ds, session[0], &opts, &exec)?;
    let mut v = serde_json::to_value(&report).map_err(|e| internal(format!("report JSON: {e}")))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("checkpoint".into(), a.ckpt.display().to_string().into());
        o.insert("dataset".into(), a.dataset.display().to_string().into());
        o.insert("metrics".into(), serde_json::json!(report.metrics()));
    }
    let text =
        serde_json::to_string_pretty(&v).map_err(|e| internal(format!("report JSON: {e}")))?;
    if let Some(path) = &a.out {
        crate::fsutil::write_atomic(path, format!("{text}\n").as_bytes())?;
    }
    if a.json {
        println!("{text}");
    } else {
        print!("{}", format_table(&report));
    }
    Ok(())
}
