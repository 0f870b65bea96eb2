//! The scalars of one `torch.optim.AdamW` step, computed in f64 and rounded to f32 once: what
//! both backends' update kernels read (`cpu::adamw`, `cuda::StepScalars`), so they round alike.

use crate::backend::StepHyper;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamwScalars {
    /// 1 − lr·wd (the decoupled weight decay factor).
    pub decay: f32,
    /// 1 − β₁ (the lerp weight of the first moment).
    pub one_m_beta1: f32,
    /// 1 − β₂
    pub one_m_beta2: f32,
    /// −lr / (1 − β₁ᵗ): the step with the first bias correction folded in.
    pub step_size: f32,
    /// √(1 − β₂ᵗ): the second bias correction.
    pub bc2_sqrt: f32,
}

impl AdamwScalars {
    /// The scalars of step `hp.step` (counted from 1; 0 is taken as 1).
    pub fn of(hp: &StepHyper) -> AdamwScalars {
        let (lr, b1, b2) = (hp.lr as f64, hp.beta1 as f64, hp.beta2 as f64);
        let t = hp.step.max(1) as i32;
        AdamwScalars {
            decay: (1.0 - lr * hp.weight_decay as f64) as f32,
            one_m_beta1: (1.0 - b1) as f32,
            one_m_beta2: (1.0 - b2) as f32,
            step_size: -(lr / (1.0 - b1.powi(t))) as f32,
            bc2_sqrt: (1.0 - b2.powi(t)).sqrt() as f32,
        }
    }
}
