//! Helpers of the GPU tests: the device or a counted, named skip (see `gpu`), poisoned outputs with sentinels after
//! them, seeded data, and normalised-error checks.
#![allow(dead_code)]

use ndt::cuda::StepScalars;
use ndt::cuda::device::{Buffer, Dev, Gpu};
use ndt::cuda::gemm::Precision;
use rand::{Rng, SeedableRng};
use std::io::Write;

/// Both GEMM precisions, for tests that run each kernel in each.
pub const PRECS: [Precision; 2] = [Precision::F32, Precision::Bf16];

/// The per-step scalars of a launch, on the device.
pub fn scalars(g: &Gpu, sc: StepScalars) -> Buffer<StepScalars> {
    g.upload_new(&[sc]).expect("upload scalars")
}

/// Step scalars with only dropout set.
pub fn drop_scalars(p: f32, seed: u64) -> StepScalars {
    StepScalars {
        dropout: p,
        seed,
        ..StepScalars::default()
    }
}

/// Written after every output; a kernel that writes past its output changes it.
pub const SENTINEL: f32 = -31337.25;
/// Elements of sentinel after each output.
pub const GUARD: usize = 64;

/// The failures of `Gpu::open` that mean "this machine has no NVIDIA GPU" (the start of
/// their messages in `ndt::cuda::device`). Any other failure (a bad `NDT_CUDA_EMU`, a driver
/// that is present but unusable, NVRTC missing, a device too old) fails the test.
const NO_GPU: [&str; 2] = [
    "no CUDA driver on this machine",
    "the CUDA driver reports no device",
];

/// The device a CUDA test runs on: the GPU, or the kernel emulator when `NDT_CUDA_EMU` asks for
/// it. Prints one line per test straight to the terminal (past the test harness's capture), in
/// a fixed format that tools/test.sh counts:
///
/// - `CUDA-TEST ran <test> on <device>`, `<device>` being `GPU <name> (sm_XY)`,
///   `emulator order 1` or `emulator order reverse`;
/// - `SKIPPED: no CUDA device: <test> (<reason>)` and None, only when `NDT_CUDA_EMU` is unset
///   (or `0`), the machine has no NVIDIA GPU (no driver, or the driver sees no device) and
///   `NDT_TEST_REQUIRE_GPU` is unset.
///
/// Every other failure to open the device panics: a bad `NDT_CUDA_EMU` value, a GPU that is
/// there but cannot be used, and a missing GPU when `NDT_TEST_REQUIRE_GPU=1`.
pub fn gpu(test: &str) -> Option<Gpu> {
    let emu = settings(test).emulator;
    match Gpu::open(&settings(test)) {
        Ok(g) => {
            let on = match emu {
                Some(ndt::cuda::emu::Order::FirstToLast) => "emulator order 1".to_string(),
                Some(ndt::cuda::emu::Order::LastToFirst) => "emulator order reverse".to_string(),
                None => format!(
                    "GPU {} (sm_{}{})",
                    g.info.name, g.info.arch.0, g.info.arch.1
                ),
            };
            assert_eq!(
                g.is_emulated(),
                emu.is_some(),
                "{test}: NDT_CUDA_EMU and the device opened disagree"
            );
            line(&format!("CUDA-TEST ran {test} on {on}"));
            Some(g)
        }
        Err(e) => {
            let msg = e.to_string();
            let no_gpu = NO_GPU.iter().any(|m| msg.contains(m));
            let required = std::env::var_os("NDT_TEST_REQUIRE_GPU").is_some_and(|v| v != "0");
            if emu.is_none() && no_gpu && !required {
                line(&format!("SKIPPED: no CUDA device: {test} ({msg})"));
                None
            } else {
                panic!("{test}: cannot open the CUDA device: {msg}");
            }
        }
    }
}

/// The CUDA settings of this process's environment, as the command line reads them; a bad
/// value (`NDT_CUDA_EMU=yes`) fails `test`.
pub fn settings(test: &str) -> ndt::cuda::Settings {
    match ndt::cuda::Settings::from_env() {
        Ok(s) => s,
        Err(e) => panic!("{test}: {e}"),
    }
}

/// Writes `text` and a newline to stderr in one write, so that the line is whole in the
/// terminal even among the test harness's own output.
fn line(text: &str) {
    let _ = std::io::stderr().write_all(format!("{text}\n").as_bytes());
}

/// An output buffer: `n` elements poisoned with NaN (or set to `init`), then GUARD sentinels.
pub struct Out {
    pub buf: Buffer<f32>,
    pub n: usize,
}

impl Out {
    pub fn new(g: &Gpu, n: usize) -> Out {
        Out::with(g, &vec![f32::NAN; n])
    }

    pub fn with(g: &Gpu, init: &[f32]) -> Out {
        let n = init.len();
        let mut host = init.to_vec();
        host.extend(std::iter::repeat_n(SENTINEL, GUARD));
        let buf = g.upload_new(&host).expect("upload");
        Out { buf, n }
    }

    pub fn dev(&self) -> Dev<f32> {
        self.buf.dev().slice(0, self.n)
    }

    /// The output, after checking that the sentinels are intact.
    pub fn read(&self, g: &Gpu, what: &str) -> Vec<f32> {
        let all = g.download(self.buf.dev()).expect("download");
        let guard = &all[self.n..self.n + GUARD];
        if let Some(i) = guard
            .iter()
            .position(|&v| v.to_bits() != SENTINEL.to_bits())
        {
            panic!(
                "{what}: written past its end (sentinel {i} is {})",
                guard[i]
            );
        }
        all[..self.n].to_vec()
    }
}

pub fn up(g: &Gpu, host: &[f32]) -> Buffer<f32> {
    g.upload_new(host).expect("upload")
}

pub fn up_u8(g: &Gpu, host: &[u8]) -> Buffer<u8> {
    g.upload_new(host).expect("upload")
}

pub fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform in [-scale, scale).
pub fn rand_vec(r: &mut impl Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| r.random_range(-scale..scale)).collect()
}

pub fn rand_mask(r: &mut impl Rng, n: usize, p: f64) -> Vec<u8> {
    (0..n).map(|_| r.random_bool(p) as u8).collect()
}

pub fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The value a bf16 operand holds (round to nearest even).
pub fn bf16(v: f32) -> f32 {
    half::bf16::from_f32(v).to_f32()
}

/// ‖got − want‖ / ‖want‖ (‖got − want‖ when want is zero).
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths");
    let (mut num, mut den) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        num += (g as f64 - w) * (g as f64 - w);
        den += w * w;
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Fails unless every value is finite where the reference is, and the normalised error is
/// at most `tol`.
pub fn check(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_finite() && !g.is_finite() {
            panic!("{what}: element {i} is {g}, reference {w}");
        }
    }
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: normalised error {e:.3e} > {tol:.1e}");
}

/// Fails unless ‖got − want‖ / ‖scale‖ ≤ `tol`: for sums whose terms cancel, where the error
/// scales with the terms' magnitudes (`scale`, e.g. |A|·|B|ᵀ), not with the result.
pub fn check_scaled(what: &str, got: &[f32], want: &[f64], scale: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(scale.len(), want.len(), "{what}: scale length");
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum();
    let den: f64 = scale.iter().map(|s| s * s).sum();
    let e = (num / den.max(f64::MIN_POSITIVE)).sqrt();
    assert!(
        e <= tol,
        "{what}: error relative to the terms' magnitude {e:.3e} > {tol:.1e}"
    );
}

/// Fails unless both hold the same bits.
pub fn check_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: element {i} is {} on the GPU, {} on the CPU",
            got[i], want[i]
        );
    }
}
