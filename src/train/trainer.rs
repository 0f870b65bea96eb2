//! The training loop of SPEC §4 over any `Backend`.
//!
//! An epoch visits every train batch of every session once (`BatchIter`: shuffled trials,
//! sessions interleaved, one masking scheme per batch drawn from the enabled ones). Each step
//! takes its learning rate and β₁ from the OneCycle schedule over `epochs × batches` steps.
//! After each epoch the run directory gets a log line, `last.safetensors`, the resume state and,
//! on a validation epoch that improves the validation loss, `best.safetensors`.
//!
//! Run directory (`--out RUN`):
//! - `run.json`: the settings (model config, hyper-parameters, sessions, origin), checked on resume;
//! - `log.jsonl`: one line per epoch (see `train::log`);
//! - `best.safetensors`, `last.safetensors`: checkpoints (`model::checkpoint`);
//! - `state.safetensors`: parameters and AdamW moments for `--resume` (`train::state`).
//!
//! Randomness is counter-based and keyed by the run seed: batch order and masks by
//! `rng::key(seed, 1)` and the epoch, dropout by `rng::key(rng::key(seed, 2), step)`, the
//! validation masks by the fixed `VAL_SEED` (the same draw for every run, so validation losses
//! of different seeds compare). A run stopped after epoch k and resumed replays exactly what an
//! uninterrupted run does from epoch k + 1 on.

use crate::backend::{Backend, ForwardOpts, StepHyper};
use crate::batch::{Batch, BatchIter, BatchOpts};
use crate::error::{Error, Result, input, io_at, usage};
use crate::model::{ModelConfig, ParamTable, checkpoint};
use crate::rng;
use crate::store::{Dataset, SplitName};
use crate::train::config::TrainHyper;
use crate::train::log::{self, EpochLine};
use crate::train::state::{self, Counters, State};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const RUN_FILE: &str = "run.json";
pub const LOG_FILE: &str = "log.jsonl";
pub const BEST_FILE: &str = "best.safetensors";
pub const LAST_FILE: &str = "last.safetensors";
pub const STATE_FILE: &str = "state.safetensors";

/// Seed of the fixed validation masking draw (independent of the run seed).
pub const VAL_SEED: u64 = 0x7a11_da7e_5eed;
const STREAM_DATA: u64 = 1;
const STREAM_DROPOUT: u64 = 2;

/// What is trained, on what, and where it goes.
pub struct Run<'a> {
    pub ds: &'a Dataset,
    /// Dataset indices of the sessions to train on (each must be in the model config).
    pub sessions: Vec<usize>,
    pub hyper: TrainHyper,
    /// Run directory.
    pub out: PathBuf,
    /// Which parameter elements train (None = all); see `Backend::set_trainable`.
    pub trainable: Option<Vec<u8>>,
    /// Stop once this many epochs are finished (a later `Init::Resume` continues); None runs to
    /// `hyper.epochs`.
    pub stop_after: Option<usize>,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Free-form description of the run's origin (e.g. the checkpoint it finetunes), written to
    /// `run.json` and to every checkpoint's metadata.
    pub meta: BTreeMap<String, String>,
}

/// Where the parameters come from.
pub enum Init {
    /// Start a new run from these parameters (the run directory must not hold a run).
    Params(Vec<f32>),
    /// Continue the run in the directory from its state file.
    Resume,
}

/// What `train` reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Epochs finished (equal to `hyper.epochs` when the run is complete).
    pub epochs_done: usize,
    pub steps: u64,
    pub finished: bool,
    pub last: PathBuf,
    /// The best-validation checkpoint (None when no validation ran: no validation trials).
    pub best: Option<PathBuf>,
    pub best_val: Option<f64>,
    pub best_epoch: Option<usize>,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
}

impl Outcome {
    /// The checkpoint to evaluate: the best one, or the last when there was no validation.
    pub fn best_or_last(&self) -> &Path {
        self.best.as_deref().unwrap_or(&self.last)
    }
}

/// The settings of a run, as `run.json` stores them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub format: String,
    pub config: ModelConfig,
    pub hyper: TrainHyper,
    /// Session ids trained on.
    pub sessions: Vec<String>,
    /// Dataset directory (informational; not compared on resume).
    pub dataset: String,
    pub meta: BTreeMap<String, String>,
}

