//! `CudaBackend`: the NDT behind the `Backend` trait, on one GPU.
//!
//! State on the device, one allocation per role (`ParamTable` layout): parameters (the f32
//! master copy), gradients, the two AdamW moments, the trainable mask; plus the step scalars,
//! the step result and the activation workspace. A training step (forward, backward, norm,
//! clipping, AdamW) is enqueued once per (session, batch shape, trainable set) while the
//! stream is captured into a CUDA graph; later steps upload the batch and the step scalars and
//! replay the graph. Evaluation passes and gradient checks run the same launches without a
//! graph.
//!
//! A training step launches nothing for a frozen tensor (SPEC §4): no weight product, no
//! bias or LayerNorm reduction, no rebuild of an input only such a product reads, and the norm
//! and AdamW run over the runs of tensors that are not frozen (`TrainableSet::runs`). The
//! launches depend on the trainable set, so a graph is captured per set; `set_skip_frozen(false)`
//! restores the full computation with the mask.
//!
//! Precision: `Bf16` runs the GEMMs on tensor cores (bf16 operands, f32 accumulation), `F32`
//! runs everything in f32 (for exact comparisons with the CPU reference).

use super::device::{Buffer, Dev, Gpu, Graph};
use super::gemm::Precision;
use super::model::{Pass, model_backward, model_forward};
use super::profile::OpTime;
use super::workspace::{Capacity, DeviceWorkspace};
use super::{StepResult, StepScalars, adamw};
use crate::backend::{Backend, ForwardOpts, ForwardOut, StepHyper, StepStats};
use crate::batch::Batch;
use crate::error::{Result, internal, usage};
use crate::model::dropout::check_dropout;
use crate::model::params::TrainableSet;
use crate::model::shape::{Dims, Layout, check_batch, check_block};
use crate::model::{ModelConfig, ParamTable};
use cudarc::driver::DeviceRepr;
use std::collections::HashMap;

/// A captured training step: one per session, batch shape and trainable set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GraphKey {
    session: String,
    b: usize,
    t: usize,
    /// The set whose frozen tensors the step skips (None: the full computation).
    set: Option<TrainableSet>,
}

/// The CUDA backend.
pub struct CudaBackend {
    cfg: ModelConfig,
    /// The parameter layout of the `Backend` API (`ParamTable::new`).
    table: ParamTable,
    /// The device layout: the same tensors at offsets that are multiples of 4 floats
    /// (`DEVICE_ALIGN`), so that every weight can be read with 16-byte loads whatever the
    /// sessions' neuron counts; the gaps are zero and not trainable. Parameters, gradients and
    /// moments cross between the two layouts only when they are set or read.
    dev_table: ParamTable,
    layout: Layout,
    prec: Precision,
    /// Capture training steps as CUDA graphs (else launch them one by one).
    use_graphs: bool,
    /// Keep every layer's attention probabilities (else recompute them in the backward).
    keep_att: bool,
    fused_att: bool,
    /// In bf16 precision, store the tensors that only products read as bf16 (else f32).
    bf16_store: bool,
    params: Buffer<f32>,
    grads: Buffer<f32>,
    m: Buffer<f32>,
    v: Buffer<f32>,
    trainable: Buffer<u8>,
    /// The tensors the mask freezes whole, in the device layout.
    set: TrainableSet,
    /// Skip the work of frozen tensors (else the full computation, with the mask).
    skip_frozen: bool,
    sc: Buffer<StepScalars>,
    res: Buffer<StepResult>,
    ws: Option<DeviceWorkspace>,
    graphs: HashMap<GraphKey, Graph>,
    // Declared last: dropped after every buffer and graph of its context.
    gpu: Gpu,
}

