//! CUDA kernels and the CUDA training step, timed with CUDA events on the working stream
//! (criterion `iter_custom`): the paper-sized GEMMs in bf16 and f32, attention forward and
//! backward, LayerNorm, and one whole training step (graph replay) of the paper's model
//! (D 512, 5 blocks, 8 heads, F 1024, D_tok 668, T 150, N 1000, B 16) beside the CPU step of
//! `benches/cpu_step.rs`. Throughput is reported in tokens (B·T) per second.
//!
//! Before the criterion groups it prints a table of achieved rates (GFLOP/s for the GEMMs and
//! attention, GB/s for LayerNorm) against ceilings measured in the same run (see `rates`).
//!
//! Run: `cargo bench --bench cuda_kernels`. Without a GPU it prints one line and measures nothing.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cudarc::driver::sys::CUevent_flags;
use ndt::backend::{Backend, StepHyper};
use ndt::batch::Batch;
use ndt::cuda::attention::{AttnDims, attention_backward, attention_forward};
use ndt::cuda::device::Gpu;
use ndt::cuda::gemm::{Gemm, Precision, gemm};
use ndt::cuda::layernorm::layernorm_forward;
use ndt::cuda::{CudaBackend, StepScalars};
use ndt::mask::{Regions, make_masks};
use ndt::model::init::init_params;
use ndt::model::{ModelConfig, ParamTable};
use ndt::scheme::Scheme;
use std::collections::BTreeMap;
use std::time::Duration;

const B: usize = 16;
const T: usize = 150;
const N: usize = 1000;

/// Runs `f` `iters` times between two CUDA events on the GPU's stream; the elapsed GPU time.
fn gpu_time(g: &Gpu, iters: u64, mut f: impl FnMut()) -> Duration {
    let start = g
        .ctx
        .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        .unwrap();
    let end = g
        .ctx
        .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        .unwrap();
    start.record(&g.stream).unwrap();
    for _ in 0..iters {
        f();
    }
    end.record(&g.stream).unwrap();
    end.synchronize().unwrap();
    Duration::from_secs_f64(start.elapsed_ms(&end).unwrap() as f64 / 1e3)
}

/// Seconds per call of `f`: the fastest of 5 rounds of `iters` calls (after one warm-up call).
fn per_call(g: &Gpu, iters: u64, mut f: impl FnMut()) -> f64 {
    f();
    (0..5)
        .map(|_| gpu_time(g, iters, &mut f).as_secs_f64() / iters as f64)
        .fold(f64::INFINITY, f64::min)
}

/// One line of the rates table: the rate and its fraction of the ceiling.
fn rate_line(name: &str, secs: f64, amount: f64, unit: &str, ceiling: f64) {
    let rate = amount / secs;
    println!(
        "| {name} | {:.1} | {:.1} {unit} | {:.0} % |",
        secs * 1e6,
        rate / 1e9,
        100.0 * rate / ceiling
    );
}

