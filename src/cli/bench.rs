//! `ndt bench`: times training steps and evaluation passes of a model config on a device, on a
//! synthetic batch (Poisson counts, masks of the chosen scheme), and prints ms/step, tokens/s
//! (tokens = trials × bins of the batch) and peak memory (device memory allocated by ndt on a
//! GPU, the process's resident high-water mark on the CPU). `--mode frozen-core` times the step
//! of a frozen-core finetune (only the session's tensors train) beside the full step, the two
//! alternating step by step in one run, and prints their ratio.

use crate::backend::{Backend, ForwardOpts, StepHyper};
use crate::batch::Batch;
use crate::cpu::CpuBackend;
use crate::cuda::profile::{KernelTotal, OpTime, summary};
use crate::cuda::{CudaBackend, Precision};
use crate::error::{Error, Result, usage};
use crate::mask::{Regions, make_masks};
use crate::model::{ModelConfig, ParamTable, init::init_params};
use crate::scheme::Scheme;
use crate::train::config::RunConfig;
use crate::train::device::{Device, cpu_threads};
use rand::SeedableRng;
use rand_distr::{Distribution, Poisson};
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model preset (small, paper) or a run-config TOML file.
    #[arg(long, default_value = "paper")]
    pub config: String,
    /// Backend: auto uses the GPU when one can be used, else the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// CPU threads (0 = every core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// GEMM precision on the GPU: bf16 (tensor cores) or f32.
    #[arg(long, default_value = "bf16", value_parser = ["bf16", "f32"])]
    pub precision: String,
    /// Trials per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Time bins per trial.
    #[arg(long, default_value_t = 150)]
    pub bins: usize,
    /// Neurons of the session.
    #[arg(long, default_value_t = 1000)]
    pub neurons: usize,
    /// Masking scheme of the batch (forward uses causal attention).
    #[arg(long, default_value = "forward")]
    pub scheme: String,
    /// Timed training steps (after the warm-up).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first (kernel compilation, graph capture, caches).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed evaluation passes.
    #[arg(long, default_value_t = 20)]
    pub evals: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Allocate what a training step on this batch needs on the GPU, print it and run
    /// nothing (whether a batch size fits, without running the kernels).
    #[arg(long)]
    pub memory_only: bool,
    /// After the timed steps, launch a few training steps operation by operation with CUDA
    /// events around each, print the GPU time per kernel and per product shape, and write
    /// every operation's time to this CSV file (GPU only). With `--mode frozen-core`, the CSV
    /// holds the frozen-core step and `CSV` with `.full` before its extension the full one.
    #[arg(long, value_name = "CSV")]
    pub profile: Option<std::path::PathBuf>,
    /// What a timed step trains: `full` (every tensor), or `frozen-core`: the step of a
    /// frozen-core finetune (the session's stitchers and token train, the core is frozen)
    /// timed beside the full step, alternating, with the ratio of the two.
    #[arg(long, value_enum, default_value = "full")]
    pub mode: Mode,
}

/// `--mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    FrozenCore,
}

/// The backend under test, concrete so that its memory can be read.
enum Under {
    Cpu(Box<CpuBackend>, usize),
    Cuda(Box<CudaBackend>),
}

impl Under {
    fn backend(&mut self) -> &mut dyn Backend {
        match self {
            Under::Cpu(b, _) => b.as_mut(),
            Under::Cuda(b) => b.as_mut(),
        }
    }
    fn label(&self) -> String {
        match self {
            Under::Cpu(_, threads) => format!("cpu ({threads} threads)"),
            Under::Cuda(b) => format!("{} ({}, {})", b.name(), b.precision().name(), b.gpu().info),
        }
    }
    /// Peak bytes: device memory allocated by the backend, or the process's resident peak.
    fn peak_memory(&self) -> (u64, &'static str) {
        match self {
            Under::Cpu(..) => (peak_rss().unwrap_or(0), "peak resident memory (VmHWM)"),
            Under::Cuda(b) => (b.device_memory().1 as u64, "peak device memory allocated"),
        }
    }
    /// Bytes of the GPU's activation workspace (part of the peak); none on the CPU.
    fn workspace_bytes(&self) -> Option<u64> {
        match self {
            Under::Cpu(..) => None,
            Under::Cuda(b) => Some(b.workspace_bytes() as u64),
        }
    }
}

