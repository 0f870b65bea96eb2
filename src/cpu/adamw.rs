//! defines: grad_norm, grad_norm_runs, clip_coef, adamw_update, adamw_update_runs
//!
//! Global gradient-norm clipping as `torch.nn.utils.clip_grad_norm_` and one step of
//! `torch.optim.AdamW` (single-tensor path), element by element over the flat parameter vector.
//! Frozen elements (trainable = 0) are neither counted in the norm nor touched. The `_runs`
//! forms work over the runs of tensors that are not frozen (`TrainableSet::runs`) and never
//! read the rest: the same bits as the whole-vector forms with the same mask.

use crate::backend::StepHyper;
use crate::model::adamw::AdamwScalars;
use crate::model::params::TrainRun;
use rayon::prelude::*;

const CHUNK: usize = 4096;

/// ‖g‖₂ over the trainable elements, summed in f64 (see `grad_norm_runs`).
pub fn grad_norm(grads: &[f32], trainable: &[u8]) -> f64 {
    let all = TrainRun {
        range: 0..grads.len(),
        whole: false,
    };
    grad_norm_runs(grads, trainable, &[all])
}

/// ‖g‖₂ over the trainable elements of `runs`, summed in f64 in a fixed order: per block of
/// `CHUNK` elements (blocks at multiples of `CHUNK` of the whole vector) in element order, then
/// the blocks in order. A block outside every run adds exactly 0, so skipping it changes no bit:
/// the norm over the runs of a mask is the norm over the whole vector with that mask.
pub fn grad_norm_runs(grads: &[f32], trainable: &[u8], runs: &[TrainRun]) -> f64 {
    let n = grads.len().min(trainable.len());
    // The blocks some run touches, in order (runs are in layout order and disjoint).
    let mut blocks: Vec<usize> = Vec::new();
    for run in runs {
        let (start, end) = (run.range.start, run.range.end.min(n));
        if start >= end {
            continue;
        }
        let first = (start / CHUNK).max(blocks.last().map_or(0, |&b| b + 1));
        blocks.extend(first..end.div_ceil(CHUNK));
    }
    let sums: Vec<f64> = blocks
        .par_iter()
        .map(|&blk| {
            let (b0, b1) = (blk * CHUNK, ((blk + 1) * CHUNK).min(n));
            let mut acc = 0f64;
            let from = runs.partition_point(|r| r.range.end <= b0);
            for run in runs[from..].iter().take_while(|r| r.range.start < b1) {
                let r = run.range.start.max(b0)..run.range.end.min(b1);
                let g = &grads[r.clone()];
                if run.whole {
                    for &g in g {
                        acc += g as f64 * g as f64;
                    }
                } else {
                    for (&g, &t) in g.iter().zip(&trainable[r]) {
                        if t != 0 {
                            acc += g as f64 * g as f64;
                        }
                    }
                }
            }
            acc
        })
        .collect();
    let mut total = 0f64;
    for s in sums {
        total += s;
    }
    total.sqrt()
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
    let all = TrainRun {
        range: 0..params.len(),
        whole: false,
    };
    adamw_update_runs(params, m, v, grads, trainable, hp, grad_scale, &[all]);
}

/// `adamw_update` over the elements of `runs` only (each element's update depends on that
/// element alone, so the bits are those of the whole-vector update with the same mask).
#[allow(clippy::too_many_arguments)]
pub fn adamw_update_runs(
    params: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    grads: &[f32],
    trainable: &[u8],
    hp: &StepHyper,
    grad_scale: f32,
    runs: &[TrainRun],
) {
    let AdamwScalars {
        decay,
        one_m_beta1: w,
        one_m_beta2: one_m_b2,
        step_size,
        bc2_sqrt,
    } = AdamwScalars::of(hp);
    let beta2 = hp.beta2;
    let eps = hp.eps;
    let n = params.len().min(m.len()).min(v.len()).min(grads.len());
    for run in runs {
        let r = run.range.start.min(n)..run.range.end.min(n);
        // A run of whole tensors has no frozen element: the mask is not read.
        let tr = if run.whole {
            None
        } else {
            trainable.get(r.clone())
        };
        let (p, m, v, g) = (
            &mut params[r.clone()],
            &mut m[r.clone()],
            &mut v[r.clone()],
            &grads[r.clone()],
        );
        let chunks = p
            .par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .enumerate();
        chunks.for_each(|(c, (((p, m), v), g))| {
            let upd = |p: f32, m: f32, v: f32, g: f32| {
                let g = g * grad_scale;
                let mn = lerp(m, g, w);
                let vn = v * beta2 + one_m_b2 * g * g;
                let denom = vn.sqrt() / bc2_sqrt + eps;
                (p * decay + step_size * mn / denom, mn, vn)
            };
            match tr {
                None => {
                    for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                        (*p, *m, *v) = upd(*p, *m, *v, g);
                    }
                }
                Some(tr) => {
                    let tr = &tr[c * CHUNK..][..p.len()];
                    for ((((p, m), v), &g), &t) in p.iter_mut().zip(m).zip(v).zip(g).zip(tr) {
                        let (pn, mn, vn) = upd(*p, *m, *v, g);
                        // Frozen elements keep their values (a select, so the loop vectorises).
                        let t = t != 0;
                        *p = if t { pn } else { *p };
                        *m = if t { mn } else { *m };
                        *v = if t { vn } else { *v };
                    }
                }
            }
        });
    }
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
