//! Launchers of `kernels/layernorm.cu`. Twin of `src/cpu/layernorm.rs`.
//! Legend: R rows (tokens), C channels.

use super::device::{Args, Dev, Gpu};
use super::gemm::Accum;
use super::kernels::LAYERNORM;
use crate::error::Result;
use cudarc::driver::LaunchConfig;

const ROWS_PER_CHUNK: usize = 64;
const MAX_CHUNKS: usize = 256;

fn chunks(rows: usize) -> (usize, usize) {
    let chunks = rows.div_ceil(ROWS_PER_CHUNK).clamp(1, MAX_CHUNKS);
    (chunks, rows.div_ceil(chunks).max(1))
}

/// Scratch (f32 elements) that `layernorm_backward` needs.
pub fn layernorm_scratch(rows: usize, c: usize) -> usize {
    2 * chunks(rows).0 * c
}

fn warp_rows(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(8).max(1) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// out = (inp − mean) · rstd · w + b per row; mean and rstd saved (a null view skips them).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward(
    gpu: &Gpu,
    out: Dev<f32>,  // [R, C]
    mean: Dev<f32>, // [R] saved
    rstd: Dev<f32>, // [R] saved
    inp: Dev<f32>,  // [R, C]
    w: Dev<f32>,    // [C]
    b: Dev<f32>,    // [C]
    r: usize,
    c: usize,
    eps: f32,
) -> Result<()> {
    if r == 0 {
        return Ok(());
    }
    out.need(r * c, "layernorm out")?;
    inp.need(r * c, "layernorm inp")?;
    w.need(c, "layernorm w")?;
    b.need(c, "layernorm b")?;
    if !mean.is_null() {
        mean.need(r, "layernorm mean")?;
    }
    if !rstd.is_null() {
        rstd.need(r, "layernorm rstd")?;
    }
    let args = Args::new()
        .ptr(out)
        .ptr(mean)
        .ptr(rstd)
        .ptr(inp)
        .ptr(w)
        .ptr(b)
        .i32(r as i32)
        .i32(c as i32)
        .f32(eps);
    // SAFETY: (float* out, float* mean, float* rstd, const float* inp, const float* w,
    // const float* b, int rows, int c, float eps); extents checked above.
    unsafe { gpu.launch(&LAYERNORM, "layernorm_forward_f32", warp_rows(r), &args) }
}

/// backward of `layernorm_forward`: dinp += rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂));
/// dw (+)= Σ_rows dout · x̂; db (+)= Σ_rows dout.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    gpu: &Gpu,
    dinp: Dev<f32>,    // [R, C] added to
    dw: Dev<f32>,      // [C]
    db: Dev<f32>,      // [C]
    dout: Dev<f32>,    // [R, C]
    inp: Dev<f32>,     // [R, C]
    w: Dev<f32>,       // [C]
    mean: Dev<f32>,    // [R]
    rstd: Dev<f32>,    // [R]
    scratch: Dev<f32>, // layernorm_scratch(R, C)
    r: usize,
    c: usize,
    accum: Accum,
) -> Result<()> {
    if r == 0 || c == 0 {
        return Ok(());
    }
    for (v, n, what) in [
        (dinp, r * c, "dinp"),
        (dout, r * c, "dout"),
        (inp, r * c, "inp"),
        (w, c, "w"),
        (dw, c, "dw"),
        (db, c, "db"),
        (mean, r, "mean"),
        (rstd, r, "rstd"),
    ] {
        v.need(n, &format!("layernorm_backward {what}"))?;
    }
    let (nch, per) = chunks(r);
    scratch.need(2 * nch * c, "layernorm_backward scratch")?;
    let (pw, pb) = (scratch.slice(0, nch * c), scratch.slice(nch * c, nch * c));
    let args = Args::new()
        .ptr(dinp)
        .ptr(dout)
        .ptr(inp)
        .ptr(w)
        .ptr(mean)
        .ptr(rstd)
        .i32(r as i32)
        .i32(c as i32);
    // SAFETY: (float* dinp, const float* dout, const float* inp, const float* w,
    // const float* mean, const float* rstd, int rows, int c); extents checked above.
    unsafe { gpu.launch(&LAYERNORM, "layernorm_backward_f32", warp_rows(r), &args)? };
    let cfg = LaunchConfig {
        grid_dim: (c.div_ceil(32) as u32, nch as u32, 1),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new()
        .ptr(pw)
        .ptr(pb)
        .ptr(dout)
        .ptr(inp)
        .ptr(mean)
        .ptr(rstd)
        .i32(r as i32)
        .i32(c as i32)
        .i32(per as i32);
    // SAFETY: (float* pw, float* pb, const float* dout, const float* inp, const float* mean,
    // const float* rstd, int rows, int c, int rows_per_chunk).
    unsafe { gpu.launch(&LAYERNORM, "layernorm_param_partial", cfg, &args)? };
    let cfg = LaunchConfig {
        grid_dim: (c.div_ceil(256) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new()
        .ptr(dw)
        .ptr(db)
        .ptr(pw)
        .ptr(pb)
        .i32(nch as i32)
        .i32(c as i32)
        .i32(accum.flag());
    // SAFETY: (float* dw, float* db, const float* pw, const float* pb, int chunks, int c,
    // int accumulate).
    unsafe { gpu.launch(&LAYERNORM, "layernorm_param_final", cfg, &args) }
}
