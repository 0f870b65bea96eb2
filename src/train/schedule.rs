//! The OneCycle learning-rate and β₁ schedule of SPEC §4, with the semantics of PyTorch's
//! `torch.optim.lr_scheduler.OneCycleLR` (two phases, cosine annealing, momentum cycling).
//!
//! It is a pure function of `(step, total_steps)`: the value for optimizer step `step`
//! (0-based) is what `OneCycleLR` hands the optimizer after it has been stepped `step` times,
//! so step 0 uses `max_lr / div_factor` and step `total_steps - 1` uses the final minimum.
//! Phase boundaries are computed in f64 exactly as PyTorch does (`pct_start * total - 1`).

/// Hyper-parameters of the schedule (PyTorch's argument names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycle {
    pub max_lr: f64,
    pub pct_start: f64,
    pub div_factor: f64,
    pub final_div_factor: f64,
    pub base_momentum: f64,
    pub max_momentum: f64,
}

impl Default for OneCycle {
    /// SPEC §4: peak 1e-4, pct_start 0.15, div 10, final div 1e4, β₁ 0.95 → 0.85 → 0.95.
    fn default() -> Self {
        OneCycle {
            max_lr: 1e-4,
            pct_start: 0.15,
            div_factor: 10.0,
            final_div_factor: 1e4,
            base_momentum: 0.85,
            max_momentum: 0.95,
        }
    }
}

/// Learning rate and β₁ of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub lr: f64,
    pub beta1: f64,
}

/// Cosine annealing from `start` to `end` as `pct` goes from 0 to 1 (PyTorch's `_annealing_cos`).
fn anneal_cos(start: f64, end: f64, pct: f64) -> f64 {
    let cos_out = (std::f64::consts::PI * pct).cos() + 1.0;
    end + (start - end) / 2.0 * cos_out
}

impl OneCycle {
    /// Initial learning rate (`max_lr / div_factor`).
    pub fn initial_lr(&self) -> f64 {
        self.max_lr / self.div_factor
    }

    /// Final learning rate (`initial_lr / final_div_factor`).
    pub fn min_lr(&self) -> f64 {
        self.initial_lr() / self.final_div_factor
    }

    /// The learning rate and β₁ for 0-based optimizer step `step` of `total_steps`
    /// (`total_steps >= 1`; steps past the end are clamped to the last one, where PyTorch
    /// would raise).
    pub fn at(&self, step: u64, total_steps: u64) -> Point {
        let total = total_steps.max(1);
        let step = step.min(total - 1) as f64;
        // Phase 1: initial -> max lr, max -> base momentum; ends at pct_start * total - 1.
        // Phase 2: max -> min lr, base -> max momentum; ends at total - 1.
        let end1 = self.pct_start * total as f64 - 1.0;
        let end2 = total as f64 - 1.0;
        if step <= end1 {
            let pct = step / end1;
            Point {
                lr: anneal_cos(self.initial_lr(), self.max_lr, pct),
                beta1: anneal_cos(self.max_momentum, self.base_momentum, pct),
            }
        } else {
            let pct = (step - end1) / (end2 - end1);
            Point {
                lr: anneal_cos(self.max_lr, self.min_lr(), pct),
                beta1: anneal_cos(self.base_momentum, self.max_momentum, pct),
            }
        }
    }
}
