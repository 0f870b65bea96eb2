//! The sweep's `Work` on a real dataset: pretraining, finetuning and evaluation through the
//! trainer (`train::run`) and the evaluator (`eval::tasks`).
//!
//! A job is one call of the trainer, which runs all its epochs on one backend; the worker keeps
//! that backend for the next job when the model config is the same (`train::device::Worker`:
//! for CUDA the context, compiled modules, workspace and graphs; for the CPU its thread pool).
//! The trainer writes the job's resume state at the plan's `checkpoint_every` cadence and, at the
//! next step boundary, when SIGTERM, SIGINT or SIGUSR1 arrives (`train::signals`); the job then
//! stops with `Error::Interrupted`, and the next run of the same job resumes from there
//! (bit-identical to an uninterrupted run on the CPU).

use crate::error::{Result, internal, usage};
use crate::eval::tasks::EvalOpts;
use crate::exp::plan::{Plan, Stage};
use crate::exp::sweep::{FinetuneEval, Work};
use crate::scheme::Scheme;
use crate::store::{Dataset, SplitName};
use crate::train::cadence::Cadence;
use crate::train::config::RunConfig;
use crate::train::device::{Device, Worker};
use crate::train::finetune::Mode;
use crate::train::run::{Exec, evaluate_checkpoint_on, finetune_on, pretrain_on, resumable};
use crate::train::trainer::Outcome;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct DatasetWork {
    ds: Dataset,
    base: RunConfig,
    device: Device,
    threads: usize,
    checkpoint_every: Cadence,
    worker: RefCell<Worker>,
}

/// The plan's `[model]` table (`preset` plus overrides) as a run config.
fn run_config(plan: &Plan) -> Result<RunConfig> {
    let mut model = plan.model.clone();
    let preset = match model.remove("preset") {
        None => "small".to_string(),
        Some(toml::Value::String(s)) => s,
        Some(v) => return Err(usage(format!("[model] preset = {v}: expected a string"))),
    };
    let mut doc = toml::Table::new();
    doc.insert("preset".into(), toml::Value::String(preset));
    if !model.is_empty() {
        doc.insert("model".into(), toml::Value::Table(model));
    }
    let text = toml::to_string(&doc).map_err(|e| internal(e.to_string()))?;
    RunConfig::from_toml(&text, &plan.dataset.join("<plan [model]>"))
}

impl DatasetWork {
    /// The work of `plan` on `threads` CPU threads per job, writing each job's state every
    /// `checkpoint_every` (None: the plan's `checkpoint_every`).
    pub fn new(
        plan: &Plan,
        threads: usize,
        checkpoint_every: Option<Cadence>,
        cuda: &crate::cuda::Settings,
    ) -> Result<DatasetWork> {
        let ds = Dataset::open(&plan.dataset)?;
        let checkpoint_every = match checkpoint_every {
            Some(c) => c,
            None => plan.cadence().map_err(usage)?,
        };
        let device = match plan.device.as_str() {
            // Resolved once here: every job opens its backend on the same device.
            "auto" => match crate::cuda::available(cuda) {
                Ok(_) => Device::Cuda,
                Err(why) => {
                    eprintln!("note: no usable GPU ({why}); running on the CPU");
                    Device::Cpu
                }
            },
            "cpu" => Device::Cpu,
            "cuda" => Device::Cuda,
            d => {
                return Err(usage(format!(
                    "device = \"{d}\" in the plan (auto, cpu, cuda)"
                )));
            }
        };
        crate::train::signals::install()?;
        Ok(DatasetWork {
            ds,
            base: run_config(plan)?,
            device,
            threads,
            checkpoint_every,
            worker: RefCell::new(Worker::new(device, threads, *cuda)),
        })
    }

    fn session(&self, id: &str) -> Result<usize> {
        self.ds.find(id).ok_or_else(|| {
            usage(format!(
                "session `{id}` is not in {}",
                self.ds.dir.display()
            ))
        })
    }

