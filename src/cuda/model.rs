//! The whole NDT on the GPU, forward and backward, as the list of launches: the same layer list
//! as `src/cpu/model.rs` (read that file for the maths), with the residual adds and their
//! dropout fused into the GEMMs that produce the branches. Everything is enqueued on the GPU's
//! stream; nothing here synchronises or allocates, so a training step can be captured as a
//! CUDA graph. What is saved for the backward, and what is rebuilt there, is listed in
//! `src/cuda/workspace.rs`. Dimension letters as in `src/model/shape.rs`.
//!
//! ```text
//! x̃      = x ⊙ (1 − M)                                   mask_input
//! h      = stitch_in[s](x̃)                               gemm
//! emb    = fc2(softsign(fc1(h)))                          gemm (softsign epilogue), gemm
//! z₀     = drop([token[s], prompt, emb_t + pos_t])        embed_assemble_forward, stream 0
//! z_mid  = z_l + drop(out(attn(LN₁(z_l))))                gemm (residual source z_l, dropout)
//!                                                         (z_mid, z_l+1 in two rolling slabs)
//! z_l+1  = z_mid + drop(fc2(gelu(fc1(LN₂(z_mid)))))       gemm (GELU), gemm (source z_mid)
//! y      = LN_f(z_L)[:, 2:]                               layernorm, drop_prefix
//! r      = stitch_out[s](y); ℓ = Σ_target (exp(r) − x·r) / |target|
//! ```

use super::attention::{AttnDims, attention_backward, attention_forward, attention_probs};
use super::device::{Dev, Gpu};
use super::embed::{
    assemble_backward, assemble_forward, drop_prefix, embed_backward, embed_forward, pad_prefix,
};
use super::gemm::{Accum, Gemm, Precision, gemm};
use super::layernorm::{layernorm_affine, layernorm_backward, layernorm_forward};
use super::linear::{linear_backward, linear_forward};
use super::mask::{dropout_backward, mask_input};
use super::mlp::{Residual, mlp_backward, mlp_forward};
use super::poisson::{poisson_backward, poisson_forward};
use super::workspace::{DeviceWorkspace, layer, layer_of};
use super::{StepResult, StepScalars};
use crate::error::Result;
use crate::model::ModelConfig;
use crate::model::dropout::dropout_streams;
use crate::model::params::TrainableSet;
use crate::model::shape::{Dims, Layout, SessionRanges};
use std::ops::Range;

/// Everything one pass reads and writes.
pub struct Pass<'a> {
    pub gpu: &'a Gpu,
    pub prec: Precision,
    pub cfg: &'a ModelConfig,
    pub lay: &'a Layout,
    pub session: &'a SessionRanges,
    pub dims: Dims,
    pub params: Dev<f32>,
    pub grads: Dev<f32>,
    pub ws: &'a DeviceWorkspace,
    pub sc: Dev<StepScalars>,
    pub res: Dev<StepResult>,
    /// Training pass: dropout (per `sc.dropout`) is applied; the attention products read the
    /// probabilities through it.
    pub train: bool,
    /// Use the fused attention kernel where it applies (`AttnDims::fused`).
    pub fused_att: bool,
    /// Block whose output (prefix dropped, `[B, T, D]`) the forward copies to `ws.dy`: the
    /// residual stream is not kept, so features are taken as they pass.
    pub features: Option<usize>,
    /// The trainable set (device layout) whose frozen tensors the backward skips: no weight
    /// product, no bias, LayerNorm, token, prompt or position reduction, no rebuild of an
    /// input only such a product reads, and their gradients neither zeroed nor written. None:
    /// every gradient.
    pub set: Option<&'a TrainableSet>,
}

impl Pass<'_> {
    fn p(&self, r: &Range<usize>) -> Dev<f32> {
        self.params.slice(r.start, r.len())
    }
    /// The gradient of the tensor at `r`, or null when it is frozen (skipped).
    fn g(&self, r: &Range<usize>) -> Dev<f32> {
        if self.trains(r) {
            self.grads.slice(r.start, r.len())
        } else {
            Dev::null()
        }
    }
    fn trains(&self, r: &Range<usize>) -> bool {
        self.set.is_none_or(|s| s.trains(r))
    }
    fn attn(&self) -> AttnDims {
        AttnDims {
            b: self.dims.b,
            s: self.dims.s,
            d: self.dims.d,
            h: self.dims.h,
            fused: self.fused_att,
        }
    }
}