impl RunSettings {
    pub fn read(dir: &Path) -> Result<RunSettings> {
        let path = dir.join(RUN_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_at(&path))?;
        serde_json::from_str(&text).map_err(|e| input(&path, format!("not a run description: {e}")))
    }
}

/// Whether `dir` holds a run that `Init::Resume` can continue.
pub fn can_resume(dir: &Path) -> bool {
    dir.join(STATE_FILE).is_file() && dir.join(RUN_FILE).is_file()
}

/// Checks that the sessions fit the config and the batch size, and returns their ids.
fn check_sessions(
    ds: &Dataset,
    sessions: &[usize],
    cfg: &ModelConfig,
    hyper: &TrainHyper,
) -> Result<Vec<String>> {
    if sessions.is_empty() {
        return Err(usage("no session to train on"));
    }
    let manifest = ds.dir.join("manifest.json");
    let mut ids = Vec::with_capacity(sessions.len());
    for &s in sessions {
        if s >= ds.n_sessions() {
            return Err(usage(format!("session index {s} out of range")));
        }
        let info = ds.session(s);
        match cfg.sessions.get(&info.id) {
            Some(&n) if n == info.n_neurons => {}
            Some(&n) => {
                return Err(usage(format!(
                    "session {} has {} neurons, the model config says {n}",
                    info.id, info.n_neurons
                )));
            }
            None => {
                return Err(usage(format!(
                    "session {} is not in the model config",
                    info.id
                )));
            }
        }
        if info.n_bins != cfg.n_bins {
            return Err(usage(format!(
                "session {} has {} bins, the model has {}",
                info.id, info.n_bins, cfg.n_bins
            )));
        }
        let n_train = info.split.train.len();
        if n_train < hyper.batch_size {
            return Err(input(
                &manifest,
                format!(
                    "session {} has {n_train} training trials, fewer than one batch of {} (lower the batch size)",
                    info.id, hyper.batch_size
                ),
            ));
        }
        ids.push(info.id.clone());
    }
    Ok(ids)
}

/// Target-weighted mean loss of `backend` over every batch of `it`'s epoch 0 (dropout off).
pub fn validation_loss(backend: &mut dyn Backend, it: &mut BatchIter<'_>) -> Result<Option<f64>> {
    it.start_epoch(0);
    let mut batch = Batch::empty();
    let (mut sum, mut n) = (0f64, 0usize);
    while it.next_batch(&mut batch) {
        let k = batch.target.iter().filter(|&&t| t != 0).count();
        if k == 0 {
            continue;
        }
        let out = backend.forward(&batch, &ForwardOpts::default())?;
        sum += out.loss as f64 * k as f64;
        n += k;
    }
    Ok((n > 0).then(|| sum / n as f64))
}

fn progress_bar(show: bool, len: u64) -> indicatif::ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} steps, eta {eta} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Checkpoint metadata of a run at an epoch.
fn ckpt_meta(
    run: &Run<'_>,
    ids: &[String],
    kind: &str,
    c: &Counters,
    train: f64,
    val: Option<f64>,
) -> BTreeMap<String, String> {
    let mut m = run.meta.clone();
    m.insert("kind".into(), kind.into());
    m.insert("epoch".into(), c.epoch.to_string());
    m.insert("step".into(), c.step.to_string());
    m.insert("train_loss".into(), train.to_string());
    if let Some(v) = val {
        m.insert("val_loss".into(), v.to_string());
    }
    m.insert("seed".into(), run.hyper.seed.to_string());
    m.insert("sessions".into(), ids.join(","));
    m.insert(
        "schemes".into(),
        run.hyper
            .schemes
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(","),
    );
    m
}

fn diverged(
    run: &Run<'_>,
    what: &str,
    epoch: usize,
    step: u64,
    lr: f64,
    last_good: usize,
) -> Error {
    Error::Diverged(format!(
        "{what} at epoch {epoch}, step {step} (lr {lr:.3e}); the last good checkpoint is {} (epoch {last_good})",
        run.out.join(LAST_FILE).display()
    ))
}

