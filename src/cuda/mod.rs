//! CUDA backend (SPEC §7): handwritten kernels in `kernels/*.cu`, compiled at run time by NVRTC
//! for the device's architecture and launched through `cudarc`, whose dynamic loading lets the
//! program build and run where there is no CUDA at all. A missing driver, device or NVRTC is
//! an `Error::Cuda`, never a panic. See docs/cuda.md.

pub mod adamw;
pub mod attention;
pub mod backend;
pub mod bps;
pub mod device;
pub mod embed;
pub mod emu;
pub mod gemm;
pub mod kernels;
pub mod layernorm;
pub mod linear;
pub mod mask;
pub mod mlp;
pub mod model;
pub mod nvrtc;
pub mod nvrtc_load;
pub mod poisson;
pub mod profile;
pub mod settings;
pub mod workspace;

pub use backend::CudaBackend;
pub use device::{DeviceInfo, Gpu};
pub use gemm::Precision;
pub use settings::Settings;

use crate::error::Result;

/// The GPU the backend would use with `settings` (its device, or the kernel emulator), or why
/// there is none: no driver, no device, a device older than sm_80, or no NVRTC. Never panics.
pub fn available(settings: &Settings) -> Result<DeviceInfo> {
    Ok(Gpu::open(settings)?.info)
}

/// Per-step values the kernels of a captured training step read from device memory (a graph
/// replays fixed launch arguments). Twin of `struct StepScalars` in kernels/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepScalars {
    /// Seed of the dropout RNG for this step.
    pub seed: u64,
    /// Dropout probability (0 = off).
    pub dropout: f32,
    /// Global grad-norm clip (<= 0: off).
    pub clip: f32,
    /// 1 / |target| (0 when there is no target).
    pub inv_targets: f32,
    /// AdamW: 1 − lr·wd.
    pub decay: f32,
    /// AdamW: 1 − β₁ (the lerp weight of the first moment).
    pub one_m_beta1: f32,
    pub beta2: f32,
    /// 1 − β₂
    pub one_m_beta2: f32,
    /// −lr / (1 − β₁ᵗ)
    pub step_size: f32,
    /// √(1 − β₂ᵗ)
    pub bc2_sqrt: f32,
    pub eps: f32,
    /// Row of `mask_tokens` (the scheme's prompt).
    pub scheme: i32,
    /// 1: causal attention.
    pub causal: i32,
}

impl StepScalars {
    /// Scalars of one step: the AdamW constants from `model::adamw`, the same the CPU
    /// reference (src/cpu/adamw.rs) uses.
    pub fn new(
        hp: &crate::backend::StepHyper,
        n_targets: usize,
        scheme: usize,
        causal: bool,
    ) -> StepScalars {
        let a = crate::model::adamw::AdamwScalars::of(hp);
        StepScalars {
            seed: hp.seed,
            dropout: hp.dropout,
            clip: hp.clip,
            inv_targets: inv_targets(n_targets),
            decay: a.decay,
            one_m_beta1: a.one_m_beta1,
            beta2: hp.beta2,
            one_m_beta2: a.one_m_beta2,
            step_size: a.step_size,
            bc2_sqrt: a.bc2_sqrt,
            eps: hp.eps,
            scheme: scheme as i32,
            causal: causal as i32,
        }
    }

    /// Scalars of a pass without dropout or update (evaluation, gradient checks).
    pub fn inference(n_targets: usize, scheme: usize, causal: bool) -> StepScalars {
        StepScalars {
            inv_targets: inv_targets(n_targets),
            scheme: scheme as i32,
            causal: causal as i32,
            ..StepScalars::default()
        }
    }
}

/// 1 / n rounded from f64 (0 for n = 0), as the CPU's Poisson backward computes it.
pub fn inv_targets(n: usize) -> f32 {
    if n == 0 { 0.0 } else { (1.0 / n as f64) as f32 }
}

// Sizes are asserted in kernels/common.cuh too (NVRTC has no offsetof without headers).
const _: () = {
    assert!(std::mem::size_of::<StepScalars>() == 56);
    assert!(std::mem::offset_of!(StepScalars, eps) == 44);
    assert!(std::mem::offset_of!(StepScalars, causal) == 52);
    assert!(std::mem::size_of::<StepResult>() == 32);
    assert!(std::mem::offset_of!(StepResult, update) == 24);
};

// SAFETY: plain-old-data with the C layout of `StepScalars`.
unsafe impl cudarc::driver::DeviceRepr for StepScalars {}
// SAFETY: all-zero bits are a valid value.
unsafe impl cudarc::driver::ValidAsZeroBits for StepScalars {}

/// What a step leaves on the device for the host. Twin of `struct StepResult` in
/// kernels/common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepResult {
    /// Poisson NLL, mean over the targets.
    pub loss: f64,
    /// Σ g² over the trainable elements.
    pub grad_sumsq: f64,
    pub grad_norm: f32,
    /// Factor the gradients were scaled by before AdamW.
    pub clip_coef: f32,
    /// 1 when the loss and the norm were finite and AdamW ran.
    pub update: i32,
    pub pad: i32,
}

// SAFETY: plain-old-data with the C layout of `StepResult`.
unsafe impl cudarc::driver::DeviceRepr for StepResult {}
// SAFETY: all-zero bits are a valid value.
unsafe impl cudarc::driver::ValidAsZeroBits for StepResult {}

/// The CUDA backend for `cfg` with `settings` (device, precision, switches). Any missing piece
/// (driver, device, NVRTC) is an `Error::Cuda` saying what is missing; callers with
/// `--device auto` fall back to the CPU on it.
pub fn open_backend(
    cfg: crate::model::ModelConfig,
    settings: &Settings,
) -> Result<Box<dyn crate::backend::Backend>> {
    Ok(Box::new(open_cuda(cfg, settings)?))
}

/// `open_backend`, as the concrete type.
pub fn open_cuda(cfg: crate::model::ModelConfig, settings: &Settings) -> Result<CudaBackend> {
    let mut b = CudaBackend::new(Gpu::open(settings)?, cfg, settings.precision)?;
    b.set_switches(settings.backend);
    Ok(b)
}
