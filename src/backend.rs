//! The seam between the trainer/evaluator and a compute backend (CPU reference or CUDA).
//!
//! A backend owns the parameters, their gradients and the AdamW moments (one allocation per
//! role, laid out by `model::params::ParamTable`). It is the model's layer list behind one
//! interface, not a general tensor library.

use crate::batch::Batch;
use crate::error::Result;

/// Per-step optimizer hyper-parameters (the schedule evaluated at this step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Global gradient-norm clip (<= 0 disables).
    pub clip: f32,
    /// Dropout probability used in this step (0 = off).
    pub dropout: f32,
    /// 1-based AdamW step counter (bias correction).
    pub step: u64,
    /// Seed of the counter-based dropout RNG for this step.
    pub seed: u64,
}

/// What one training step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Number of target entries in the loss.
    pub n_targets: usize,
}

/// Options of a forward pass without gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ForwardOpts {
    /// If set, also return the output of this block (0-based) as features `[B, T, D]`
    /// over the data tokens (prefix tokens dropped).
    pub capture_block: Option<usize>,
}

/// What a forward pass returns.
#[derive(Clone, Debug, Default)]
pub struct ForwardOut {
    /// `[B, T, N]` log-rates.
    pub log_rates: Vec<f32>,
    /// Poisson NLL mean over targets (NaN when the batch has no targets).
    pub loss: f32,
    /// `[B, T, D]` features of `capture_block`, if asked.
    pub features: Option<Vec<f32>>,
}

pub trait Backend {
    /// "cpu" or "cuda:<device name>".
    fn name(&self) -> String;
    /// Copies parameters in (flat f32, `ParamTable` layout) and zeroes optimizer state.
    fn set_params(&mut self, params: &[f32]) -> Result<()>;
    /// Copies parameters out (flat f32, `ParamTable` layout).
    fn params(&self) -> Result<Vec<f32>>;
    /// Copies the AdamW moments out: (m, v).
    fn moments(&self) -> Result<(Vec<f32>, Vec<f32>)>;
    /// Restores the AdamW moments (for resuming).
    fn set_moments(&mut self, m: &[f32], v: &[f32]) -> Result<()>;
    /// Which parameter elements train (nonzero) and which are frozen (0), flat `ParamTable`
    /// layout; it holds for every later `train_step` (the default: all train). Frozen elements
    /// get no update and do not count in the gradient norm. A tensor frozen whole (every
    /// element 0, e.g. the core under `ParamTable::session_only_mask`) costs a training step
    /// no work (SPEC §4): no gradient product or reduction, no norm term, no optimizer update;
    /// the gradient of the activations still flows through it to the trainable tensors below.
    /// A tensor frozen in part has its gradient computed whole and the mask applied. Either
    /// way the trainable elements get the bits of the full computation with the mask.
    /// `loss_and_grad` ignores the mask: it returns every gradient.
    fn set_trainable(&mut self, trainable: &[u8]) -> Result<()>;
    /// Forward, backward and one AdamW update on `batch`.
    fn train_step(&mut self, batch: &Batch, hp: &StepHyper) -> Result<StepStats>;
    /// Forward only (dropout off).
    fn forward(&mut self, batch: &Batch, opts: &ForwardOpts) -> Result<ForwardOut>;
    /// Forward and backward only (dropout off), returning the loss and the flat gradient.
    /// Used by fixture checks and gradient tests.
    fn loss_and_grad(&mut self, batch: &Batch) -> Result<(ForwardOut, Vec<f32>)>;
}
