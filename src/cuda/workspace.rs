//! The device workspace: every activation the forward pass saves for the backward pass, the
//! backward scratch, the batch, and the reduction scratch, each one allocation sized for the
//! largest batch seen (`b` trials × `n_bins` bins × the model's largest session). A captured
//! training step addresses them, so they never move while a graph exists.
//!
//! It keeps less than `src/cpu/workspace.rs`: only what a backward reads, and scratch that the
//! forward and the backward take turns on.
//! - A LayerNorm saves x̂ and rstd (`xh1`, `xh2`, `xhf`), which is all its backward reads; its
//!   input is not kept, so the residual stream is two rolling slabs (`resid` = z_l and the
//!   next block's input, `resid_mid` = z_mid). Its output goes to `ln`; in the backward, `ln`
//!   is rebuilt from x̂ (the same bits) for the weight gradient of the product that read it,
//!   then overwritten with the gradient of that product's input.
//! - The block MLP saves its pre-activation (`fch`); the GELU output goes to `ff`, which the
//!   backward rebuilds, reads once, then overwrites with the activation's gradient. `ff` lives
//!   in `dqkv`'s space: the forward does not use `dqkv`, and in a block's backward the MLP
//!   part is done before the attention part writes `dqkv`.
//! - The Poisson backward writes d log-rates over the log-rates `r`.
//! - The masked input x̃ is not kept: the forward writes it to `r` (free until the readout
//!   writes the log-rates) and the backward rebuilds it, for the input layer's weight
//!   gradient, from the counts and the mask.
//! - The embedding's transients are in `fch`'s space, which holds nothing live before the
//!   forward's first block and after the backward's last one: the embedding output `emb` in
//!   the forward; its gradient `demb`, the backward scratch `dsg` and `dh`, and the rebuilt x̃
//!   in the backward (`fch` is sized for both uses).
//! - The attention probabilities `att` are one layer's: the backward recomputes each layer's
//!   (the same kernels on the same qkv, so the same bits), except the last layer's, which the
//!   forward leaves there. With `keep_att` they are every layer's, saved by the forward
//!   (`NDT_ATTENTION_KEEP=1`: `L − 1` more `[B, H, S, S]` buffers, one product and one softmax
//!   fewer per layer).
//! - With `bf16_store` (bf16 precision, unless `NDT_STORE_F32=1`) the tensors that only matrix
//!   products read are stored as bf16 (`Tensor::Bf16`): `qkv`, the attention output `atty`,
//!   the input layer's output `h` and the embedding's softsign output `sg`. The products round
//!   their operands to bf16 anyway, so the results are the same bits.
//!
//! Dimension letters as in `src/model/shape.rs`: B batch, T bins, S = T + 2, N neurons,
//! D d_model, E d_tok, G d_embed_hidden, F d_ff, H heads, L blocks.

use super::device::{Buffer, Dev, Gpu, Tensor, TensorBuf};
use super::{layernorm, linear, poisson};
use crate::error::Result;
use crate::model::ModelConfig;

/// Capacity of a workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub b: usize,
    pub t: usize,
    pub n: usize,
}

macro_rules! workspace {
    (f32: [$($name:ident),* $(,)?], stored: [$($sname:ident),* $(,)?] $(,)?) => {
        /// Device buffers; see the module documentation for shapes.
        pub struct DeviceWorkspace {
            pub cap: Capacity,
            /// `att` holds every layer's probabilities (else one layer's, recomputed).
            pub keep_att: bool,
            /// The `stored` tensors are bf16 (else f32).
            pub bf16_store: bool,
            $(pub $name: Buffer<f32>,)*
            $(pub $sname: TensorBuf,)*
            /// [B, T, N] input mask and target mask
            pub mask: Buffer<u8>,
            pub target: Buffer<u8>,
            /// Partial sums of the loss and of the gradient norm.
            pub parts: Buffer<f64>,
        }

        impl DeviceWorkspace {
            /// Bytes of every buffer.
            pub fn bytes(&self) -> usize {
                self.buffers().iter().map(|b| b.1).sum()
            }

            /// Every buffer's name and bytes, in declaration order.
            pub fn buffers(&self) -> Vec<(&'static str, usize)> {
                vec![
                    $((stringify!($name), 4 * self.$name.len()),)*
                    $((stringify!($sname), self.$sname.bytes()),)*
                    ("mask", self.mask.len()),
                    ("target", self.target.len()),
                    ("parts", 8 * self.parts.len()),
                ]
            }
        }
    };
}

workspace!(
    f32: [
        x, a1, resid, resid_mid, xh1, ln1_rstd, att, xh2, ln2_rstd, fch, xhf, lnf_rstd, ln, y,
        r, dy, dresid, dbranch, dqkv, datty, datt, scratch,
    ],
    stored: [h, sg, qkv, atty],
);