/// Forward pass of the batch already in `ws.x`, `ws.mask`, `ws.target`: log-rates in `ws.r`,
/// the loss in `res.loss`, every activation the backward needs in `ws`.
pub fn model_forward(ps: &Pass) -> Result<()> {
    let (gpu, prec, ws, dm) = (ps.gpu, ps.prec, ps.ws, ps.dims);
    let (bt, bs, d, t, n) = (dm.bt(), dm.bs(), dm.d, dm.t, dm.n);
    let (lay, sess) = (ps.lay, ps.session);
    let bsd = bs * d;
    let late = ws.late(ps.cfg);

    // x̃ = x ⊙ (1 − M), in `r` until the readout
    let xin = ws.r.dev();
    mask_input(gpu, xin, ws.x.dev(), ws.mask.dev(), bt * n)?;
    // h = stitch_in[s](x̃)
    let (in_w, in_b) = (ps.p(&sess.in_w), ps.p(&sess.in_b));
    linear_forward(gpu, prec, ws.h.view(), xin, in_w, in_b, bt, n, dm.e)?;
    // emb = fc2(softsign(fc1(h)))
    embed_forward(
        gpu,
        prec,
        late.emb,
        ws.a1.dev(),
        ws.sg.view(),
        ws.h.view(),
        ps.p(&lay.emb_fc1_w),
        ps.p(&lay.emb_fc1_b),
        ps.p(&lay.emb_fc2_w),
        ps.p(&lay.emb_fc2_b),
        bt,
        dm.e,
        dm.g,
        d,
    )?;
    // z₀ = drop([token[s], mask_tokens[scheme], emb_t + pos_t])
    assemble_forward(
        gpu,
        layer(&ws.resid, 0, bsd),
        late.emb,
        ps.p(&sess.token),
        ps.p(&lay.mask_tokens),
        ps.p(&lay.pos),
        dm.b,
        t,
        d,
        ps.sc,
        dropout_streams::SEQUENCE,
    )?;

    // z_l and z_l+1 share `resid`; z_mid is `resid_mid`; LayerNorm outputs go to `ln`.
    let (z, z_mid, ln) = (ws.resid.dev(), ws.resid_mid.dev(), ws.ln.dev());
    for (l, bl) in lay.blocks.iter().enumerate() {
        let (xh1, r1) = (layer(&ws.xh1, l, bsd), layer(&ws.ln1_rstd, l, bs));
        // a = LN₁(z_l)
        let (w, b) = (ps.p(&bl.ln1_w), ps.p(&bl.ln1_b));
        layernorm_forward(gpu, ln, xh1, r1, z, w, b, bs, d, ps.cfg.ln_eps)?;
        // qkv = a · Wqkvᵀ + bqkv
        let qkv = layer_of(&ws.qkv, l, bs * 3 * d);
        linear_forward(
            gpu,
            prec,
            qkv,
            ln,
            ps.p(&bl.qkv_w),
            ps.p(&bl.qkv_b),
            bs,
            d,
            3 * d,
        )?;
        // atty = attention(qkv)
        let atty = layer_of(&ws.atty, l, bsd);
        let att = layer(&ws.att, if ws.keep_att { l } else { 0 }, dm.bhss());
        let stream = dropout_streams::attn_probs(l);
        attention_forward(
            gpu,
            prec,
            atty,
            att,
            qkv,
            ps.attn(),
            ps.sc,
            stream,
            ps.train,
            ws.keep_att || l + 1 == dm.l,
        )?;
        // z_mid = z_l + drop(out(atty))
        let mut out = Gemm::linear(
            z_mid,
            atty,
            ps.p(&bl.out_w),
            Some(ps.p(&bl.out_b)),
            bs,
            d,
            d,
        );
        out.resid = Some(z);
        out.dropout = Some((ps.sc, dropout_streams::attn_resid(l)));
        gemm(gpu, prec, &out)?;
        // m = LN₂(z_mid)
        let (xh2, r2) = (layer(&ws.xh2, l, bsd), layer(&ws.ln2_rstd, l, bs));
        let (w, b) = (ps.p(&bl.ln2_w), ps.p(&bl.ln2_b));
        layernorm_forward(gpu, ln, xh2, r2, z_mid, w, b, bs, d, ps.cfg.ln_eps)?;
        // z_l+1 = z_mid + drop(fc2(gelu(fc1(m)))), over z_l
        mlp_forward(
            gpu,
            prec,
            z,
            layer(&ws.fch, l, bs * dm.f),
            ws.ff(bs, dm.f),
            ln,
            ps.p(&bl.fc1_w),
            ps.p(&bl.fc1_b),
            ps.p(&bl.fc2_w),
            ps.p(&bl.fc2_b),
            bs,
            d,
            dm.f,
            Residual::Add {
                z: z_mid,
                sc: ps.sc,
                stream: dropout_streams::mlp_resid(l),
            },
        )?;
        if ps.features == Some(l) {
            drop_prefix(gpu, ws.dy.dev(), z, dm.b, t, d)?;
        }
    }

    // y = LN_f(z_L), prefix dropped
    let (w, b) = (ps.p(&lay.lnf_w), ps.p(&lay.lnf_b));
    let (xhf, rf) = (ws.xhf.dev(), ws.lnf_rstd.dev());
    layernorm_forward(gpu, ln, xhf, rf, z, w, b, bs, d, ps.cfg.ln_eps)?;
    drop_prefix(gpu, ws.y.dev(), ln, dm.b, t, d)?;
    // r = stitch_out[s](y)
    let (out_w, out_b) = (ps.p(&sess.out_w), ps.p(&sess.out_b));
    linear_forward(gpu, prec, ws.r.dev(), ws.y.dev(), out_w, out_b, bt, d, n)?;
    // ℓ = Σ_target (exp(r) − x·r) / |target|
    poisson_forward(
        gpu,
        ps.res,
        ws.r.dev(),
        ws.x.dev(),
        ws.target.dev(),
        bt * n,
        ps.sc,
        ws.parts.dev(),
    )
}

