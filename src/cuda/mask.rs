//! Launcher of `kernels/mask.cu`: input masking and dropout from the counter-based RNG
//! (`kernels/rng.cuh`, the twin of `crate::rng`).

use super::StepScalars;
use super::device::{Args, Dev, Gpu, grid_1d};
use super::kernels::MASK;
use crate::error::Result;

fn n_i32(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| crate::error::internal(format!("{what}: {n} elements")))
}

/// `out = mask ? 0 : counts`, elementwise over `n`.
pub fn mask_input(
    gpu: &Gpu,
    out: Dev<f32>,
    counts: Dev<f32>,
    mask: Dev<u8>,
    n: usize,
) -> Result<()> {
    out.need(n, "mask_input out")?;
    counts.need(n, "mask_input counts")?;
    mask.need(n, "mask_input mask")?;
    let args = Args::new()
        .ptr(out)
        .ptr(counts)
        .ptr(mask)
        .i32(n_i32(n, "mask_input")?);
    // SAFETY: (float*, const float*, const unsigned char*, int), each of `n` elements.
    unsafe { gpu.launch(&MASK, "mask_input_f32", grid_1d(n, 256, 4096), &args) }
}

/// `out = keep ? x / (1 - p) : 0` with p and the seed from `sc`, draws from `stream`.
/// `out` may equal `x`.
pub fn dropout_forward(
    gpu: &Gpu,
    out: Dev<f32>,
    x: Dev<f32>,
    n: usize,
    sc: Dev<StepScalars>,
    stream: u64,
) -> Result<()> {
    out.need(n, "dropout out")?;
    x.need(n, "dropout in")?;
    sc.need(1, "dropout scalars")?;
    let args = Args::new()
        .ptr(out)
        .ptr(x)
        .i32(n_i32(n, "dropout")?)
        .ptr(sc)
        .u64(stream);
    // SAFETY: (float*, const float*, int, const StepScalars*, unsigned long long).
    unsafe { gpu.launch(&MASK, "dropout_forward_f32", grid_1d(n, 256, 4096), &args) }
}

/// Backward of `dropout_forward` with the same draws: `dx = keep ? dy / (1 - p) : 0`.
pub fn dropout_backward(
    gpu: &Gpu,
    dx: Dev<f32>,
    dy: Dev<f32>,
    n: usize,
    sc: Dev<StepScalars>,
    stream: u64,
) -> Result<()> {
    dx.need(n, "dropout dx")?;
    dy.need(n, "dropout dy")?;
    sc.need(1, "dropout scalars")?;
    let args = Args::new()
        .ptr(dx)
        .ptr(dy)
        .i32(n_i32(n, "dropout")?)
        .ptr(sc)
        .u64(stream);
    // SAFETY: (float*, const float*, int, const StepScalars*, unsigned long long).
    unsafe { gpu.launch(&MASK, "dropout_backward_f32", grid_1d(n, 256, 4096), &args) }
}

/// `out[i] = rng::bits(key, counter0 + i)` (checks the RNG twin bit for bit).
pub fn rng_bits(gpu: &Gpu, out: Dev<u64>, key: u64, counter0: u64) -> Result<()> {
    let n = out.len;
    let args = Args::new()
        .ptr(out)
        .i32(n_i32(n, "rng_bits")?)
        .u64(key)
        .u64(counter0);
    // SAFETY: (unsigned long long*, int, unsigned long long, unsigned long long).
    unsafe { gpu.launch(&MASK, "rng_bits_u64", grid_1d(n, 256, 4096), &args) }
}

/// `out[i] = rng::uniform(key, counter0 + i)`.
pub fn rng_uniform(gpu: &Gpu, out: Dev<f32>, key: u64, counter0: u64) -> Result<()> {
    let n = out.len;
    let args = Args::new()
        .ptr(out)
        .i32(n_i32(n, "rng_uniform")?)
        .u64(key)
        .u64(counter0);
    // SAFETY: (float*, int, unsigned long long, unsigned long long).
    unsafe { gpu.launch(&MASK, "rng_uniform_f32", grid_1d(n, 256, 4096), &args) }
}
