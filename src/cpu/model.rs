//! defines: model_forward, model_backward, block_features
//!
//! The whole NDT (SPEC §2), forward and backward, as the list of layer calls. Every activation
//! the backward pass needs is saved in the `Workspace`; nothing is allocated per step once the
//! workspace fits the batch. Dimension letters as in `src/model/shape.rs`.
//!
//! ```text
//! x̃      = x ⊙ (1 − M)                                   [B,T,N]
//! h      = stitch_in[s](x̃)                               [B,T,E]
//! emb    = fc2(softsign(fc1(h)))                          [B,T,D]
//! seq    = [token[s], mask_tokens[scheme], emb_t + pos_t] [B,S,D]
//! z₀     = drop(seq)                                      stream 0
//! z_mid  = z_l + drop(out(attn(LN₁(z_l))))                streams 1+3l (probs), 2+3l
//! z_l+1  = z_mid + drop(fc2(gelu(fc1(LN₂(z_mid)))))       stream 3+3l
//! y      = LN_f(z_L)[:, 2:]                               [B,T,D]
//! r      = stitch_out[s](y)                               [B,T,N] log-rates
//! ℓ      = Σ_target (exp(r) − x·r) / |target|
//! ```

use crate::batch::Batch;
use crate::cpu::attention::{attention_backward, attention_forward};
use crate::cpu::dropout::{Dropout, dropout_add_forward, dropout_backward, dropout_forward};
use crate::cpu::embed::{embed_backward, embed_forward};
use crate::cpu::float::Float;
use crate::cpu::layernorm::{layernorm_backward, layernorm_forward};
use crate::cpu::linear::{linear_backward, linear_forward};
use crate::cpu::mlp::{mlp_backward, mlp_forward};
use crate::cpu::poisson::{poisson_backward, poisson_forward};
use crate::cpu::workspace::{Workspace, layer};
use crate::model::ModelConfig;
use crate::model::dropout::{DropoutCfg, dropout_streams};
use crate::model::params::TrainableSet;
use crate::model::shape::{Dims, Layout};
use rayon::prelude::*;
use std::ops::Range;

#[inline]
fn at<'a, F>(p: &'a [F], r: &std::ops::Range<usize>) -> &'a [F] {
    &p[r.clone()]
}

