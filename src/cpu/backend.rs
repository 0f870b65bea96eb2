//! `CpuBackend`: the reference model behind the `Backend` trait.

use crate::backend::{Backend, ForwardOpts, ForwardOut, StepHyper, StepStats};
use crate::batch::Batch;
use crate::error::{Result, internal};
use crate::model::{ModelConfig, ParamTable};

/// The CPU reference backend: parameters, gradients and AdamW moments (one flat allocation per
/// role, `ParamTable` layout), the trainable mask, and the reused activation workspace.
pub struct CpuBackend {
    cfg: ModelConfig,
    table: ParamTable,
    threads: usize,
    params: Vec<f32>,
    grads: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    trainable: Vec<u8>,
}

impl CpuBackend {
    /// A backend for `cfg` with zero parameters (call `set_params`), running on `threads` threads.
    pub fn new(cfg: ModelConfig, threads: usize) -> CpuBackend {
        let table = ParamTable::new(&cfg);
        let n = table.total;
        CpuBackend {
            cfg,
            table,
            threads: threads.max(1),
            params: vec![0.0; n],
            grads: vec![0.0; n],
            m: vec![0.0; n],
            v: vec![0.0; n],
            trainable: vec![1; n],
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
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        check_len("parameters", params.len(), self.table.total)?;
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
        check_len("first moments", m.len(), self.table.total)?;
        check_len("second moments", v.len(), self.table.total)?;
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        Ok(())
    }

    fn set_trainable(&mut self, trainable: &[u8]) -> Result<()> {
        check_len("trainable mask", trainable.len(), self.table.total)?;
        self.trainable.copy_from_slice(trainable);
        Ok(())
    }

    fn train_step(&mut self, _batch: &Batch, _hp: &StepHyper) -> Result<StepStats> {
        Err(internal("cpu train_step: not implemented yet"))
    }

    fn forward(&mut self, _batch: &Batch, _opts: &ForwardOpts) -> Result<ForwardOut> {
        Err(internal("cpu forward: not implemented yet"))
    }

    fn loss_and_grad(&mut self, _batch: &Batch) -> Result<(ForwardOut, Vec<f32>)> {
        let _ = &self.grads;
        Err(internal("cpu loss_and_grad: not implemented yet"))
    }
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(internal(format!(
            "{what}: {got} elements, the parameter table has {want}"
        )));
    }
    Ok(())
}
