//! Launchers of `kernels/layernorm.cu`. Twin of `src/cpu/layernorm.rs`, except for what is
//! saved: the forward keeps the normalised input x̂ and rstd (not the input and its mean), the
//! backward reads only those, and `layernorm_affine` rebuilds the output from x̂ bit for bit.
//! Legend: R rows (tokens), C channels.

use super::device::{Args, Dev, Gpu, grid_1d};
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

/// out = x̂ · w + b, x̂ = (inp − mean) · rstd per row; x̂ and rstd saved (a null view skips
/// them).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward(
    gpu: &Gpu,
    out: Dev<f32>,  // [R, C]
    xhat: Dev<f32>, // [R, C] saved
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
    if !xhat.is_null() {
        xhat.need(r * c, "layernorm xhat")?;
    }
    if !rstd.is_null() {
        rstd.need(r, "layernorm rstd")?;
    }
    let args = Args::new()
        .ptr(out)
        .ptr(xhat)
        .ptr(rstd)
        .ptr(inp)
        .ptr(w)
        .ptr(b)
        .i32(r as i32)
        .i32(c as i32)
        .f32(eps);
    // SAFETY: (float* out, float* xhat, float* rstd, const float* inp, const float* w,
    // const float* b, int rows, int c, float eps); extents checked above.
    unsafe { gpu.launch(&LAYERNORM, "layernorm_forward_f32", warp_rows(r), &args) }
}

/// out = x̂ · w + b: the output of `layernorm_forward` rebuilt from its saved x̂, the same bits.
pub fn layernorm_affine(
    gpu: &Gpu,
    out: Dev<f32>,  // [R, C]
    xhat: Dev<f32>, // [R, C]
    w: Dev<f32>,    // [C]
    b: Dev<f32>,    // [C]
    r: usize,
    c: usize,
) -> Result<()> {
    let n = r * c;
    if n == 0 {
        return Ok(());
    }
    out.need(n, "layernorm_affine out")?;
    xhat.need(n, "layernorm_affine xhat")?;
    w.need(c, "layernorm_affine w")?;
    b.need(c, "layernorm_affine b")?;
    let args = Args::new()
        .ptr(out)
        .ptr(xhat)
        .ptr(w)
        .ptr(b)
        .i64(n as i64)
        .i32(c as i32);
    // SAFETY: (float* out, const float* xhat, const float* w, const float* b, long long n,
    // int c); extents checked above.
    unsafe {
        gpu.launch(
            &LAYERNORM,
            "layernorm_affine_f32",
            grid_1d(n, 256, 4096),
            &args,
        )
    }
}

/// backward of `layernorm_forward` from its saved x̂ and rstd:
/// dinp += rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)); dw (+)= Σ_rows dout · x̂;
/// db (+)= Σ_rows dout. A null `dw` or `db` (a frozen tensor's) is not written; both null, the
/// parameter reductions are not launched.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    gpu: &Gpu,
    dinp: Dev<f32>,    // [R, C] added to
    dw: Dev<f32>,      // [C]
    db: Dev<f32>,      // [C]
    dout: Dev<f32>,    // [R, C]
    xhat: Dev<f32>,    // [R, C]
    w: Dev<f32>,       // [C]
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
        (xhat, r * c, "xhat"),
        (w, c, "w"),
        (dw, c, "dw"),
        (db, c, "db"),
        (rstd, r, "rstd"),
    ] {
        if (what == "dw" || what == "db") && v.is_null() {
            continue;
        }
        v.need(n, &format!("layernorm_backward {what}"))?;
    }
    let (nch, per) = chunks(r);
    scratch.need(2 * nch * c, "layernorm_backward scratch")?;
    let (pw, pb) = (scratch.slice(0, nch * c), scratch.slice(nch * c, nch * c));
    let args = Args::new()
        .ptr(dinp)
        .ptr(dout)
        .ptr(xhat)
        .ptr(w)
        .ptr(rstd)
        .i32(r as i32)
        .i32(c as i32);
    // SAFETY: (float* dinp, const float* dout, const float* xhat, const float* w,
    // const float* rstd, int rows, int c); extents checked above.
    unsafe { gpu.launch(&LAYERNORM, "layernorm_backward_f32", warp_rows(r), &args)? };
    if dw.is_null() && db.is_null() {
        return Ok(());
    }
    let cfg = LaunchConfig {
        grid_dim: (c.div_ceil(32) as u32, nch as u32, 1),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new()
        .ptr(pw)
        .ptr(pb)
        .ptr(dout)
        .ptr(xhat)
        .i32(r as i32)
        .i32(c as i32)
        .i32(per as i32);
    // SAFETY: (float* pw, float* pb, const float* dout, const float* xhat, int rows, int c,
    // int rows_per_chunk).
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
    // int accumulate); dw or db may be null (not written).
    unsafe { gpu.launch(&LAYERNORM, "layernorm_param_final", cfg, &args) }
}
