//! defines: attention_forward, attention_backward
//!
//! Multi-head self-attention on a fused qkv buffer (SPEC §2 step 5), with the causal variant and
//! dropout on the probabilities. Dimension letters: B batch, S sequence (T + 2), D d_model,
//! H heads, hd = D / H. `qkv` rows are `[q | k | v]`, heads contiguous inside each part, so head
//! `h` of q is the strided `[S, hd]` view at column `h·hd` with row stride 3D.
//!
//! Scores and softmax run in parallel over (batch, head); the products that write a batch's
//! rows of `y` / `dqkv` run in parallel over batch (each task owns those rows).

use crate::cpu::dropout::Dropout;
use crate::cpu::float::Float;
use crate::cpu::gemm::{Accum, Mat, MatMut, matmul, matmul_scaled};
use rayon::prelude::*;

/// Head `hi` of part `part` (0 q, 1 k, 2 v) of batch row-block `bi`, as an `[S, hd]` view.
fn head<F>(
    qkv: &[F],
    bi: usize,
    part: usize,
    hi: usize,
    s: usize,
    d: usize,
    hd: usize,
) -> Mat<'_, F> {
    Mat::strided(&qkv[bi * s * 3 * d + part * d + hi * hd..], s, hd, 3 * d)
}

/// Per (b, h): att = softmax(q·kᵀ / √hd) (causal: only j ≤ i), attd = dropout(att), y_h = attd · v.
pub fn attention_forward<F: Float>(
    y: &mut [F],    // [B, S, D] output, heads concatenated
    att: &mut [F],  // [B, H, S, S] saved: probabilities
    attd: &mut [F], // [B, H, S, S] saved: probabilities after dropout
    qkv: &[F],      // [B, S, 3D]
    b: usize,
    s: usize,
    d: usize,
    h: usize,
    causal: bool,
    drop: Dropout,
) {
    let hd = d / h;
    let scale = F::from_f64(1.0 / (hd as f64).sqrt());
    let ss = s * s;
    att[..b * h * ss]
        .par_chunks_mut(ss)
        .zip(attd[..b * h * ss].par_chunks_mut(ss))
        .enumerate()
        .for_each(|(bh, (p, pd))| {
            let (bi, hi) = (bh / h, bh % h);
            // A local copy, so the element loops keep p and the key in registers.
            let site = drop;
            // scores = q·kᵀ / √hd
            matmul_scaled(
                MatMut::new(p, s, s),
                head(qkv, bi, 0, hi, s, d, hd),
                head(qkv, bi, 1, hi, s, d, hd).t(),
                scale,
                Accum::Set,
                1,
            );
            // Masked entries (j > i when causal) are 0 in att and attd and draw no dropout.
            for (i, (row, rowd)) in p
                .chunks_exact_mut(s)
                .zip(pd.chunks_exact_mut(s))
                .enumerate()
            {
                let len = if causal { i + 1 } else { s };
                softmax_row(&mut row[..len]);
                row[len..].fill(F::ZERO);
                let base = (bh * ss + i * s) as u64;
                for (k, (pd, &p)) in rowd[..len].iter_mut().zip(&row[..len]).enumerate() {
                    *pd = p * site.factor::<F>(base + k as u64);
                }
                rowd[len..].fill(F::ZERO);
            }
        });
    let attd = &attd[..b * h * ss];
    y[..b * s * d]
        .par_chunks_mut(s * d)
        .enumerate()
        .for_each(|(bi, yb)| {
            for hi in 0..h {
                // y_h = attd · v
                matmul(
                    MatMut::strided(&mut yb[hi * hd..], s, hd, d),
                    Mat::new(&attd[(bi * h + hi) * ss..], s, s),
                    head(qkv, bi, 2, hi, s, d, hd),
                    Accum::Set,
                    1,
                );
            }
        });
}

