//! The training loop of SPEC §4 over any `Backend`.
//!
//! An epoch visits every train batch of every session once (`BatchIter`: shuffled trials,
//! sessions interleaved, one masking scheme per batch drawn from the enabled ones). Each step
//! takes its learning rate and β₁ from the OneCycle schedule over `epochs × batches` steps.
//! After each epoch the run directory gets a log line; `last.safetensors`, `best.safetensors` (when
//! the validation loss improved since the last write) and the resume state are written at the
//! run's checkpoint cadence (`Run::checkpoint_every`), at its end, at `stop_after`, and when a
//! stop signal arrives (checked at every step boundary). Between writes the best parameters live
//! in memory; the resume state holds them too, so a run killed between writes loses at most one
//! interval of work and nothing of its best model. Nothing is written before the first interval
//! ends (a run killed then has no state and starts over, which loses the same interval), and a
//! finished run's state holds its counters only (`state::save_finished`): its results are
//! `best` and `last`, and resuming it does nothing.
//!
//! Run directory (`--out RUN`):
//! - `run.json`: the settings (model config, hyper-parameters, sessions, origin), checked on resume;
//! - `log.jsonl`: one line per epoch (see `train::log`);
//! - `best.safetensors`, `last.safetensors`: checkpoints (`model::checkpoint`);
//! - `state.safetensors`: parameters, AdamW moments, best parameters and counters for `--resume`
//!   (`train::state`; counters only once the run is finished); written last, so the checkpoints
//!   on disk are never behind it; absent until the first write;
//! - `.ndt.lock`: held while a process writes the run (`train::lock`).
//!
//! Randomness is counter-based and keyed by the run seed: batch order and masks by
//! `rng::key(seed, 1)` and the epoch, dropout by `rng::key(rng::key(seed, 2), step)`, the
//! validation masks by the fixed `VAL_SEED` (the same draw for every run, so validation losses
//! of different seeds compare). A run stopped after step k (at an epoch boundary or part way
//! through an epoch) and resumed replays exactly what an uninterrupted run does from step k + 1 on.

use crate::backend::{Backend, ForwardOpts, StepHyper};
use crate::batch::{Batch, BatchIter, BatchOpts};
use crate::error::{Error, Result, input, io_at, usage};
use crate::model::{ModelConfig, ParamTable, checkpoint};
use crate::rng;
use crate::store::{Dataset, SplitName};
use crate::train::cadence::Cadence;
use crate::train::config::TrainHyper;
use crate::train::lock::RunLock;
use crate::train::log::{self, EpochLine};
use crate::train::signals;
use crate::train::state::{self, Counters, PartialEpoch};
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
    /// When the resume state and checkpoints are written (besides the end, `stop_after` and a
    /// stop signal).
    pub checkpoint_every: Cadence,
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
        "{elapsed_precise} [{bar:24}] {pos}/{len} {msg} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The run directory's files.
struct Files {
    dir: PathBuf,
    run: PathBuf,
    log: PathBuf,
    best: PathBuf,
    last: PathBuf,
    state: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            dir: dir.to_path_buf(),
            run: dir.join(RUN_FILE),
            log: dir.join(LOG_FILE),
            best: dir.join(BEST_FILE),
            last: dir.join(LAST_FILE),
            state: dir.join(STATE_FILE),
        }
    }
}

/// What every part of the loop needs to know about the run.
struct Ctx<'r, 'a> {
    run: &'r Run<'a>,
    cfg: &'r ModelConfig,
    table: ParamTable,
    ids: Vec<String>,
    files: Files,
}

/// Sums of one epoch's steps.
#[derive(Default)]
struct EpochSums {
    loss: f64,
    targets: usize,
    grad_norm: f64,
    steps: usize,
    step_s: f64,
}

impl EpochSums {
    fn partial(&self, time_s: f64) -> PartialEpoch {
        PartialEpoch {
            loss_bits: self.loss.to_bits(),
            targets: self.targets as u64,
            grad_norm_bits: self.grad_norm.to_bits(),
            steps: self.steps as u64,
            step_s: self.step_s,
            time_s,
        }
    }

    fn from_partial(p: &PartialEpoch) -> EpochSums {
        EpochSums {
            loss: f64::from_bits(p.loss_bits),
            targets: p.targets as usize,
            grad_norm: f64::from_bits(p.grad_norm_bits),
            steps: p.steps as usize,
            step_s: p.step_s,
        }
    }
}

