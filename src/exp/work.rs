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

use crate::backend::Backend;
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
use crate::train::group::{PerDevice, train_group_then};
use crate::train::run::{
    Exec, Prepared, evaluate_checkpoint_in, evaluate_checkpoint_on, prepare_finetune,
    prepare_pretrain, resumable,
};
use crate::train::trainer::Outcome;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct DatasetWork {
    s: Setup,
    worker: RefCell<Worker>,
    per_device: PerDevice,
}

/// What setting up a job needs (shared by the threads of a group; the worker's backend is not
/// part of it).
struct Setup {
    ds: Dataset,
    base: RunConfig,
    device: Device,
    threads: usize,
    checkpoint_every: Cadence,
    cuda: crate::cuda::Settings,
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

impl Setup {
    fn exec(&self, out: &Path) -> Exec {
        Exec {
            device: self.device,
            threads: self.threads,
            progress: false,
            stop_after: None,
            resume: resumable(out),
            checkpoint_every: self.checkpoint_every,
            cuda: self.cuda,
        }
    }

    /// Sets up `job`'s training in `out`, as `finetune_eval` runs it.
    fn prepare<'a>(&'a self, job: &FinetuneEval, out: &Path) -> Result<Prepared<'a>> {
        let s = self.session(job.session)?;
        let rc = self.run_config(job.stage, job.seed)?;
        let exec = self.exec(out);
        match job.ckpt {
            None => prepare_pretrain(&self.ds, &[s], &rc, out, &exec),
            Some(ckpt) => {
                let mode = Mode::parse(job.stage.mode.as_deref().unwrap_or("frozen-core"))?;
                prepare_finetune(&self.ds, s, ckpt, mode, &rc.train, out, &exec)
            }
        }
    }

    /// Sets up the pretraining of `sessions` with `stage` and `seed` in `out`.
    fn pretraining<'a>(
        &'a self,
        sessions: &[String],
        stage: &Stage,
        seed: u64,
        out: &Path,
    ) -> Result<Prepared<'a>> {
        let idx: Vec<usize> = sessions
            .iter()
            .map(|s| self.session(s))
            .collect::<Result<_>>()?;
        let rc = self.run_config(stage, seed)?;
        prepare_pretrain(&self.ds, &idx, &rc, out, &self.exec(out))
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
            s: Setup {
                ds,
                base: run_config(plan)?,
                device,
                threads,
                checkpoint_every,
                cuda: *cuda,
            },
            worker: RefCell::new(Worker::new(device, threads, *cuda)),
            per_device: PerDevice::default(),
        })
    }

    /// Trains up to `k` jobs of a stage side by side (`--models-per-device`; the CPU backend
    /// only: the fused CUDA step is not built, so a number above 1 on the GPU is a usage error
    /// and `auto` there is one model at a time, with a note).
    pub fn with_models_per_device(mut self, k: PerDevice) -> Result<DatasetWork> {
        if k == PerDevice::Auto && self.s.device == Device::Cuda {
            eprintln!(
                "note: --models-per-device auto trains one model at a time on the GPU (the \
                 fused CUDA step is not built)"
            );
            self.per_device = PerDevice::K(1);
            return Ok(self);
        }
        if k != PerDevice::K(1) && self.s.device == Device::Cuda {
            return Err(usage(
                "--models-per-device (or the plan's models_per_device) above 1 runs on the CPU \
                 backend only for now: the fused CUDA step is not built; use 1 on the GPU",
            ));
        }
        self.per_device = k;
        Ok(self)
    }

    /// Runs a job's training (set up by `Setup`, resuming what a stopped or killed run of the
    /// job left in its folder) to its end in one call of the trainer, on the worker's backend.
    fn train(&self, p: Prepared) -> Result<Outcome> {
        let mut worker = self.worker.borrow_mut();
        let backend = worker.backend(&p.cfg)?;
        crate::train::trainer::train(backend, &p.cfg, p.init, &p.run)
    }

    /// The evaluation options of a job.
    fn eval_opts(split: &str, only_forward: bool, baselines: bool) -> Result<EvalOpts> {
        let split = match split {
            "val" => SplitName::Val,
            "test" => SplitName::Test,
            other => return Err(internal(format!("unknown split {other}"))),
        };
        Ok(EvalOpts {
            split,
            tasks: if only_forward {
                vec![Scheme::Forward]
            } else {
                Scheme::ALL.to_vec()
            },
            choice: !only_forward,
            baselines,
            ..EvalOpts::default()
        })
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
        let opts = Self::eval_opts(split, only_forward, baselines)?;
        let mut worker = self.worker.borrow_mut();
        let report = evaluate_checkpoint_on(&mut worker, ckpt, &self.s.ds, s, &opts)?;
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
        let p = self
            .s
            .pretraining(sessions, stage, seed, &work.join("run"))?;
        Ok(self.train(p)?.best_or_last().to_path_buf())
    }

    fn finetune_eval(&self, job: &FinetuneEval, work: &Path) -> Result<BTreeMap<String, f64>> {
        let o = self.train(self.s.prepare(job, &work.join("run"))?)?;
        let s = self.s.session(job.session)?;
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
        let s = self.s.session(session)?;
        self.eval_on(ckpt, s, split, only_forward, false)
    }

    fn train_trials(&self, session: &str) -> Result<usize> {
        Ok(self
            .s
            .ds
            .session(self.s.session(session)?)
            .split(SplitName::Train)
            .len())
    }

    fn models_per_device(&self) -> PerDevice {
        self.per_device
    }

    fn finetune_eval_group(
        &self,
        jobs: &[(FinetuneEval<'_>, PathBuf)],
    ) -> Vec<Result<BTreeMap<String, f64>>> {
        if !self.fuses(jobs.len()) {
            return jobs
                .iter()
                .map(|(j, work)| self.finetune_eval(j, work))
                .collect();
        }
        let st = &self.s;
        let setup = |i: usize| -> Result<Prepared> {
            let (j, work) = jobs
                .get(i)
                .ok_or_else(|| internal("a group member out of range"))?;
            st.prepare(j, &work.join("run"))
        };
        let eval = |i: usize, r: Result<(&mut dyn Backend, Outcome)>| {
            let (b, o) = r?;
            let (j, _) = jobs
                .get(i)
                .ok_or_else(|| internal("a group member out of range"))?;
            let opts = Self::eval_opts(j.split, j.only_forward, j.baselines)?;
            let s = st.session(j.session)?;
            let report = evaluate_checkpoint_in(|_| Ok(b), o.best_or_last(), &st.ds, s, &opts)?;
            Ok(report.metrics())
        };
        self.side_by_side("finetunes", jobs.len(), setup, eval)
    }

    fn pretrain_group(&self, jobs: &[(Vec<String>, Stage, u64, PathBuf)]) -> Vec<Result<PathBuf>> {
        if !self.fuses(jobs.len()) {
            return jobs
                .iter()
                .map(|(sessions, stage, seed, work)| self.pretrain(sessions, stage, *seed, work))
                .collect();
        }
        let st = &self.s;
        let setup = |i: usize| -> Result<Prepared> {
            let (sessions, stage, seed, work) = jobs
                .get(i)
                .ok_or_else(|| internal("a group member out of range"))?;
            st.pretraining(sessions, stage, *seed, &work.join("run"))
        };
        let path = |_: usize, r: Result<(&mut dyn Backend, Outcome)>| {
            r.map(|(_, o)| o.best_or_last().to_path_buf())
        };
        self.side_by_side("pretrainings", jobs.len(), setup, path)
    }
}

impl DatasetWork {
    /// Whether `n` jobs are trained side by side (`--models-per-device` above 1, on the CPU).
    fn fuses(&self, n: usize) -> bool {
        n > 1 && self.s.device != Device::Cuda && self.per_device != PerDevice::K(1)
    }

    /// Trains the `n` runs that `setup(i)` sets up side by side (`train::group`) on the CPU,
    /// each handed to `then` by the thread that trained it. How many at a time: the plan's or
    /// the flag's number, or for `auto` as many as the CPU threads and the memory allow (the
    /// largest model sets the need); a number whose models do not fit in memory is a usage
    /// error naming the memory needed and available, and so is any job's set-up error (before
    /// anything trains). Each job is set up once here, for its model's size, and again when a
    /// worker takes it, so that only the models training are in memory.
    fn side_by_side<'s, R: Send>(
        &'s self,
        what: &str,
        n: usize,
        setup: impl Fn(usize) -> Result<Prepared<'s>> + Sync,
        then: impl Fn(usize, Result<(&mut dyn Backend, Outcome)>) -> Result<R> + Sync,
    ) -> Vec<Result<R>> {
        let fail_all = |e: crate::error::Error| -> Vec<Result<R>> {
            let (msg, code) = (e.to_string(), e.exit_code());
            (0..n)
                .map(|_| {
                    Err(if code == 1 {
                        usage(msg.clone())
                    } else {
                        internal(msg.clone())
                    })
                })
                .collect()
        };
        let mut need = 0u64;
        for i in 0..n {
            match setup(i) {
                Ok(p) => {
                    let m = p
                        .cfg
                        .memory_need(p.run.hyper.batch_size)
                        .map_or(u64::MAX, |m| m.total);
                    need = need.max(m);
                }
                Err(e) => return fail_all(e),
            }
        }
        let threads = crate::train::device::cpu_threads(self.s.threads);
        let k = match self
            .per_device
            .resolve(n, need, crate::fsutil::available_memory(), threads)
        {
            Ok(k) => k,
            Err(m) => return fail_all(usage(format!("--models-per-device: {m}"))),
        };
        eprintln!(
            "training {n} {what} side by side, {} at a time on {threads} CPU threads",
            k.min(threads)
        );
        train_group_then(n, k, threads, setup, then)
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(internal("a group member's thread panicked"))))
            .collect()
    }
}