fn open(a: &Args, cfg: &ModelConfig, settings: &crate::cuda::Settings) -> Result<Under> {
    let prec = if a.precision == "f32" {
        Precision::F32
    } else {
        Precision::Bf16
    };
    let cpu = || {
        let threads = cpu_threads(a.threads);
        Under::Cpu(Box::new(CpuBackend::new(cfg.clone(), threads)), threads)
    };
    let cuda = || -> Result<Under> {
        let settings = crate::cuda::Settings {
            precision: prec,
            ..*settings
        };
        Ok(Under::Cuda(Box::new(crate::cuda::open_cuda(
            cfg.clone(),
            &settings,
        )?)))
    };
    match a.device {
        Device::Cpu => Ok(cpu()),
        Device::Cuda => cuda(),
        Device::Auto => match cuda() {
            Ok(u) => Ok(u),
            Err(Error::Cuda(why)) => {
                eprintln!("note: no usable GPU ({why}); running on the CPU");
                Ok(cpu())
            }
            Err(e) => Err(e),
        },
    }
}

/// Resident-memory high-water mark of this process, from /proc (Linux).
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A batch of Poisson counts (mean 0.2 per bin) with the scheme's masks, deterministic.
fn synthetic_batch(sid: &str, b: usize, t: usize, n: usize, scheme: Scheme, seed: u64) -> Batch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let pois = Poisson::new(0.2f64).expect("positive rate");
    let counts: Vec<f32> = (0..b * t * n)
        .map(|_| pois.sample(&mut rng) as f32)
        .collect();
    let (mut mask, mut target) = (vec![0u8; b * t * n], vec![0u8; b * t * n]);
    let regions = Regions::single(n);
    let key = crate::rng::key(seed, 1);
    make_masks(scheme, b, t, n, &regions, 0.3, key, &mut mask, &mut target);
    Batch {
        session: 0,
        session_id: sid.to_string(),
        trials: (0..b as u32).collect(),
        b,
        t,
        n,
        counts,
        mask,
        target,
        scheme,
    }
}

#[derive(Clone)]
struct Timing {
    mean_ms: f64,
    min_ms: f64,
    median_ms: f64,
}

impl Timing {
    /// Mean, min and median of `ms`.
    fn of(mut all: Vec<f64>) -> Timing {
        let mean_ms = all.iter().sum::<f64>() / all.len().max(1) as f64;
        let min_ms = all.iter().copied().fold(f64::INFINITY, f64::min);
        Timing {
            mean_ms,
            min_ms,
            median_ms: median(&mut all),
        }
    }
}

/// The median (the upper one of an even count; NaN for none).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Milliseconds of `f`.
fn ms(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t0 = Instant::now();
    f()?;
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

fn time(n: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<Timing> {
    let all = (0..n).map(|i| ms(|| f(i))).collect::<Result<Vec<_>>>()?;
    Ok(Timing::of(all))
}

/// `--mode frozen-core`: the frozen-core step timed beside the full one, and their ratios.
struct FrozenCore {
    full: Timing,
    frozen: Timing,
    /// Median of the full step's time over the frozen-core step's, pair by pair (each pair
    /// run back to back, so a change of the machine's load touches both).
    pair_ratio: f64,
    /// Fraction of the parameters that train in the frozen-core step.
    trainable_share: f64,
}

impl FrozenCore {
    /// The full step's median over the frozen-core step's.
    fn ratio(&self) -> f64 {
        self.full.median_ms / self.frozen.median_ms
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": "frozen-core",
            "full_ms_per_step": self.full.median_ms,
            "full_ms_min": self.full.min_ms,
            "frozen_core_ms_per_step": self.frozen.median_ms,
            "frozen_core_ms_mean": self.frozen.mean_ms,
            "frozen_core_ms_min": self.frozen.min_ms,
            "frozen_core_speedup": self.ratio(),
            "frozen_core_speedup_pairs": self.pair_ratio,
            "frozen_core_trainable_share": self.trainable_share,
        })
    }

    fn print(&self, tps: impl Fn(f64) -> f64) {
        let (f, z) = (&self.full, &self.frozen);
        println!(
            "frozen-core step: {:.2} ms/step median (mean {:.2}, min {:.2}), {:.0} tokens/s; \
             full step {:.2} ms/step median (min {:.2}); {:.1} % of the parameters train",
            z.median_ms,
            z.mean_ms,
            z.min_ms,
            tps(z.median_ms),
            f.median_ms,
            f.min_ms,
            100.0 * self.trainable_share
        );
        println!(
            "frozen-core speedup: {:.2}x (median full / median frozen-core; median of the \
             pairs' ratios {:.2}x)",
            self.ratio(),
            self.pair_ratio
        );
    }
}