/// Backward pass after `model_forward` on the same batch: the gradient of the loss in `grads`
/// (the whole flat vector is rewritten: zeros for other sessions' tensors; with `ps.set`, only
/// the runs of tensors that are not frozen).
pub fn model_backward(ps: &Pass) -> Result<()> {
    let (gpu, prec, ws, dm) = (ps.gpu, ps.prec, ps.ws, ps.dims);
    let (bt, bs, d, t, n) = (dm.bt(), dm.bs(), dm.d, dm.t, dm.n);
    let (lay, sess) = (ps.lay, ps.session);
    let bsd = bs * d;
    let scratch = ws.scratch.dev();
    let set = Accum::Set;
    match ps.set {
        None => gpu.zero(ps.grads)?,
        Some(s) => {
            for run in s.runs() {
                gpu.zero(ps.grads.slice(run.range.start, run.range.len()))?;
            }
        }
    }

    // ℓ = Σ_target (exp(r) − x·r) / |target|  (dr over r)
    let dr = ws.r.dev();
    poisson_backward(
        gpu,
        dr,
        ws.r.dev(),
        ws.x.dev(),
        ws.target.dev(),
        bt * n,
        ps.sc,
    )?;
    // r = stitch_out[s](y)
    let (dw, db) = (ps.g(&sess.out_w), ps.g(&sess.out_b));
    let w = ps.p(&sess.out_w);
    let dy = ws.dy.dev();
    linear_backward(
        gpu,
        prec,
        Some(dy),
        dw,
        db,
        dr,
        ws.y.dev(),
        w,
        scratch,
        bt,
        d,
        n,
        set,
    )?;
    // y = LN_f(z_L)[:, 2:]  (prefix rows get no gradient)
    let dln = ws.ln.dev();
    pad_prefix(gpu, dln, dy, dm.b, t, d)?;
    let dresid = ws.dresid.dev().slice(0, bsd);
    gpu.zero(dresid)?;
    layernorm_backward(
        gpu,
        dresid,
        ps.g(&lay.lnf_w),
        ps.g(&lay.lnf_b),
        dln,
        ws.xhf.dev(),
        ps.p(&lay.lnf_w),
        ws.lnf_rstd.dev(),
        scratch,
        bs,
        d,
        set,
    )?;

    let dbranch = ws.dbranch.dev().slice(0, bsd);
    for (l, bl) in lay.blocks.iter().enumerate().rev() {
        // z_l+1 = z_mid + drop(fc2(gelu(fc1(m))))  =>  dbranch = drop'(dz)
        dropout_backward(
            gpu,
            dbranch,
            dresid,
            bsd,
            ps.sc,
            dropout_streams::mlp_resid(l),
        )?;
        // m rebuilt in `ln`; fc1's weight gradient reads it before dm overwrites it
        let (xh2, r2) = (layer(&ws.xh2, l, bsd), layer(&ws.ln2_rstd, l, bs));
        if ps.trains(&bl.fc1_w) {
            layernorm_affine(gpu, dln, xh2, ps.p(&bl.ln2_w), ps.p(&bl.ln2_b), bs, d)?;
        }
        mlp_backward(
            gpu,
            prec,
            dln,
            ws.ff(bs, dm.f),
            ps.g(&bl.fc1_w),
            ps.g(&bl.fc1_b),
            ps.g(&bl.fc2_w),
            ps.g(&bl.fc2_b),
            dbranch,
            dln,
            layer(&ws.fch, l, bs * dm.f),
            ps.p(&bl.fc1_w),
            ps.p(&bl.fc2_w),
            scratch,
            bs,
            d,
            dm.f,
            set,
        )?;
        // m = LN₂(z_mid)  =>  dz_mid += LN₂'(dm)
        layernorm_backward(
            gpu,
            dresid,
            ps.g(&bl.ln2_w),
            ps.g(&bl.ln2_b),
            dln,
            xh2,
            ps.p(&bl.ln2_w),
            r2,
            scratch,
            bs,
            d,
            set,
        )?;
        // z_mid = z_l + drop(out(atty))  =>  dbranch = drop'(dz_mid)
        dropout_backward(
            gpu,
            dbranch,
            dresid,
            bsd,
            ps.sc,
            dropout_streams::attn_resid(l),
        )?;
        let datty = ws.datty.dev();
        linear_backward(
            gpu,
            prec,
            Some(datty),
            ps.g(&bl.out_w),
            ps.g(&bl.out_b),
            dbranch,
            layer_of(&ws.atty, l, bsd),
            ps.p(&bl.out_w),
            scratch,
            bs,
            d,
            d,
            set,
        )?;
        // atty = attention(qkv); att recomputed unless kept (the last layer's is still there)
        let qkv = layer_of(&ws.qkv, l, bs * 3 * d);
        let att = layer(&ws.att, if ws.keep_att { l } else { 0 }, dm.bhss());
        if !ws.keep_att && l + 1 < dm.l {
            attention_probs(gpu, prec, att, qkv, ps.attn(), ps.sc)?;
        }
        let dqkv = ws.dqkv.dev();
        attention_backward(
            gpu,
            prec,
            dqkv,
            ws.datt.dev(),
            datty,
            qkv,
            att,
            ps.attn(),
            ps.sc,
            dropout_streams::attn_probs(l),
            ps.train,
        )?;
        // qkv = a · Wqkvᵀ + bqkv  (a rebuilt in `ln`, read before da overwrites it)
        let (xh1, r1) = (layer(&ws.xh1, l, bsd), layer(&ws.ln1_rstd, l, bs));
        if ps.trains(&bl.qkv_w) {
            layernorm_affine(gpu, dln, xh1, ps.p(&bl.ln1_w), ps.p(&bl.ln1_b), bs, d)?;
        }
        linear_backward(
            gpu,
            prec,
            Some(dln),
            ps.g(&bl.qkv_w),
            ps.g(&bl.qkv_b),
            dqkv,
            dln,
            ps.p(&bl.qkv_w),
            scratch,
            bs,
            d,
            3 * d,
            set,
        )?;
        // a = LN₁(z_l)  =>  dz_l += LN₁'(da)
        layernorm_backward(
            gpu,
            dresid,
            ps.g(&bl.ln1_w),
            ps.g(&bl.ln1_b),
            dln,
            xh1,
            ps.p(&bl.ln1_w),
            r1,
            scratch,
            bs,
            d,
            set,
        )?;
    }

    // z₀ = drop([token[s], mask_tokens[scheme], emb_t + pos_t])
    let late = ws.late(ps.cfg);
    let demb = late.emb;
    assemble_backward(
        gpu,
        demb,
        ps.g(&sess.token),
        ps.g(&lay.mask_tokens),
        ps.g(&lay.pos),
        dresid,
        dm.b,
        t,
        ps.cfg.n_bins,
        d,
        ps.sc,
        dropout_streams::SEQUENCE,
    )?;
    // emb = fc2(softsign(fc1(h)))
    embed_backward(
        gpu,
        prec,
        late.dh,
        // d softsign and d fc1 share one buffer (the softsign backward runs in place).
        late.dsg,
        late.dsg,
        ps.g(&lay.emb_fc1_w),
        ps.g(&lay.emb_fc1_b),
        ps.g(&lay.emb_fc2_w),
        ps.g(&lay.emb_fc2_b),
        demb,
        ws.h.view(),
        ws.a1.dev(),
        ws.sg.view(),
        ps.p(&lay.emb_fc1_w),
        ps.p(&lay.emb_fc2_w),
        scratch,
        bt,
        dm.e,
        dm.g,
        d,
        set,
    )?;
    // h = stitch_in[s](x̃)   (no gradient to the data; x̃ rebuilt for the weight gradient)
    if ps.trains(&sess.in_w) {
        mask_input(gpu, late.xin, ws.x.dev(), ws.mask.dev(), bt * n)?;
    }
    let (dw, db) = (ps.g(&sess.in_w), ps.g(&sess.in_b));
    let w = ps.p(&sess.in_w);
    linear_backward(
        gpu, prec, None, dw, db, late.dh, late.xin, w, scratch, bt, n, dm.e, set,
    )
}