/// Forward pass; returns (loss, |target|) and leaves every activation in `ws`
/// (log-rates in `ws.r[..B·T·N]`). `batch` must pass `check_batch`.
pub fn model_forward<F: Float>(
    ws: &mut Workspace<F>,
    params: &[F],
    lay: &Layout,
    cfg: &ModelConfig,
    batch: &Batch,
    drop: DropoutCfg,
    threads: usize,
) -> (f64, usize) {
    let dm = Dims::new(cfg, batch.b, batch.t, batch.n);
    ws.ensure(&dm);
    let (bt, bs, d, s, t, n) = (dm.bt(), dm.bs(), dm.d, dm.s, dm.t, dm.n);
    let sess = &lay.sessions[&batch.session_id];

    // x̃ = x ⊙ (1 − M)
    ws.x[..bt * n]
        .par_iter_mut()
        .zip(ws.xin[..bt * n].par_iter_mut())
        .zip(batch.counts.par_iter().zip(&batch.mask))
        .for_each(|((x, xin), (&c, &m))| {
            *x = F::from_f32(c);
            *xin = if m != 0 { F::ZERO } else { *x };
        });
    // h = stitch_in[s](x̃)
    linear_forward(
        &mut ws.h,
        &ws.xin,
        at(params, &sess.in_w),
        at(params, &sess.in_b),
        bt,
        n,
        dm.e,
        threads,
    );
    // emb = fc2(softsign(fc1(h)))
    embed_forward(
        &mut ws.emb,
        &mut ws.a1,
        &mut ws.sg,
        &ws.h,
        at(params, &lay.emb_fc1_w),
        at(params, &lay.emb_fc1_b),
        at(params, &lay.emb_fc2_w),
        at(params, &lay.emb_fc2_b),
        bt,
        dm.e,
        dm.g,
        d,
        threads,
    );
    // seq = [token[s], mask_tokens[scheme], emb_t + pos_t]
    let token = at(params, &sess.token);
    let prompt = &at(params, &lay.mask_tokens)[batch.scheme.index() * d..][..d];
    let pos = at(params, &lay.pos);
    let emb = &ws.emb;
    ws.seq[..bs * d]
        .par_chunks_mut(s * d)
        .enumerate()
        .for_each(|(bi, sq)| {
            sq[..d].copy_from_slice(token);
            sq[d..2 * d].copy_from_slice(prompt);
            let e = &emb[bi * t * d..(bi + 1) * t * d];
            for ((o, &e), &p) in sq[2 * d..].iter_mut().zip(e).zip(&pos[..t * d]) {
                *o = e + p;
            }
        });
    // z₀ = drop(seq)
    dropout_forward(
        &mut ws.resid[..bs * d],
        &ws.seq[..bs * d],
        Dropout::site(drop, dropout_streams::SEQUENCE),
        0,
    );

    for (l, bl) in lay.blocks.iter().enumerate() {
        let (lbsd, lbs) = (layer(l, bs * d), layer(l, bs));
        let (z_in, z_out) = ws.resid.split_at_mut((l + 1) * bs * d);
        let z_in = &z_in[lbsd.clone()];
        // a = LN₁(z_l)
        layernorm_forward(
            &mut ws.ln1[lbsd.clone()],
            &mut ws.ln1_mean[lbs.clone()],
            &mut ws.ln1_rstd[lbs.clone()],
            z_in,
            at(params, &bl.ln1_w),
            at(params, &bl.ln1_b),
            bs,
            d,
            cfg.ln_eps,
        );
        // qkv = a · Wqkvᵀ + bqkv
        let qkv = &mut ws.qkv[layer(l, bs * 3 * d)];
        linear_forward(
            qkv,
            &ws.ln1[lbsd.clone()],
            at(params, &bl.qkv_w),
            at(params, &bl.qkv_b),
            bs,
            d,
            3 * d,
            threads,
        );
        // atty = attention(qkv)
        attention_forward(
            &mut ws.atty[lbsd.clone()],
            &mut ws.att[layer(l, dm.bhss())],
            &mut ws.attd[layer(l, dm.bhss())],
            &*qkv,
            dm.b,
            s,
            d,
            dm.h,
            batch.causal(),
            Dropout::site(drop, dropout_streams::attn_probs(l)),
        );
        // z_mid = z_l + drop(out(atty))
        linear_forward(
            &mut ws.branch,
            &ws.atty[lbsd.clone()],
            at(params, &bl.out_w),
            at(params, &bl.out_b),
            bs,
            d,
            d,
            threads,
        );
        let z_mid = &mut ws.resid_mid[lbsd.clone()];
        z_mid.copy_from_slice(z_in);
        dropout_add_forward(
            z_mid,
            &ws.branch[..bs * d],
            Dropout::site(drop, dropout_streams::attn_resid(l)),
        );
        // m = LN₂(z_mid)
        layernorm_forward(
            &mut ws.ln2[lbsd.clone()],
            &mut ws.ln2_mean[lbs.clone()],
            &mut ws.ln2_rstd[lbs],
            &*z_mid,
            at(params, &bl.ln2_w),
            at(params, &bl.ln2_b),
            bs,
            d,
            cfg.ln_eps,
        );
        // z_l+1 = z_mid + drop(fc2(gelu(fc1(m))))
        mlp_forward(
            &mut ws.branch,
            &mut ws.fch[layer(l, bs * dm.f)],
            &mut ws.fcg[layer(l, bs * dm.f)],
            &ws.ln2[lbsd.clone()],
            at(params, &bl.fc1_w),
            at(params, &bl.fc1_b),
            at(params, &bl.fc2_w),
            at(params, &bl.fc2_b),
            bs,
            d,
            dm.f,
            threads,
        );
        let z_next = &mut z_out[..bs * d];
        z_next.copy_from_slice(z_mid);
        dropout_add_forward(
            z_next,
            &ws.branch[..bs * d],
            Dropout::site(drop, dropout_streams::mlp_resid(l)),
        );
    }

    // y = LN_f(z_L), prefix dropped
    let z_last = &ws.resid[layer(dm.l, bs * d)];
    layernorm_forward(
        &mut ws.lnf,
        &mut ws.lnf_mean,
        &mut ws.lnf_rstd,
        z_last,
        at(params, &lay.lnf_w),
        at(params, &lay.lnf_b),
        bs,
        d,
        cfg.ln_eps,
    );
    drop_prefix(&mut ws.y[..bt * d], &ws.lnf[..bs * d], s, d);
    // r = stitch_out[s](y)
    linear_forward(
        &mut ws.r,
        &ws.y,
        at(params, &sess.out_w),
        at(params, &sess.out_b),
        bt,
        d,
        n,
        threads,
    );
    poisson_forward(&ws.r[..bt * n], &ws.x[..bt * n], &batch.target)
}