/// A checkpoint held in memory until the next write.
type Held = (Vec<f32>, BTreeMap<String, String>);

/// What lives in memory between writes.
struct Mem {
    /// The best parameters so far and their metadata (also in every resume state).
    best: Option<Held>,
    /// Whether `best` differs from `best.safetensors`.
    best_dirty: bool,
    /// The last finished epoch's parameters when `last.safetensors` is behind them.
    last: Option<Held>,
    since: Instant,
    since_epoch: usize,
}

impl Ctx<'_, '_> {
    /// Checkpoint metadata at an epoch.
    fn meta(
        &self,
        kind: &str,
        c: &Counters,
        train: f64,
        val: Option<f64>,
    ) -> BTreeMap<String, String> {
        let mut m = self.run.meta.clone();
        m.insert("kind".into(), kind.into());
        m.insert("epoch".into(), c.epoch.to_string());
        m.insert("step".into(), c.step.to_string());
        m.insert("train_loss".into(), train.to_string());
        if let Some(v) = val {
            m.insert("val_loss".into(), v.to_string());
        }
        m.insert("seed".into(), self.run.hyper.seed.to_string());
        m.insert("sessions".into(), self.ids.join(","));
        let schemes: Vec<&str> = self.run.hyper.schemes.iter().map(|s| s.name()).collect();
        m.insert("schemes".into(), schemes.join(","));
        m
    }

    fn diverged(&self, what: &str, epoch: usize, step: u64, lr: f64, last_good: usize) -> Error {
        Error::Diverged(format!(
            "{what} at epoch {epoch}, step {step} (lr {lr:.3e}); the last good checkpoint is {} (epoch {last_good})",
            self.files.last.display()
        ))
    }

    /// Writes the checkpoints held in memory: `best` when it changed, `last` when it is behind.
    fn flush_checkpoints(&self, mem: &mut Mem) -> Result<()> {
        if mem.best_dirty
            && let Some((p, meta)) = &mem.best
        {
            checkpoint::save(&self.files.best, self.cfg, &self.table, p, meta)?;
            mem.best_dirty = false;
        }
        if let Some((p, meta)) = mem.last.take() {
            checkpoint::save(&self.files.last, self.cfg, &self.table, &p, &meta)?;
        }
        Ok(())
    }

    /// Writes the held checkpoints, then the resume state at `c` with the backend's current
    /// parameters `params` (the state last: it is the point a resumed run starts from, and the
    /// checkpoints on disk are never behind it). At the run's last epoch the state is the
    /// finished run's, without tensors.
    fn write(
        &self,
        backend: &dyn Backend,
        c: &Counters,
        params: &[f32],
        mem: &mut Mem,
    ) -> Result<()> {
        self.flush_checkpoints(mem)?;
        if c.epoch >= self.run.hyper.epochs {
            state::save_finished(&self.files.state, self.cfg, c)?;
        } else {
            let (m, v) = backend.moments()?;
            let best = mem.best.as_ref().map(|(b, meta)| (b.as_slice(), meta));
            state::save_parts(&self.files.state, self.cfg, c, [params, &m, &v], best)?;
        }
        mem.since = Instant::now();
        mem.since_epoch = c.epoch;
        Ok(())
    }

    fn settings(&self) -> RunSettings {
        RunSettings {
            format: "ndt-run/1".into(),
            config: self.cfg.clone(),
            hyper: self.run.hyper.clone(),
            sessions: self.ids.clone(),
            dataset: self.run.ds.dir.display().to_string(),
            meta: self.run.meta.clone(),
        }
    }