/// x ← softmax(x), max-subtracted, sum in f64.
fn softmax_row<F: Float>(x: &mut [F]) {
    let mx = x.iter().fold(F::NEG_INFINITY, |m, &v| m.max(v));
    // Two passes: exp first, then the sum (a sum carried across the exp calls is slower).
    x.iter_mut().for_each(|v| *v = (*v - mx).exp());
    let sum: f64 = x.iter().map(|v| v.to_f64()).sum();
    let inv = F::from_f64(1.0 / sum);
    x.iter_mut().for_each(|v| *v *= inv);
}

/// backward of `attention_forward`. dqkv is overwritten; datt is scratch.
pub fn attention_backward<F: Float>(
    dqkv: &mut [F], // [B, S, 3D]
    datt: &mut [F], // [B, H, S, S] scratch
    dy: &[F],       // [B, S, D]
    qkv: &[F],      // [B, S, 3D]
    att: &[F],      // [B, H, S, S]
    attd: &[F],     // [B, H, S, S]
    b: usize,
    s: usize,
    d: usize,
    h: usize,
    drop: Dropout,
) {
    let hd = d / h;
    let scale = 1.0 / (hd as f64).sqrt();
    let ss = s * s;
    datt[..b * h * ss]
        .par_chunks_mut(ss)
        .zip(att[..b * h * ss].par_chunks(ss))
        .enumerate()
        .for_each(|(bh, (dp, p))| {
            let (bi, hi) = (bh / h, bh % h);
            let site = drop; // a local copy, as in the forward
            // y_h = attd · v  =>  dattd = dy_h · vᵀ
            matmul(
                MatMut::new(dp, s, s),
                Mat::strided(&dy[bi * s * d + hi * hd..], s, hd, d),
                head(qkv, bi, 2, hi, s, d, hd).t(),
                Accum::Set,
                1,
            );
            // attd = dropout(att)  =>  datt = dattd · factor
            // att = softmax(scores), scores = q·kᵀ·scale
            //   =>  dscores_ij = att_ij (datt_ij − Σ_k att_ik datt_ik), folded with `scale`.
            // Where att_ij = 0 (masked entries) dscores_ij = 0: no dropout draw is needed.
            let sc = F::from_f64(scale);
            for (i, (g, p)) in dp.chunks_exact_mut(s).zip(p.chunks_exact(s)).enumerate() {
                let base = (bh * ss + i * s) as u64;
                let mut dot = 0f64;
                for (k, (g, &p)) in g.iter_mut().zip(p).enumerate() {
                    if p == F::ZERO {
                        *g = F::ZERO;
                    } else {
                        *g *= site.factor::<F>(base + k as u64);
                        dot += (*g * p).to_f64();
                    }
                }
                let dot = F::from_f64(dot);
                for (g, &p) in g.iter_mut().zip(p) {
                    *g = p * (*g - dot) * sc;
                }
            }
        });
    let datt = &datt[..b * h * ss];
    dqkv[..b * s * 3 * d]
        .par_chunks_mut(s * 3 * d)
        .enumerate()
        .for_each(|(bi, db)| {
            for hi in 0..h {
                let ds = Mat::new(&datt[(bi * h + hi) * ss..], s, s);
                let pd = Mat::new(&attd[(bi * h + hi) * ss..], s, s);
                // scores = q·kᵀ  =>  dq = dscores · k
                matmul(
                    MatMut::strided(&mut db[hi * hd..], s, hd, 3 * d),
                    ds,
                    head(qkv, bi, 1, hi, s, d, hd),
                    Accum::Set,
                    1,
                );
                //                 =>  dk = dscoresᵀ · q
                matmul(
                    MatMut::strided(&mut db[d + hi * hd..], s, hd, 3 * d),
                    ds.t(),
                    head(qkv, bi, 0, hi, s, d, hd),
                    Accum::Set,
                    1,
                );
                // y_h = attd · v  =>  dv = attdᵀ · dy_h
                matmul(
                    MatMut::strided(&mut db[2 * d + hi * hd..], s, hd, 3 * d),
                    pd.t(),
                    Mat::strided(&dy[bi * s * d + hi * hd..], s, hd, d),
                    Accum::Set,
                    1,
                );
            }
        });
}
