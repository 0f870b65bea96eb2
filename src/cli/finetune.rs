//! `ndt finetune`: move a pretrained model to a new session (SPEC §4). See docs/training.md.

use crate::cli::train::{ExecArgs, report};
use crate::error::{Result, usage};
use crate::scheme::Scheme;
use crate::store::Dataset;
use crate::train::config::RunConfig;
use crate::train::finetune::Mode;
use crate::train::run::{finetune, resolve_sessions};
use crate::train::trainer::RunSettings;
use std::path::PathBuf;

/// Finetune a checkpoint on one session: fresh stitchers and session token, core and mask
/// tokens from the checkpoint; `full` trains everything, `frozen-core` only the new session's
/// stitchers and token.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Pretrained checkpoint (safetensors).
    pub ckpt: PathBuf,
    /// Dataset directory holding the session.
    pub dataset: PathBuf,
    /// Session id to finetune on.
    #[arg(long)]
    pub session: String,
    /// full | frozen-core
    #[arg(long, default_value = "full")]
    pub mode: String,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Training preset (small, paper) or TOML file; only its [train] part is used (the model
    /// comes from the checkpoint).
    #[arg(long, default_value = "paper")]
    pub config: String,
    /// Epochs [default: from --config].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Masking schemes, comma-separated or `all` [default: from --config; all].
    #[arg(long)]
    pub schemes: Option<String>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the new session's initialisation, batch order, masks and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub val_every: Option<usize>,
    #[command(flatten)]
    pub exec: ExecArgs,
}

pub fn run(a: Args, cuda: &crate::cuda::Settings) -> Result<()> {
    let exec = a.exec.exec(cuda)?;
    let mode = Mode::parse(&a.mode)?;
    let ds = Dataset::open(&a.dataset)?;
    let session = resolve_sessions(&ds, &a.session)?;
    if session.len() != 1 {
        return Err(usage("--session takes one session id"));
    }
    let hyper = if a.exec.resume {
        RunSettings::read(&a.out)?.hyper
    } else {
        let mut t = RunConfig::load(&a.config)?.train;
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
        t
    };
    eprintln!(
        "finetuning {} on session {} ({}), {} epochs",
        a.ckpt.display(),
        a.session,
        mode.name(),
        hyper.epochs
    );
    let o = finetune(&ds, session[0], &a.ckpt, mode, &hyper, &a.out, &exec)?;
    report(&a.out, &o, a.exec.json)
}
