//! CPU reference backend.
//!
//! This is the plain, readable reference implementation of the NDT (SPEC §2): the truth the CUDA
//! kernels are checked against. It favours clarity over speed on purpose: every layer is a pair
//! of free functions `<layer>_forward` / `<layer>_backward` (outputs first, then inputs, weights,
//! dimensions last; backward comments quote the forward line they differentiate), f32 storage
//! with f64 accumulation where sums need it, GEMMs through the `gemm` crate and per-row work on
//! rayon, with the thread count passed explicitly. The layers are generic over `Float` so that
//! the finite-difference tests run this very code in f64.
//!
//! Files, one layer family each: `gemm` (the GEMM wrapper), `linear`, `embed` (softsign MLP),
//! `layernorm`, `attention`, `mlp` (exact GELU), `poisson` (NLL on targets), `dropout`
//! (counter-based, reproducible on the GPU), `adamw` (clip + AdamW), `workspace` (dimensions,
//! parameter ranges, saved activations), `model` (the whole forward/backward), `backend`
//! (`CpuBackend`).

// Layers take their buffers and dimensions as plain arguments (llm.c style), so argument lists
// are long on purpose.
#![allow(clippy::too_many_arguments)]

pub mod adamw;
pub mod attention;
pub mod backend;
pub mod dropout;
pub mod embed;
pub mod float;
pub mod gemm;
pub mod layernorm;
pub mod linear;
pub mod mlp;
pub mod model;
pub mod poisson;
pub mod workspace;

pub use backend::CpuBackend;
pub use float::Float;
