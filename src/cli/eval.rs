//! `ndt eval`: the evaluation tasks of SPEC §5 on a session's test split: bits per spike of
//! co-smoothing, forward prediction, inter- and intra-region prediction (per-neuron and pooled)
//! and choice decoding from intermediate features.

use crate::error::{Result, internal, usage};
use crate::eval::tasks::{EvalOpts, format_table};
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
    /// Block (1-based) whose output feeds choice decoding.
    #[arg(long, default_value_t = 3)]
    pub choice_block: usize,
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

pub fn run(a: Args) -> Result<()> {
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
    let opts = EvalOpts {
        split,
        tasks,
        choice: !a.no_choice,
        choice_block: a.choice_block,
        rows_per_pass: a.rows.max(1),
        ..EvalOpts::default()
    };
    let exec = Exec {
        device: a.device,
        threads: a.threads,
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