/// `path` with `.suffix` before its extension (`p.csv` → `p.full.csv`).
fn with_suffix(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{suffix}"),
    };
    path.with_file_name(name)
}

/// Operations, products and FLOPs of one profiled step.
fn op_counts(p: &Profiled) -> (usize, usize, f64) {
    let products = p.ops.iter().filter(|o| o.flops > 0.0).count();
    (p.ops.len(), products, p.ops.iter().map(|o| o.flops).sum())
}

fn saving_json(full: &Profiled, frozen: &Profiled) -> serde_json::Value {
    let ((fo, fp, ff), (zo, zp, zf)) = (op_counts(full), op_counts(frozen));
    serde_json::json!({
        "profile_full_operations": fo,
        "profile_full_products": fp,
        "profile_full_flops": ff,
        "profile_full_ms_per_step": full.secs() * 1e3,
        "profile_full_csv": full.csv.display().to_string(),
        "profile_operations_saved": fo.saturating_sub(zo),
        "profile_products": zp,
        "profile_flops": zf,
    })
}

/// What the frozen-core step saves against the full step, from their profiles.
fn print_saving(full: &Profiled, frozen: &Profiled) {
    let ((fo, fp, ff), (zo, zp, zf)) = (op_counts(full), op_counts(frozen));
    println!(
        "frozen-core vs full step: {zo} vs {fo} operations ({} fewer), {zp} vs {fp} products, \
         {:.3} vs {:.3} GFLOP ({:.3} GFLOP, {:.1} % fewer), {:.3} vs {:.3} ms in the profile; \
         the full step's operations in {}",
        fo.saturating_sub(zo),
        zf / 1e9,
        ff / 1e9,
        (ff - zf) / 1e9,
        100.0 * (ff - zf) / ff.max(f64::MIN_POSITIVE),
        frozen.secs() * 1e3,
        full.secs() * 1e3,
        full.csv.display()
    );
}

/// `--memory-only`: the device memory of a training step on `batch`, allocated, not run.
fn memory_only(
    a: &Args,
    cfg: &ModelConfig,
    under: &mut Under,
    label: &str,
    batch: &Batch,
    scheme: Scheme,
) -> Result<()> {
    let Under::Cuda(b) = under else {
        return Err(usage("--memory-only reports GPU memory: use --device cuda"));
    };
    b.reserve(batch)?;
    let (peak, workspace) = (b.device_memory().1 as u64, b.workspace_bytes() as u64);
    let mut buffers = b.workspace_buffers();
    buffers.sort_by_key(|b| std::cmp::Reverse(b.1));
    if a.json {
        let per: serde_json::Map<String, serde_json::Value> = buffers
            .iter()
            .map(|&(name, bytes)| (name.to_string(), bytes.into()))
            .collect();
        let v = report_json(
            a,
            label,
            scheme,
            serde_json::json!({
                "peak_memory_bytes": peak,
                "workspace_bytes": workspace,
                "workspace_buffers": per,
            }),
        );
        println!("{v}");
    } else {
        print_header(a, cfg, label, scheme);
        let what = "device memory of a training step (allocated, not run)";
        println!("{}", memory_line(what, peak, Some(workspace)));
        let mib = |v: usize| v as f64 / (1u64 << 20) as f64;
        let list: Vec<String> = buffers
            .iter()
            .map(|&(name, bytes)| format!("{name} {:.1}", mib(bytes)))
            .collect();
        println!(
            "workspace buffers (MiB, src/cuda/workspace.rs): {}",
            list.join(", ")
        );
    }
    Ok(())
}

/// The JSON report: what was run (device, config, batch, scheme), then `fields`.
fn report_json(
    a: &Args,
    label: &str,
    scheme: Scheme,
    fields: serde_json::Value,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "device": label,
        "config": a.config,
        "batch_size": a.batch_size,
        "bins": a.bins,
        "neurons": a.neurons,
        "scheme": scheme.name(),
    });
    extend_json(&mut v, fields);
    v
}

