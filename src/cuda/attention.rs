//! Multi-head self-attention on a fused qkv buffer: the five products are batched `gemm` calls
//! over (batch, head) with strides into `qkv`, the softmax (causal or not) and the dropout on
//! the probabilities are `kernels/attention.cu`. Twin of `src/cpu/attention.rs`.
//! Legend: B batch, S sequence, D d_model, H heads, hd = D / H; `qkv` rows are `[q | k | v]`.
//! `qkv` and the output `y` may be stored as bf16 in bf16 precision (only products read them).

use super::StepScalars;
use super::device::{Args, Dev, Gpu, Tensor};
use super::gemm::{Act, Gemm, Operand, Precision, gemm};
use super::kernels::ATTENTION;
use crate::error::{Result, internal};
use cudarc::driver::LaunchConfig;

fn rows_cfg(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.div_ceil(8).max(1) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Shape of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    pub b: usize,
    pub s: usize,
    pub d: usize,
    pub h: usize,
}

impl AttnDims {
    fn hd(&self) -> usize {
        self.d / self.h
    }
    fn ss(&self) -> usize {
        self.s * self.s
    }
    fn z(&self) -> usize {
        self.b * self.h
    }
    /// Part `part` (0 q, 1 k, 2 v) of head z of `qkv` as an `[S, hd]` row operand.
    fn head(&self, qkv: impl Into<Tensor>, part: usize) -> Operand {
        let (s, d, qkv) = (self.s, self.d, qkv.into());
        Operand::rows(qkv.slice(part * d, qkv.len() - part * d), 3 * d)
            .batched(s * 3 * d, self.hd())
    }
    /// The same part seen transposed: X(dim, j) = part[j, dim].
    fn head_t(&self, qkv: Tensor, part: usize) -> Operand {
        let (s, d) = (self.s, self.d);
        Operand::cols(qkv.slice(part * d, qkv.len() - part * d), 3 * d)
            .batched(s * 3 * d, self.hd())
    }
    /// An `[S, S]` matrix of a `[B, H, S, S]` tensor.
    fn scores(&self, p: Dev<f32>) -> Operand {
        Operand::rows(p, self.s).batched(self.h * self.ss(), self.ss())
    }
    fn scores_t(&self, p: Dev<f32>) -> Operand {
        Operand::cols(p, self.s).batched(self.h * self.ss(), self.ss())
    }
    /// Head z of a `[B, S, D]` tensor as `[S, hd]`.
    fn yhead(&self, y: impl Into<Tensor>) -> Operand {
        Operand::rows(y, self.d).batched(self.s * self.d, self.hd())
    }
    fn yhead_t(&self, y: Dev<f32>) -> Operand {
        Operand::cols(y, self.d).batched(self.s * self.d, self.hd())
    }
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: Operand,
        b: Operand,
        c: Operand,
    ) -> Gemm {
        Gemm {
            m,
            n,
            k,
            z: self.z(),
            zdiv: self.h,
            alpha,
            a,
            b,
            c,
            c_pre: None,
            bias: None,
            resid: None,
            accumulate: false,
            act: Act::None,
            dropout: None,
            drop_a: false,
        }
    }
    fn check(&self) -> Result<()> {
        if self.h == 0 || !self.d.is_multiple_of(self.h) || self.s == 0 || self.b == 0 {
            return Err(internal(format!("attention: bad shape {self:?}")));
        }
        Ok(())
    }
}

/// att = softmax(q·kᵀ/√hd) (causal per `sc.causal`): the first half of `attention_forward`,
/// which the backward also calls to recompute att (the same launches, so the same bits).
pub fn attention_probs(
    gpu: &Gpu,
    prec: Precision,
    att: Dev<f32>,          // [B, H, S, S]
    qkv: impl Into<Tensor>, // [B, S, 3D]
    dm: AttnDims,
    sc: Dev<StepScalars>,
) -> Result<()> {
    dm.check()?;
    let qkv = qkv.into();
    let (s, hd) = (dm.s, dm.hd());
    let rows = dm.z() * s;
    att.need(rows * s, "attention att")?;
    sc.need(1, "attention scalars")?;
    // scores = q·kᵀ / √hd
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    gemm(
        gpu,
        prec,
        &dm.product(
            s,
            s,
            hd,
            scale,
            dm.head(qkv, 0),
            dm.head(qkv, 1),
            dm.scores(att),
        ),
    )?;
    // att = softmax(scores)
    let args = Args::new().ptr(att).i32(rows as i32).i32(s as i32).ptr(sc);
    // SAFETY: (float* att, int rows, int s, const StepScalars*); att holds rows·s elements
    // (checked).
    unsafe {
        gpu.launch(
            &ATTENTION,
            "attention_softmax_forward",
            rows_cfg(rows),
            &args,
        )
    }
}

