//! `CpuBackend`: the reference model behind the `Backend` trait.
//!
//! It owns the parameters, their gradients and the AdamW moments (one flat f32 allocation per
//! role, `ParamTable` layout), the trainable mask and the trainable set derived from it, a
//! rayon pool of `threads` threads on which every pass runs, and the activation workspace
//! reused from step to step.
//!
//! A training step does no work for a frozen tensor (SPEC §4): its gradient is not computed,
//! it is not in the norm and AdamW does not visit it (`model_backward_trainable`,
//! `adamw_update_runs`); the trainable tensors get the same bits as the full computation with
//! the mask, which `set_skip_frozen(false)` still runs.

use crate::backend::{Backend, ForwardOpts, ForwardOut, StepHyper, StepStats};
use crate::batch::Batch;
use crate::cpu::adamw::{adamw_update_runs, clip_coef, grad_norm_runs};
use crate::cpu::model::{block_features, model_backward_trainable, model_forward};
use crate::cpu::workspace::Workspace;
use crate::error::Result;
use crate::model::dropout::{DropoutCfg, check_dropout};
use crate::model::params::{TrainRun, TrainableSet};
use crate::model::shape::{Layout, check_batch, check_block};
use crate::model::{ModelConfig, ParamTable};

/// The CPU reference backend.
pub struct CpuBackend {
    cfg: ModelConfig,
    table: ParamTable,
    layout: Layout,
    threads: usize,
    pool: Option<rayon::ThreadPool>,
    params: Vec<f32>,
    grads: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    trainable: Vec<u8>,
    /// The tensors `trainable` freezes whole, and the runs of the others.
    set: TrainableSet,
    runs: Vec<TrainRun>,
    /// Skip the work of frozen tensors (else the full computation, with the mask).
    skip_frozen: bool,
    ws: Workspace<f32>,
}

