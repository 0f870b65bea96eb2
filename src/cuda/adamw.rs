//! Launchers of `kernels/adamw.cu`: the global gradient norm over the trainable elements
//! (deterministic f64 sum), clipping, and one AdamW step over the flat parameter vector. Twin of
//! `src/cpu/adamw.rs`; the update computes the same bits as the CPU from the same inputs.

use super::device::{Args, Dev, Gpu, grid_1d};
use super::kernels::ADAMW;
use super::{StepResult, StepScalars};
use crate::error::Result;
use cudarc::driver::LaunchConfig;

/// Partial sums (blocks) of the norm for `n` elements: fixed by `n`.
pub fn norm_parts(n: usize) -> usize {
    n.div_ceil(256 * 16).clamp(1, 1024)
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
    let parts = norm_parts(n);
    g.need(n, "grad_norm grads")?;
    trainable.need(n, "grad_norm trainable")?;
    res.need(1, "grad_norm result")?;
    sc.need(1, "grad_norm scalars")?;
    scratch.need(parts, "grad_norm scratch")?;
    let cfg = LaunchConfig {
        grid_dim: (parts as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new().ptr(scratch).ptr(g).ptr(trainable).i64(n as i64);
    // SAFETY: (double* partial, const float* g, const unsigned char* trainable, long long n).
    unsafe { gpu.launch(&ADAMW, "grad_sumsq_partial", cfg, &args)? };
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new().ptr(res).ptr(scratch).i32(parts as i32).ptr(sc);
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
    for (b, what) in [(params, "params"), (m, "m"), (v, "v"), (g, "grads")] {
        b.need(n, &format!("adamw {what}"))?;
    }
    trainable.need(n, "adamw trainable")?;
    sc.need(1, "adamw scalars")?;
    res.need(1, "adamw result")?;
    let args = Args::new()
        .ptr(params)
        .ptr(m)
        .ptr(v)
        .ptr(g)
        .ptr(trainable)
        .i64(n as i64)
        .ptr(sc)
        .ptr(res);
    // SAFETY: (float* params, float* m, float* v, const float* g,
    // const unsigned char* trainable, long long n, const StepScalars*, const StepResult*).
    unsafe { gpu.launch(&ADAMW, "adamw_update", grid_1d(n, 256, 8192), &args) }
}