impl DeviceWorkspace {
    /// Buffers for batches up to `cap` through `cfg`, zeroed, with room for `norm_parts`
    /// partial sums of the gradient norm (`adamw::max_run_parts`); `keep_att` and
    /// `bf16_store` as the fields.
    pub fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        cap: Capacity,
        norm_parts: usize,
        keep_att: bool,
        bf16_store: bool,
    ) -> Result<DeviceWorkspace> {
        let (b, t, n) = (cap.b, cap.t, cap.n);
        let (d, e, g, f, h, l) = (
            cfg.d_model,
            cfg.d_tok,
            cfg.d_embed_hidden,
            cfg.d_ff,
            cfg.n_heads,
            cfg.n_layers,
        );
        let s = t + 2;
        let (bt, bs) = (b * t, b * s);
        let bhss = b * h * s * s;
        let a = |len: usize| gpu.alloc::<f32>(len);
        let st = |len: usize| TensorBuf::new(gpu, len, bf16_store);
        let widest = [n, d, e, g, f, 3 * d].into_iter().max().unwrap_or(1);
        let scratch =
            linear::col_sum_scratch(bs.max(bt), widest).max(layernorm::layernorm_scratch(bs, d));
        let parts = poisson::poisson_parts(bt * n).max(norm_parts);
        Ok(DeviceWorkspace {
            cap,
            keep_att,
            bf16_store,
            x: a(bt * n)?,
            h: st(bt * e)?,
            a1: a(bt * g)?,
            sg: st(bt * g)?,
            resid: a(bs * d)?,
            resid_mid: a(bs * d)?,
            xh1: a(l * bs * d)?,
            ln1_rstd: a(l * bs)?,
            qkv: st(l * bs * 3 * d)?,
            att: a(if keep_att { l } else { 1 } * bhss)?,
            atty: st(l * bs * d)?,
            xh2: a(l * bs * d)?,
            ln2_rstd: a(l * bs)?,
            fch: a((l * bs * f).max(Late::layout(bt, n, e, g, d).1))?,
            xhf: a(bs * d)?,
            lnf_rstd: a(bs)?,
            ln: a(bs * d)?,
            y: a(bt * d)?,
            r: a(bt * n)?,
            dy: a(bt * d)?,
            dresid: a(bs * d)?,
            dbranch: a(bs * d)?,
            dqkv: a(bs * (3 * d).max(f))?,
            datty: a(bs * d)?,
            datt: a(bhss)?,
            scratch: a(scratch)?,
            mask: gpu.alloc::<u8>(bt * n)?,
            target: gpu.alloc::<u8>(bt * n)?,
            parts: gpu.alloc::<f64>(parts)?,
        })
    }

    /// The block MLP's GELU output `[B·S, F]` (in `dqkv`'s space).
    pub fn ff(&self, rows: usize, f: usize) -> Dev<f32> {
        self.dqkv.dev().slice(0, rows * f)
    }

    /// The embedding's transients in `fch`'s space, at offsets fixed by the capacity.
    pub fn late(&self, cfg: &ModelConfig) -> Late {
        let bt = self.cap.b * self.cap.t;
        let (n, e, g, d) = (self.cap.n, cfg.d_tok, cfg.d_embed_hidden, cfg.d_model);
        let ([xin, dh, dsg, emb], _) = Late::layout(bt, n, e, g, d);
        let view = |(at, len): (usize, usize)| self.fch.dev().slice(at, len);
        Late {
            xin: view(xin),
            dh: view(dh),
            dsg: view(dsg),
            emb: view(emb),
        }
    }

    /// Whether a batch of `b × t × n` fits.
    pub fn fits(&self, b: usize, t: usize, n: usize) -> bool {
        b <= self.cap.b && t <= self.cap.t && n <= self.cap.n
    }
}

/// Views into `fch`'s space while no block's pre-activation is live (before the forward's
/// first block, after the backward's last): capacity-sized, so a smaller batch uses a prefix.
#[derive(Clone, Copy, Debug)]
pub struct Late {
    /// `[B·T, N]` the masked input x̃, rebuilt by the backward.
    pub xin: Dev<f32>,
    /// `[B·T, E]` the gradient of the input layer's output.
    pub dh: Dev<f32>,
    /// `[B·T, G]` the gradient of the softsign output, then of its input (in place).
    pub dsg: Dev<f32>,
    /// `[B·T, D]` the embedding output in the forward; its gradient in the backward.
    pub emb: Dev<f32>,
}

impl Late {
    /// (offset, length) in `fch` of `xin`, `dh`, `dsg` and `emb`, each starting on a multiple
    /// of 4 floats so that products can read it in quads, and the elements they span.
    fn layout(bt: usize, n: usize, e: usize, g: usize, d: usize) -> ([(usize, usize); 4], usize) {
        let mut at = 0usize;
        let views = [n, e, g, d].map(|width| {
            let start = at.div_ceil(4) * 4;
            at = start + bt * width;
            (start, bt * width)
        });
        (views, at)
    }
}

/// Layer `l` of a stacked `[L, len]` buffer.
pub fn layer(buf: &Buffer<f32>, l: usize, len: usize) -> Dev<f32> {
    buf.dev().slice(l * len, len)
}

/// Layer `l` of a stacked `[L, len]` tensor.
pub fn layer_of(buf: &TensorBuf, l: usize, len: usize) -> Tensor {
    buf.view().slice(l * len, len)
}
