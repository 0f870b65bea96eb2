//! Benchmarks of a model config on a device (`ndt bench`): training steps and evaluation
//! passes timed on a synthetic batch (Poisson counts, masks of the chosen scheme), reported as
//! ms/step (median, min), tokens/s (tokens = trials × bins of the batch) and peak memory
//! (device memory allocated by ndt on a GPU, the process's resident high-water mark on the
//! CPU). `Mode::FrozenCore` times the step of a frozen-core finetune (only the session's
//! tensors train) beside the full step, the two alternating step by step in one run.
//!
//! - `timing`: the synthetic batch, the timed loops, median and min
//! - `memory`: peak memory, and the memory of a step allocated and not run
//! - `profile`: steps launched operation by operation, per kernel and per product shape
//! - `report`: what was measured, and the text lines
//! - `json`: the JSON object (docs/bench.md)

pub mod json;
pub mod memory;
pub mod profile;
pub mod report;
pub mod timing;

use crate::backend::Backend;
use crate::cpu::CpuBackend;
use crate::cuda::CudaBackend;
use crate::error::{Result, usage};
use crate::model::{ModelConfig, ParamTable, init::init_params};
use crate::scheme::Scheme;
use crate::train::config::RunConfig;
use crate::train::device::Device;
use report::{Body, Head, Report, Timed};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a timed step trains.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every tensor.
    Full,
    /// The session's stitchers and token (a frozen-core finetune), timed beside the full step.
    FrozenCore,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::FrozenCore => "frozen-core",
        }
    }
}

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Model preset or run-config TOML file.
    pub config: String,
    pub batch_size: usize,
    pub bins: usize,
    pub neurons: usize,
    /// Masking scheme, as given (`co-smooth`, `forward`).
    pub scheme: String,
    /// Timed training steps, after `warmup` untimed ones.
    pub steps: usize,
    pub warmup: usize,
    /// Timed evaluation passes (at least one is timed).
    pub evals: usize,
    pub mode: Mode,
    /// Allocate a training step's memory on the GPU and run nothing.
    pub memory_only: bool,
    /// Profile a few steps operation by operation and write every operation to this CSV.
    pub profile: Option<PathBuf>,
}

/// A checked `Setup` with its model: what the backend is opened for.
pub struct Plan {
    pub setup: Setup,
    pub scheme: Scheme,
    pub run: RunConfig,
    pub model: ModelConfig,
}

/// The session id of the synthetic batch.
const SESSION: &str = "bench";

/// Checks `setup` for `device` and loads its model config.
pub fn plan(setup: &Setup, device: Device) -> Result<Plan> {
    let s = setup;
    if s.batch_size == 0 || s.bins == 0 || s.neurons == 0 || s.steps == 0 {
        return Err(usage(
            "--batch-size, --bins, --neurons and --steps must be positive",
        ));
    }
    if s.profile.is_some() && (s.memory_only || device == Device::Cpu) {
        return Err(usage(
            "--profile times GPU operations: use it with --device cuda and without --memory-only",
        ));
    }
    let scheme = Scheme::parse(&s.scheme).ok_or_else(|| {
        usage(format!(
            "--scheme {}: expected co-smooth or forward (the region schemes need regions)",
            s.scheme
        ))
    })?;
    if scheme.needs_regions() {
        return Err(usage(format!(
            "--scheme {scheme}: the synthetic batch has one region; use co-smooth or forward"
        )));
    }
    let run = RunConfig::load(&s.config)?;
    let model = run
        .model
        .config(s.bins, BTreeMap::from([(SESSION.to_string(), s.neurons)]));
    Ok(Plan {
        setup: setup.clone(),
        scheme,
        run,
        model,
    })
}

/// The backend under test, concrete so that its memory can be read.
pub enum Under {
    /// The CPU reference and its thread count.
    Cpu(Box<CpuBackend>, usize),
    Cuda(Box<CudaBackend>),
}

