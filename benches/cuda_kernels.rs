//! CUDA kernels and the CUDA training step, timed with CUDA events on the working stream
//! (criterion `iter_custom`): the paper-sized GEMMs in bf16 and f32, attention forward and
//! backward, LayerNorm, and one whole training step (graph replay) of the paper's model
//! (D 512, 5 blocks, 8 heads, F 1024, D_tok 668, T 150, N 1000, B 16) beside the CPU step of
//! `benches/cpu_step.rs`. Throughput is reported in tokens (B·T) per second.
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
