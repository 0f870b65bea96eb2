//! Launcher of `kernels/gemm.cu`: C = epilogue(alpha · A · Bᵀ), batched and strided, on tensor
//! cores (bf16 operands, f32 accumulation) or in plain f32.
//!
//! Legend: M rows of C, N columns of C, K the summed dimension, Z the batch. An operand is a
//! strided view `X(z, row, k) = x[off(z) + row·rs + k·cs]` with
//! `off(z) = (z / zdiv)·z1 + (z % zdiv)·z2`, so a Linear layer, its two backward products and
//! the per-head attention products are all one call. In bf16 precision an operand or C may be
//! stored as bf16 (`Tensor::Bf16`): the products round their operands to bf16 anyway, so reading
//! a bf16 copy gives the same bits as reading the f32 tensor.

use super::StepScalars;
use super::device::{Args, Dev, Gpu, Tensor};
use super::kernels::{GEMM, GEMM_BF16_KERNELS};
use crate::error::{Error, Result};
use cudarc::driver::{DeviceRepr, LaunchConfig};

/// Arithmetic of the matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    /// bf16 operands on tensor cores, f32 accumulation (the fast default).
    Bf16,
    /// f32 everywhere (exact comparisons against the CPU reference).
    F32,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Bf16 => "bf16",
            Precision::F32 => "f32",
        }
    }
}

/// Whether an output is overwritten (`=`) or added to (`+=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accum {
    Set,
    Add,
}

impl Accum {
    pub fn flag(self) -> i32 {
        (self == Accum::Add) as i32
    }
}

/// Activation applied in the epilogue (the pre-activation can be stored beside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None = 0,
    Gelu = 1,
    Softsign = 2,
}

/// A strided operand (see the module legend).
#[derive(Clone, Copy, Debug)]
pub struct Operand {
    pub buf: Tensor,
    pub rs: i64,
    pub cs: i64,
    pub z1: i64,
    pub z2: i64,
}

impl Operand {
    /// Row-major matrix with leading dimension `ld`: X(row, k) = buf[row·ld + k].
    pub fn rows(buf: impl Into<Tensor>, ld: usize) -> Operand {
        Operand {
            buf: buf.into(),
            rs: ld as i64,
            cs: 1,
            z1: 0,
            z2: 0,
        }
    }
    /// Transposed view of a row-major matrix with leading dimension `ld`:
    /// X(row, k) = buf[k·ld + row].
    pub fn cols(buf: impl Into<Tensor>, ld: usize) -> Operand {
        Operand {
            buf: buf.into(),
            rs: 1,
            cs: ld as i64,
            z1: 0,
            z2: 0,
        }
    }
    /// The same view with batch strides (`z1` per `z / zdiv`, `z2` per `z % zdiv`).
    pub fn batched(self, z1: usize, z2: usize) -> Operand {
        Operand {
            z1: z1 as i64,
            z2: z2 as i64,
            ..self
        }
    }
    /// Largest element index touched for `rows × k` over `z` batches.
    fn extent(&self, rows: usize, k: usize, z: usize, zdiv: usize) -> usize {
        if rows == 0 || k == 0 || z == 0 {
            return 0;
        }
        let zmax = ((z - 1) / zdiv) as i64 * self.z1 + (zdiv.min(z) - 1) as i64 * self.z2;
        (zmax + (rows as i64 - 1) * self.rs + (k as i64 - 1) * self.cs + 1) as usize
    }
}

