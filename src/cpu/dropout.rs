//! defines: Dropout, dropout_forward, dropout_backward, dropout_add_forward
//!
//! Inverted dropout driven by the counter-based `crate::rng`, so the CUDA kernels reproduce
//! every draw without sharing state:
//!
//! - key of a site: `rng::key(seed, stream)`, `seed` = `StepHyper.seed`;
//! - element `i` of the site's tensor (its flat row-major index) is kept iff
//!   `rng::uniform(key, i) >= p`, and a kept element is scaled by `1 / (1 − p)`.
//!
//! The stream of each site of the model is in `crate::model::dropout::dropout_streams`.
//! The backward pass recomputes the same keep decisions instead of storing a mask.

use crate::cpu::float::Float;
use crate::model::dropout::DropoutCfg;
use crate::rng;
use rayon::prelude::*;

/// One dropout site: probability `p` (0 = identity) and the RNG key of its stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub p: f32,
    pub key: u64,
}

impl Dropout {
    /// No dropout.
    pub const OFF: Dropout = Dropout { p: 0.0, key: 0 };

    /// The site of stream `stream` for a step seeded with `seed`.
    pub fn new(p: f32, seed: u64, stream: u64) -> Dropout {
        Dropout {
            p,
            key: rng::key(seed, stream),
        }
    }

    /// The site of stream `stream` in a pass with dropout `drop` (`OFF` when `drop.p` is 0).
    pub fn site(drop: DropoutCfg, stream: u64) -> Dropout {
        if drop.p <= 0.0 {
            Dropout::OFF
        } else {
            Dropout::new(drop.p, drop.seed, stream)
        }
    }

    pub fn is_off(&self) -> bool {
        self.p <= 0.0
    }

    /// Whether element `i` of the site's tensor is kept.
    #[inline]
    pub fn keep(&self, i: u64) -> bool {
        rng::uniform(self.key, i) >= self.p
    }

    /// The factor of element `i`: `1 / (1 − p)` if kept, 0 if dropped.
    #[inline]
    pub fn factor<F: Float>(&self, i: u64) -> F {
        if self.is_off() {
            F::ONE
        } else if self.keep(i) {
            F::from_f64(1.0 / (1.0 - self.p as f64))
        } else {
            F::ZERO
        }
    }
}

const CHUNK: usize = 4096;

/// out[i] = inp[i] · factor(base + i)
pub fn dropout_forward<F: Float>(out: &mut [F], inp: &[F], drop: Dropout, base: u64) {
    assert_eq!(out.len(), inp.len());
    if drop.is_off() {
        out.copy_from_slice(inp);
        return;
    }
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(c, (o, x))| {
            let b0 = base + (c * CHUNK) as u64;
            for (i, (o, &x)) in o.iter_mut().zip(x).enumerate() {
                *o = x * drop.factor::<F>(b0 + i as u64);
            }
        });
}

/// backward of `out[i] = inp[i] · factor(base + i)`: dinp[i] = dout[i] · factor(base + i)
pub fn dropout_backward<F: Float>(dinp: &mut [F], dout: &[F], drop: Dropout, base: u64) {
    dropout_forward(dinp, dout, drop, base)
}

/// The residual update `z[i] += branch[i] · factor(i)`.
/// Its backward is `dbranch = dropout_backward(dz)`; `dz` passes through unchanged.
pub fn dropout_add_forward<F: Float>(z: &mut [F], branch: &[F], drop: Dropout) {
    assert_eq!(z.len(), branch.len());
    z.par_chunks_mut(CHUNK)
        .zip(branch.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(c, (z, x))| {
            let b0 = (c * CHUNK) as u64;
            if drop.is_off() {
                z.iter_mut().zip(x).for_each(|(z, &x)| *z += x);
            } else {
                for (i, (z, &x)) in z.iter_mut().zip(x).enumerate() {
                    *z += x * drop.factor::<F>(b0 + i as u64);
                }
            }
        });
}
