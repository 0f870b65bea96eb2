//! defines: layernorm_forward, layernorm_backward
//!
//! Dimension letters: R rows (tokens), C channels (d_model). Statistics in f64.

use crate::cpu::float::Float;
use rayon::prelude::*;

/// out[r, :] = (inp[r, :] − mean[r]) · rstd[r] · w + b, rstd = 1 / √(var + eps) (biased var).
pub fn layernorm_forward<F: Float>(
    out: &mut [F],  // [R, C]
    mean: &mut [F], // [R] saved
    rstd: &mut [F], // [R] saved
    inp: &[F],      // [R, C]
    w: &[F],        // [C]
    b: &[F],        // [C]
    r: usize,
    c: usize,
    eps: f32,
) {
    out[..r * c]
        .par_chunks_mut(c)
        .zip(inp[..r * c].par_chunks(c))
        .zip(mean[..r].par_iter_mut().zip(rstd[..r].par_iter_mut()))
        .for_each(|((o, x), (mean, rstd))| {
            let m = x.iter().map(|v| v.to_f64()).sum::<f64>() / c as f64;
            let var = x
                .iter()
                .map(|v| {
                    let d = v.to_f64() - m;
                    d * d
                })
                .sum::<f64>()
                / c as f64;
            let s = 1.0 / (var + eps as f64).sqrt();
            let (mf, sf) = (F::from_f64(m), F::from_f64(s));
            for (((o, &x), &w), &b) in o.iter_mut().zip(x).zip(w).zip(b) {
                *o = (x - mf) * sf * w + b;
            }
            *mean = mf;
            *rstd = sf;
        });
}

/// backward of `out = (inp − mean) · rstd · w + b`, with x̂ = (inp − mean) · rstd:
/// dinp += rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂)), dx̂ = dout · w;
/// dw += Σ_rows dout · x̂; db += Σ_rows dout. An empty `dw` or `db` (a frozen tensor's) is
/// not computed.
pub fn layernorm_backward<F: Float>(
    dinp: &mut [F], // [R, C] accumulated
    dw: &mut [F],   // [C] accumulated
    db: &mut [F],   // [C] accumulated
    dout: &[F],     // [R, C]
    inp: &[F],      // [R, C]
    w: &[F],        // [C]
    mean: &[F],     // [R]
    rstd: &[F],     // [R]
    r: usize,
    c: usize,
) {
    let (dout, inp) = (&dout[..r * c], &inp[..r * c]);
    dinp[..r * c]
        .par_chunks_mut(c)
        .zip(dout.par_chunks(c).zip(inp.par_chunks(c)))
        .zip(mean[..r].par_iter().zip(&rstd[..r]))
        .for_each(|((dx, (g, x)), (&m, &s))| {
            let (mut sum_d, mut sum_dx) = (0f64, 0f64);
            for ((&g, &x), &w) in g.iter().zip(x).zip(w) {
                let xhat = ((x - m) * s).to_f64();
                let dxhat = (g * w).to_f64();
                sum_d += dxhat;
                sum_dx += dxhat * xhat;
            }
            let mean_d = F::from_f64(sum_d / c as f64);
            let mean_dx = F::from_f64(sum_dx / c as f64);
            for (((dx, &g), &x), &w) in dx.iter_mut().zip(g).zip(x).zip(w) {
                let xhat = (x - m) * s;
                *dx += s * (g * w - mean_d - xhat * mean_dx);
            }
        });
    if dw.is_empty() && db.is_empty() {
        return;
    }
    // One of the two frozen: its sums go to scratch (a mixed case, not a hot path).
    let (mut sw, mut sb) = (Vec::new(), Vec::new());
    let dw = if dw.is_empty() {
        sw.resize(c, F::ZERO);
        &mut sw[..]
    } else {
        dw
    };
    let db = if db.is_empty() {
        sb.resize(c, F::ZERO);
        &mut sb[..]
    } else {
        db
    };
    // Parameter gradients: column sums over rows, in blocks of columns, f64 accumulators.
    const W: usize = 32;
    dw[..c]
        .par_chunks_mut(W)
        .zip(db[..c].par_chunks_mut(W))
        .enumerate()
        .for_each(|(blk, (dw, db))| {
            let c0 = blk * W;
            let n = dw.len();
            let (mut aw, mut ab) = ([0f64; W], [0f64; W]);
            for ((g, x), (&m, &s)) in dout
                .chunks_exact(c)
                .zip(inp.chunks_exact(c))
                .zip(mean.iter().zip(rstd))
            {
                for j in 0..n {
                    let gj = g[c0 + j];
                    aw[j] += (gj * ((x[c0 + j] - m) * s)).to_f64();
                    ab[j] += gj.to_f64();
                }
            }
            for j in 0..n {
                dw[j] += F::from_f64(aw[j]);
                db[j] += F::from_f64(ab[j]);
            }
        });
}
