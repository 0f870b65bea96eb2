//! The sweep's `Work` on a real dataset: pretraining, finetuning and evaluation through the
//! trainer (`train::run`) and the evaluator (`eval::tasks`).
//!
//! Training runs one epoch per call of the trainer and resumes from the run's state file in
//! between, which is bit-identical to an uninterrupted run on the CPU (`train::trainer`). Between
//! epochs it checks the stop flag that SIGTERM / SIGUSR1 raise: a signalled job keeps its last
//! finished epoch on disk and exits, and the next run of the same job resumes from there.

use crate::error::{Error, Result, internal, usage};
use crate::eval::tasks::EvalOpts;
use crate::exp::plan::{Plan, Stage};
use crate::exp::sweep::{FinetuneEval, Work};
use crate::scheme::Scheme;
use crate::store::{Dataset, SplitName};
use crate::train::config::RunConfig;
use crate::train::device::Device;
use crate::train::finetune::Mode;
use crate::train::run::{Exec, evaluate_checkpoint, finetune, pretrain, resumable};
use crate::train::trainer::Outcome;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct DatasetWork {
    ds: Dataset,
    base: RunConfig,
    device: Device,
    threads: usize,
    stop: Arc<AtomicBool>,
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
    pub fn new(plan: &Plan, threads: usize) -> Result<DatasetWork> {
        let ds = Dataset::open(&plan.dataset)?;
        let device = match plan.device.as_str() {
            // Resolved once here, since every epoch reopens the backend.
            "auto" => match crate::cuda::available() {
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
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .map_err(|e| internal(format!("cannot install the signal handler: {e}")))?;
        }
        Ok(DatasetWork {
            ds,
            base: run_config(plan)?,
            device,
            threads,
            stop,
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

    /// Runs `step` one epoch at a time until the run is finished, resuming in `out`.
    fn epochs(
        &self,
        out: &Path,
        mut step: impl FnMut(&Exec) -> Result<Outcome>,
    ) -> Result<Outcome> {
        loop {
            let done = if resumable(out) {
                crate::train::log::read(&out.join(crate::train::trainer::LOG_FILE))?
                    .iter()
                    .map(|e| e.epoch)
                    .max()
                    .unwrap_or(0)
            } else {
                0
            };
            let exec = Exec {
                device: self.device,
                threads: self.threads,
                progress: false,
                stop_after: Some(done + 1),
                resume: resumable(out),
            };
            let o = step(&exec)?;
            if o.finished {
                return Ok(o);
            }
            if self.stop.load(Ordering::Relaxed) {
                return Err(Error::Interrupted(format!(
                    "{}: stopped by a signal after epoch {}; run the job again to resume",
                    out.display(),
                    o.epochs_done
                )));
            }
        }
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
        let o = self.epochs(&out, |exec| pretrain(&self.ds, &idx, &rc, &out, exec))?;
        Ok(o.best_or_last().to_path_buf())
    }

    fn finetune_eval(&self, job: &FinetuneEval, work: &Path) -> Result<BTreeMap<String, f64>> {
        let s = self.session(job.session)?;
        let rc = self.run_config(job.stage, job.seed)?;
        let out = work.join("run");
        let o = match job.ckpt {
            None => self.epochs(&out, |exec| pretrain(&self.ds, &[s], &rc, &out, exec))?,
            Some(ckpt) => {
                let mode = Mode::parse(job.stage.mode.as_deref().unwrap_or("frozen-core"))?;
                self.epochs(&out, |exec| {
                    finetune(&self.ds, s, ckpt, mode, &rc.train, &out, exec)
                })?
            }
        };
        let split = match job.split {
            "val" => SplitName::Val,
            "test" => SplitName::Test,
            other => return Err(internal(format!("unknown split {other}"))),
        };
        let opts = EvalOpts {
            split,
            tasks: if job.only_forward {
                vec![Scheme::Forward]
            } else {
                Scheme::ALL.to_vec()
            },
            choice: !job.only_forward,
            ..EvalOpts::default()
        };
        let exec = Exec {
            device: self.device,
            threads: self.threads,
            progress: false,
            stop_after: None,
            resume: false,
        };
        let report = evaluate_checkpoint(o.best_or_last(), &self.ds, s, &opts, &exec)?;
        Ok(report.metrics())
    }

    fn train_trials(&self, session: &str) -> Result<usize> {
        Ok(self
            .ds
            .session(self.session(session)?)
            .split(SplitName::Train)
            .len())
    }
}