/// Adds the fields of the object `more` to the object `v`.
fn extend_json(v: &mut serde_json::Value, more: serde_json::Value) {
    if let (Some(head), serde_json::Value::Object(rest)) = (v.as_object_mut(), more) {
        head.extend(rest);
    }
}

/// The first two lines of the text report: the device, the model and the batch.
fn print_header(a: &Args, cfg: &ModelConfig, label: &str, scheme: Scheme) {
    println!("device: {label}");
    println!(
        "model: {} (D {}, D_tok {}, {} heads, F {}, {} blocks); batch {} trials x {} bins x {} neurons, {scheme}",
        a.config,
        cfg.d_model,
        cfg.d_tok,
        cfg.n_heads,
        cfg.d_ff,
        cfg.n_layers,
        a.batch_size,
        a.bins,
        a.neurons
    );
}

/// `WHAT: X GiB`, with the activation workspace's share where there is one.
fn memory_line(what: &str, bytes: u64, workspace: Option<u64>) -> String {
    let gib = |v: u64| v as f64 / (1u64 << 30) as f64;
    match workspace {
        Some(w) => format!(
            "{what}: {:.3} GiB ({:.3} GiB activation workspace, the rest parameters, gradients \
             and optimizer state)",
            gib(bytes),
            gib(w)
        ),
        None => format!("{what}: {:.3} GiB", gib(bytes)),
    }
}

/// Steps that `--profile` launches operation by operation.
const PROFILE_STEPS: usize = 5;

/// What `--profile` measured: every operation of one step (each the fastest of its runs) and
/// the per-kernel totals (`crate::cuda::profile::summary`).
struct Profiled {
    ops: Vec<OpTime>,
    totals: Vec<KernelTotal>,
    runs: usize,
    emulated: bool,
    csv: std::path::PathBuf,
}

impl Profiled {
    /// Summarises `steps` (one Vec of operations per profiled step) and writes every
    /// operation to `csv`.
    fn new(steps: &[Vec<OpTime>], csv: &std::path::Path, emulated: bool) -> Result<Profiled> {
        let (ops, totals) = summary(steps).ok_or_else(|| {
            crate::error::internal("profiled steps issued different operations".to_string())
        })?;
        let mut text = String::from("index,file,kernel,grid,block,note,flops,us\n");
        for (i, op) in ops.iter().enumerate() {
            let (g, b) = (op.grid, op.block);
            text += &format!(
                "{i},{},{},{}x{}x{},{}x{}x{},{},{},{:.3}\n",
                op.file,
                op.name,
                g.0,
                g.1,
                g.2,
                b.0,
                b.1,
                b.2,
                op.note,
                op.flops,
                op.secs * 1e6
            );
        }
        crate::fsutil::write_atomic(csv, text.as_bytes())?;
        Ok(Profiled {
            ops,
            totals,
            runs: steps.len(),
            emulated,
            csv: csv.to_path_buf(),
        })
    }

    fn secs(&self) -> f64 {
        self.ops.iter().map(|o| o.secs).sum()
    }

