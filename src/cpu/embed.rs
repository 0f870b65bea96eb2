//! defines: softsign_forward, softsign_backward, embed_forward, embed_backward
//!
//! The embedding MLP of SPEC §2 step 3: `e = fc2(softsign(fc1(h)))`, softsign(z) = z / (1 + |z|).
//! Dimension letters: R rows (B·T), E d_tok, G d_embed_hidden, D d_model.
//! (The position table is added where the sequence is assembled, in `model.rs`.)

use crate::cpu::float::Float;
use crate::cpu::linear::{linear_backward, linear_forward};
use rayon::prelude::*;

const CHUNK: usize = 4096;

/// out = inp / (1 + |inp|)
pub fn softsign_forward<F: Float>(out: &mut [F], inp: &[F]) {
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(o, x)| {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = x / (F::ONE + x.abs());
            }
        });
}

/// backward of `out = inp / (1 + |inp|)`: dinp = dout / (1 + |inp|)²
pub fn softsign_backward<F: Float>(dinp: &mut [F], dout: &[F], inp: &[F]) {
    dinp.par_chunks_mut(CHUNK)
        .zip(dout.par_chunks(CHUNK))
        .zip(inp.par_chunks(CHUNK))
        .for_each(|((d, g), x)| {
            for ((d, &g), &x) in d.iter_mut().zip(g).zip(x) {
                let den = F::ONE + x.abs();
                *d = g / (den * den);
            }
        });
}

/// a1 = fc1(h); sg = softsign(a1); e = fc2(sg)
pub fn embed_forward<F: Float>(
    e: &mut [F],  // [R, D] output
    a1: &mut [F], // [R, G] saved: fc1 output
    sg: &mut [F], // [R, G] saved: softsign output
    h: &[F],      // [R, E] input
    w1: &[F],     // [G, E]
    b1: &[F],     // [G]
    w2: &[F],     // [D, G]
    b2: &[F],     // [D]
    r: usize,
    de: usize,
    g: usize,
    d: usize,
    threads: usize,
) {
    linear_forward(a1, h, w1, b1, r, de, g, threads);
    softsign_forward(&mut sg[..r * g], &a1[..r * g]);
    linear_forward(e, sg, w2, b2, r, g, d, threads);
}

/// backward of `embed_forward`. `dsg` [R, G] is scratch; `dh` is overwritten; weight
/// gradients accumulate (an empty one, a frozen tensor's, is skipped).
pub fn embed_backward<F: Float>(
    dh: &mut [F],  // [R, E]
    dsg: &mut [F], // [R, G] scratch
    da1: &mut [F], // [R, G] scratch
    dw1: &mut [F],
    db1: &mut [F],
    dw2: &mut [F],
    db2: &mut [F],
    dout: &[F], // [R, D]
    h: &[F],
    a1: &[F],
    sg: &[F],
    w1: &[F],
    w2: &[F],
    r: usize,
    de: usize,
    g: usize,
    d: usize,
    threads: usize,
) {
    // e = fc2(sg)
    linear_backward(Some(&mut *dsg), dw2, db2, dout, sg, w2, r, g, d, threads);
    // sg = softsign(a1)
    softsign_backward(&mut da1[..r * g], &dsg[..r * g], &a1[..r * g]);
    // a1 = fc1(h)
    linear_backward(Some(dh), dw1, db1, da1, h, w1, r, de, g, threads);
}