/// One product C = epilogue(alpha · A · Bᵀ).
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Batch count and its split `z = (z / zdiv)·… + (z % zdiv)·…`.
    pub z: usize,
    pub zdiv: usize,
    pub alpha: f32,
    /// A(z, m, k)
    pub a: Operand,
    /// B(z, n, k)
    pub b: Operand,
    /// C(z, m, n) (its `cs`/`rs` say where results go; bf16 only without `accumulate`)
    pub c: Operand,
    /// Pre-activation output with C's strides (only with an activation).
    pub c_pre: Option<Dev<f32>>,
    /// Bias `[N]` added before the activation.
    pub bias: Option<Dev<f32>>,
    /// C = R + result, R with C's strides (the residual update `z' = z + drop(branch)`
    /// written to another buffer than z); not with `accumulate`.
    pub resid: Option<Dev<f32>>,
    /// C += result instead of C = result.
    pub accumulate: bool,
    pub act: Act,
    /// Dropout of the result: the step scalars (probability, seed) and the RNG stream.
    pub dropout: Option<(Dev<StepScalars>, u64)>,
    /// The dropout applies to the elements of A as they are read, not to the result: element
    /// A(z, m, k) keeps the counter `off(z) + m·rs + k·cs`, its offset from A's base. An
    /// attention product reads the probabilities before dropout this way, as if it read a
    /// stored copy after dropout.
    pub drop_a: bool,
}

