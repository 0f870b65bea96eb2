//! Launchers of the block MLP `fc2(gelu(fc1(x)))`: fc1 with the GELU fused in the GEMM epilogue
//! (storing the pre-activation), fc2 optionally fused with the residual add and its dropout;
//! the GELU rebuild and backward of `kernels/mlp.cu`. Only the pre-activation is kept for the
//! backward; the activation `act` of the forward is scratch. Twin of `src/cpu/mlp.rs`.
//! Legend: R rows, D d_model, F d_ff.

use super::StepScalars;
use super::device::{Args, Dev, Gpu, grid_1d};
use super::gemm::{Accum, Act, Gemm, Precision, gemm};
use super::kernels::MLP;
use super::linear::linear_backward;
use crate::error::{Result, internal};

/// Where fc2's output goes: `out = fc2(…)`, or the residual update `out = z + drop(fc2(…))`
/// with the dropout of the step scalars `sc` and the RNG stream `stream` (`z` may be `out`).
#[derive(Clone, Copy, Debug)]
pub enum Residual {
    None,
    Add {
        z: Dev<f32>,
        sc: Dev<StepScalars>,
        stream: u64,
    },
}

/// pre = fc1(x); act = gelu(pre); out = fc2(act) (or out = z + drop(fc2(act)).
#[allow(clippy::too_many_arguments)]
pub fn mlp_forward(
    gpu: &Gpu,
    prec: Precision,
    out: Dev<f32>, // [R, D]
    pre: Dev<f32>, // [R, F] saved
    act: Dev<f32>, // [R, F] scratch
    x: Dev<f32>,   // [R, D]
    w1: Dev<f32>,  // [F, D]
    b1: Dev<f32>,  // [F]
    w2: Dev<f32>,  // [D, F]
    b2: Dev<f32>,  // [D]
    r: usize,
    d: usize,
    f: usize,
    resid: Residual,
) -> Result<()> {
    let fc1 = Gemm {
        c_pre: Some(pre),
        act: Act::Gelu,
        ..Gemm::linear(act, x, w1, Some(b1), r, f, d)
    };
    gemm(gpu, prec, &fc1)?;
    let mut fc2 = Gemm::linear(out, act, w2, Some(b2), r, d, f);
    if let Residual::Add { z, sc, stream } = resid {
        fc2.resid = Some(z);
        fc2.dropout = Some((sc, stream));
    }
    gemm(gpu, prec, &fc2)
}

/// act = gelu(pre), the activation of `mlp_forward` rebuilt from the saved pre-activation.
pub fn gelu_forward(gpu: &Gpu, act: Dev<f32>, pre: Dev<f32>, n: usize) -> Result<()> {
    act.need(n, "gelu_forward act")?;
    pre.need(n, "gelu_forward pre")?;
    let n32 = i32::try_from(n).map_err(|_| internal("gelu_forward: too many elements"))?;
    let args = Args::new().ptr(act).ptr(pre).i32(n32);
    // SAFETY: (float*, const float*, int), `n` elements each.
    unsafe { gpu.launch(&MLP, "gelu_forward_f32", grid_1d(n, 256, 4096), &args) }
}

/// backward of `act = gelu(pre)`: dpre = dact · gelu'(pre). In place allowed.
pub fn gelu_backward(
    gpu: &Gpu,
    dpre: Dev<f32>,
    dact: Dev<f32>,
    pre: Dev<f32>,
    n: usize,
) -> Result<()> {
    dpre.need(n, "gelu_backward dpre")?;
    dact.need(n, "gelu_backward dact")?;
    pre.need(n, "gelu_backward pre")?;
    let n32 = i32::try_from(n).map_err(|_| internal("gelu_backward: too many elements"))?;
    let args = Args::new().ptr(dpre).ptr(dact).ptr(pre).i32(n32);
    // SAFETY: (float*, const float*, const float*, int), `n` elements each.
    unsafe { gpu.launch(&MLP, "gelu_backward_f32", grid_1d(n, 256, 4096), &args) }
}

/// backward of `mlp_forward` (given d out) from the saved pre-activation only: the activation
/// is rebuilt in `ff`, read by fc2's weight gradient, then overwritten by its gradient and, in
/// place, the pre-activation's. dx is overwritten after fc1's weight gradient has read x, so
/// it may be the buffer holding x. Weight gradients are written per `accum`; a null one (a
/// frozen tensor's) is skipped, and with `dw2` null the activation is not rebuilt (only fc2's
/// weight gradient reads it).
#[allow(clippy::too_many_arguments)]
pub fn mlp_backward(
    gpu: &Gpu,
    prec: Precision,
    dx: Dev<f32>, // [R, D]
    ff: Dev<f32>, // [R, F] scratch
    dw1: Dev<f32>,
    db1: Dev<f32>,
    dw2: Dev<f32>,
    db2: Dev<f32>,
    dout: Dev<f32>, // [R, D]
    x: Dev<f32>,
    pre: Dev<f32>,
    w1: Dev<f32>,
    w2: Dev<f32>,
    scratch: Dev<f32>, // linear::col_sum_scratch(R, max(D, F))
    r: usize,
    d: usize,
    f: usize,
    accum: Accum,
) -> Result<()> {
    // act = gelu(pre), rebuilt
    if !dw2.is_null() {
        gelu_forward(gpu, ff, pre, r * f)?;
    }
    // out = fc2(act)  =>  dw2, db2 from act, then dact over it
    linear_backward(
        gpu,
        prec,
        Some(ff),
        dw2,
        db2,
        dout,
        ff,
        w2,
        scratch,
        r,
        f,
        d,
        accum,
    )?;
    // act = gelu(pre)
    gelu_backward(gpu, ff, ff, pre, r * f)?;
    // pre = fc1(x)
    linear_backward(
        gpu,
        prec,
        Some(dx),
        dw1,
        db1,
        ff,
        x,
        w1,
        scratch,
        r,
        d,
        f,
        accum,
    )
}
