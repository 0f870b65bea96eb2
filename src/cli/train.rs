//! `ndt train`: pretrain a model on sessions of a dataset (SPEC §4), or train the baseline
//! (one held-out session from scratch). See docs/training.md.

use crate::error::{Result, usage};
use crate::scheme::Scheme;
use crate::store::Dataset;
use crate::train::cadence::Cadence;
use crate::train::config::RunConfig;
use crate::train::device::Device;
use crate::train::run::{Exec, model_config, pretrain, resolve_sessions};
use crate::train::trainer::{Outcome, RunSettings};
use std::path::{Path, PathBuf};

/// Train a model on the train splits of some sessions; validation loss on their val splits
/// picks `RUN/best.safetensors`; `RUN/last.safetensors` is the last epoch.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dataset directory.
    pub dataset: PathBuf,
    /// Run directory (checkpoints, log.jsonl, run.json, resume state).
    #[arg(long)]
    pub out: PathBuf,
    /// Sessions to train on: comma-separated ids, or `all`.
    #[arg(long, default_value = "all")]
    pub sessions: String,
    /// Model and training preset (small, paper) or a TOML file (see docs/training.md).
    #[arg(long, default_value = "paper")]
    pub config: String,
    /// Epochs [default: from --config; paper 1000].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Masking schemes: comma-separated (co-smooth, forward, inter-region, intra-region) or `all`
    /// [default: from --config; all].
    #[arg(long)]
    pub schemes: Option<String>,
    /// Batch size [default: from --config; 16].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate [default: from --config; 1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of initialisation, batch order, masks and dropout [default: from --config; 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Validate every this many epochs [default: from --config; 1].
    #[arg(long)]
    pub val_every: Option<usize>,
    #[command(flatten)]
    pub exec: ExecArgs,
}

/// Flags shared by `train` and `finetune` about how the run executes.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Backend: auto uses the GPU when one can be used, else the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// CPU threads (0 = every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Continue the run in --out from its last finished epoch (settings come from RUN/run.json).
    #[arg(long)]
    pub resume: bool,
    /// Stop once this many epochs are finished (continue later with --resume).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the resume state, `last` and `best` every N epochs (`50`, `50e`; `0` = every
    /// epoch) or every so much time (`90s`, `10m`, `2h`); always also at the end and on
    /// SIGTERM, SIGINT or SIGUSR1.
    #[arg(long, default_value = crate::train::cadence::DEFAULT_TEXT)]
    pub checkpoint_every: String,
}

impl ExecArgs {
    /// How the run executes; installs the stop-signal handlers.
    pub fn exec(&self, cuda: &crate::cuda::Settings) -> Result<Exec> {
        let checkpoint_every = Cadence::parse(&self.checkpoint_every)
            .map_err(|m| usage(format!("--checkpoint-every: {m}")))?;
        crate::train::signals::install()?;
        Ok(Exec {
            device: self.device,
            threads: self.threads,
            progress: true,
            stop_after: self.stop_after,
            resume: self.resume,
            checkpoint_every,
            cuda: *cuda,
        })
    }
}

/// Prints what a run produced (JSON or one line per fact).
pub fn report(out: &Path, o: &Outcome, json: bool) -> Result<()> {
    if json {
        let v = serde_json::json!({
            "run": out,
            "epochs_done": o.epochs_done,
            "steps": o.steps,
            "finished": o.finished,
            "best": o.best,
            "last": o.last,
            "best_val_loss": o.best_val,
            "best_epoch": o.best_epoch,
            "train_loss": o.train_loss,
            "val_loss": o.val_loss,
        });
        println!("{v}");
        return Ok(());
    }
    let state = if o.finished {
        "finished"
    } else {
        "stopped (resume with --resume)"
    };
    println!("{state}: {} epochs, {} steps", o.epochs_done, o.steps);
    if let Some(l) = o.train_loss {
        println!("last train loss {l:.5}");
    }
    match (o.best_val, o.best_epoch, &o.best) {
        (Some(v), Some(e), Some(p)) => {
            println!("best validation loss {v:.5} at epoch {e}: {}", p.display())
        }
        _ => println!("no validation ran (no validation trials?)"),
    }
    println!("last checkpoint: {}", o.last.display());
    Ok(())
}

fn settings_flags_given(a: &Args) -> bool {
    a.sessions != "all"
        || a.config != "paper"
        || a.epochs.is_some()
        || a.schemes.is_some()
        || a.batch_size.is_some()
        || a.lr.is_some()
        || a.seed.is_some()
        || a.val_every.is_some()
}

pub fn run(a: Args, cuda: &crate::cuda::Settings) -> Result<()> {
    let exec = a.exec.exec(cuda)?;
    let ds = Dataset::open(&a.dataset)?;
    let (sessions, rc) = if a.exec.resume {
        if settings_flags_given(&a) {
            return Err(usage(
                "--resume takes the run's settings from RUN/run.json: drop --sessions, --config, --epochs, --schemes, --batch-size, --lr, --seed and --val-every",
            ));
        }
        let s = RunSettings::read(&a.out)?;
        let sessions = resolve_sessions(&ds, &s.sessions.join(","))?;
        let rc = RunConfig {
            model: crate::train::config::ModelDims::of(&s.config),
            train: s.hyper,
        };
        (sessions, rc)
    } else {
        let mut rc = RunConfig::load(&a.config)?;
        let t = &mut rc.train;
        if let Some(v) = a.epochs {
            t.epochs = v;
        }
        if let Some(v) = &a.schemes {
            t.schemes = Scheme::parse_list(v).map_err(|m| usage(format!("--schemes: {m}")))?;
        }
        if let Some(v) = a.batch_size {
            t.batch_size = v;
        }
        if let Some(v) = a.lr {
            t.lr = v;
        }
        if let Some(v) = a.seed {
            t.seed = v;
        }
        if let Some(v) = a.val_every {
            t.val_every = v;
        }
        t.check()
            .map_err(|m| usage(format!("training settings: {m}")))?;
        (resolve_sessions(&ds, &a.sessions)?, rc)
    };
    let cfg = model_config(&ds, &sessions, &rc)?;
    let n_params = crate::model::ParamTable::new(&cfg).total;
    eprintln!(
        "training {} session(s), {} parameters, {} epochs, schemes {}",
        sessions.len(),
        n_params,
        rc.train.epochs,
        rc.train
            .schemes
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(",")
    );
    let o = pretrain(&ds, &sessions, &rc, &a.out, &exec)?;
    report(&a.out, &o, a.exec.json)
}
