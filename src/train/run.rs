//! The entry points behind `ndt train`, `ndt finetune` and `ndt eval` (also used by sweeps):
//! they open the backend, build or load the model, and call the trainer or the evaluator.

use crate::error::{Result, input, usage};
use crate::eval::tasks::{EvalOpts, EvalReport, evaluate};
use crate::model::{ModelConfig, ParamTable, checkpoint, init};
use crate::store::Dataset;
use crate::train::cadence::Cadence;
use crate::train::config::{RunConfig, TrainHyper};
use crate::train::device::{Device, Worker};
use crate::train::finetune::{Mode, finetune_init};
use crate::train::trainer::{Init, Outcome, Run, can_resume, train};
use std::collections::BTreeMap;
use std::path::Path;

/// How a run executes (not part of its results).
#[derive(Clone, Debug, PartialEq)]
pub struct Exec {
    pub device: Device,
    /// CPU threads (0 = every core).
    pub threads: usize,
    pub progress: bool,
    /// Stop after this many finished epochs (resumable).
    pub stop_after: Option<usize>,
    /// Continue the run in the output directory instead of starting one.
    pub resume: bool,
    /// When the resume state and checkpoints are written (see `train::cadence`).
    pub checkpoint_every: Cadence,
    /// The CUDA backend's settings (read once by the command line).
    pub cuda: crate::cuda::Settings,
}

impl Default for Exec {
    fn default() -> Self {
        Exec {
            device: Device::Auto,
            threads: 0,
            progress: true,
            stop_after: None,
            resume: false,
            checkpoint_every: Cadence::default(),
            cuda: crate::cuda::Settings::default(),
        }
    }
}

/// Dataset indices of `spec`: `all`, or comma-separated session ids.
pub fn resolve_sessions(ds: &Dataset, spec: &str) -> Result<Vec<usize>> {
    if ds.n_sessions() == 0 {
        return Err(input(
            ds.dir.join("manifest.json"),
            "the dataset holds no session (`sessions` is empty)",
        ));
    }
    if spec.trim() == "all" {
        return Ok((0..ds.n_sessions()).collect());
    }
    let mut out = Vec::new();
    for id in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let s = ds.find(id).ok_or_else(|| {
            usage(format!(
                "session '{id}' is not in {} (see `ndt inspect`)",
                ds.dir.display()
            ))
        })?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(usage(
            "no session given (ids separated by commas, or `all`)",
        ));
    }
    Ok(out)
}

/// The model config for training `sessions` of `ds` with `dims` (all sessions must have the
/// same number of bins).
pub fn model_config(ds: &Dataset, sessions: &[usize], rc: &RunConfig) -> Result<ModelConfig> {
    let Some(&s0) = sessions.first() else {
        return Err(usage("no session to train on"));
    };
    if let Some(&bad) = sessions.iter().find(|&&s| s >= ds.n_sessions()) {
        return Err(usage(format!("session index {bad} out of range")));
    }
    let first = ds.session(s0);
    let mut map = BTreeMap::new();
    for &s in sessions {
        let info = ds.session(s);
        if info.n_bins != first.n_bins {
            return Err(usage(format!(
                "sessions {} and {} have {} and {} bins; one model needs one trial length",
                first.id, info.id, first.n_bins, info.n_bins
            )));
        }
        map.insert(info.id.clone(), info.n_neurons);
    }
    let cfg = rc.model.config(first.n_bins, map);
    checkpoint::validate_config(&cfg).map_err(|m| usage(format!("model config: {m}")))?;
    Ok(cfg)
}

/// Trains a model from scratch on `sessions` (the baseline when that is one held-out session),
/// or resumes the run in `out`.
pub fn pretrain(
    ds: &Dataset,
    sessions: &[usize],
    rc: &RunConfig,
    out: &Path,
    exec: &Exec,
) -> Result<Outcome> {
    pretrain_on(
        &mut Worker::new(exec.device, exec.threads, exec.cuda),
        ds,
        sessions,
        rc,
        out,
        exec,
    )
}

/// A run set up and not started: its model config, where its parameters come from, and the run
/// (what a group of runs trains side by side, `train::group`).
pub type Prepared<'a> = crate::train::group::Member<'a>;

/// Sets up `pretrain` (checking the settings and that the model fits in memory).
pub fn prepare_pretrain<'a>(
    ds: &'a Dataset,
    sessions: &[usize],
    rc: &RunConfig,
    out: &Path,
    exec: &Exec,
) -> Result<Prepared<'a>> {
    rc.train.check().map_err(usage)?;
    let cfg = model_config(ds, sessions, rc)?;
    cfg.check_memory(rc.train.batch_size).map_err(usage)?;
    let init = if exec.resume {
        Init::Resume
    } else {
        Init::Params(init::init_params(
            &cfg,
            &ParamTable::new(&cfg),
            rc.train.seed,
        ))
    };
    let run = Run {
        ds,
        sessions: sessions.to_vec(),
        hyper: rc.train.clone(),
        out: out.to_path_buf(),
        trainable: None,
        stop_after: exec.stop_after,
        progress: exec.progress,
        meta: BTreeMap::new(),
        checkpoint_every: exec.checkpoint_every,
    };
    Ok(Prepared { cfg, init, run })
}

