//! ndt: pretrain, finetune and evaluate Neural Data Transformers on multi-session spike
//! recordings, on a plain-Rust CPU reference or on handwritten CUDA kernels compiled by NVRTC.
//!
//! Map of the crate:
//! - data: `store` (the memory-mapped dataset), `import`, `synth`, `inspect`, `batch`, `mask`, `rng`
//! - model: `model` (config, parameter table, init, checkpoints), `cpu` (reference backend),
//!   `cuda` (GPU backend), `backend` (the seam between them and the trainer)
//! - work: `train`, `eval`, `fixture` (reference checks), `exp` (rank, sweep, report)
//! - `bench`: timing and memory of training steps (`ndt bench`)
//! - `cli`: the `ndt` command line.

pub mod backend;
pub mod batch;
pub mod bench;
pub mod cli;
pub mod cpu;
pub mod cuda;
pub mod error;
pub mod eval;
pub mod exp;
pub mod fixture;
pub mod fsutil;
pub mod hash;
pub mod import;
pub mod inspect;
pub mod mask;
pub mod model;
pub mod rng;
pub mod scheme;
pub mod store;
pub mod synth;
pub mod train;

pub use error::{Error, Result};