/// Achieved rates of the kernel families at the paper's sizes against two ceilings measured in
/// the same run: device memory bandwidth (a 256 MiB device-to-device copy, read + write) and the
/// matrix rate of ndt's bf16 GEMM on a 4096³ problem (where tile edges and launch cost do not
/// matter). GEMMs and attention count 2 FLOP per multiply-add of their matrix products;
/// LayerNorm counts the bytes it must read and write.
fn rates(g: &Gpu) {
    let buf = |n: usize| g.alloc::<f32>(n).unwrap();
    let n_copy = 64 << 20;
    let (src, dst) = (buf(n_copy), buf(n_copy));
    let t = per_call(g, 10, || g.copy(dst.dev(), src.dev(), n_copy).unwrap());
    let bandwidth = 2.0 * (n_copy * 4) as f64 / t;
    drop((src, dst));
    let m = 4096;
    let (x, w, y) = (buf(m * m), buf(m * m), buf(m * m));
    let big = Gemm::linear(y.dev(), x.dev(), w.dev(), None, m, m, m);
    let t = per_call(g, 5, || gemm(g, Precision::Bf16, &big).unwrap());
    let matrix = 2.0 * (m as f64).powi(3) / t;
    drop((x, w, y));
    println!(
        "ceilings: memory {:.0} GB/s (device-to-device copy), matrix {:.1} TFLOP/s (ndt bf16 GEMM, 4096^3)",
        bandwidth / 1e9,
        matrix / 1e12
    );
    println!("| kernel (B {B}, T {T}) | us/call | rate | of ceiling |");
    println!("|---|---|---|---|");

    let (s, d, h, f) = (T + 2, 512, 8, 1024);
    let rows = B * s;
    let (x, w, y) = (buf(rows * f), buf(3 * d * f), buf(rows * 3 * d));
    for prec in [Precision::Bf16, Precision::F32] {
        for (name, n, k) in [("qkv", 3 * d, d), ("fc1", f, d), ("fc2", d, f)] {
            let gm = Gemm::linear(y.dev(), x.dev(), w.dev(), None, rows, n, k);
            let t = per_call(g, 20, || gemm(g, prec, &gm).unwrap());
            let flops = 2.0 * (rows * n * k) as f64;
            let label = format!("gemm {name} {rows}x{n}x{k} {}", prec.name());
            rate_line(&label, t, flops, "GFLOP/s", matrix);
        }
    }
    let sc = g
        .upload_new(&[StepScalars {
            causal: 1,
            dropout: 0.2,
            ..StepScalars::default()
        }])
        .unwrap();
    let bhss = B * h * s * s;
    let (qkv, att, attd, datt, out, dqkv) = (
        buf(rows * 3 * d),
        buf(bhss),
        buf(bhss),
        buf(bhss),
        buf(rows * d),
        buf(rows * 3 * d),
    );
    let dm = AttnDims { b: B, s, d, h };
    // scores and att·v: 2 products of B·H·S·S·hd multiply-adds forward, 4 backward.
    let attn_flops = 2.0 * (B * h * s * s * (d / h)) as f64;
    for prec in [Precision::Bf16, Precision::F32] {
        let t = per_call(g, 20, || {
            attention_forward(
                g,
                prec,
                out.dev(),
                att.dev(),
                Some(attd.dev()),
                qkv.dev(),
                dm,
                sc.dev(),
                1,
            )
            .unwrap()
        });
        let label = format!("attention forward {}", prec.name());
        rate_line(&label, t, 2.0 * attn_flops, "GFLOP/s", matrix);
        let t = per_call(g, 20, || {
            attention_backward(
                g,
                prec,
                dqkv.dev(),
                datt.dev(),
                out.dev(),
                qkv.dev(),
                att.dev(),
                Some(attd.dev()),
                dm,
                sc.dev(),
                1,
            )
            .unwrap()
        });
        let label = format!("attention backward {}", prec.name());
        rate_line(&label, t, 4.0 * attn_flops, "GFLOP/s", matrix);
    }
    let (lw, lb, mean, rstd) = (buf(d), buf(d), buf(rows), buf(rows));
    let t = per_call(g, 50, || {
        layernorm_forward(
            g,
            out.dev(),
            mean.dev(),
            rstd.dev(),
            x.dev(),
            lw.dev(),
            lb.dev(),
            rows,
            d,
            1e-5,
        )
        .unwrap()
    });
    // Reads the input, writes the output (rows x d f32 each) and the two statistics.
    let bytes = (2 * rows * d * 4 + 2 * rows * 4) as f64;
    rate_line("layernorm forward", t, bytes, "GB/s", bandwidth);
}

