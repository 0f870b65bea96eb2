//! defines: grad_norm, clip_coef, adamw_update
//!
//! Global gradient-norm clipping as `torch.nn.utils.clip_grad_norm_` and one step of
//! `torch.optim.AdamW` (single-tensor path), element by element over the flat parameter vector.
//! Frozen elements (trainable = 0) are neither counted in the norm nor touched.

use crate::backend::StepHyper;
use rayon::prelude::*;

const CHUNK: usize = 4096;

/// ‖g‖₂ over the trainable elements, summed in f64.
pub fn grad_norm(grads: &[f32], trainable: &[u8]) -> f64 {
    grads
        .par_chunks(CHUNK)
        .zip(trainable.par_chunks(CHUNK))
        .map(|(g, t)| {
            g.iter()
                .zip(t)
                .filter(|&(_, &t)| t != 0)
                .map(|(&g, _)| g as f64 * g as f64)
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt()
}

/// The factor torch multiplies gradients by: min(1, clip / (norm + 1e-6)); 1 when clip <= 0.
pub fn clip_coef(norm: f32, clip: f32) -> f32 {
    if clip <= 0.0 {
        return 1.0;
    }
    let c = (clip as f64 / (norm as f64 + 1e-6)) as f32;
    c.min(1.0)
}

/// One AdamW step on the trainable elements, with gradients scaled by `grad_scale` first
/// (the clipping factor). Per element, in f32 with the scalars computed in f64 as Python does:
///
/// ```text
/// g  = g · grad_scale
/// p  = p · (1 − lr·wd)                                    decoupled weight decay
/// m  = lerp(m, g, 1 − β₁)                                 torch's lerp
/// v  = v · β₂ + (1 − β₂) · g · g
/// p  = p + (−lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + eps)
/// ```
pub fn adamw_update(
    params: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    grads: &[f32],
    trainable: &[u8],
    hp: &StepHyper,
    grad_scale: f32,
) {
    let (lr, b1, b2) = (hp.lr as f64, hp.beta1 as f64, hp.beta2 as f64);
    let t = hp.step.max(1) as i32;
    let decay = (1.0 - lr * hp.weight_decay as f64) as f32;
    let w = (1.0 - b1) as f32;
    let beta2 = hp.beta2;
    let one_m_b2 = (1.0 - b2) as f32;
    let step_size = -(lr / (1.0 - b1.powi(t))) as f32;
    let bc2_sqrt = (1.0 - b2.powi(t)).sqrt() as f32;
    let eps = hp.eps;
    params
        .par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(grads.par_chunks(CHUNK).zip(trainable.par_chunks(CHUNK)))
        .for_each(|(((p, m), v), (g, tr))| {
            for ((((p, m), v), &g), &tr) in p.iter_mut().zip(m).zip(v).zip(g).zip(tr) {
                let g = g * grad_scale;
                let mn = lerp(*m, g, w);
                let vn = *v * beta2 + one_m_b2 * g * g;
                let denom = vn.sqrt() / bc2_sqrt + eps;
                let pn = *p * decay + step_size * mn / denom;
                // Frozen elements keep their values (a select, so the loop vectorises).
                let t = tr != 0;
                *p = if t { pn } else { *p };
                *m = if t { mn } else { *m };
                *v = if t { vn } else { *v };
            }
        });
}

/// torch.lerp(a, b, w) for f32: the two-sided form that is exact at w = 0 and w = 1.
#[inline]
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        a + w * (b - a)
    } else {
        b - (b - a) * (1.0 - w)
    }
}