impl Under {
    fn backend(&mut self) -> &mut dyn Backend {
        match self {
            Under::Cpu(b, _) => b.as_mut(),
            Under::Cuda(b) => b.as_mut(),
        }
    }

    /// The device in words.
    pub fn label(&self) -> String {
        match self {
            Under::Cpu(_, threads) => format!("cpu ({threads} threads)"),
            Under::Cuda(b) => format!("{} ({}, {})", b.name(), b.precision().name(), b.gpu().info),
        }
    }

    /// Peak bytes: device memory allocated by the backend, or the process's resident peak.
    fn peak(&self) -> memory::Peak {
        match self {
            Under::Cpu(..) => memory::Peak {
                bytes: memory::peak_rss().unwrap_or(0),
                kind: "peak resident memory (VmHWM)",
                workspace: None,
            },
            Under::Cuda(b) => memory::Peak {
                bytes: b.device_memory().1 as u64,
                kind: "peak device memory allocated",
                workspace: Some(b.workspace_bytes() as u64),
            },
        }
    }
}

/// Runs `plan` on `under` (opened for `plan.model`).
pub fn run(plan: &Plan, under: &mut Under) -> Result<Report> {
    let (s, cfg) = (&plan.setup, &plan.model);
    let head = Head {
        device: under.label(),
        config: s.config.clone(),
        model: cfg.clone(),
        batch_size: s.batch_size,
        bins: s.bins,
        neurons: s.neurons,
        scheme: plan.scheme,
    };
    let table = ParamTable::new(cfg);
    under.backend().set_params(&init_params(cfg, &table, 42))?;
    let batch = timing::synthetic_batch(SESSION, s.batch_size, s.bins, s.neurons, plan.scheme, 7);
    if s.memory_only {
        let Under::Cuda(b) = under else {
            return Err(usage("--memory-only reports GPU memory: use --device cuda"));
        };
        let body = Body::MemoryOnly(memory::memory_only(b, &batch)?);
        return Ok(Report { head, body });
    }
    let train = &plan.run.train;
    let steps = timing::Steps {
        batch: &batch,
        train,
        warmup: s.warmup,
        steps: s.steps,
    };
    let all = vec![1u8; table.total];
    let frozen_mask = table.session_only_mask(SESSION);
    let backend = under.backend();
    let (timed_train, last_loss, frozen_core) = match s.mode {
        Mode::Full => {
            let (t, loss) = timing::full_steps(backend, &steps)?;
            (t, loss, None)
        }
        Mode::FrozenCore => {
            let (fc, loss) = timing::frozen_core_steps(backend, &steps, &all, &frozen_mask)?;
            (fc.full, loss, Some(fc))
        }
    };
    let eval = timing::eval_passes(backend, &batch, s.evals)?;
    let peak = under.peak();
    let (mut profile, mut full_profile) = (None, None);
    if let Some(csv) = &s.profile {
        let Under::Cuda(b) = under else {
            return Err(usage(
                "--profile times GPU operations, and no GPU is in use: use --device cuda",
            ));
        };
        let first = s.warmup + s.steps;
        if s.mode == Mode::FrozenCore {
            let full_csv = profile::with_suffix(csv, "full");
            full_profile = Some(profile::profile(b, &batch, train, first, &all, &full_csv)?);
            profile = Some(profile::profile(
                b,
                &batch,
                train,
                first,
                &frozen_mask,
                csv,
            )?);
        } else {
            profile = Some(profile::profile(b, &batch, train, first, &all, csv)?);
        }
    }
    let timed = Timed {
        mode: s.mode,
        steps: s.steps,
        evals: s.evals.max(1),
        train: timed_train,
        eval,
        last_loss,
        peak,
        frozen_core,
        profile,
        full_profile,
    };
    Ok(Report {
        head,
        body: Body::Timed(Box::new(timed)),
    })
}