    /// Starts a new run (writes `run.json`; the initial parameters are held as the last
    /// checkpoint until the first write) or restores the run in the directory, and returns where
    /// the loop stands.
    fn start(
        &self,
        backend: &mut dyn Backend,
        init: Init,
        per_epoch: u64,
    ) -> Result<(Counters, Mem)> {
        let settings = self.settings();
        let f = &self.files;
        let mut mem = Mem {
            best: None,
            best_dirty: false,
            last: None,
            since: Instant::now(),
            since_epoch: 0,
        };
        match init {
            Init::Params(p) => {
                if can_resume(&f.dir) {
                    return Err(usage(format!(
                        "{} already holds a run (use --resume, or another --out)",
                        f.dir.display()
                    )));
                }
                std::fs::create_dir_all(&f.dir).map_err(io_at(&f.dir))?;
                let json = serde_json::to_vec_pretty(&settings)
                    .map_err(|e| crate::error::internal(format!("run.json: {e}")))?;
                crate::fsutil::write_atomic(&f.run, &json)?;
                backend.set_params(&p)?;
                log::truncate(&f.log, 0)?;
                let c = Counters::start();
                // The initial parameters are the last good checkpoint until an epoch finishes;
                // held, not written: until the first write a killed run starts over.
                mem.last = Some((p, self.meta("last", &c, f64::NAN, None)));
                Ok((c, mem))
            }
            Init::Resume => {
                if !can_resume(&f.dir) {
                    return Err(usage(format!(
                        "nothing to resume in {} (no {RUN_FILE} and {STATE_FILE})",
                        f.dir.display()
                    )));
                }
                let old = RunSettings::read(&f.dir)?;
                let diffs: Vec<&str> = [
                    (old.config != settings.config, "model config"),
                    (old.hyper != settings.hyper, "hyper-parameters"),
                    (old.sessions != settings.sessions, "sessions"),
                    (old.meta != settings.meta, "origin"),
                ]
                .into_iter()
                .filter_map(|(d, what)| d.then_some(what))
                .collect();
                if !diffs.is_empty() {
                    return Err(usage(format!(
                        "cannot resume {}: its {} differ from this run's",
                        f.dir.display(),
                        diffs.join(", ")
                    )));
                }
                let st = state::load(&f.state)?;
                if st.config != *self.cfg {
                    return Err(input(
                        &f.state,
                        "the state's model config differs from run.json",
                    ));
                }
                state::check(&f.state, &st.counters, self.run.hyper.epochs, per_epoch)?;
                let finished = state::is_finished(&st);
                if finished && st.counters.epoch < self.run.hyper.epochs {
                    return Err(input(
                        &f.state,
                        format!(
                            "a finished run's state (no parameters) at epoch {}, but the run has {} epochs",
                            st.counters.epoch, self.run.hyper.epochs
                        ),
                    ));
                }
                let c = st.counters;
                if c.epoch >= self.run.hyper.epochs {
                    // Finished: nothing to restore, nothing to rewrite.
                    return Ok((c, mem));
                }
                backend.set_params(&st.params)?;
                backend.set_moments(&st.m, &st.v)?;
                log::truncate(&f.log, c.epoch)?;
                if let Some((b, meta)) = st.best {
                    // `best.safetensors` may be from a later epoch than the state (written just
                    // before a kill; the replay rewrites it) or, on a backend that does not replay
                    // bit for bit, hold parameters the resumed run never reaches: rewrite it from
                    // the state at the next write unless it is the state's own best.
                    let on_disk = checkpoint::load(&f.best).ok().map(|x| x.2);
                    mem.best_dirty = on_disk.as_ref() != Some(&meta);
                    mem.best = Some((b, meta));
                }
                mem.since_epoch = c.epoch;
                eprintln!(
                    "resuming {} after epoch {} and {} more batches (step {})",
                    f.dir.display(),
                    c.epoch,
                    c.batch,
                    c.step
                );
                Ok((c, mem))
            }
        }
    }
}

/// The last training and validation losses of a log (for a run resumed after it finished).
fn last_losses(path: &Path) -> (Option<f64>, Option<f64>) {
    let lines = log::read(path).unwrap_or_default();
    let train = lines.last().map(|l| l.train_loss);
    let val = lines.iter().rev().find_map(|l| l.val_loss);
    (train, val)
}

