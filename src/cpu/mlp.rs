//! defines: gelu_forward, gelu_backward, mlp_forward, mlp_backward
//!
//! The block MLP `fc2(gelu(fc1(x)))` with the exact (erf) GELU.
//! Dimension letters: R rows (tokens), D d_model, F d_ff.

use crate::cpu::float::Float;
use crate::cpu::linear::{linear_backward, linear_forward};
use rayon::prelude::*;

const CHUNK: usize = 4096;
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// 1 / √(2π)
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// out = 0.5 · x · (1 + erf(x / √2))
pub fn gelu_forward<F: Float>(out: &mut [F], inp: &[F]) {
    let (half, c) = (F::from_f64(0.5), F::from_f64(FRAC_1_SQRT_2));
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(o, x)| {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = half * x * (F::ONE + (x * c).erf());
            }
        });
}

/// backward of `out = 0.5 · x · (1 + erf(x / √2))`:
/// dinp = dout · (0.5 · (1 + erf(x / √2)) + x · exp(−x² / 2) / √(2π))
pub fn gelu_backward<F: Float>(dinp: &mut [F], dout: &[F], inp: &[F]) {
    let (half, c, k) = (
        F::from_f64(0.5),
        F::from_f64(FRAC_1_SQRT_2),
        F::from_f64(INV_SQRT_2PI),
    );
    dinp.par_chunks_mut(CHUNK)
        .zip(dout.par_chunks(CHUNK))
        .zip(inp.par_chunks(CHUNK))
        .for_each(|((d, g), x)| {
            for ((d, &g), &x) in d.iter_mut().zip(g).zip(x) {
                let cdf = half * (F::ONE + (x * c).erf());
                let pdf = k * (-half * x * x).exp();
                *d = g * (cdf + x * pdf);
            }
        });
}

/// pre = fc1(x); act = gelu(pre); out = fc2(act)
pub fn mlp_forward<F: Float>(
    out: &mut [F], // [R, D]
    pre: &mut [F], // [R, F] saved
    act: &mut [F], // [R, F] saved
    x: &[F],       // [R, D]
    w1: &[F],      // [F, D]
    b1: &[F],      // [F]
    w2: &[F],      // [D, F]
    b2: &[F],      // [D]
    r: usize,
    d: usize,
    f: usize,
    threads: usize,
) {
    linear_forward(pre, x, w1, b1, r, d, f, threads);
    gelu_forward(&mut act[..r * f], &pre[..r * f]);
    linear_forward(out, act, w2, b2, r, f, d, threads);
}

/// backward of `mlp_forward`: dx overwritten, dact/dpre scratch, weight gradients accumulate.
pub fn mlp_backward<F: Float>(
    dx: &mut [F],   // [R, D]
    dact: &mut [F], // [R, F] scratch
    dpre: &mut [F], // [R, F] scratch
    dw1: &mut [F],
    db1: &mut [F],
    dw2: &mut [F],
    db2: &mut [F],
    dout: &[F], // [R, D]
    x: &[F],
    pre: &[F],
    act: &[F],
    w1: &[F],
    w2: &[F],
    r: usize,
    d: usize,
    f: usize,
    threads: usize,
) {
    // out = fc2(act)
    linear_backward(Some(&mut *dact), dw2, db2, dout, act, w2, r, f, d, threads);
    // act = gelu(pre)
    gelu_backward(&mut dpre[..r * f], &dact[..r * f], &pre[..r * f]);
    // pre = fc1(x)
    linear_backward(Some(dx), dw1, db1, dpre, x, w1, r, d, f, threads);
}