impl Gemm {
    /// `y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias)`: a Linear layer in PyTorch layout.
    pub fn linear(
        y: impl Into<Tensor>,
        x: impl Into<Tensor>,
        w: Dev<f32>,
        bias: Option<Dev<f32>>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Gemm {
        Gemm {
            m,
            n,
            k,
            z: 1,
            zdiv: 1,
            alpha: 1.0,
            a: Operand::rows(x, k),
            b: Operand::rows(w, k),
            c: Operand::rows(y, n),
            c_pre: None,
            bias,
            resid: None,
            accumulate: false,
            act: Act::None,
            dropout: None,
            drop_a: false,
        }
    }

    /// `dx[M,K] (+)= dy[M,N] · w[N,K]`: the input gradient of a Linear layer.
    pub fn linear_dx(
        dx: Dev<f32>,
        dy: Dev<f32>,
        w: Dev<f32>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Gemm {
        Gemm {
            m,
            n: k,
            k: n,
            a: Operand::rows(dy, n),
            b: Operand::cols(w, k),
            c: Operand::rows(dx, k),
            ..Gemm::linear(dx, dy, w, None, m, k, n)
        }
    }

    /// `dw[N,K] (+)= dy[M,N]ᵀ · x[M,K]`: the weight gradient of a Linear layer.
    pub fn linear_dw(
        dw: Dev<f32>,
        dy: Dev<f32>,
        x: impl Into<Tensor>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Gemm {
        Gemm {
            m: n,
            n: k,
            k: m,
            a: Operand::cols(dy, n),
            b: Operand::cols(x, k),
            c: Operand::rows(dw, k),
            // The operands are all set above; the rest (no bias, no epilogue) as a Linear.
            ..Gemm::linear(dw, dy, dy, None, n, k, m)
        }
    }

    /// The same product reading A through the dropout of `sc` (stream `stream`) when `on`
    /// (`drop_a`).
    pub fn drop_a_if(self, on: bool, sc: Dev<StepScalars>, stream: u64) -> Gemm {
        if !on {
            return self;
        }
        Gemm {
            dropout: Some((sc, stream)),
            drop_a: true,
            ..self
        }
    }

    /// The same product written with `accum`.
    pub fn accum(self, accum: Accum) -> Gemm {
        Gemm {
            accumulate: accum == Accum::Add,
            ..self
        }
    }
}

/// Twin of `struct GemmParams` in kernels/gemm.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct GemmParams {
    a: u64,
    b: u64,
    c: u64,
    c_pre: u64,
    bias: u64,
    sc: u64,
    resid: u64,
    a_rs: i64,
    a_cs: i64,
    b_rs: i64,
    b_cs: i64,
    c_rs: i64,
    c_cs: i64,
    a_z1: i64,
    a_z2: i64,
    b_z1: i64,
    b_z2: i64,
    c_z1: i64,
    c_z2: i64,
    drop_stream: u64,
    m: i32,
    n: i32,
    k: i32,
    zdiv: i32,
    alpha: f32,
    accumulate: i32,
    act: i32,
    /// `GEMM_NO_LDMATRIX` (2, gemm_bf16 kernels): the mma fragments come from 32-bit shared
    /// loads; `GEMM_DROP_A` (4, gemm_f32; the gemm_bf16 kernels have `_da` variants);
    /// `GEMM_C_BF16` (8): C is stored as bf16.
    flags: i32,
}

/// `GemmParams::flags` bits, as in kernels/gemm.cu.
const GEMM_NO_LDMATRIX: i32 = 2;
const GEMM_DROP_A: i32 = 4;
const GEMM_C_BF16: i32 = 8;

// Sizes are asserted in kernels/gemm.cu too (NVRTC has no offsetof without headers).
const _: () = {
    assert!(std::mem::size_of::<GemmParams>() == 192);
    assert!(std::mem::offset_of!(GemmParams, a_rs) == 56);
    assert!(std::mem::offset_of!(GemmParams, drop_stream) == 152);
    assert!(std::mem::offset_of!(GemmParams, m) == 160);
    assert!(std::mem::offset_of!(GemmParams, alpha) == 176);
};

// SAFETY: plain-old-data with the C layout of `GemmParams`.
unsafe impl DeviceRepr for GemmParams {}

/// Block tiles (M, N) of the two kernels: tests straddle them.
pub const TILE_BF16: (usize, usize) = (64, 64);
pub const TILE_F32: (usize, usize) = (64, 64);

/// How a gemm_bf16 kernel reads an operand tile: four elements at a time along k (`K`) or
/// along the rows (`R`), or one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fetch {
    Scalar,
    K,
    R,
}

/// Quad reads (a float4, or four bf16 in 8 bytes) need four contiguous elements along k (or the
/// rows), and every quad of every batch aligned to its size: an aligned base, and strides and
/// batch offsets that are multiples of 4 elements.
fn fetch(o: &Operand, z: usize) -> Fetch {
    let batches_aligned = z <= 1 || (o.z1 % 4 == 0 && o.z2 % 4 == 0);
    let quad_bytes = 4 * o.buf.elem_bytes() as u64;
    if !o.buf.ptr().is_multiple_of(quad_bytes) || !batches_aligned {
        Fetch::Scalar
    } else if o.cs == 1 && o.rs % 4 == 0 {
        Fetch::K
    } else if o.rs == 1 && o.cs % 4 == 0 {
        Fetch::R
    } else {
        Fetch::Scalar
    }
}

/// The gemm_bf16 kernel for `g` (`GEMM_BF16_KERNELS`): the row of its operands' storage and of
/// the dropout of A, the column of quad reads when both operands allow them.
fn bf16_kernel(g: &Gemm, scalar_loads: bool) -> Result<&'static str> {
    let row = match (g.a.buf.is_bf16(), g.b.buf.is_bf16(), g.drop_a) {
        (false, false, false) => 0,
        (false, false, true) => 1,
        (true, false, false) => 2,
        (false, true, false) => 3,
        (false, true, true) => 4,
        (true, true, false) => 5,
        (true, _, true) => {
            return Err(Error::Internal(
                "gemm: dropout of an A stored as bf16 has no kernel".into(),
            ));
        }
    };
    let pair = if scalar_loads {
        (Fetch::Scalar, Fetch::Scalar)
    } else {
        (fetch(&g.a, g.z), fetch(&g.b, g.z))
    };
    let variant = match pair {
        (Fetch::K, Fetch::K) => 1,
        (Fetch::K, Fetch::R) => 2,
        (Fetch::R, Fetch::K) => 3,
        (Fetch::R, Fetch::R) => 4,
        _ => 0,
    };
    Ok(GEMM_BF16_KERNELS[row][variant])
}

