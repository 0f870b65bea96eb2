//! Launchers of the embedding (SPEC §2 steps 3–4) and of the sequence layout: fc1 with the
//! softsign fused in the GEMM epilogue, fc2, and `kernels/embed.cu` (softsign backward, the
//! sequence `[token, prompt, emb + pos]` with its dropout, the prefix drop/pad). Twin of
//! `src/cpu/embed.rs` and of the sequence code in `src/cpu/model.rs`.
//! Legend: R rows (B·T), E d_tok, G d_embed_hidden, D d_model, B batch, T bins, S = T + 2,
//! P n_bins (rows of `pos`).

use super::StepScalars;
use super::device::{Args, Dev, Gpu, Tensor, grid_1d};
use super::gemm::{Accum, Act, Gemm, Precision, gemm};
use super::kernels::EMBED;
use super::linear::linear_backward;
use crate::error::{Result, internal};

fn i32_of(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| internal(format!("{what}: {n} out of range")))
}

/// backward of `sg = softsign(a1)`: da1 = dsg / (1 + |a1|)². In place allowed.
pub fn softsign_backward(
    gpu: &Gpu,
    da1: Dev<f32>,
    dsg: Dev<f32>,
    a1: Dev<f32>,
    n: usize,
) -> Result<()> {
    da1.need(n, "softsign_backward da1")?;
    dsg.need(n, "softsign_backward dsg")?;
    a1.need(n, "softsign_backward a1")?;
    let args = Args::new()
        .ptr(da1)
        .ptr(dsg)
        .ptr(a1)
        .i32(i32_of(n, "softsign_backward")?);
    // SAFETY: (float*, const float*, const float*, int), `n` elements each.
    unsafe {
        gpu.launch(
            &EMBED,
            "softsign_backward_f32",
            grid_1d(n, 256, 4096),
            &args,
        )
    }
}

/// a1 = fc1(h); sg = softsign(a1) (fused); e = fc2(sg).
#[allow(clippy::too_many_arguments)]
pub fn embed_forward(
    gpu: &Gpu,
    prec: Precision,
    e: Dev<f32>,           // [R, D]
    a1: Dev<f32>,          // [R, G] saved
    sg: impl Into<Tensor>, // [R, G] saved
    h: impl Into<Tensor>,  // [R, E]
    w1: Dev<f32>,          // [G, E]
    b1: Dev<f32>,          // [G]
    w2: Dev<f32>,          // [D, G]
    b2: Dev<f32>,          // [D]
    r: usize,
    de: usize,
    g: usize,
    d: usize,
) -> Result<()> {
    let sg = sg.into();
    let fc1 = Gemm {
        c_pre: Some(a1),
        act: Act::Softsign,
        ..Gemm::linear(sg, h, w1, Some(b1), r, g, de)
    };
    gemm(gpu, prec, &fc1)?;
    gemm(gpu, prec, &Gemm::linear(e, sg, w2, Some(b2), r, d, g))
}

/// backward of `embed_forward`: dh overwritten, dsg/da1 scratch (they may be the same
/// buffer), weight gradients per `accum` (a null one, a frozen tensor's, skipped).
#[allow(clippy::too_many_arguments)]
pub fn embed_backward(
    gpu: &Gpu,
    prec: Precision,
    dh: Dev<f32>,  // [R, E]
    dsg: Dev<f32>, // [R, G] scratch
    da1: Dev<f32>, // [R, G] scratch
    dw1: Dev<f32>,
    db1: Dev<f32>,
    dw2: Dev<f32>,
    db2: Dev<f32>,
    dout: Dev<f32>, // [R, D]
    h: impl Into<Tensor>,
    a1: Dev<f32>,
    sg: impl Into<Tensor>,
    w1: Dev<f32>,
    w2: Dev<f32>,
    scratch: Dev<f32>, // linear::col_sum_scratch(R, max(G, D))
    r: usize,
    de: usize,
    g: usize,
    d: usize,
    accum: Accum,
) -> Result<()> {
    // e = fc2(sg)
    linear_backward(
        gpu,
        prec,
        Some(dsg),
        dw2,
        db2,
        dout,
        sg,
        w2,
        scratch,
        r,
        g,
        d,
        accum,
    )?;
    // sg = softsign(a1)
    softsign_backward(gpu, da1, dsg, a1, r * g)?;
    // a1 = fc1(h)
    linear_backward(
        gpu,
        prec,
        Some(dh),
        dw1,
        db1,
        da1,
        h,
        w1,
        scratch,
        r,
        de,
        g,
        accum,
    )
}