/// att = softmax(q·kᵀ/√hd) (causal per `sc.causal`), y_h = drop(att) · v_h. With `dropout`
/// the product applies the dropout of `sc` (stream `stream`) to att as it reads it
/// (`Gemm::drop_a`): the probabilities after dropout are never stored.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    gpu: &Gpu,
    prec: Precision,
    y: impl Into<Tensor>,   // [B, S, D] heads concatenated
    att: Dev<f32>,          // [B, H, S, S] saved
    qkv: impl Into<Tensor>, // [B, S, 3D]
    dm: AttnDims,
    sc: Dev<StepScalars>,
    stream: u64,
    dropout: bool,
) -> Result<()> {
    let qkv = qkv.into();
    attention_probs(gpu, prec, att, qkv, dm, sc)?;
    let (s, hd) = (dm.s, dm.hd());
    // y_h = drop(att) · v_h
    let pv = dm.product(
        s,
        hd,
        s,
        1.0,
        dm.scores(att),
        dm.head_t(qkv, 2),
        dm.yhead(y),
    );
    gemm(gpu, prec, &pv.drop_a_if(dropout, sc, stream))
}

/// backward of `attention_forward` (the same `dropout`); dqkv is overwritten, datt is scratch.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    gpu: &Gpu,
    prec: Precision,
    dqkv: Dev<f32>,         // [B, S, 3D]
    datt: Dev<f32>,         // [B, H, S, S] scratch
    dy: Dev<f32>,           // [B, S, D]
    qkv: impl Into<Tensor>, // [B, S, 3D]
    att: Dev<f32>,          // [B, H, S, S]
    dm: AttnDims,
    sc: Dev<StepScalars>,
    stream: u64,
    dropout: bool,
) -> Result<()> {
    dm.check()?;
    let qkv = qkv.into();
    let (s, hd) = (dm.s, dm.hd());
    let rows = dm.z() * s;
    datt.need(rows * s, "attention datt")?;
    att.need(rows * s, "attention att")?;
    // y_h = attd · v_h  =>  dattd = dy_h · v_hᵀ
    gemm(
        gpu,
        prec,
        &dm.product(
            s,
            s,
            hd,
            1.0,
            dm.yhead(dy),
            dm.head(qkv, 2),
            dm.scores(datt),
        ),
    )?;
    // attd = dropout(att), att = softmax(scores · scale)  =>  dscores (scale folded in)
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    let args = Args::new()
        .ptr(datt)
        .ptr(att)
        .i32(rows as i32)
        .i32(s as i32)
        .f32(scale)
        .ptr(sc)
        .u64(stream);
    // SAFETY: (float* datt, const float* att, int rows, int s, float scale,
    // const StepScalars*, unsigned long long); both hold rows·s elements (checked).
    unsafe {
        gpu.launch(
            &ATTENTION,
            "attention_softmax_backward",
            rows_cfg(rows),
            &args,
        )?
    };
    let dq = dqkv;
    // scores = q·kᵀ  =>  dq = dscores · k
    gemm(
        gpu,
        prec,
        &dm.product(
            s,
            hd,
            s,
            1.0,
            dm.scores(datt),
            dm.head_t(qkv, 1),
            dm.head(dq, 0),
        ),
    )?;
    //                 =>  dk = dscoresᵀ · q
    gemm(
        gpu,
        prec,
        &dm.product(
            s,
            hd,
            s,
            1.0,
            dm.scores_t(datt),
            dm.head_t(qkv, 0),
            dm.head(dq, 1),
        ),
    )?;
    // y_h = attd · v_h  =>  dv = attdᵀ · dy_h, attd read from att as in the forward
    let dv = dm.product(
        s,
        hd,
        s,
        1.0,
        dm.scores_t(att),
        dm.yhead_t(dy),
        dm.head(dq, 2),
    );
    gemm(gpu, prec, &dv.drop_a_if(dropout, sc, stream))
}