/// out[b, t, :] = seq[b, t + 2, :]
fn drop_prefix<F: Float>(out: &mut [F], seq: &[F], s: usize, d: usize) {
    out.par_chunks_mut((s - 2) * d)
        .zip(seq.par_chunks(s * d))
        .for_each(|(o, q)| o.copy_from_slice(&q[2 * d..]));
}

/// Features of block `k` (its output, prefix dropped), `[B, T, D]`, after `model_forward`.
pub fn block_features<F: Float>(
    ws: &Workspace<F>,
    cfg: &ModelConfig,
    batch: &Batch,
    k: usize,
) -> Vec<F> {
    let dm = Dims::new(cfg, batch.b, batch.t, batch.n);
    let mut out = vec![F::ZERO; dm.bt() * dm.d];
    drop_prefix(
        &mut out,
        &ws.resid[layer(k + 1, dm.bs() * dm.d)],
        dm.s,
        dm.d,
    );
    out
}

/// Backward pass after `model_forward` on the same batch, parameters and dropout: adds the
/// gradient of the loss to `grads` (flat, `Layout` order; the caller zeroes it).
pub fn model_backward<F: Float>(
    ws: &mut Workspace<F>,
    grads: &mut [F],
    params: &[F],
    lay: &Layout,
    cfg: &ModelConfig,
    batch: &Batch,
    n_target: usize,
    drop: DropoutCfg,
    threads: usize,
) {
    model_backward_trainable(
        ws, grads, params, lay, cfg, batch, n_target, drop, threads, None,
    );
}