    fn run_config(&self, stage: &Stage, seed: u64) -> Result<RunConfig> {
        let mut rc = self.base.clone();
        rc.train.epochs = stage.epochs;
        rc.train.lr = stage.lr as f64;
        rc.train.batch_size = stage.batch_size;
        rc.train.seed = seed;
        rc.train.schemes = Scheme::parse_list(&stage.schemes.join(","))
            .map_err(|e| usage(format!("sweep stage schemes: {e}")))?;
        Ok(rc)
    }

    /// Runs a job's training to its end in one call of the trainer (resuming what a stopped or
    /// killed run of the job left in `out`).
    fn train(
        &self,
        out: &Path,
        step: impl FnOnce(&mut Worker, &Exec) -> Result<Outcome>,
    ) -> Result<Outcome> {
        let exec = Exec {
            device: self.device,
            threads: self.threads,
            progress: false,
            stop_after: None,
            resume: resumable(out),
            checkpoint_every: self.checkpoint_every,
            cuda: self.worker.borrow().cuda,
        };
        let mut worker = self.worker.borrow_mut();
        step(&mut worker, &exec)
    }

    /// Evaluates `ckpt` on session `s`'s split on this work's backend.
    fn eval_on(
        &self,
        ckpt: &Path,
        s: usize,
        split: &str,
        only_forward: bool,
        baselines: bool,
    ) -> Result<BTreeMap<String, f64>> {
        let split = match split {
            "val" => SplitName::Val,
            "test" => SplitName::Test,
            other => return Err(internal(format!("unknown split {other}"))),
        };
        let opts = EvalOpts {
            split,
            tasks: if only_forward {
                vec![Scheme::Forward]
            } else {
                Scheme::ALL.to_vec()
            },
            choice: !only_forward,
            baselines,
            ..EvalOpts::default()
        };
        let mut worker = self.worker.borrow_mut();
        let report = evaluate_checkpoint_on(&mut worker, ckpt, &self.ds, s, &opts)?;
        Ok(report.metrics())
    }
}

impl Work for DatasetWork {
    fn pretrain(
        &self,
        sessions: &[String],
        stage: &Stage,
        seed: u64,
        work: &Path,
    ) -> Result<PathBuf> {
        let idx: Vec<usize> = sessions
            .iter()
            .map(|s| self.session(s))
            .collect::<Result<_>>()?;
        let rc = self.run_config(stage, seed)?;
        let out = work.join("run");
        let o = self.train(&out, |w, exec| {
            pretrain_on(w, &self.ds, &idx, &rc, &out, exec)
        })?;
        Ok(o.best_or_last().to_path_buf())
    }

    fn finetune_eval(&self, job: &FinetuneEval, work: &Path) -> Result<BTreeMap<String, f64>> {
        let s = self.session(job.session)?;
        let rc = self.run_config(job.stage, job.seed)?;
        let out = work.join("run");
        let o = match job.ckpt {
            None => self.train(&out, |w, exec| {
                pretrain_on(w, &self.ds, &[s], &rc, &out, exec)
            })?,
            Some(ckpt) => {
                let mode = Mode::parse(job.stage.mode.as_deref().unwrap_or("frozen-core"))?;
                self.train(&out, |w, exec| {
                    finetune_on(w, &self.ds, s, ckpt, mode, &rc.train, &out, exec)
                })?
            }
        };
        self.eval_on(
            o.best_or_last(),
            s,
            job.split,
            job.only_forward,
            job.baselines,
        )
    }

    fn evaluate(
        &self,
        ckpt: &Path,
        session: &str,
        split: &str,
        only_forward: bool,
    ) -> Result<BTreeMap<String, f64>> {
        let s = self.session(session)?;
        self.eval_on(ckpt, s, split, only_forward, false)
    }

    fn train_trials(&self, session: &str) -> Result<usize> {
        Ok(self
            .ds
            .session(self.session(session)?)
            .split(SplitName::Train)
            .len())
    }
}