/// Trains `backend` (built for `cfg`) as `run` says, from `init`. Returns when the run is
/// finished or `stop_after` epochs are done; a non-finite loss, gradient norm or parameter
/// stops it with `Error::Diverged`, leaving the checkpoints of the last good epoch in place; a
/// stop signal (`train::signals`) writes the resume state at the next step boundary and returns
/// `Error::Interrupted`. The run directory is locked (`train::lock`) throughout.
pub fn train(
    backend: &mut dyn Backend,
    cfg: &ModelConfig,
    init: Init,
    run: &Run<'_>,
) -> Result<Outcome> {
    let hyper = &run.hyper;
    hyper.check().map_err(usage)?;
    let ctx = Ctx {
        run,
        cfg,
        table: ParamTable::new(cfg),
        ids: check_sessions(run.ds, &run.sessions, cfg, hyper)?,
        files: Files::new(&run.out),
    };
    if matches!(init, Init::Resume) && !can_resume(&run.out) {
        if run.out.join(RUN_FILE).is_file() {
            // A process may be writing the run before its first write: that is the error then.
            let _lock = RunLock::acquire(&run.out)?;
            return Err(usage(format!(
                "nothing to resume in {}: the run stopped before its first write (no {STATE_FILE}); \
                 start it again without --resume",
                run.out.display()
            )));
        }
        return Err(usage(format!(
            "nothing to resume in {} (no {RUN_FILE} and {STATE_FILE})",
            run.out.display()
        )));
    }
    let _lock = RunLock::acquire(&run.out)?;
    let ratio = hyper.mask_ratio as f32;
    let data_seed = rng::key(hyper.seed, STREAM_DATA);
    let dropout_seed = rng::key(hyper.seed, STREAM_DROPOUT);
    let train_opts = BatchOpts::train(hyper.batch_size, &hyper.schemes, ratio, data_seed);
    let val_opts = BatchOpts::validation(hyper.batch_size, &hyper.schemes, ratio, VAL_SEED);
    let mut train_it = BatchIter::new(run.ds, &run.sessions, SplitName::Train, train_opts)?;
    let mut val_it = BatchIter::new(run.ds, &run.sessions, SplitName::Val, val_opts)?;
    let per_epoch = train_it.n_batches() as u64;
    let total_steps = hyper.epochs as u64 * per_epoch;
    let sched = hyper.schedule();

    let (mut c, mut mem) = ctx.start(backend, init, per_epoch)?;
    if c.epoch >= hyper.epochs {
        eprintln!(
            "{}: the run is already finished ({} epochs); nothing to do",
            run.out.display(),
            c.epoch
        );
        let (train_loss, val_loss) = last_losses(&ctx.files.log);
        return Ok(Outcome {
            epochs_done: c.epoch,
            steps: c.step,
            finished: true,
            last: ctx.files.last.clone(),
            best: c.best_epoch.map(|_| ctx.files.best.clone()),
            best_val: c.best(),
            best_epoch: c.best_epoch,
            train_loss,
            val_loss,
        });
    }
    if let Some(t) = &run.trainable {
        backend.set_trainable(t)?;
    }
    let stop = run.stop_after.unwrap_or(hyper.epochs).min(hyper.epochs);
    let todo = (stop as u64 * per_epoch).saturating_sub(c.step);
    let bar = progress_bar(run.progress, todo);
    let mut batch = Batch::empty();
    let (mut last_train, mut last_val) = (None, None);
    let interrupted = |c: &Counters| {
        Error::Interrupted(format!(
            "{}: stopped by a signal with its state saved after {} epochs and {} steps; \
             resuming (--resume, or running the sweep again) continues from there",
            run.out.display(),
            c.epoch,
            c.step
        ))
    };
    for epoch in c.epoch + 1..=stop {
        let t0 = Instant::now();
        train_it.start_epoch(epoch as u64 - 1);
        let (mut sums, time_before) = match c.partial.take() {
            Some(p) => {
                train_it.seek(c.batch as usize);
                (EpochSums::from_partial(&p), p.time_s)
            }
            None => (EpochSums::default(), 0.0),
        };
        c.batch = 0;
        let mut pt = sched.at(c.step, total_steps);
        loop {
            let pos = train_it.position();
            let stopping = signals::requested();
            // After the epoch's last batch the epoch's end decides (validation comes first).
            let inside = pos < train_it.n_batches();
            if inside
                && (stopping
                    || (pos > 0 && run.checkpoint_every.due_mid_epoch(mem.since.elapsed())))
            {
                let mut at = c.clone();
                if pos > 0 {
                    at.batch = pos as u64;
                    at.partial = Some(sums.partial(time_before + t0.elapsed().as_secs_f64()));
                }
                let params = backend.params()?;
                ctx.write(backend, &at, &params, &mut mem)?;
                if stopping {
                    bar.abandon();
                    return Err(interrupted(&at));
                }
            }
            if !train_it.next_batch(&mut batch) {
                break;
            }
            pt = sched.at(c.step, total_steps);
            c.step += 1;
            let hp = StepHyper {
                lr: pt.lr as f32,
                beta1: pt.beta1 as f32,
                beta2: hyper.beta2 as f32,
                eps: hyper.eps as f32,
                weight_decay: hyper.weight_decay as f32,
                clip: hyper.clip as f32,
                dropout: hyper.dropout as f32,
                step: c.step,
                seed: rng::key(dropout_seed, c.step),
            };
            let ts = Instant::now();
            let st = backend.train_step(&batch, &hp)?;
            sums.step_s += ts.elapsed().as_secs_f64();
            if !st.loss.is_finite() || !st.grad_norm.is_finite() {
                bar.abandon();
                ctx.flush_checkpoints(&mut mem)?;
                let line = EpochLine {
                    epoch,
                    step: c.step,
                    train_loss: st.loss as f64,
                    val_loss: None,
                    lr: pt.lr,
                    beta1: pt.beta1,
                    grad_norm: st.grad_norm as f64,
                    time_s: time_before + t0.elapsed().as_secs_f64(),
                    step_s: Some(sums.step_s),
                    best: false,
                    diverged: true,
                };
                log::append(&ctx.files.log, &line)?;
                let what = format!(
                    "non-finite training loss ({}, gradient norm {})",
                    st.loss, st.grad_norm
                );
                return Err(ctx.diverged(&what, epoch, c.step, pt.lr, c.epoch));
            }
            sums.loss += st.loss as f64 * st.n_targets as f64;
            sums.targets += st.n_targets;
            sums.grad_norm += st.grad_norm as f64;
            sums.steps += 1;
            bar.inc(1);
            let mean = sums.loss / sums.targets.max(1) as f64;
            bar.set_message(format!("ep {epoch}/{stop} loss {mean:.4}"));
        }
        let train_loss = sums.loss / sums.targets.max(1) as f64;
        let validate = epoch % hyper.val_every == 0 || epoch == hyper.epochs;
        let val = if validate {
            validation_loss(backend, &mut val_it)?
        } else {
            None
        };
        let params = backend.params()?;
        let bad_val = val.filter(|v| !v.is_finite());
        if bad_val.is_some() || params.iter().any(|x| !x.is_finite()) {
            bar.abandon();
            ctx.flush_checkpoints(&mut mem)?;
            let what = match bad_val {
                Some(v) => format!("non-finite validation loss ({v})"),
                None => "non-finite parameters".to_string(),
            };
            return Err(ctx.diverged(&what, epoch, c.step, pt.lr, c.epoch));
        }
        c.epoch = epoch;
        let improved = match (val, c.best()) {
            (Some(v), Some(b)) => v < b,
            (Some(_), None) => true,
            _ => false,
        };
        if improved && let Some(v) = val {
            c.set_best(v, epoch);
            mem.best = Some((params.clone(), ctx.meta("best", &c, train_loss, val)));
            mem.best_dirty = true;
        }
        let line = EpochLine {
            epoch,
            step: c.step,
            train_loss,
            val_loss: val,
            lr: pt.lr,
            beta1: pt.beta1,
            grad_norm: sums.grad_norm / sums.steps.max(1) as f64,
            time_s: time_before + t0.elapsed().as_secs_f64(),
            step_s: Some(sums.step_s),
            best: improved,
            diverged: false,
        };
        log::append(&ctx.files.log, &line)?;
        let meta = ctx.meta("last", &c, train_loss, val);
        let stopping = signals::requested();
        let due = stopping
            || epoch == stop
            || run
                .checkpoint_every
                .due_at_epoch((epoch - mem.since_epoch) as u64, mem.since.elapsed());
        if due {
            checkpoint::save(&ctx.files.last, cfg, &ctx.table, &params, &meta)?;
            mem.last = None;
            ctx.write(backend, &c, &params, &mut mem)?;
        } else {
            mem.last = Some((params, meta));
        }
        if stopping && epoch < stop {
            bar.abandon();
            return Err(interrupted(&c));
        }
        last_train = Some(train_loss);
        last_val = val.or(last_val);
    }
    bar.finish_and_clear();
    Ok(Outcome {
        epochs_done: c.epoch,
        steps: c.step,
        finished: c.epoch >= hyper.epochs,
        last: ctx.files.last.clone(),
        best: c.best_epoch.map(|_| ctx.files.best.clone()),
        best_val: c.best(),
        best_epoch: c.best_epoch,
        train_loss: last_train,
        val_loss: last_val,
    })
}