/// `model_backward` for the trainable set `set` (None: every tensor): a frozen tensor's
/// gradient is not computed (no weight product, no bias, LayerNorm, position or token
/// reduction) and its part of `grads` is not touched; the gradient of every activation still
/// flows down to the input layer. The trainable tensors' gradients are the same bits as
/// without the set.
pub fn model_backward_trainable<F: Float>(
    ws: &mut Workspace<F>,
    grads: &mut [F],
    params: &[F],
    lay: &Layout,
    cfg: &ModelConfig,
    batch: &Batch,
    n_target: usize,
    drop: DropoutCfg,
    threads: usize,
    set: Option<&TrainableSet>,
) {
    // The gradient slice of a tensor, or an empty one (skip) when the tensor is frozen.
    let trains = |r: &Range<usize>| set.is_none_or(|s| s.trains(r));
    fn keep<F>(g: &mut [F], on: bool) -> &mut [F] {
        if on { g } else { &mut [] }
    }
    let dm = Dims::new(cfg, batch.b, batch.t, batch.n);
    let (bt, bs, d, s, t, n) = (dm.bt(), dm.bs(), dm.d, dm.s, dm.t, dm.n);
    let sess = &lay.sessions[&batch.session_id];

    // ℓ = Σ_target (exp(r) − x·r) / |target|
    poisson_backward(
        &mut ws.dr[..bt * n],
        &ws.r[..bt * n],
        &ws.x[..bt * n],
        &batch.target,
        n_target,
    );
    // r = stitch_out[s](y)
    {
        let [dw, db] = grads
            .get_disjoint_mut([sess.out_w.clone(), sess.out_b.clone()])
            .expect("disjoint parameter ranges");
        let (dw, db) = (keep(dw, trains(&sess.out_w)), keep(db, trains(&sess.out_b)));
        linear_backward(
            Some(&mut ws.dy[..]),
            dw,
            db,
            &ws.dr,
            &ws.y,
            at(params, &sess.out_w),
            bt,
            d,
            n,
            threads,
        );
    }
    // y = LN_f(z_L)[:, 2:]  (prefix rows get no gradient)
    ws.dln[..bs * d]
        .par_chunks_mut(s * d)
        .zip(ws.dy[..bt * d].par_chunks(t * d))
        .for_each(|(g, dy)| {
            g[..2 * d].fill(F::ZERO);
            g[2 * d..].copy_from_slice(dy);
        });
    ws.dresid[..bs * d].fill(F::ZERO);
    {
        let [dw, db] = grads
            .get_disjoint_mut([lay.lnf_w.clone(), lay.lnf_b.clone()])
            .expect("disjoint parameter ranges");
        let (dw, db) = (keep(dw, trains(&lay.lnf_w)), keep(db, trains(&lay.lnf_b)));
        layernorm_backward(
            &mut ws.dresid,
            dw,
            db,
            &ws.dln,
            &ws.resid[layer(dm.l, bs * d)],
            at(params, &lay.lnf_w),
            &ws.lnf_mean,
            &ws.lnf_rstd,
            bs,
            d,
        );
    }

    for (l, bl) in lay.blocks.iter().enumerate().rev() {
        let (lbsd, lbs) = (layer(l, bs * d), layer(l, bs));
        // z_l+1 = z_mid + drop(fc2(gelu(fc1(m))))  =>  dbranch = drop'(dz)
        dropout_backward(
            &mut ws.dbranch[..bs * d],
            &ws.dresid[..bs * d],
            Dropout::site(drop, dropout_streams::mlp_resid(l)),
            0,
        );
        {
            let [dw1, db1, dw2, db2] = grads
                .get_disjoint_mut([
                    bl.fc1_w.clone(),
                    bl.fc1_b.clone(),
                    bl.fc2_w.clone(),
                    bl.fc2_b.clone(),
                ])
                .expect("disjoint parameter ranges");
            let (dw1, db1, dw2, db2) = (
                keep(dw1, trains(&bl.fc1_w)),
                keep(db1, trains(&bl.fc1_b)),
                keep(dw2, trains(&bl.fc2_w)),
                keep(db2, trains(&bl.fc2_b)),
            );
            mlp_backward(
                &mut ws.dln,
                &mut ws.dfcg,
                &mut ws.dfch,
                dw1,
                db1,
                dw2,
                db2,
                &ws.dbranch,
                &ws.ln2[lbsd.clone()],
                &ws.fch[layer(l, bs * dm.f)],
                &ws.fcg[layer(l, bs * dm.f)],
                at(params, &bl.fc1_w),
                at(params, &bl.fc2_w),
                bs,
                d,
                dm.f,
                threads,
            );
        }
        // m = LN₂(z_mid)  =>  dz_mid += LN₂'(dm)   (dz passes through the residual)
        {
            let [dw, db] = grads
                .get_disjoint_mut([bl.ln2_w.clone(), bl.ln2_b.clone()])
                .expect("disjoint parameter ranges");
            let (dw, db) = (keep(dw, trains(&bl.ln2_w)), keep(db, trains(&bl.ln2_b)));
            layernorm_backward(
                &mut ws.dresid,
                dw,
                db,
                &ws.dln,
                &ws.resid_mid[lbsd.clone()],
                at(params, &bl.ln2_w),
                &ws.ln2_mean[lbs.clone()],
                &ws.ln2_rstd[lbs.clone()],
                bs,
                d,
            );
        }
        // z_mid = z_l + drop(out(atty))  =>  dbranch = drop'(dz_mid)
        dropout_backward(
            &mut ws.dbranch[..bs * d],
            &ws.dresid[..bs * d],
            Dropout::site(drop, dropout_streams::attn_resid(l)),
            0,
        );
        {
            let [dw, db] = grads
                .get_disjoint_mut([bl.out_w.clone(), bl.out_b.clone()])
                .expect("disjoint parameter ranges");
            let (dw, db) = (keep(dw, trains(&bl.out_w)), keep(db, trains(&bl.out_b)));
            linear_backward(
                Some(&mut ws.datty[..]),
                dw,
                db,
                &ws.dbranch,
                &ws.atty[lbsd.clone()],
                at(params, &bl.out_w),
                bs,
                d,
                d,
                threads,
            );
        }
        // atty = attention(qkv)
        let qkv = &ws.qkv[layer(l, bs * 3 * d)];
        attention_backward(
            &mut ws.dqkv,
            &mut ws.datt,
            &ws.datty,
            qkv,
            &ws.att[layer(l, dm.bhss())],
            &ws.attd[layer(l, dm.bhss())],
            dm.b,
            s,
            d,
            dm.h,
            Dropout::site(drop, dropout_streams::attn_probs(l)),
        );
        // qkv = a · Wqkvᵀ + bqkv
        {
            let [dw, db] = grads
                .get_disjoint_mut([bl.qkv_w.clone(), bl.qkv_b.clone()])
                .expect("disjoint parameter ranges");
            let (dw, db) = (keep(dw, trains(&bl.qkv_w)), keep(db, trains(&bl.qkv_b)));
            linear_backward(
                Some(&mut ws.dln[..]),
                dw,
                db,
                &ws.dqkv,
                &ws.ln1[lbsd.clone()],
                at(params, &bl.qkv_w),
                bs,
                d,
                3 * d,
                threads,
            );
        }
        // a = LN₁(z_l)  =>  dz_l += LN₁'(da)
        {
            let [dw, db] = grads
                .get_disjoint_mut([bl.ln1_w.clone(), bl.ln1_b.clone()])
                .expect("disjoint parameter ranges");
            let (dw, db) = (keep(dw, trains(&bl.ln1_w)), keep(db, trains(&bl.ln1_b)));
            layernorm_backward(
                &mut ws.dresid,
                dw,
                db,
                &ws.dln,
                &ws.resid[lbsd],
                at(params, &bl.ln1_w),
                &ws.ln1_mean[lbs.clone()],
                &ws.ln1_rstd[lbs],
                bs,
                d,
            );
        }
    }

    // z₀ = drop(seq)
    dropout_backward(
        &mut ws.dseq[..bs * d],
        &ws.dresid[..bs * d],
        Dropout::site(drop, dropout_streams::SEQUENCE),
        0,
    );
    // seq = [token[s], mask_tokens[scheme], emb_t + pos_t]
    let dseq = &ws.dseq[..bs * d];
    ws.demb[..bt * d]
        .par_chunks_mut(t * d)
        .zip(dseq.par_chunks(s * d))
        .for_each(|(de, g)| de.copy_from_slice(&g[2 * d..]));
    {
        let [dtok, dmask, dpos] = grads
            .get_disjoint_mut([sess.token.clone(), lay.mask_tokens.clone(), lay.pos.clone()])
            .expect("disjoint parameter ranges");
        if trains(&sess.token) {
            sum_rows_at(dtok, dseq, s * d, 0, d);
        }
        if trains(&lay.mask_tokens) {
            let dprompt = &mut dmask[batch.scheme.index() * d..][..d];
            sum_rows_at(dprompt, dseq, s * d, d, d);
        }
        if trains(&lay.pos) {
            sum_rows_at(&mut dpos[..t * d], dseq, s * d, 2 * d, t * d);
        }
    }
    // emb = fc2(softsign(fc1(h)))
    {
        let [dw1, db1, dw2, db2] = grads
            .get_disjoint_mut([
                lay.emb_fc1_w.clone(),
                lay.emb_fc1_b.clone(),
                lay.emb_fc2_w.clone(),
                lay.emb_fc2_b.clone(),
            ])
            .expect("disjoint parameter ranges");
        let (dw1, db1, dw2, db2) = (
            keep(dw1, trains(&lay.emb_fc1_w)),
            keep(db1, trains(&lay.emb_fc1_b)),
            keep(dw2, trains(&lay.emb_fc2_w)),
            keep(db2, trains(&lay.emb_fc2_b)),
        );
        embed_backward(
            &mut ws.dh,
            &mut ws.dsg,
            &mut ws.da1,
            dw1,
            db1,
            dw2,
            db2,
            &ws.demb,
            &ws.h,
            &ws.a1,
            &ws.sg,
            at(params, &lay.emb_fc1_w),
            at(params, &lay.emb_fc2_w),
            bt,
            dm.e,
            dm.g,
            d,
            threads,
        );
    }
    // h = stitch_in[s](x̃)   (no gradient to the data)
    {
        let [dw, db] = grads
            .get_disjoint_mut([sess.in_w.clone(), sess.in_b.clone()])
            .expect("disjoint parameter ranges");
        let (dw, db) = (keep(dw, trains(&sess.in_w)), keep(db, trains(&sess.in_b)));
        linear_backward(
            None,
            dw,
            db,
            &ws.dh,
            &ws.xin,
            at(params, &sess.in_w),
            bt,
            n,
            dm.e,
            threads,
        );
    }
}

/// out[j] += Σ_b x[b · stride + off + j] for j < out.len(), summed in f64, parallel over j.
fn sum_rows_at<F: Float>(out: &mut [F], x: &[F], stride: usize, off: usize, len: usize) {
    let rows = x.len() / stride;
    out[..len]
        .par_chunks_mut(256)
        .enumerate()
        .for_each(|(c, o)| {
            let j0 = off + c * 256;
            for (j, o) in o.iter_mut().enumerate() {
                let acc: f64 = (0..rows).map(|b| x[b * stride + j0 + j].to_f64()).sum();
                *o += F::from_f64(acc);
            }
        });
}