impl CpuBackend {
    /// A backend for `cfg` with zero parameters (call `set_params`), running on `threads`
    /// threads (0 = one per core).
    pub fn new(cfg: ModelConfig, threads: usize) -> CpuBackend {
        let table = ParamTable::new(&cfg);
        let layout = Layout::new(&cfg, &table);
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        // Without a pool of its own (the OS refused threads) work runs on rayon's global pool.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .ok();
        let n = table.total;
        let set = TrainableSet::all(&table);
        CpuBackend {
            runs: set.runs(),
            set,
            skip_frozen: true,
            cfg,
            table,
            layout,
            threads,
            pool,
            params: vec![0.0; n],
            grads: vec![0.0; n],
            m: vec![0.0; n],
            v: vec![0.0; n],
            trainable: vec![1; n],
            ws: Workspace::new(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn table(&self) -> &ParamTable {
        &self.table
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether a training step skips the work of frozen tensors (default: yes). Off, it
    /// computes every gradient and runs the norm and AdamW over the whole vector, the mask
    /// picking the elements: the same parameters, moments, loss and norm, bit for bit (the
    /// reference the skip is tested and timed against).
    pub fn set_skip_frozen(&mut self, on: bool) {
        self.skip_frozen = on;
    }

    fn run<R: Send>(pool: &Option<rayon::ThreadPool>, f: impl FnOnce() -> R + Send) -> R {
        match pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Forward (dropout per `drop`) and backward into `self.grads`; returns (loss, |target|).
    /// With `skip`, the gradients of frozen tensors are neither computed nor zeroed (what
    /// `grads` holds there is then stale; nothing reads it), else every gradient is.
    fn forward_backward(&mut self, batch: &Batch, drop: DropoutCfg, skip: bool) -> (f64, usize) {
        let CpuBackend {
            cfg,
            layout,
            threads,
            pool,
            params,
            grads,
            set,
            runs,
            ws,
            ..
        } = self;
        let threads = *threads;
        let set = skip.then_some(&*set);
        Self::run(pool, || {
            let (loss, n_target) = model_forward(ws, params, layout, cfg, batch, drop, threads);
            match set {
                Some(_) => runs.iter().for_each(|r| grads[r.range.clone()].fill(0.0)),
                None => grads.fill(0.0),
            }
            model_backward_trainable(
                ws, grads, params, layout, cfg, batch, n_target, drop, threads, set,
            );
            (loss, n_target)
        })
    }

    fn log_rates(&self, batch: &Batch) -> Vec<f32> {
        self.ws.r[..batch.b * batch.t * batch.n].to_vec()
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        self.table.check_len("parameters", params.len())?;
        self.params.copy_from_slice(params);
        self.m.fill(0.0);
        self.v.fill(0.0);
        Ok(())
    }

    fn params(&self) -> Result<Vec<f32>> {
        Ok(self.params.clone())
    }

    fn moments(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.m.clone(), self.v.clone()))
    }

    fn set_moments(&mut self, m: &[f32], v: &[f32]) -> Result<()> {
        self.table.check_len("first moments", m.len())?;
        self.table.check_len("second moments", v.len())?;
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        Ok(())
    }

    fn set_trainable(&mut self, trainable: &[u8]) -> Result<()> {
        self.table.check_len("trainable mask", trainable.len())?;
        self.trainable.copy_from_slice(trainable);
        self.set = TrainableSet::from_mask(&self.table, trainable);
        self.runs = self.set.runs();
        Ok(())
    }

    /// Forward with dropout `hp.dropout` (seeded by `hp.seed`), backward, global grad-norm over
    /// the trainable elements, clipping to `hp.clip`, one AdamW step. A non-finite loss or
    /// gradient norm leaves the parameters and moments untouched (the trainer stops on it).
    fn train_step(&mut self, batch: &Batch, hp: &StepHyper) -> Result<StepStats> {
        check_batch(&self.cfg, batch)?;
        check_dropout(hp.dropout)?;
        let drop = DropoutCfg {
            p: hp.dropout,
            seed: hp.seed,
        };
        let skip = self.skip_frozen;
        let (loss, n_targets) = self.forward_backward(batch, drop, skip);
        let CpuBackend {
            pool,
            params,
            grads,
            m,
            v,
            trainable,
            runs,
            ..
        } = self;
        // Without the skip: one run over everything, the mask read throughout.
        let all = [TrainRun {
            range: 0..params.len(),
            whole: false,
        }];
        let runs: &[TrainRun] = if skip { runs } else { &all };
        let norm = Self::run(pool, || grad_norm_runs(grads, trainable, runs)) as f32;
        if loss.is_finite() && norm.is_finite() {
            let coef = clip_coef(norm, hp.clip);
            Self::run(pool, || {
                adamw_update_runs(params, m, v, grads, trainable, hp, coef, runs)
            });
        }
        Ok(StepStats {
            loss: loss as f32,
            grad_norm: norm,
            n_targets,
        })
    }

    fn forward(&mut self, batch: &Batch, opts: &ForwardOpts) -> Result<ForwardOut> {
        check_batch(&self.cfg, batch)?;
        if let Some(k) = opts.capture_block {
            check_block(&self.cfg, k)?;
        }
        let CpuBackend {
            cfg,
            layout,
            threads,
            pool,
            params,
            ws,
            ..
        } = self;
        let threads = *threads;
        let (loss, features) = Self::run(pool, || {
            let (loss, _) = model_forward(ws, params, layout, cfg, batch, DropoutCfg::OFF, threads);
            let features = opts
                .capture_block
                .map(|k| block_features(ws, cfg, batch, k));
            (loss, features)
        });
        Ok(ForwardOut {
            log_rates: self.log_rates(batch),
            loss: loss as f32,
            features,
        })
    }

    fn loss_and_grad(&mut self, batch: &Batch) -> Result<(ForwardOut, Vec<f32>)> {
        check_batch(&self.cfg, batch)?;
        let (loss, _) = self.forward_backward(batch, DropoutCfg::OFF, false);
        let out = ForwardOut {
            log_rates: self.log_rates(batch),
            loss: loss as f32,
            features: None,
        };
        Ok((out, self.grads.clone()))
    }
}