/// Runs one product on the GPU's stream.
pub fn gemm(gpu: &Gpu, prec: Precision, g: &Gemm) -> Result<()> {
    if g.m == 0 || g.n == 0 || g.z == 0 {
        return Ok(());
    }
    let fits = |v: usize| i32::try_from(v).is_ok();
    if !(fits(g.m) && fits(g.n) && fits(g.k) && g.z <= 65535 && g.zdiv >= 1) {
        return Err(Error::Internal(format!("gemm: shape {g:?} out of range")));
    }
    g.a.buf.need(g.a.extent(g.m, g.k, g.z, g.zdiv), "gemm A")?;
    g.b.buf.need(g.b.extent(g.n, g.k, g.z, g.zdiv), "gemm B")?;
    let c_extent = g.c.extent(g.m, g.n, g.z, g.zdiv);
    g.c.buf.need(c_extent, "gemm C")?;
    if let Some(p) = g.c_pre {
        p.need(c_extent, "gemm C pre-activation")?;
    }
    if let Some(b) = g.bias {
        b.need(g.n, "gemm bias")?;
    }
    if let Some(r) = g.resid {
        r.need(c_extent, "gemm residual source")?;
        if g.accumulate {
            return Err(Error::Internal("gemm: a residual source with C +=".into()));
        }
    }
    let any_bf16 = g.a.buf.is_bf16() || g.b.buf.is_bf16() || g.c.buf.is_bf16();
    if any_bf16 && prec == Precision::F32 {
        return Err(Error::Internal(
            "gemm: a tensor stored as bf16 in f32 precision".into(),
        ));
    }
    if g.c.buf.is_bf16() && g.accumulate {
        return Err(Error::Internal(
            "gemm: C += into a tensor stored as bf16".into(),
        ));
    }
    let (sc, stream) = match g.dropout {
        Some((sc, s)) => {
            sc.need(1, "gemm step scalars")?;
            (sc.ptr, s)
        }
        None if g.drop_a => {
            return Err(Error::Internal(
                "gemm: dropout of A without step scalars".into(),
            ));
        }
        None => (0, 0),
    };
    let p = GemmParams {
        a: g.a.buf.ptr(),
        b: g.b.buf.ptr(),
        c: g.c.buf.ptr(),
        c_pre: g.c_pre.map_or(0, |d| d.ptr),
        bias: g.bias.map_or(0, |d| d.ptr),
        sc,
        resid: g.resid.map_or(0, |d| d.ptr),
        a_rs: g.a.rs,
        a_cs: g.a.cs,
        b_rs: g.b.rs,
        b_cs: g.b.cs,
        c_rs: g.c.rs,
        c_cs: g.c.cs,
        a_z1: g.a.z1,
        a_z2: g.a.z2,
        b_z1: g.b.z1,
        b_z2: g.b.z2,
        c_z1: g.c.z1,
        c_z2: g.c.z2,
        drop_stream: stream,
        m: g.m as i32,
        n: g.n as i32,
        k: g.k as i32,
        zdiv: g.zdiv as i32,
        alpha: g.alpha,
        accumulate: g.accumulate as i32,
        act: g.act as i32,
        flags: if gpu.gemm_switches().no_ldmatrix {
            GEMM_NO_LDMATRIX
        } else {
            0
        } | if g.drop_a { GEMM_DROP_A } else { 0 }
            | if g.c.buf.is_bf16() { GEMM_C_BF16 } else { 0 },
    };
    let (name, (tm, tn), threads) = match prec {
        Precision::Bf16 => (
            bf16_kernel(g, gpu.gemm_switches().scalar_loads)?,
            TILE_BF16,
            128,
        ),
        Precision::F32 => ("gemm_f32", TILE_F32, 256),
    };
    let cfg = LaunchConfig {
        grid_dim: (g.n.div_ceil(tn) as u32, g.m.div_ceil(tm) as u32, g.z as u32),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    if cfg.grid_dim.1 > 65535 {
        return Err(Error::Internal(format!("gemm: M = {} too large", g.m)));
    }
    gpu.profile_note(|| {
        let flops = 2.0 * (g.m * g.n * g.k * g.z) as f64;
        (format!("{}x{}x{} z{}", g.m, g.n, g.k, g.z), flops)
    });
    // SAFETY: `GemmParams` mirrors the kernel's only argument; every operand was checked above
    // to cover the extent the kernel addresses for this shape.
    unsafe { gpu.launch(&GEMM, name, cfg, &Args::new().value(p)) }
}
