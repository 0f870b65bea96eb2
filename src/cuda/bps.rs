//! Launcher of `kernels/bps.cu`: per-neuron sufficient statistics of bits per spike (SPEC §5),
//! in f64, added to device accumulators across batches. Twin of
//! `eval::bps::BpsAccum::add_log_rate`; `download` turns the device sums into a `BpsAccum`.
//! Legend: R rows (B·T), N neurons.

use super::device::{Args, Buffer, Dev, Gpu};
use super::kernels::BPS;
use crate::error::Result;
use crate::eval::bps::BpsAccum;
use cudarc::driver::LaunchConfig;

/// Device accumulators of one task: count, spikes and model NLL per neuron.
pub struct BpsSums {
    pub count: Buffer<u64>,
    pub spikes: Buffer<f64>,
    pub model_nll: Buffer<f64>,
    pub n: usize,
}

impl BpsSums {
    /// Zeroed sums for `n` neurons.
    pub fn new(gpu: &Gpu, n: usize) -> Result<BpsSums> {
        Ok(BpsSums {
            count: gpu.alloc(n)?,
            spikes: gpu.alloc(n)?,
            model_nll: gpu.alloc(n)?,
            n,
        })
    }

    /// The sums as a host accumulator.
    pub fn download(&self, gpu: &Gpu) -> Result<BpsAccum> {
        let n = self.n;
        Ok(BpsAccum {
            count: gpu.download(self.count.dev().slice(0, n))?,
            spikes: gpu.download(self.spikes.dev().slice(0, n))?,
            model_nll: gpu.download(self.model_nll.dev().slice(0, n))?,
        })
    }
}

/// Adds the included entries of `[R, N]` log-rates and counts to `sums`
/// (`include` = None: every entry).
pub fn bps_accumulate(
    gpu: &Gpu,
    sums: &BpsSums,
    log_rates: Dev<f32>,      // [R, N]
    x: Dev<f32>,              // [R, N]
    include: Option<Dev<u8>>, // [R, N]
    rows: usize,
) -> Result<()> {
    let n = sums.n;
    log_rates.need(rows * n, "bps log_rates")?;
    x.need(rows * n, "bps counts")?;
    if let Some(m) = include {
        m.need(rows * n, "bps include")?;
    }
    if n == 0 || rows == 0 {
        return Ok(());
    }
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(128) as u32, 1, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = Args::new()
        .ptr(sums.count.dev())
        .ptr(sums.spikes.dev())
        .ptr(sums.model_nll.dev())
        .ptr(log_rates)
        .ptr(x)
        .ptr(include.unwrap_or(Dev::null()))
        .i32(rows as i32)
        .i32(n as i32);
    // SAFETY: (unsigned long long* count, double* spikes, double* model_nll,
    // const float* log_rates, const float* x, const unsigned char* include, int rows, int n);
    // sums hold n elements, inputs rows·n (checked).
    unsafe { gpu.launch(&BPS, "bps_accumulate", cfg, &args) }
}
