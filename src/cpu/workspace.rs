//! defines: Workspace, layer
//!
//! `Workspace` holds every activation the forward pass saves for the backward pass plus the
//! backward scratch, allocated once and reused while batches fit (it only grows). Its sizes
//! come from `Dims` (`src/model/shape.rs`, where the dimension letters are listed).

use crate::cpu::float::Float;
use crate::model::shape::Dims;
use std::ops::Range;

/// Saved activations and backward scratch. Per-layer tensors are stacked `[L, ...]` and strided
/// by the current batch's size (see `layer`).
#[derive(Debug, Default)]
pub struct Workspace<F> {
    // ---- forward, saved for backward ----
    /// [B, T, N] counts
    pub x: Vec<F>,
    /// [B, T, N] masked input x̃ = x ⊙ (1 − M)
    pub xin: Vec<F>,
    /// [B, T, E] stitcher-in output
    pub h: Vec<F>,
    /// [B, T, G] embed fc1 output
    pub a1: Vec<F>,
    /// [B, T, G] softsign output
    pub sg: Vec<F>,
    /// [B, T, D] embed fc2 output
    pub emb: Vec<F>,
    /// [B, S, D] assembled sequence before dropout
    pub seq: Vec<F>,
    /// [L + 1, B, S, D] residual stream: input of block l, and the last block's output at L
    pub resid: Vec<F>,
    /// [L, B, S, D] LayerNorm 1 output, and its [L, B, S] mean and rstd
    pub ln1: Vec<F>,
    pub ln1_mean: Vec<F>,
    pub ln1_rstd: Vec<F>,
    /// [L, B, S, 3D]
    pub qkv: Vec<F>,
    /// [L, B, H, S, S] attention probabilities, before and after dropout
    pub att: Vec<F>,
    pub attd: Vec<F>,
    /// [L, B, S, D] attention output (heads concatenated), before the out projection
    pub atty: Vec<F>,
    /// [L, B, S, D] residual stream after the attention branch
    pub resid_mid: Vec<F>,
    /// [L, B, S, D] LayerNorm 2 output, and its [L, B, S] mean and rstd
    pub ln2: Vec<F>,
    pub ln2_mean: Vec<F>,
    pub ln2_rstd: Vec<F>,
    /// [L, B, S, F] MLP fc1 output and its GELU
    pub fch: Vec<F>,
    pub fcg: Vec<F>,
    /// [B, S, D] final LayerNorm output, and its [B, S] mean and rstd
    pub lnf: Vec<F>,
    pub lnf_mean: Vec<F>,
    pub lnf_rstd: Vec<F>,
    /// [B, T, D] final features of the data tokens (prefix dropped)
    pub y: Vec<F>,
    /// [B, T, N] log-rates
    pub r: Vec<F>,
    // ---- scratch ----
    /// [B, S, D] a residual branch before its dropout-add
    pub branch: Vec<F>,
    /// [B, T, N]
    pub dr: Vec<F>,
    /// [B, T, D]
    pub dy: Vec<F>,
    /// [B, S, D] gradient of the residual stream
    pub dresid: Vec<F>,
    /// [B, S, D] gradient of a residual branch
    pub dbranch: Vec<F>,
    /// [B, S, D] gradient of a LayerNorm output
    pub dln: Vec<F>,
    /// [B, S, 3D]
    pub dqkv: Vec<F>,
    /// [B, S, D]
    pub datty: Vec<F>,
    /// [B, H, S, S]
    pub datt: Vec<F>,
    /// [B, S, F] gradients of the GELU output and of fc1's output
    pub dfcg: Vec<F>,
    pub dfch: Vec<F>,
    /// [B, S, D]
    pub dseq: Vec<F>,
    /// [B, T, D]
    pub demb: Vec<F>,
    /// [B, T, G]
    pub dsg: Vec<F>,
    pub da1: Vec<F>,
    /// [B, T, E]
    pub dh: Vec<F>,
}

fn grow<F: Float>(v: &mut Vec<F>, n: usize) {
    if v.len() < n {
        v.resize(n, F::ZERO);
    }
}

impl<F: Float> Workspace<F> {
    pub fn new() -> Self {
        Workspace::default()
    }

    /// Grows every buffer to fit `dm` (no-op when it already fits).
    pub fn ensure(&mut self, dm: &Dims) {
        let (bt, bs, l) = (dm.bt(), dm.bs(), dm.l);
        let (d, n) = (dm.d, dm.n);
        grow(&mut self.x, bt * n);
        grow(&mut self.xin, bt * n);
        grow(&mut self.h, bt * dm.e);
        grow(&mut self.a1, bt * dm.g);
        grow(&mut self.sg, bt * dm.g);
        grow(&mut self.emb, bt * d);
        grow(&mut self.seq, bs * d);
        grow(&mut self.resid, (l + 1) * bs * d);
        grow(&mut self.ln1, l * bs * d);
        grow(&mut self.ln1_mean, l * bs);
        grow(&mut self.ln1_rstd, l * bs);
        grow(&mut self.qkv, l * bs * 3 * d);
        grow(&mut self.att, l * dm.bhss());
        grow(&mut self.attd, l * dm.bhss());
        grow(&mut self.atty, l * bs * d);
        grow(&mut self.resid_mid, l * bs * d);
        grow(&mut self.ln2, l * bs * d);
        grow(&mut self.ln2_mean, l * bs);
        grow(&mut self.ln2_rstd, l * bs);
        grow(&mut self.fch, l * bs * dm.f);
        grow(&mut self.fcg, l * bs * dm.f);
        grow(&mut self.lnf, bs * d);
        grow(&mut self.lnf_mean, bs);
        grow(&mut self.lnf_rstd, bs);
        grow(&mut self.y, bt * d);
        grow(&mut self.r, bt * n);
        grow(&mut self.branch, bs * d);
        grow(&mut self.dr, bt * n);
        grow(&mut self.dy, bt * d);
        grow(&mut self.dresid, bs * d);
        grow(&mut self.dbranch, bs * d);
        grow(&mut self.dln, bs * d);
        grow(&mut self.dqkv, bs * 3 * d);
        grow(&mut self.datty, bs * d);
        grow(&mut self.datt, dm.bhss());
        grow(&mut self.dfcg, bs * dm.f);
        grow(&mut self.dfch, bs * dm.f);
        grow(&mut self.dseq, bs * d);
        grow(&mut self.demb, bt * d);
        grow(&mut self.dsg, bt * dm.g);
        grow(&mut self.da1, bt * dm.g);
        grow(&mut self.dh, bt * dm.e);
    }
}

/// Range of layer `l` in a stacked `[L, len]` buffer.
pub fn layer(l: usize, len: usize) -> Range<usize> {
    l * len..(l + 1) * len
}
