//! defines: linear_forward, linear_backward, col_sum_add
//!
//! Dimension letters: R rows (B·T or B·S tokens), I input features, O output features.
//! Weights are PyTorch `Linear` layout `[O, I]`.

use crate::cpu::float::Float;
use crate::cpu::gemm::{Accum, Mat, MatMut, matmul};
use rayon::prelude::*;

/// out[R, O] = inp[R, I] · w[O, I]ᵀ + b[O]
pub fn linear_forward<F: Float>(
    out: &mut [F], // [R, O]
    inp: &[F],     // [R, I]
    w: &[F],       // [O, I]
    b: &[F],       // [O]
    r: usize,
    i: usize,
    o: usize,
    threads: usize,
) {
    let out = &mut out[..r * o];
    out.par_chunks_mut(o).for_each(|row| row.copy_from_slice(b));
    matmul(
        MatMut::new(out, r, o),
        Mat::new(&inp[..r * i], r, i),
        Mat::new(w, o, i).t(),
        Accum::Add,
        threads,
    );
}

/// backward of `out = inp · wᵀ + b`:
/// dinp = dout · w (overwritten, skipped when `None`); dw += doutᵀ · inp; db += Σ_rows dout.
/// An empty `dw` or `db` (a frozen tensor's) skips its product or reduction.
pub fn linear_backward<F: Float>(
    dinp: Option<&mut [F]>, // [R, I]
    dw: &mut [F],           // [O, I]
    db: &mut [F],           // [O]
    dout: &[F],             // [R, O]
    inp: &[F],              // [R, I]
    w: &[F],                // [O, I]
    r: usize,
    i: usize,
    o: usize,
    threads: usize,
) {
    let dout = &dout[..r * o];
    if let Some(dinp) = dinp {
        matmul(
            MatMut::new(&mut dinp[..r * i], r, i),
            Mat::new(dout, r, o),
            Mat::new(w, o, i),
            Accum::Set,
            threads,
        );
    }
    if !dw.is_empty() {
        matmul(
            MatMut::new(dw, o, i),
            Mat::new(dout, r, o).t(),
            Mat::new(&inp[..r * i], r, i),
            Accum::Add,
            threads,
        );
    }
    if !db.is_empty() {
        col_sum_add(db, dout, r, o);
    }
}

/// Columns summed over rows in f64: out[c] += Σ_r x[r, c].
pub fn col_sum_add<F: Float>(out: &mut [F], x: &[F], r: usize, c: usize) {
    const W: usize = 32;
    out[..c]
        .par_chunks_mut(W)
        .enumerate()
        .for_each(|(blk, out)| {
            let c0 = blk * W;
            let mut acc = [0f64; W];
            for row in x[..r * c].chunks_exact(c) {
                for (a, &v) in acc.iter_mut().zip(&row[c0..c0 + out.len()]) {
                    *a += v.to_f64();
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                *o += F::from_f64(a);
            }
        });
}
