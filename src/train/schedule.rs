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

/// Optimizer steps of a run, `epochs × steps_per_epoch`, computed with checked arithmetic: None
/// where it does not fit in a u64 (a wrapped total would squeeze the whole schedule into a few
/// steps and train the rest at the final learning rate). `TrainHyper::check` bounds the epochs.
pub fn total_steps(epochs: usize, steps_per_epoch: usize) -> Option<u64> {
    (epochs as u64).checked_mul(steps_per_epoch as u64)
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
            // A phase of no length (pct_start · total = 1) has reached its end at step 0, where
            // PyTorch would divide by zero.
            let pct = if end1 > 0.0 { step / end1 } else { 1.0 };
            Point {
                lr: anneal_cos(self.initial_lr(), self.max_lr, pct),
                beta1: anneal_cos(self.max_momentum, self.base_momentum, pct),
            }
        } else {
            let pct = if end2 > end1 {
                (step - end1) / (end2 - end1)
            } else {
                1.0
            };
            Point {
                lr: anneal_cos(self.max_lr, self.min_lr(), pct),
                beta1: anneal_cos(self.base_momentum, self.max_momentum, pct),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_steps_refuses_to_wrap() {
        assert_eq!(total_steps(1000, 12), Some(12_000));
        // The epochs of a hostile `--epochs` times 6 batches wrap a u64 to 2.
        assert_eq!(total_steps(3_074_457_345_618_258_603, 6), None);
    }

    #[test]
    fn a_warm_up_of_one_step_is_finite() {
        // pct_start · total = 1: the warm-up phase ends at step 0.
        let s = OneCycle {
            pct_start: 0.05,
            ..OneCycle::default()
        };
        for step in 0..20 {
            let p = s.at(step, 20);
            assert!(p.lr.is_finite() && p.beta1.is_finite(), "{step}: {p:?}");
        }
        assert_eq!(s.at(0, 20).lr, s.max_lr);
    }
}