    /// The fields `--json` adds: the per-kernel rows.
    fn json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .totals
            .iter()
            .map(|t| {
                serde_json::json!({"file": t.file, "kernel": t.name, "calls": t.calls,
                                   "ms_per_step": t.secs * 1e3})
            })
            .collect();
        serde_json::json!({
            "profile_ms_per_step": self.secs() * 1e3,
            "profile_operations": self.ops.len(),
            "profile_kernels": rows,
            "profile_csv": self.csv.display().to_string(),
        })
    }

    /// The text report: the totals per kernel and per product shape, beside the graph step's
    /// `step_ms`.
    fn print(&self, step_ms: f64) {
        let sum = self.secs();
        let clock = if self.emulated {
            "CPU time of the kernel emulator, not GPU time"
        } else {
            "GPU time between CUDA events"
        };
        println!(
            "profile: one training step launched operation by operation, each operation the \
             fastest of {} runs ({clock}): {} operations, {:.3} ms in all (the graph step: \
             {step_ms:.3} ms); every operation in {}",
            self.runs,
            self.ops.len(),
            sum * 1e3,
            self.csv.display()
        );
        println!("| kernel | file | calls | ms/step | share |");
        println!("|---|---|---|---|---|");
        for t in &self.totals {
            println!(
                "| {} | {} | {} | {:.3} | {:.1} % |",
                t.name,
                t.file,
                t.calls,
                t.secs * 1e3,
                100.0 * t.secs / sum.max(f64::MIN_POSITIVE)
            );
        }
        // Products by shape: where the matrix time goes.
        let mut shapes: BTreeMap<(&str, &str), (usize, f64, f64)> = BTreeMap::new();
        for op in self.ops.iter().filter(|o| o.flops > 0.0) {
            let e = shapes.entry((op.note.as_str(), op.name)).or_default();
            e.0 += 1;
            e.1 += op.secs;
            e.2 += op.flops;
        }
        let mut shapes: Vec<_> = shapes.into_iter().collect();
        shapes.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        println!("| product (M x N x K, batch) | kernel | calls | ms/step | TFLOP/s |");
        println!("|---|---|---|---|---|");
        for ((shape, name), (calls, secs, flops)) in shapes {
            println!(
                "| {shape} | {name} | {calls} | {:.3} | {:.1} |",
                secs * 1e3,
                flops / secs.max(f64::MIN_POSITIVE) / 1e12
            );
        }
    }
}

