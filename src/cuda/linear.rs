//! Launchers of a Linear layer (`out = inp · wᵀ + b`, PyTorch `[O, I]` weights): the products
//! are `gemm` calls, the bias gradient is the column sum of `kernels/linear.cu`. Twin of
//! `src/cpu/linear.rs`. Legend: R rows, I input features, O output features.

use super::device::{Args, Dev, Gpu, Tensor};
use super::gemm::{Accum, Gemm, Precision, gemm};
use super::kernels::LINEAR;
use crate::error::Result;
use cudarc::driver::LaunchConfig;

/// Rows summed by one block of the column sum (the chunk count is fixed by the shape, so the
/// summation order, and the result, is deterministic).
const ROWS_PER_CHUNK: usize = 64;
const MAX_CHUNKS: usize = 256;

fn chunks(rows: usize) -> (usize, usize) {
    let chunks = rows.div_ceil(ROWS_PER_CHUNK).clamp(1, MAX_CHUNKS);
    (chunks, rows.div_ceil(chunks).max(1))
}

/// Scratch (f32 elements) that `col_sum` and `linear_backward` need for `rows × cols`.
pub fn col_sum_scratch(rows: usize, cols: usize) -> usize {
    chunks(rows).0 * cols
}

/// out[c] (+)= Σ_r x[r·ld + c] for c < cols.
#[allow(clippy::too_many_arguments)]
pub fn col_sum(
    gpu: &Gpu,
    out: Dev<f32>,     // [C]
    x: Dev<f32>,       // [R, ld]
    scratch: Dev<f32>, // col_sum_scratch(R, C)
    rows: usize,
    cols: usize,
    ld: usize,
    accum: Accum,
) -> Result<()> {
    if cols == 0 {
        return Ok(());
    }
    let (nch, per) = chunks(rows);
    out.need(cols, "col_sum out")?;
    if rows > 0 {
        x.need((rows - 1) * ld + cols, "col_sum x")?;
    }
    scratch.need(nch * cols, "col_sum scratch")?;
    let cfg = LaunchConfig {
        grid_dim: (cols.div_ceil(32) as u32, nch as u32, 1),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new()
        .ptr(scratch)
        .ptr(x)
        .i32(rows as i32)
        .i32(cols as i32)
        .i64(ld as i64)
        .i32(per as i32);
    // SAFETY: (float* partial, const float* x, int rows, int cols, long long ld,
    // int rows_per_chunk); extents checked above.
    unsafe { gpu.launch(&LINEAR, "col_sum_partial", cfg, &args)? };
    let cfg = LaunchConfig {
        grid_dim: (cols.div_ceil(256) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new()
        .ptr(out)
        .ptr(scratch)
        .i32(nch as i32)
        .i32(cols as i32)
        .i32(accum.flag());
    // SAFETY: (float* out, const float* partial, int chunks, int cols, int accumulate).
    unsafe { gpu.launch(&LINEAR, "col_sum_final", cfg, &args) }
}

/// out[R, O] = inp[R, I] · w[O, I]ᵀ + b[O]
#[allow(clippy::too_many_arguments)]
pub fn linear_forward(
    gpu: &Gpu,
    prec: Precision,
    out: impl Into<Tensor>, // [R, O]
    inp: impl Into<Tensor>, // [R, I]
    w: Dev<f32>,            // [O, I]
    b: Dev<f32>,            // [O]
    r: usize,
    i: usize,
    o: usize,
) -> Result<()> {
    gemm(gpu, prec, &Gemm::linear(out, inp, w, Some(b), r, o, i))
}

/// backward of `out = inp · wᵀ + b`: dw (+)= doutᵀ · inp; db (+)= Σ_rows dout; then
/// dinp = dout · w (skipped when `None`). dw is taken before dinp is written, so `dinp` may be
/// the buffer that holds `inp`. A null `dw` or `db` (a frozen tensor's) skips its product or
/// column sum.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    gpu: &Gpu,
    prec: Precision,
    dinp: Option<Dev<f32>>, // [R, I] overwritten
    dw: Dev<f32>,           // [O, I]
    db: Dev<f32>,           // [O]
    dout: Dev<f32>,         // [R, O]
    inp: impl Into<Tensor>, // [R, I]
    w: Dev<f32>,            // [O, I]
    scratch: Dev<f32>,      // col_sum_scratch(R, O)
    r: usize,
    i: usize,
    o: usize,
    accum: Accum,
) -> Result<()> {
    if !dw.is_null() {
        gemm(
            gpu,
            prec,
            &Gemm::linear_dw(dw, dout, inp, r, o, i).accum(accum),
        )?;
    }
    if !db.is_null() {
        col_sum(gpu, db, dout, scratch, r, o, o, accum)?;
    }
    match dinp {
        Some(dx) => gemm(gpu, prec, &Gemm::linear_dx(dx, dout, w, r, o, i)),
        None => Ok(()),
    }
}