/// Trains `backend` (built for `cfg`) as `run` says, from `init`. Returns when the run is
/// finished or `stop_after` epochs are done; a non-finite loss, gradient norm or parameter
/// stops it with `Error::Diverged`, leaving the checkpoints of the last good epoch in place.
pub fn train(
    backend: &mut dyn Backend,
    cfg: &ModelConfig,
    init: Init,
    run: &Run<'_>,
) -> Result<Outcome> {
    let hyper = &run.hyper;
    hyper.check().map_err(usage)?;
    let ids = check_sessions(run.ds, &run.sessions, cfg, hyper)?;
    let table = ParamTable::new(cfg);
    let ratio = hyper.mask_ratio as f32;
    let data_seed = rng::key(hyper.seed, STREAM_DATA);
    let dropout_seed = rng::key(hyper.seed, STREAM_DROPOUT);
    let mut train_it = BatchIter::new(
        run.ds,
        &run.sessions,
        SplitName::Train,
        BatchOpts::train(hyper.batch_size, &hyper.schemes, ratio, data_seed),
    )?;
    let mut val_it = BatchIter::new(
        run.ds,
        &run.sessions,
        SplitName::Val,
        BatchOpts::validation(hyper.batch_size, &hyper.schemes, ratio, VAL_SEED),
    )?;
    let per_epoch = train_it.n_batches() as u64;
    let total_steps = hyper.epochs as u64 * per_epoch;
    let sched = hyper.schedule();
    let settings = RunSettings {
        format: "ndt-run/1".into(),
        config: cfg.clone(),
        hyper: hyper.clone(),
        sessions: ids.clone(),
        dataset: run.ds.dir.display().to_string(),
        meta: run.meta.clone(),
    };
    let dir = &run.out;
    let (state_path, log_path) = (dir.join(STATE_FILE), dir.join(LOG_FILE));
    let (last_path, best_path) = (dir.join(LAST_FILE), dir.join(BEST_FILE));
    let mut counters = match init {
        Init::Params(p) => {
            if can_resume(dir) {
                return Err(usage(format!(
                    "{} already holds a run (use --resume, or another --out)",
                    dir.display()
                )));
            }
            std::fs::create_dir_all(dir).map_err(io_at(dir))?;
            let json = serde_json::to_vec_pretty(&settings)
                .map_err(|e| crate::error::internal(format!("run.json: {e}")))?;
            crate::fsutil::write_atomic(&dir.join(RUN_FILE), &json)?;
            backend.set_params(&p)?;
            log::truncate(&log_path, 0)?;
            let c = Counters {
                epoch: 0,
                step: 0,
                best_val: None,
                best_epoch: None,
            };
            // The initial parameters are the "last good" checkpoint until an epoch finishes.
            checkpoint::save(
                &last_path,
                cfg,
                &table,
                &p,
                &ckpt_meta(run, &ids, "last", &c, f64::NAN, None),
            )?;
            let (m, v) = backend.moments()?;
            state::save(
                &state_path,
                &State {
                    config: cfg.clone(),
                    counters: c.clone(),
                    params: p,
                    m,
                    v,
                },
            )?;
            c
        }
        Init::Resume => {
            let old = RunSettings::read(dir)?;
            let mut diffs = Vec::new();
            if old.config != settings.config {
                diffs.push("model config");
            }
            if old.hyper != settings.hyper {
                diffs.push("hyper-parameters");
            }
            if old.sessions != settings.sessions {
                diffs.push("sessions");
            }
            if old.meta != settings.meta {
                diffs.push("origin");
            }
            if !diffs.is_empty() {
                return Err(usage(format!(
                    "cannot resume {}: its {} differ from this run's",
                    dir.display(),
                    diffs.join(", ")
                )));
            }
            let st = state::load(&state_path)?;
            if st.config != *cfg {
                return Err(input(
                    &state_path,
                    "the state's model config differs from run.json",
                ));
            }
            backend.set_params(&st.params)?;
            backend.set_moments(&st.m, &st.v)?;
            log::truncate(&log_path, st.counters.epoch)?;
            st.counters
        }
    };
    if let Some(t) = &run.trainable {
        backend.set_trainable(t)?;
    }
    let stop = run.stop_after.unwrap_or(hyper.epochs).min(hyper.epochs);
    let bar = progress_bar(
        run.progress,
        (stop.saturating_sub(counters.epoch) as u64) * per_epoch,
    );
    let mut batch = Batch::empty();
    let (mut last_train, mut last_val) = (None, None);
    for epoch in counters.epoch + 1..=stop {
        let t0 = Instant::now();
        train_it.start_epoch(epoch as u64 - 1);
        let (mut sum, mut n, mut gsum, mut nb) = (0f64, 0usize, 0f64, 0usize);
        let mut pt = sched.at(counters.step, total_steps);
        while train_it.next_batch(&mut batch) {
            pt = sched.at(counters.step, total_steps);
            counters.step += 1;
            let hp = StepHyper {
                lr: pt.lr as f32,
                beta1: pt.beta1 as f32,
                beta2: hyper.beta2 as f32,
                eps: hyper.eps as f32,
                weight_decay: hyper.weight_decay as f32,
                clip: hyper.clip as f32,
                dropout: hyper.dropout as f32,
                step: counters.step,
                seed: rng::key(dropout_seed, counters.step),
            };
            let st = backend.train_step(&batch, &hp)?;
            if !st.loss.is_finite() || !st.grad_norm.is_finite() {
                bar.abandon();
                let what = format!(
                    "non-finite training loss ({}, gradient norm {})",
                    st.loss, st.grad_norm
                );
                let line = EpochLine {
                    epoch,
                    step: counters.step,
                    train_loss: st.loss as f64,
                    val_loss: None,
                    lr: pt.lr,
                    beta1: pt.beta1,
                    grad_norm: st.grad_norm as f64,
                    time_s: t0.elapsed().as_secs_f64(),
                    best: false,
                    diverged: true,
                };
                log::append(&log_path, &line)?;
                return Err(diverged(
                    run,
                    &what,
                    epoch,
                    counters.step,
                    pt.lr,
                    counters.epoch,
                ));
            }
            sum += st.loss as f64 * st.n_targets as f64;
            n += st.n_targets;
            gsum += st.grad_norm as f64;
            nb += 1;
            bar.inc(1);
            bar.set_message(format!(
                "epoch {epoch}/{stop} loss {:.4}",
                sum / n.max(1) as f64
            ));
        }
        let train_loss = sum / n.max(1) as f64;
        let validate = epoch % hyper.val_every == 0 || epoch == hyper.epochs;
        let val = if validate {
            validation_loss(backend, &mut val_it)?
        } else {
            None
        };
        let params = backend.params()?;
        if val.is_some_and(|v| !v.is_finite()) || params.iter().any(|x| !x.is_finite()) {
            bar.abandon();
            let what = match val {
                Some(v) if !v.is_finite() => format!("non-finite validation loss ({v})"),
                _ => "non-finite parameters".to_string(),
            };
            return Err(diverged(
                run,
                &what,
                epoch,
                counters.step,
                pt.lr,
                counters.epoch,
            ));
        }
        counters.epoch = epoch;
        let improved = match (val, counters.best_val) {
            (Some(v), Some(b)) => v < b,
            (Some(_), None) => true,
            _ => false,
        };
        if improved {
            counters.best_val = val;
            counters.best_epoch = Some(epoch);
        }
        let line = EpochLine {
            epoch,
            step: counters.step,
            train_loss,
            val_loss: val,
            lr: pt.lr,
            beta1: pt.beta1,
            grad_norm: gsum / nb.max(1) as f64,
            time_s: t0.elapsed().as_secs_f64(),
            best: improved,
            diverged: false,
        };
        log::append(&log_path, &line)?;
        if improved {
            checkpoint::save(
                &best_path,
                cfg,
                &table,
                &params,
                &ckpt_meta(run, &ids, "best", &counters, train_loss, val),
            )?;
        }
        checkpoint::save(
            &last_path,
            cfg,
            &table,
            &params,
            &ckpt_meta(run, &ids, "last", &counters, train_loss, val),
        )?;
        let (m, v) = backend.moments()?;
        state::save(
            &state_path,
            &State {
                config: cfg.clone(),
                counters: counters.clone(),
                params,
                m,
                v,
            },
        )?;
        last_train = Some(train_loss);
        last_val = val.or(last_val);
    }
    bar.finish_and_clear();
    Ok(Outcome {
        epochs_done: counters.epoch,
        steps: counters.step,
        finished: counters.epoch >= hyper.epochs,
        last: last_path,
        best: counters.best_epoch.map(|_| best_path),
        best_val: counters.best_val,
        best_epoch: counters.best_epoch,
        train_loss: last_train,
        val_loss: last_val,
    })
}
