//! defines: Dims, Layout, Workspace
//!
//! `Dims` holds the dimension letters of one batch, `Layout` the ranges of every named parameter
//! tensor in the flat vector (from `ParamTable`), and `Workspace` every activation the forward
//! pass saves for the backward pass plus the backward scratch, allocated once and reused while
//! batches fit (it only grows).
//!
//! Dimension letters: B batch, T bins, S = T + 2 sequence, N neurons, D d_model, E d_tok,
//! G d_embed_hidden, F d_ff, H heads, L blocks.

use crate::cpu::float::Float;
use crate::model::{ModelConfig, ParamTable};
use std::collections::BTreeMap;
use std::ops::Range;

/// The dimensions of one batch through one model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dims {
    pub b: usize,
    pub t: usize,
    pub s: usize,
    pub n: usize,
    pub d: usize,
    pub e: usize,
    pub g: usize,
    pub f: usize,
    pub h: usize,
    pub l: usize,
}

impl Dims {
    pub fn new(cfg: &ModelConfig, b: usize, t: usize, n: usize) -> Dims {
        Dims {
            b,
            t,
            s: t + 2,
            n,
            d: cfg.d_model,
            e: cfg.d_tok,
            g: cfg.d_embed_hidden,
            f: cfg.d_ff,
            h: cfg.n_heads,
            l: cfg.n_layers,
        }
    }

    /// B·T rows of the data tokens.
    pub fn bt(&self) -> usize {
        self.b * self.t
    }

    /// B·S rows of the sequence.
    pub fn bs(&self) -> usize {
        self.b * self.s
    }

    /// Elements of one `[B, H, S, S]` attention tensor.
    pub fn bhss(&self) -> usize {
        self.b * self.h * self.s * self.s
    }
}

/// Ranges of one session's tensors.
#[derive(Clone, Debug)]
pub struct SessionRanges {
    pub in_w: Range<usize>,
    pub in_b: Range<usize>,
    pub out_w: Range<usize>,
    pub out_b: Range<usize>,
    pub token: Range<usize>,
}

/// Ranges of one block's tensors.
#[derive(Clone, Debug)]
pub struct BlockRanges {
    pub ln1_w: Range<usize>,
    pub ln1_b: Range<usize>,
    pub qkv_w: Range<usize>,
    pub qkv_b: Range<usize>,
    pub out_w: Range<usize>,
    pub out_b: Range<usize>,
    pub ln2_w: Range<usize>,
    pub ln2_b: Range<usize>,
    pub fc1_w: Range<usize>,
    pub fc1_b: Range<usize>,
    pub fc2_w: Range<usize>,
    pub fc2_b: Range<usize>,
}

/// Ranges of every named tensor in the flat parameter vector.
#[derive(Clone, Debug)]
pub struct Layout {
    pub sessions: BTreeMap<String, SessionRanges>,
    pub emb_fc1_w: Range<usize>,
    pub emb_fc1_b: Range<usize>,
    pub emb_fc2_w: Range<usize>,
    pub emb_fc2_b: Range<usize>,
    pub pos: Range<usize>,
    pub mask_tokens: Range<usize>,
    pub blocks: Vec<BlockRanges>,
    pub lnf_w: Range<usize>,
    pub lnf_b: Range<usize>,
    pub total: usize,
}

impl Layout {
    pub fn new(cfg: &ModelConfig, table: &ParamTable) -> Layout {
        let r = |name: &str| table.entry(name).range();
        let sessions = cfg
            .sessions
            .keys()
            .map(|sid| {
                let p = format!("sessions.{sid}");
                let s = SessionRanges {
                    in_w: r(&format!("{p}.stitch_in.weight")),
                    in_b: r(&format!("{p}.stitch_in.bias")),
                    out_w: r(&format!("{p}.stitch_out.weight")),
                    out_b: r(&format!("{p}.stitch_out.bias")),
                    token: r(&format!("{p}.token")),
                };
                (sid.clone(), s)
            })
            .collect();
        let blocks = (0..cfg.n_layers)
            .map(|i| {
                let p = |s: &str| r(&format!("blocks.{i}.{s}"));
                BlockRanges {
                    ln1_w: p("ln1.weight"),
                    ln1_b: p("ln1.bias"),
                    qkv_w: p("attn.qkv.weight"),
                    qkv_b: p("attn.qkv.bias"),
                    out_w: p("attn.out.weight"),
                    out_b: p("attn.out.bias"),
                    ln2_w: p("ln2.weight"),
                    ln2_b: p("ln2.bias"),
                    fc1_w: p("mlp.fc1.weight"),
                    fc1_b: p("mlp.fc1.bias"),
                    fc2_w: p("mlp.fc2.weight"),
                    fc2_b: p("mlp.fc2.bias"),
                }
            })
            .collect();
        Layout {
            sessions,
            emb_fc1_w: r("embed.fc1.weight"),
            emb_fc1_b: r("embed.fc1.bias"),
            emb_fc2_w: r("embed.fc2.weight"),
            emb_fc2_b: r("embed.fc2.bias"),
            pos: r("pos"),
            mask_tokens: r("mask_tokens"),
            blocks,
            lnf_w: r("ln_f.weight"),
            lnf_b: r("ln_f.bias"),
            total: table.total,
        }
    }
}

/// Saved activations and backward scratch. Per-layer tensors are stacked `[L, ...]` and strided
/// by the current batch's size (see `Workspace::layer`).
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