pub fn run(a: Args, cuda: &crate::cuda::Settings) -> Result<()> {
    if a.batch_size == 0 || a.bins == 0 || a.neurons == 0 || a.steps == 0 {
        return Err(usage(
            "--batch-size, --bins, --neurons and --steps must be positive",
        ));
    }
    if a.profile.is_some() && (a.memory_only || a.device == Device::Cpu) {
        return Err(usage(
            "--profile times GPU operations: use it with --device cuda and without --memory-only",
        ));
    }
    let scheme = Scheme::parse(&a.scheme).ok_or_else(|| {
        usage(format!(
            "--scheme {}: expected co-smooth or forward (the region schemes need regions)",
            a.scheme
        ))
    })?;
    if scheme.needs_regions() {
        return Err(usage(format!(
            "--scheme {scheme}: the synthetic batch has one region; use co-smooth or forward"
        )));
    }
    let run_cfg = RunConfig::load(&a.config)?;
    let sid = "bench".to_string();
    let cfg = run_cfg
        .model
        .config(a.bins, BTreeMap::from([(sid.clone(), a.neurons)]));
    let table = ParamTable::new(&cfg);
    let mut under = open(&a, &cfg, cuda)?;
    let label = under.label();
    let backend = under.backend();
    backend.set_params(&init_params(&cfg, &table, 42))?;
    let batch = synthetic_batch(&sid, a.batch_size, a.bins, a.neurons, scheme, 7);
    if a.memory_only {
        return memory_only(&a, &cfg, &mut under, &label, &batch, scheme);
    }
    let hp = |step: usize| StepHyper {
        lr: run_cfg.train.lr as f32,
        beta1: run_cfg.train.max_momentum as f32,
        beta2: run_cfg.train.beta2 as f32,
        eps: run_cfg.train.eps as f32,
        weight_decay: run_cfg.train.weight_decay as f32,
        clip: run_cfg.train.clip as f32,
        dropout: run_cfg.train.dropout as f32,
        step: step as u64 + 1,
        seed: 1000 + step as u64,
    };
    let mut last_loss = f32::NAN;
    let all = vec![1u8; table.total];
    let frozen_mask = table.session_only_mask(&sid);
    let mut frozen_core = None;
    let train = match a.mode {
        Mode::Full => {
            time(a.warmup, |i| {
                last_loss = backend.train_step(&batch, &hp(i))?.loss;
                Ok(())
            })?;
            time(a.steps, |i| {
                last_loss = backend.train_step(&batch, &hp(a.warmup + i))?.loss;
                Ok(())
            })?
        }
        Mode::FrozenCore => {
            // Full and frozen-core steps alternate (the warm-up captures both graphs on a GPU);
            // only the steps are timed, not the change of trainable set between them.
            let (mut full, mut frozen) = (Vec::new(), Vec::new());
            for i in 0..a.warmup + a.steps {
                backend.set_trainable(&all)?;
                let f = ms(|| {
                    last_loss = backend.train_step(&batch, &hp(i))?.loss;
                    Ok(())
                })?;
                backend.set_trainable(&frozen_mask)?;
                let z = ms(|| backend.train_step(&batch, &hp(i)).map(|_| ()))?;
                if i >= a.warmup {
                    full.push(f);
                    frozen.push(z);
                }
            }
            backend.set_trainable(&all)?;
            let mut ratios: Vec<f64> = full.iter().zip(&frozen).map(|(f, z)| f / z).collect();
            let trainable = frozen_mask.iter().filter(|&&t| t != 0).count();
            let fc = FrozenCore {
                full: Timing::of(full),
                frozen: Timing::of(frozen),
                pair_ratio: median(&mut ratios),
                trainable_share: trainable as f64 / table.total.max(1) as f64,
            };
            let full = fc.full.clone();
            frozen_core = Some(fc);
            full
        }
    };
    let opts = ForwardOpts::default();
    backend.forward(&batch, &opts)?;
    let eval = time(a.evals.max(1), |_| {
        backend.forward(&batch, &opts).map(|_| ())
    })?;
    let (peak, peak_what) = under.peak_memory();
    let workspace = under.workspace_bytes();
    let (mut profile, mut full_profile) = (None, None);
    if let Some(csv) = &a.profile {
        let Under::Cuda(b) = &mut under else {
            return Err(usage(
                "--profile times GPU operations, and no GPU is in use: use --device cuda",
            ));
        };
        let first = a.warmup + a.steps;
        let emulated = b.gpu().is_emulated();
        let run = |b: &mut CudaBackend, mask: &[u8], csv: &std::path::Path| {
            b.set_trainable(mask)?;
            let steps = (0..PROFILE_STEPS)
                .map(|i| b.profile_step(&batch, &hp(first + i)))
                .collect::<Result<Vec<_>>>()?;
            Profiled::new(&steps, csv, emulated)
        };
        if a.mode == Mode::FrozenCore {
            full_profile = Some(run(b, &all, &with_suffix(csv, "full"))?);
            profile = Some(run(b, &frozen_mask, csv)?);
        } else {
            profile = Some(run(b, &all, csv)?);
        }
    }

    let tokens = (a.batch_size * a.bins) as f64;
    let tps = |ms: f64| tokens / (ms / 1e3);
    if a.json {
        let fields = serde_json::json!({
            "steps": a.steps,
            "ms_per_step": train.median_ms,
            "tokens_per_s": tps(train.median_ms),
            "peak_mem_bytes": peak,
            "train_ms_per_step": train.mean_ms,
            "train_ms_min": train.min_ms,
            "train_tokens_per_s": tps(train.mean_ms),
            "eval_ms_per_batch": eval.mean_ms,
            "eval_tokens_per_s": tps(eval.mean_ms),
            "peak_memory_bytes": peak,
            "peak_memory_kind": peak_what,
            "workspace_bytes": workspace,
            "last_loss": last_loss,
        });
        let mut v = report_json(&a, &label, scheme, fields);
        if let Some(fc) = &frozen_core {
            extend_json(&mut v, fc.json());
        }
        if let Some(p) = &profile {
            extend_json(&mut v, p.json());
        }
        if let (Some(full), Some(frozen)) = (&full_profile, &profile) {
            extend_json(&mut v, saving_json(full, frozen));
        }
        println!("{v}");
    } else {
        print_header(&a, &cfg, &label, scheme);
        println!(
            "train: {:.2} ms/step (min {:.2}), {:.0} tokens/s over {} steps (loss {last_loss:.4})",
            train.mean_ms,
            train.min_ms,
            tps(train.mean_ms),
            a.steps
        );
        println!(
            "eval:  {:.2} ms/batch (min {:.2}), {:.0} tokens/s",
            eval.mean_ms,
            eval.min_ms,
            tps(eval.mean_ms)
        );
        if let Some(fc) = &frozen_core {
            fc.print(tps);
        }
        println!("{}", memory_line(peak_what, peak, workspace));
        if let Some(p) = &profile {
            let step = frozen_core
                .as_ref()
                .map_or(train.median_ms, |fc| fc.frozen.median_ms);
            p.print(step);
        }
        if let (Some(full), Some(frozen)) = (&full_profile, &profile) {
            print_saving(full, frozen);
        }
    }
    Ok(())
}
