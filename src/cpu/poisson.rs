//! defines: poisson_forward, poisson_backward
//!
//! Poisson negative log-likelihood on the target entries (SPEC §2 step 7), without the
//! log-factorial term: `ℓ = Σ_target (exp(r) − x·r) / |target|`. Sums in f64.

use crate::cpu::float::Float;
use rayon::prelude::*;

const CHUNK: usize = 4096;

/// Returns (ℓ, |target|); ℓ is NaN when there is no target.
pub fn poisson_forward<F: Float>(
    r: &[F],       // [B, T, N] log-rates
    x: &[F],       // [B, T, N] counts
    target: &[u8], // [B, T, N] 1 = in the loss
) -> (f64, usize) {
    let (sum, count) = r
        .par_chunks(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .zip(target.par_chunks(CHUNK))
        .map(|((r, x), t)| {
            let (mut s, mut c) = (0f64, 0usize);
            for ((&r, &x), &t) in r.iter().zip(x).zip(t) {
                if t != 0 {
                    let r = r.to_f64();
                    s += r.exp() - x.to_f64() * r;
                    c += 1;
                }
            }
            (s, c)
        })
        .reduce(|| (0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    if count == 0 {
        (f64::NAN, 0)
    } else {
        (sum / count as f64, count)
    }
}

/// backward of `ℓ = Σ_target (exp(r) − x·r) / n`: dr = target · (exp(r) − x) / n (overwritten).
pub fn poisson_backward<F: Float>(
    dr: &mut [F], // [B, T, N]
    r: &[F],
    x: &[F],
    target: &[u8],
    n_target: usize,
) {
    let inv = if n_target == 0 {
        F::ZERO
    } else {
        F::from_f64(1.0 / n_target as f64)
    };
    dr.par_chunks_mut(CHUNK)
        .zip(r.par_chunks(CHUNK))
        .zip(x.par_chunks(CHUNK).zip(target.par_chunks(CHUNK)))
        .for_each(|((d, r), (x, t))| {
            for (((d, &r), &x), &t) in d.iter_mut().zip(r).zip(x).zip(t) {
                *d = if t != 0 { (r.exp() - x) * inv } else { F::ZERO };
            }
        });
}
