//! Launchers of `kernels/poisson.cu`: the Poisson NLL on the target entries, its mean in f64
//! (deterministic two-pass sum) and its gradient. Twin of `src/cpu/poisson.rs`.

use super::device::{Args, Dev, Gpu, grid_1d};
use super::kernels::POISSON;
use super::{StepResult, StepScalars};
use crate::error::{Result, internal};
use cudarc::driver::LaunchConfig;

/// Number of partial sums (blocks) the forward uses for `n` elements: fixed by `n`.
pub fn poisson_parts(n: usize) -> usize {
    n.div_ceil(256 * 8).clamp(1, 1024)
}

/// res.loss = Σ_target (exp(r) − x·r) · sc.inv_targets. `scratch` holds `poisson_parts(n)`
/// doubles.
#[allow(clippy::too_many_arguments)]
pub fn poisson_forward(
    gpu: &Gpu,
    res: Dev<StepResult>,
    r: Dev<f32>,     // [n] log-rates
    x: Dev<f32>,     // [n] counts
    target: Dev<u8>, // [n]
    n: usize,
    sc: Dev<StepScalars>,
    scratch: Dev<f64>,
) -> Result<()> {
    let parts = poisson_parts(n);
    r.need(n, "poisson r")?;
    x.need(n, "poisson x")?;
    target.need(n, "poisson target")?;
    res.need(1, "poisson result")?;
    sc.need(1, "poisson scalars")?;
    scratch.need(parts, "poisson scratch")?;
    let n32 = i32::try_from(n).map_err(|_| internal("poisson: too many elements"))?;
    let cfg = LaunchConfig {
        grid_dim: (parts as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new().ptr(scratch).ptr(r).ptr(x).ptr(target).i32(n32);
    // SAFETY: (double* partial, const float* r, const float* x, const unsigned char* target,
    // int n); `parts` partials, `n` elements (checked).
    unsafe { gpu.launch(&POISSON, "poisson_forward_partial", cfg, &args)? };
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new().ptr(res).ptr(scratch).i32(parts as i32).ptr(sc);
    // SAFETY: (StepResult* res, const double* partial, int nparts, const StepScalars* sc).
    unsafe { gpu.launch(&POISSON, "poisson_forward_final", cfg, &args) }
}

/// backward: dr = target · (exp(r) − x) · sc.inv_targets (overwritten).
#[allow(clippy::too_many_arguments)]
pub fn poisson_backward(
    gpu: &Gpu,
    dr: Dev<f32>,
    r: Dev<f32>,
    x: Dev<f32>,
    target: Dev<u8>,
    n: usize,
    sc: Dev<StepScalars>,
) -> Result<()> {
    dr.need(n, "poisson dr")?;
    r.need(n, "poisson r")?;
    x.need(n, "poisson x")?;
    target.need(n, "poisson target")?;
    sc.need(1, "poisson scalars")?;
    let n32 = i32::try_from(n).map_err(|_| internal("poisson: too many elements"))?;
    let args = Args::new()
        .ptr(dr)
        .ptr(r)
        .ptr(x)
        .ptr(target)
        .i32(n32)
        .ptr(sc);
    // SAFETY: (float* dr, const float* r, const float* x, const unsigned char* target, int n,
    // const StepScalars* sc).
    unsafe {
        gpu.launch(
            &POISSON,
            "poisson_backward_f32",
            grid_1d(n, 256, 4096),
            &args,
        )
    }
}