/// z0 = dropout(seq), seq = [token, mask_tokens[sc.scheme], emb_t + pos_t] per trial; dropout
/// from stream `stream` with the counter = flat index in `[B, S, D]`.
#[allow(clippy::too_many_arguments)]
pub fn assemble_forward(
    gpu: &Gpu,
    z0: Dev<f32>,          // [B, S, D]
    emb: Dev<f32>,         // [B, T, D]
    token: Dev<f32>,       // [D]
    mask_tokens: Dev<f32>, // [4, D]
    pos: Dev<f32>,         // [P >= T, D]
    b: usize,
    t: usize,
    d: usize,
    sc: Dev<StepScalars>,
    stream: u64,
) -> Result<()> {
    let s = t + 2;
    z0.need(b * s * d, "assemble z0")?;
    emb.need(b * t * d, "assemble emb")?;
    token.need(d, "assemble token")?;
    mask_tokens.need(4 * d, "assemble mask_tokens")?;
    pos.need(t * d, "assemble pos")?;
    sc.need(1, "assemble scalars")?;
    let args = Args::new()
        .ptr(z0)
        .ptr(emb)
        .ptr(token)
        .ptr(mask_tokens)
        .ptr(pos)
        .i32(i32_of(b, "b")?)
        .i32(i32_of(t, "t")?)
        .i32(i32_of(d, "d")?)
        .ptr(sc)
        .u64(stream);
    // SAFETY: (float* z0, const float* emb, const float* token, const float* mask_tokens,
    // const float* pos, int b, int t, int d, const StepScalars*, unsigned long long).
    unsafe {
        gpu.launch(
            &EMBED,
            "embed_assemble_forward",
            grid_1d(b * s * d, 256, 4096),
            &args,
        )
    }
}

/// backward of `assemble_forward`: demb written; dtoken, dmask_tokens (all 4 rows, zeros but
/// the scheme's) and dpos (all P rows, zeros from T on) written, summed over the batch. A null
/// dtoken, dmask_tokens or dpos (a frozen tensor's) is not written.
#[allow(clippy::too_many_arguments)]
pub fn assemble_backward(
    gpu: &Gpu,
    demb: Dev<f32>,         // [B, T, D]
    dtoken: Dev<f32>,       // [D]
    dmask_tokens: Dev<f32>, // [4, D]
    dpos: Dev<f32>,         // [P, D]
    dz0: Dev<f32>,          // [B, S, D]
    b: usize,
    t: usize,
    p_rows: usize,
    d: usize,
    sc: Dev<StepScalars>,
    stream: u64,
) -> Result<()> {
    if t > p_rows {
        return Err(internal(format!(
            "assemble_backward: {t} bins, {p_rows} positions"
        )));
    }
    let s = t + 2;
    demb.need(b * t * d, "assemble_backward demb")?;
    for (v, n, what) in [
        (dtoken, d, "dtoken"),
        (dmask_tokens, 4 * d, "dmask_tokens"),
        (dpos, p_rows * d, "dpos"),
    ] {
        if !v.is_null() {
            v.need(n, &format!("assemble_backward {what}"))?;
        }
    }
    dz0.need(b * s * d, "assemble_backward dz0")?;
    sc.need(1, "assemble_backward scalars")?;
    let args = Args::new()
        .ptr(demb)
        .ptr(dtoken)
        .ptr(dmask_tokens)
        .ptr(dpos)
        .ptr(dz0)
        .i32(i32_of(b, "b")?)
        .i32(i32_of(t, "t")?)
        .i32(i32_of(p_rows, "p")?)
        .i32(i32_of(d, "d")?)
        .ptr(sc)
        .u64(stream);
    // SAFETY: (float* demb, float* dtoken, float* dmask_tokens, float* dpos, const float* dz0,
    // int b, int t, int p_rows, int d, const StepScalars*, unsigned long long); the three
    // parameter gradients may be null (not written).
    unsafe {
        gpu.launch(
            &EMBED,
            "embed_assemble_backward",
            grid_1d((p_rows + 2) * d, 256, 4096),
            &args,
        )
    }
}

/// y[b, t] = seq[b, 2 + t]: the data tokens of a sequence.
pub fn drop_prefix(
    gpu: &Gpu,
    y: Dev<f32>,
    seq: Dev<f32>,
    b: usize,
    t: usize,
    d: usize,
) -> Result<()> {
    y.need(b * t * d, "drop_prefix y")?;
    seq.need(b * (t + 2) * d, "drop_prefix seq")?;
    let args = Args::new()
        .ptr(y)
        .ptr(seq)
        .i32(i32_of(b, "b")?)
        .i32(i32_of(t, "t")?)
        .i32(i32_of(d, "d")?);
    // SAFETY: (float* y, const float* seq, int b, int t, int d); extents checked.
    unsafe {
        gpu.launch(
            &EMBED,
            "drop_prefix_f32",
            grid_1d(b * t * d, 256, 4096),
            &args,
        )
    }
}

/// backward of `drop_prefix`: dseq[b, 0..2] = 0, dseq[b, 2 + t] = dy[b, t] (written).
pub fn pad_prefix(
    gpu: &Gpu,
    dseq: Dev<f32>,
    dy: Dev<f32>,
    b: usize,
    t: usize,
    d: usize,
) -> Result<()> {
    dseq.need(b * (t + 2) * d, "pad_prefix dseq")?;
    dy.need(b * t * d, "pad_prefix dy")?;
    let args = Args::new()
        .ptr(dseq)
        .ptr(dy)
        .i32(i32_of(b, "b")?)
        .i32(i32_of(t, "t")?)
        .i32(i32_of(d, "d")?);
    // SAFETY: (float* dseq, const float* dy, int b, int t, int d); extents checked.
    unsafe {
        gpu.launch(
            &EMBED,
            "pad_prefix_f32",
            grid_1d(b * (t + 2) * d, 256, 4096),
            &args,
        )
    }
}