/// `pretrain` on `worker`'s backend (kept from job to job by sweeps).
pub fn pretrain_on(
    worker: &mut Worker,
    ds: &Dataset,
    sessions: &[usize],
    rc: &RunConfig,
    out: &Path,
    exec: &Exec,
) -> Result<Outcome> {
    let p = prepare_pretrain(ds, sessions, rc, out, exec)?;
    let backend = worker.backend(&p.cfg)?;
    train(backend, &p.cfg, p.init, &p.run)
}

/// Finetunes checkpoint `ckpt` on session `session` of `ds` (SPEC §4), or resumes it.
pub fn finetune(
    ds: &Dataset,
    session: usize,
    ckpt: &Path,
    mode: Mode,
    hyper: &TrainHyper,
    out: &Path,
    exec: &Exec,
) -> Result<Outcome> {
    let mut worker = Worker::new(exec.device, exec.threads, exec.cuda);
    finetune_on(&mut worker, ds, session, ckpt, mode, hyper, out, exec)
}

/// Sets up `finetune` (checking the settings and that the model fits in memory).
#[allow(clippy::too_many_arguments)]
pub fn prepare_finetune<'a>(
    ds: &'a Dataset,
    session: usize,
    ckpt: &Path,
    mode: Mode,
    hyper: &TrainHyper,
    out: &Path,
    exec: &Exec,
) -> Result<Prepared<'a>> {
    hyper.check().map_err(usage)?;
    let (src_cfg, src, _) = checkpoint::load(ckpt)?;
    let info = ds.session(session);
    let (cfg, params) = finetune_init(
        &src_cfg,
        &src,
        &info.id,
        info.n_neurons,
        info.n_bins,
        hyper.seed,
    )?;
    cfg.check_memory(hyper.batch_size).map_err(usage)?;
    let meta = BTreeMap::from([
        ("finetuned_from".to_string(), ckpt.display().to_string()),
        ("mode".to_string(), mode.name().to_string()),
    ]);
    let run = Run {
        ds,
        sessions: vec![session],
        hyper: hyper.clone(),
        out: out.to_path_buf(),
        trainable: mode.trainable(&cfg, &info.id),
        stop_after: exec.stop_after,
        progress: exec.progress,
        meta,
        checkpoint_every: exec.checkpoint_every,
    };
    let init = if exec.resume {
        Init::Resume
    } else {
        Init::Params(params)
    };
    Ok(Prepared { cfg, init, run })
}

/// `finetune` on `worker`'s backend (kept from job to job by sweeps).
#[allow(clippy::too_many_arguments)]
pub fn finetune_on(
    worker: &mut Worker,
    ds: &Dataset,
    session: usize,
    ckpt: &Path,
    mode: Mode,
    hyper: &TrainHyper,
    out: &Path,
    exec: &Exec,
) -> Result<Outcome> {
    let p = prepare_finetune(ds, session, ckpt, mode, hyper, out, exec)?;
    let backend = worker.backend(&p.cfg)?;
    train(backend, &p.cfg, p.init, &p.run)
}

/// Whether `out` holds a run to resume (see `trainer::can_resume`).
pub fn resumable(out: &Path) -> bool {
    can_resume(out)
}

/// Loads `ckpt` and evaluates it on session `session` of `ds`.
pub fn evaluate_checkpoint(
    ckpt: &Path,
    ds: &Dataset,
    session: usize,
    opts: &EvalOpts,
    exec: &Exec,
) -> Result<EvalReport> {
    let mut worker = Worker::new(exec.device, exec.threads, exec.cuda);
    evaluate_checkpoint_on(&mut worker, ckpt, ds, session, opts)
}

/// `evaluate_checkpoint` on `worker`'s backend.
pub fn evaluate_checkpoint_on(
    worker: &mut Worker,
    ckpt: &Path,
    ds: &Dataset,
    session: usize,
    opts: &EvalOpts,
) -> Result<EvalReport> {
    evaluate_checkpoint_in(|cfg| worker.backend(cfg), ckpt, ds, session, opts)
}

/// `evaluate_checkpoint` on the backend `backend(config)` gives for the checkpoint's config
/// (a worker's, or a group member's that trained it).
pub fn evaluate_checkpoint_in<'b>(
    backend: impl FnOnce(&ModelConfig) -> Result<&'b mut dyn crate::backend::Backend>,
    ckpt: &Path,
    ds: &Dataset,
    session: usize,
    opts: &EvalOpts,
) -> Result<EvalReport> {
    let (cfg, params, _) = checkpoint::load(ckpt)?;
    crate::eval::tasks::check_fit(&cfg, ds, session)?;
    let backend = backend(&cfg)?;
    backend.set_params(&params)?;
    evaluate(backend, &cfg, ds, session, opts)
}
