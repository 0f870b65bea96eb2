//! CPU reference backend.
//!
//! This is the plain, readable reference implementation of the NDT (SPEC §2): the truth the CUDA
//! kernels are checked against. It favours clarity over speed on purpose: every layer is a pair
//! of free functions `<layer>_forward` / `<layer>_backward` (outputs first, then inputs, weights,
//! dimensions last), f32 storage with f64 accumulation where sums need it, GEMMs through the
//! `gemm` crate and per-row work on rayon, with the thread count passed explicitly.

pub mod backend;

pub use backend::CpuBackend;