fn kernels(c: &mut Criterion, g: &Gpu) {
    let (s, d, h, f) = (T + 2, 512, 8, 1024);
    let rows = B * s;
    let buf = |n: usize| g.alloc::<f32>(n).unwrap();
    let (x, w, y) = (buf(rows * f), buf(3 * d * f), buf(rows * 3 * d));
    let mut grp = c.benchmark_group("cuda_kernels");
    grp.throughput(Throughput::Elements((B * T) as u64));
    for prec in [Precision::Bf16, Precision::F32] {
        for (name, n, k) in [("qkv", 3 * d, d), ("fc1", f, d), ("fc2", d, f)] {
            let gm = Gemm::linear(y.dev(), x.dev(), w.dev(), None, rows, n, k);
            grp.bench_function(
                format!("gemm {name} {rows}x{n}x{k} {}", prec.name()),
                |bch| bch.iter_custom(|it| gpu_time(g, it, || gemm(g, prec, &gm).unwrap())),
            );
        }
    }
    let sc = g
        .upload_new(&[StepScalars {
            causal: 1,
            dropout: 0.2,
            ..StepScalars::default()
        }])
        .unwrap();
    let bhss = B * h * s * s;
    let (qkv, att, attd, datt, out, dqkv) = (
        buf(rows * 3 * d),
        buf(bhss),
        buf(bhss),
        buf(bhss),
        buf(rows * d),
        buf(rows * 3 * d),
    );
    let dm = AttnDims { b: B, s, d, h };
    for prec in [Precision::Bf16, Precision::F32] {
        grp.bench_function(format!("attention forward {}", prec.name()), |bch| {
            bch.iter_custom(|it| {
                gpu_time(g, it, || {
                    attention_forward(
                        g,
                        prec,
                        out.dev(),
                        att.dev(),
                        Some(attd.dev()),
                        qkv.dev(),
                        dm,
                        sc.dev(),
                        1,
                    )
                    .unwrap()
                })
            })
        });
        grp.bench_function(format!("attention backward {}", prec.name()), |bch| {
            bch.iter_custom(|it| {
                gpu_time(g, it, || {
                    attention_backward(
                        g,
                        prec,
                        dqkv.dev(),
                        datt.dev(),
                        out.dev(),
                        qkv.dev(),
                        att.dev(),
                        Some(attd.dev()),
                        dm,
                        sc.dev(),
                        1,
                    )
                    .unwrap()
                })
            })
        });
    }
    let (lw, lb, mean, rstd) = (buf(d), buf(d), buf(rows), buf(rows));
    grp.bench_function("layernorm forward", |bch| {
        bch.iter_custom(|it| {
            gpu_time(g, it, || {
                layernorm_forward(
                    g,
                    out.dev(),
                    mean.dev(),
                    rstd.dev(),
                    x.dev(),
                    lw.dev(),
                    lb.dev(),
                    rows,
                    d,
                    1e-5,
                )
                .unwrap()
            })
        })
    });
    grp.finish();
}

fn step(c: &mut Criterion) {
    let g = match Gpu::open(0) {
        Ok(g) => g,
        Err(e) => {
            println!("cuda_kernels: no CUDA device, nothing measured ({e})");
            return;
        }
    };
    println!("device: {}", g.info);
    rates(&g);
    kernels(c, &g);
    let cfg = ModelConfig::paper(T, BTreeMap::from([("s".to_string(), N)]));
    let table = ParamTable::new(&cfg);
    let params = init_params(&cfg, &table, 1);
    let len = B * T * N;
    let counts: Vec<f32> = (0..len)
        .map(|i| ((i * 2654435761) % 13 == 0) as u8 as f32)
        .collect();
    let (mut mask, mut target) = (vec![0u8; len], vec![0u8; len]);
    make_masks(
        Scheme::Forward,
        B,
        T,
        N,
        &Regions::single(N),
        0.3,
        7,
        &mut mask,
        &mut target,
    );
    let batch = Batch {
        session: 0,
        session_id: "s".into(),
        trials: (0..B as u32).collect(),
        b: B,
        t: T,
        n: N,
        counts,
        mask,
        target,
        scheme: Scheme::Forward,
    };
    let mut grp = c.benchmark_group("cuda_step");
    grp.throughput(Throughput::Elements((B * T) as u64));
    grp.sample_size(20);
    for prec in [Precision::Bf16, Precision::F32] {
        let mut be = CudaBackend::new(Gpu::open(0).unwrap(), cfg.clone(), prec).unwrap();
        be.set_params(&params).unwrap();
        let mut k = 0u64;
        let mut hp = move || {
            k += 1;
            StepHyper {
                lr: 1e-4,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
                clip: 1.0,
                dropout: 0.2,
                step: k,
                seed: k,
            }
        };
        be.train_step(&batch, &hp()).unwrap();
        grp.bench_function(format!("paper train step {}", prec.name()), |bch| {
            bch.iter(|| be.train_step(&batch, &hp()).unwrap())
        });
        println!(
            "peak device memory ({}): {:.2} GiB",
            prec.name(),
            be.device_memory().1 as f64 / (1u64 << 30) as f64
        );
    }
    grp.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = step
}
criterion_main!(benches);
