//! Launchers of `kernels/adamw.cu`: the global gradient norm over the trainable elements
//! (deterministic f64 sum), clipping, and one AdamW step over the flat parameter vector. Twin of
//! `src/cpu/adamw.rs`; the update computes the same bits as the CPU from the same inputs.

use super::device::{Args, Dev, Gpu, grid_1d};
use super::kernels::ADAMW;
use super::{StepResult, StepScalars};
use crate::error::{Result, internal};
use cudarc::driver::LaunchConfig;
use std::ops::Range;

/// Partial sums (blocks) of the norm for `n` elements: fixed by `n`.
pub fn norm_parts(n: usize) -> usize {
    n.div_ceil(256 * 16).clamp(1, 1024)
}

/// Partial sums of the norm over `runs` of a vector of `n` elements: each run's share of
/// `norm_parts(n)` by length, at least one (so one run over the whole vector has
/// `norm_parts(n)`, the partial sums of `grad_norm`).
pub fn run_parts(n: usize, runs: &[Range<usize>]) -> Vec<usize> {
    let total = norm_parts(n);
    runs.iter()
        .map(|r| (total * r.len() / n.max(1)).max(1))
        .collect()
}

/// The most partial sums `grad_norm_runs` needs for any runs of the `tensors` tensors of a
/// vector of `n` elements (at most one run per tensor).
pub fn max_run_parts(n: usize, tensors: usize) -> usize {
    norm_parts(n) + tensors
}

/// res.grad_sumsq, res.grad_norm, res.clip_coef (per sc.clip) and res.update (loss and norm
/// finite). `res.loss` must already hold the step's loss. `scratch`: `norm_parts(n)` doubles.
#[allow(clippy::too_many_arguments)]
pub fn grad_norm(
    gpu: &Gpu,
    res: Dev<StepResult>,
    g: Dev<f32>,
    trainable: Dev<u8>,
    n: usize,
    sc: Dev<StepScalars>,
    scratch: Dev<f64>,
) -> Result<()> {
    let all = 0..n;
    grad_norm_runs(
        gpu,
        res,
        g,
        trainable,
        n,
        std::slice::from_ref(&all),
        sc,
        scratch,
    )
}

/// `grad_norm` over the elements of `runs` (disjoint ranges of the `n`-element vector) only:
/// one partial launch per run (`run_parts` blocks each), then one final launch over all the
/// partial sums. `scratch`: the sum of `run_parts(n, runs)` doubles.
#[allow(clippy::too_many_arguments)]
pub fn grad_norm_runs(
    gpu: &Gpu,
    res: Dev<StepResult>,
    g: Dev<f32>,
    trainable: Dev<u8>,
    n: usize,
    runs: &[Range<usize>],
    sc: Dev<StepScalars>,
    scratch: Dev<f64>,
) -> Result<()> {
    let parts = run_parts(n, runs);
    let total: usize = parts.iter().sum();
    g.need(n, "grad_norm grads")?;
    trainable.need(n, "grad_norm trainable")?;
    res.need(1, "grad_norm result")?;
    sc.need(1, "grad_norm scalars")?;
    scratch.need(total.max(1), "grad_norm scratch")?;
    let mut at = 0;
    for (r, &p) in runs.iter().zip(&parts) {
        if r.start > r.end || r.end > n {
            return Err(internal(format!("grad_norm run {r:?} of {n} elements")));
        }
        let cfg = LaunchConfig {
            grid_dim: (p as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = Args::new()
            .ptr(scratch.slice(at, p))
            .ptr(g.slice(r.start, r.len()))
            .ptr(trainable.slice(r.start, r.len()))
            .i64(r.len() as i64);
        // SAFETY: (double* partial, const float* g, const unsigned char* trainable,
        // long long n): the run's elements, its `p` partial sums.
        unsafe { gpu.launch(&ADAMW, "grad_sumsq_partial", cfg, &args)? };
        at += p;
    }
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new().ptr(res).ptr(scratch).i32(total as i32).ptr(sc);
    // SAFETY: (StepResult* res, const double* partial, int nparts, const StepScalars* sc).
    unsafe { gpu.launch(&ADAMW, "grad_norm_final", cfg, &args) }
}

/// One AdamW step on the trainable elements with the gradients scaled by res.clip_coef;
/// nothing happens when res.update is 0.
#[allow(clippy::too_many_arguments)]
pub fn adamw_update(
    gpu: &Gpu,
    params: Dev<f32>,
    m: Dev<f32>,
    v: Dev<f32>,
    g: Dev<f32>,
    trainable: Dev<u8>,
    n: usize,
    sc: Dev<StepScalars>,
    res: Dev<StepResult>,
) -> Result<()> {
    let all = 0..n;
    let runs = std::slice::from_ref(&all);
    adamw_update_runs(gpu, params, m, v, g, trainable, n, runs, sc, res)
}

/// `adamw_update` over the elements of `runs` (ranges of the `n`-element vector) only, one
/// launch per run; each element's update reads that element alone, so the bits are the
/// whole-vector update's.
#[allow(clippy::too_many_arguments)]
pub fn adamw_update_runs(
    gpu: &Gpu,
    params: Dev<f32>,
    m: Dev<f32>,
    v: Dev<f32>,
    g: Dev<f32>,
    trainable: Dev<u8>,
    n: usize,
    runs: &[Range<usize>],
    sc: Dev<StepScalars>,
    res: Dev<StepResult>,
) -> Result<()> {
    for (b, what) in [(params, "params"), (m, "m"), (v, "v"), (g, "grads")] {
        b.need(n, &format!("adamw {what}"))?;
    }
    trainable.need(n, "adamw trainable")?;
    sc.need(1, "adamw scalars")?;
    res.need(1, "adamw result")?;
    for r in runs {
        if r.start > r.end || r.end > n {
            return Err(internal(format!("adamw run {r:?} of {n} elements")));
        }
        if r.is_empty() {
            continue;
        }
        let (at, len) = (r.start, r.len());
        let args = Args::new()
            .ptr(params.slice(at, len))
            .ptr(m.slice(at, len))
            .ptr(v.slice(at, len))
            .ptr(g.slice(at, len))
            .ptr(trainable.slice(at, len))
            .i64(len as i64)
            .ptr(sc)
            .ptr(res);
        // SAFETY: (float* params, float* m, float* v, const float* g,
        // const unsigned char* trainable, long long n, const StepScalars*, const StepResult*):
        // the run's elements of each.
        unsafe { gpu.launch(&ADAMW, "adamw_update", grid_1d(len, 256, 8192), &args)? };
    }
    Ok(())
}