impl CudaBackend {
    /// A backend for `cfg` on `gpu` with zero parameters (call `set_params`). Compiles (or
    /// takes from the cache) every kernel now.
    pub fn new(gpu: Gpu, cfg: ModelConfig, prec: Precision) -> Result<CudaBackend> {
        if cfg.n_heads == 0 || !cfg.d_model.is_multiple_of(cfg.n_heads) {
            return Err(usage(format!(
                "d_model {} is not a multiple of n_heads {}",
                cfg.d_model, cfg.n_heads
            )));
        }
        gpu.load_all()?;
        let table = ParamTable::new(&cfg);
        let dev_table = ParamTable::aligned(&cfg, DEVICE_ALIGN);
        let layout = Layout::new(&cfg, &dev_table);
        let n = dev_table.total;
        let trainable = gpu.alloc::<u8>(n)?;
        let mut all = vec![0u8; n];
        dev_table.scatter(&table, &vec![1u8; table.total], &mut all);
        gpu.upload(trainable.dev(), &all)?;
        let sw = super::settings::Switches::default();
        Ok(CudaBackend {
            params: gpu.alloc(n)?,
            grads: gpu.alloc(n)?,
            m: gpu.alloc(n)?,
            v: gpu.alloc(n)?,
            trainable,
            set: TrainableSet::from_mask(&dev_table, &all),
            skip_frozen: true,
            sc: gpu.alloc(1)?,
            res: gpu.alloc(1)?,
            ws: None,
            graphs: HashMap::new(),
            cfg,
            table,
            dev_table,
            layout,
            prec,
            use_graphs: sw.graphs,
            keep_att: sw.keep_attention,
            fused_att: sw.fused_attention,
            bf16_store: sw.bf16_store,
            gpu,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Every switch of `sw` (`Settings::backend`); a new backend has `Switches::default()`.
    pub fn set_switches(&mut self, sw: super::settings::Switches) {
        self.set_use_graphs(sw.graphs);
        self.set_keep_attention(sw.keep_attention);
        self.set_fused_attention(sw.fused_attention);
        self.set_bf16_store(sw.bf16_store);
    }

    /// Whether training steps are captured as CUDA graphs (default: yes; `NDT_CUDA_GRAPHS=0`
    /// in `Settings`); without, the same launches are issued one by one.
    pub fn set_use_graphs(&mut self, on: bool) {
        self.use_graphs = on;
        self.graphs.clear();
    }

    /// Whether the forward keeps every layer's attention probabilities for the backward
    /// (default: no; `NDT_ATTENTION_KEEP=1` in `Settings`; the backward then recomputes them, with
    /// the same results bit for bit). Changing it drops the workspace and every graph.
    pub fn set_keep_attention(&mut self, on: bool) {
        if on != self.keep_att {
            self.keep_att = on;
            self.graphs.clear();
            self.ws = None;
        }
    }

    /// Whether, in bf16 precision, the attention forward (and the backward's recomputation of
    /// the probabilities) runs as one fused kernel where the shape allows it (default: yes;
    /// `NDT_ATTENTION_UNFUSED=1` in `Settings`; the results are the same bits either way). Changing it
    /// drops every graph.
    pub fn set_fused_attention(&mut self, on: bool) {
        if on != self.fused_att {
            self.fused_att = on;
            self.graphs.clear();
        }
    }

    /// Whether, in bf16 precision, the tensors that only matrix products read (`qkv`, the
    /// attention output, the input layer's output, the softsign output) are stored as bf16
    /// (default: yes; `NDT_STORE_F32=1` in `Settings`; the results are the same bits either way). Changing it drops the workspace and every graph.
    pub fn set_bf16_store(&mut self, on: bool) {
        if on != self.bf16_store {
            self.bf16_store = on;
            self.graphs.clear();
            self.ws = None;
        }
    }

    /// Whether a training step skips the work of frozen tensors (default: yes). Off, it
    /// launches every gradient and runs the norm and AdamW over the whole vector, the mask
    /// picking the elements (the reference the skip is tested and timed against). Changing it
    /// needs no recapture: graphs are keyed by what they skip.
    pub fn set_skip_frozen(&mut self, on: bool) {
        self.skip_frozen = on;
    }

    /// The trainable set a training step works from (None: the full computation).
    fn step_set(&self) -> Option<&TrainableSet> {
        self.skip_frozen.then_some(&self.set)
    }

    pub fn precision(&self) -> Precision {
        self.prec
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Bytes this backend has allocated on the device, now and at the peak.
    pub fn device_memory(&self) -> (usize, usize) {
        (self.gpu.mem().now(), self.gpu.mem().peak())
    }

    /// Bytes of the activation workspace (zero before the first batch); the rest of
    /// `device_memory` is the parameters, gradients, moments, mask and step scalars.
    pub fn workspace_bytes(&self) -> usize {
        self.ws.as_ref().map_or(0, |w| w.bytes())
    }

    /// The activation workspace's buffers, name and bytes (none before the first batch).
    pub fn workspace_buffers(&self) -> Vec<(&'static str, usize)> {
        self.ws.as_ref().map_or(Vec::new(), |w| w.buffers())
    }

    /// Allocates everything a training step on `batch` needs, runs nothing: `device_memory`
    /// then says what a step would hold.
    pub fn reserve(&mut self, batch: &Batch) -> Result<()> {
        self.load_batch(batch).map(|_| ())
    }

    /// Makes the workspace fit `batch` (growing it drops every captured graph, whose
    /// addresses it would invalidate), uploads the batch, and returns |target|.
    fn load_batch(&mut self, batch: &Batch) -> Result<usize> {
        check_batch(&self.cfg, batch)?;
        let fits = self
            .ws
            .as_ref()
            .is_some_and(|w| w.fits(batch.b, batch.t, batch.n));
        if !fits {
            self.graphs.clear();
            let old = self.ws.take().map(|w| w.cap);
            let max_n = self.cfg.sessions.values().copied().max().unwrap_or(batch.n);
            let cap = Capacity {
                b: batch.b.max(old.map_or(0, |c| c.b)),
                t: self.cfg.n_bins,
                n: max_n.max(batch.n),
            };
            self.ws = Some(DeviceWorkspace::new(
                &self.gpu,
                &self.cfg,
                cap,
                adamw::max_run_parts(self.dev_table.total, self.dev_table.entries.len()),
                self.keep_att,
                self.bf16_store && self.prec == Precision::Bf16,
            )?);
        }
        let ws = self.ws.as_ref().ok_or_else(|| internal("no workspace"))?;
        self.gpu.upload(ws.x.dev(), &batch.counts)?;
        self.gpu.upload(ws.mask.dev(), &batch.mask)?;
        self.gpu.upload(ws.target.dev(), &batch.target)?;
        Ok(batch.target.iter().filter(|&&t| t != 0).count())
    }

    fn pass<'a>(
        &'a self,
        batch: &Batch,
        train: bool,
        features: Option<usize>,
        set: Option<&'a TrainableSet>,
    ) -> Result<Pass<'a>> {
        let ws = self.ws.as_ref().ok_or_else(|| internal("no workspace"))?;
        let session = self
            .layout
            .sessions
            .get(&batch.session_id)
            .ok_or_else(|| internal(format!("no session {}", batch.session_id)))?;
        Ok(Pass {
            gpu: &self.gpu,
            prec: self.prec,
            cfg: &self.cfg,
            lay: &self.layout,
            session,
            dims: Dims::new(&self.cfg, batch.b, batch.t, batch.n),
            params: self.params.dev(),
            grads: self.grads.dev(),
            ws,
            sc: self.sc.dev(),
            res: self.res.dev(),
            train,
            fused_att: self.fused_att,
            features,
            set,
        })
    }

    /// Enqueues one whole training step: forward, backward, norm, clip, AdamW; with `set`,
    /// nothing for its frozen tensors.
    fn enqueue_step(&self, batch: &Batch, set: Option<&TrainableSet>) -> Result<()> {
        let ps = self.pass(batch, true, None, set)?;
        model_forward(&ps)?;
        model_backward(&ps)?;
        let ws = ps.ws;
        let n = self.dev_table.total;
        let runs: Vec<std::ops::Range<usize>> = match set {
            Some(s) => s.runs().into_iter().map(|r| r.range).collect(),
            None => std::iter::once(0..n).collect(),
        };
        adamw::grad_norm_runs(
            &self.gpu,
            self.res.dev(),
            self.grads.dev(),
            self.trainable.dev(),
            n,
            &runs,
            self.sc.dev(),
            ws.parts.dev(),
        )?;
        adamw::adamw_update_runs(
            &self.gpu,
            self.params.dev(),
            self.m.dev(),
            self.v.dev(),
            self.grads.dev(),
            self.trainable.dev(),
            n,
            &runs,
            self.sc.dev(),
            self.res.dev(),
        )
    }

    /// One training step launched operation by operation, each timed (`src/cuda/profile.rs`):
    /// the same work as `train_step`, without the graph.
    pub fn profile_step(&mut self, batch: &Batch, hp: &StepHyper) -> Result<Vec<OpTime>> {
        self.begin_step(batch, hp)?;
        self.gpu.profile_start()?;
        let run = self.enqueue_step(batch, self.step_set());
        let times = self.gpu.profile_finish();
        run?;
        times
    }

    /// Uploads the batch and the step's scalars (what changes between replays of a graph);
    /// returns |target|.
    fn begin_step(&mut self, batch: &Batch, hp: &StepHyper) -> Result<usize> {
        check_dropout(hp.dropout)?;
        let n_targets = self.load_batch(batch)?;
        let sc = StepScalars::new(hp, n_targets, batch.scheme.index(), batch.causal());
        self.gpu.upload(self.sc.dev(), &[sc])?;
        Ok(n_targets)
    }

    /// Captures `enqueue_step` into a graph.
    fn capture_step(&self, batch: &Batch, set: Option<&TrainableSet>) -> Result<Graph> {
        self.gpu.capture(|| self.enqueue_step(batch, set))
    }

    fn read_result(&self) -> Result<StepResult> {
        Ok(self.gpu.download(self.res.dev())?[0])
    }

    /// Forward without dropout, no update: the loss, and the log-rates `[B, T, N]` (read
    /// before a backward overwrites them); then the backward when `grad`. Features of block
    /// `features` are left in `ws.dy`.
    fn run_inference(
        &mut self,
        batch: &Batch,
        grad: bool,
        features: Option<usize>,
    ) -> Result<(f32, Vec<f32>)> {
        let n_targets = self.load_batch(batch)?;
        let sc = StepScalars::inference(n_targets, batch.scheme.index(), batch.causal());
        self.gpu.upload(self.sc.dev(), &[sc])?;
        let ps = self.pass(batch, false, features, None)?;
        model_forward(&ps)?;
        let len = batch.b * batch.t * batch.n;
        let log_rates = self.gpu.download(ps.ws.r.dev().slice(0, len))?;
        if grad {
            model_backward(&ps)?;
        }
        Ok((self.read_result()?.loss as f32, log_rates))
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        format!("cuda:{}", self.gpu.info.name)
    }

    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        self.put("parameters", self.params.dev(), params)?;
        self.gpu.zero(self.m.dev())?;
        self.gpu.zero(self.v.dev())?;
        self.gpu.sync()
    }

    fn params(&self) -> Result<Vec<f32>> {
        self.get(self.params.dev())
    }

    fn moments(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.get(self.m.dev())?, self.get(self.v.dev())?))
    }

    fn set_moments(&mut self, m: &[f32], v: &[f32]) -> Result<()> {
        self.put("first moments", self.m.dev(), m)?;
        self.put("second moments", self.v.dev(), v)?;
        self.gpu.sync()
    }

    /// Uploads the mask (the gaps of the device layout frozen) and derives the trainable set
    /// from it; a step on a set not seen before captures its own graph.
    fn set_trainable(&mut self, trainable: &[u8]) -> Result<()> {
        let dev = self.to_device("trainable mask", trainable)?;
        self.gpu.upload(self.trainable.dev(), &dev)?;
        self.set = TrainableSet::from_mask(&self.dev_table, &dev);
        self.gpu.sync()
    }

    /// Forward with dropout `hp.dropout` (seeded by `hp.seed`), backward, global grad-norm over
    /// the trainable elements, clipping to `hp.clip`, one AdamW step; as the CPU reference, a
    /// non-finite loss or norm leaves parameters and moments untouched.
    fn train_step(&mut self, batch: &Batch, hp: &StepHyper) -> Result<StepStats> {
        let n_targets = self.begin_step(batch, hp)?;
        if self.use_graphs {
            let key = GraphKey {
                session: batch.session_id.clone(),
                b: batch.b,
                t: batch.t,
                set: self.step_set().cloned(),
            };
            if !self.graphs.contains_key(&key) {
                let g = self.capture_step(batch, key.set.as_ref())?;
                self.graphs.insert(key.clone(), g);
            }
            let g = self
                .graphs
                .get(&key)
                .ok_or_else(|| internal("graph vanished"))?;
            self.gpu.replay(g)?;
        } else {
            self.enqueue_step(batch, self.step_set())?;
        }
        let r = self.read_result()?;
        Ok(StepStats {
            loss: r.loss as f32,
            grad_norm: r.grad_norm,
            n_targets,
        })
    }

    fn forward(&mut self, batch: &Batch, opts: &ForwardOpts) -> Result<ForwardOut> {
        if let Some(k) = opts.capture_block {
            check_block(&self.cfg, k)?;
        }
        let (loss, log_rates) = self.run_inference(batch, false, opts.capture_block)?;
        let features = match opts.capture_block {
            Some(_) => {
                let ws = self.ws.as_ref().ok_or_else(|| internal("no workspace"))?;
                let dm = Dims::new(&self.cfg, batch.b, batch.t, batch.n);
                Some(self.gpu.download(ws.dy.dev().slice(0, dm.bt() * dm.d))?)
            }
            None => None,
        };
        Ok(ForwardOut {
            log_rates,
            loss,
            features,
        })
    }

    fn loss_and_grad(&mut self, batch: &Batch) -> Result<(ForwardOut, Vec<f32>)> {
        let (loss, log_rates) = self.run_inference(batch, true, None)?;
        let out = ForwardOut {
            log_rates,
            loss,
            features: None,
        };
        Ok((out, self.get(self.grads.dev())?))
    }
}

/// Offsets of the device parameter layout are multiples of this many elements.
const DEVICE_ALIGN: usize = 4;

impl CudaBackend {
    /// Uploads `host` (API layout) into `dst` (device layout), gaps zero.
    fn put<T: DeviceRepr + Copy + Default>(
        &self,
        what: &str,
        dst: Dev<T>,
        host: &[T],
    ) -> Result<()> {
        let dev = self.to_device(what, host)?;
        self.gpu.upload(dst, &dev)
    }

    /// `host` (API layout) in the device layout, gaps zero.
    fn to_device<T: Copy + Default>(&self, what: &str, host: &[T]) -> Result<Vec<T>> {
        self.table.check_len(what, host.len())?;
        let mut dev = vec![T::default(); self.dev_table.total];
        self.dev_table.scatter(&self.table, host, &mut dev);
        Ok(dev)
    }

    /// Downloads `src` (device layout) into the API layout.
    fn get(&self, src: Dev<f32>) -> Result<Vec<f32>> {
        let dev = self.gpu.download(src)?;
        let mut host = vec![0f32; self.table.total];
        self.table.scatter(&self.dev_table, &dev, &mut host);
        Ok(host)
    }
}
