//! Multi-head self-attention on a fused qkv buffer: the five products are batched `gemm` calls
//! over (batch, head) with strides into `qkv`, the softmax (causal or not) and the dropout on
//! the probabilities are `kernels/attention.cu`. Twin of `src/cpu/attention.rs`. In bf16
//! precision the forward (and the backward's recomputation of the probabilities) is one fused
//! kernel where the shape allows it (`AttnDims::fusable`), with the same bits.
//! Legend: B batch, S sequence, D d_model, H heads, hd = D / H; `qkv` rows are `[q | k | v]`.
//! `qkv` and the output `y` may be stored as bf16 in bf16 precision (only products read them).

use super::StepScalars;
use super::device::{Args, Dev, Gpu, Tensor};
use super::gemm::{Act, Gemm, Operand, Precision, gemm};
use super::kernels::ATTENTION;
use crate::error::{Result, internal};
use cudarc::driver::LaunchConfig;

/// Limits of `attention_fused_*` (`ATT_MAX_S`, `ATT_MAX_HD` in kernels/attention.cu).
const FUSED_MAX_S: usize = 160;
const FUSED_MAX_HD: usize = 64;
/// Query rows per block of the fused kernel, and of the softmax kernel (4 lanes per row).
const FUSED_ROWS: usize = 64;
const SOFTMAX_ROWS: usize = 64;

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
    /// Use the fused forward kernel where it applies (bf16 precision, `fusable`); off, the
    /// unfused launches run (the same bits: an A/B, `NDT_ATTENTION_UNFUSED=1`).
    pub fused: bool,
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
    /// Whether `attention_fused_*` takes this shape in precision `prec`: bf16 (the kernel
    /// multiplies on tensor cores), S ≤ 160 (a warp's 16 rows of scores stay in registers),
    /// hd ≤ 64 and a multiple of 8, B·H within a grid's y extent, `qkv` and `y` of one
    /// storage type.
    pub fn fusable(&self, prec: Precision, qkv: Tensor, y: Option<Tensor>) -> bool {
        let hd = self.hd();
        self.fused
            && prec == Precision::Bf16
            && self.s <= FUSED_MAX_S
            && hd <= FUSED_MAX_HD
            && hd.is_multiple_of(8)
            && self.z() <= 65535
            && y.is_none_or(|y| y.is_bf16() == qkv.is_bf16())
    }
    /// att (if not null) = softmax(q·kᵀ/√hd), y (if given) = drop(att)·v in one kernel.
    #[allow(clippy::too_many_arguments)]
    fn launch_fused(
        &self,
        gpu: &Gpu,
        y: Option<Tensor>,
        att: Dev<f32>,
        qkv: Tensor,
        sc: Dev<StepScalars>,
        stream: u64,
        dropout: bool,
    ) -> Result<()> {
        let (s, d) = (self.s, self.d);
        qkv.need(self.b * s * 3 * d, "attention qkv")?;
        if let Some(y) = y {
            y.need(self.b * s * d, "attention y")?;
        }
        let scale = (1.0 / (self.hd() as f64).sqrt()) as f32;
        let y_arg = y.unwrap_or(Tensor::F32(Dev::null()));
        let args = Args::new()
            .tensor(qkv)
            .tensor(y_arg)
            .ptr(att)
            .i32(s as i32)
            .i32(d as i32)
            .i32(self.h as i32)
            .f32(scale)
            .ptr(sc)
            .u64(stream)
            .i32(dropout as i32);
        let name = if qkv.is_bf16() {
            "attention_fused_h"
        } else {
            "attention_fused_f"
        };
        let cfg = LaunchConfig {
            grid_dim: (s.div_ceil(FUSED_ROWS) as u32, self.z() as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: (const T* qkv, T* y, float* att, int s, int d, int nh, float scale,
        // const StepScalars*, unsigned long long stream, int dropout) with T float (_f) or
        // bf16 (_h), y of qkv's type (`fusable`) or null; qkv holds B·S·3D elements, y B·S·D
        // (checked), att B·H·S·S or is null (checked by the callers).
        unsafe { gpu.launch(&ATTENTION, name, cfg, &args) }
    }
    fn check(&self) -> Result<()> {
        if self.h == 0 || !self.d.is_multiple_of(self.h) || self.s == 0 || self.b == 0 {
            return Err(internal(format!("attention: bad shape {self:?}")));
        }
        Ok(())
    }
}

/// att = softmax(q·kᵀ/√hd) (causal per `sc.causal`): the first half of `attention_forward`,
/// which the backward also calls to recompute att (the fused kernel, or the forward's
/// launches; both give the same bits).
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
    if dm.fusable(prec, qkv, None) {
        return dm.launch_fused(gpu, None, att, qkv, sc, 0, false);
    }
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
    let cfg = LaunchConfig {
        grid_dim: (rows.div_ceil(SOFTMAX_ROWS).max(1) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: (float* att, int rows, int s, const StepScalars*); att holds rows·s elements
    // (checked).
    unsafe { gpu.launch(&ATTENTION, "attention_softmax_forward", cfg, &args) }
}

/// att = softmax(q·kᵀ/√hd) (causal per `sc.causal`), y_h = drop(att) · v_h. With `dropout`
/// the product applies the dropout of `sc` (stream `stream`) to att as it reads it
/// (`Gemm::drop_a`): the probabilities after dropout are never stored. `keep`: att must hold
/// the probabilities afterwards (for the backward); without it the fused kernel does not
/// write them, and the unfused path uses att as scratch.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    gpu: &Gpu,
    prec: Precision,
    y: impl Into<Tensor>,   // [B, S, D] heads concatenated
    att: Dev<f32>,          // [B, H, S, S]
    qkv: impl Into<Tensor>, // [B, S, 3D]
    dm: AttnDims,
    sc: Dev<StepScalars>,
    stream: u64,
    dropout: bool,
    keep: bool,
) -> Result<()> {
    let (qkv, y) = (qkv.into(), y.into());
    if dm.fusable(prec, qkv, Some(y)) {
        dm.check()?;
        att.need(dm.z() * dm.ss(), "attention att")?;
        sc.need(1, "attention scalars")?;
        let att = if keep { att } else { Dev::null() };
        return dm.launch_fused(gpu, Some(y), att, qkv, sc, stream, dropout);
    }
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
