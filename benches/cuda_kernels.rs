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
use ndt::cuda::attention::{AttnDims, attention_backward, attention_forward, attention_probs};
use ndt::cuda::device::{Buffer, Gpu};
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
    let stream = g.stream().unwrap();
    let ctx = stream.context();
    let start = ctx
        .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        .unwrap();
    let end = ctx
        .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        .unwrap();
    start.record(stream).unwrap();
    for _ in 0..iters {
        f();
    }
    end.record(stream).unwrap();
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

/// What one kernel call computes or moves, for its rate.
enum Work {
    /// Floating-point operations (2 per multiply-add of a matrix product).
    Flops(f64),
    /// Bytes the call must read and write.
    Bytes(f64),
}

/// One kernel call at the paper's sizes, timed by both the rates table and criterion.
struct Op<'a> {
    label: String,
    work: Work,
    run: Box<dyn FnMut() + 'a>,
}

/// The paper-sized buffers the ops run on (B 16, S 152, D 512, H 8, F 1024).
struct PaperBuffers {
    x: Buffer<f32>,
    w: Buffer<f32>,
    y: Buffer<f32>,
    qkv: Buffer<f32>,
    att: Buffer<f32>,
    datt: Buffer<f32>,
    out: Buffer<f32>,
    dqkv: Buffer<f32>,
    /// bf16 copies (raw bits) of `y`, `qkv` and `out`: the storage of the bf16 precision.
    y_h: Buffer<u16>,
    qkv_h: Buffer<u16>,
    out_h: Buffer<u16>,
    ln_w: Buffer<f32>,
    ln_b: Buffer<f32>,
    xhat: Buffer<f32>,
    rstd: Buffer<f32>,
    sc: Buffer<StepScalars>,
}

const S: usize = T + 2;
const D: usize = 512;
const H: usize = 8;
const F: usize = 1024;
const ROWS: usize = B * S;

impl PaperBuffers {
    fn new(g: &Gpu) -> PaperBuffers {
        let buf = |n: usize| g.alloc::<f32>(n).unwrap();
        let bhss = B * H * S * S;
        PaperBuffers {
            x: buf(ROWS * F),
            w: buf(3 * D * F),
            y: buf(ROWS * 3 * D),
            qkv: buf(ROWS * 3 * D),
            att: buf(bhss),
            datt: buf(bhss),
            out: buf(ROWS * D),
            dqkv: buf(ROWS * 3 * D),
            y_h: g.alloc::<u16>(ROWS * 3 * D).unwrap(),
            qkv_h: g.alloc::<u16>(ROWS * 3 * D).unwrap(),
            out_h: g.alloc::<u16>(ROWS * D).unwrap(),
            ln_w: buf(D),
            ln_b: buf(D),
            xhat: buf(ROWS * D),
            rstd: buf(ROWS),
            sc: g
                .upload_new(&[StepScalars {
                    causal: 1,
                    dropout: 0.2,
                    ..StepScalars::default()
                }])
                .unwrap(),
        }
    }
}

/// Every kernel family at the paper's sizes: the three block GEMMs and attention in both
/// precisions, the qkv product and attention again with the bf16 storage the bf16 precision
/// uses for `qkv` and the attention output, and LayerNorm.
fn paper_ops<'a>(g: &'a Gpu, pb: &'a PaperBuffers) -> Vec<Op<'a>> {
    let mut ops: Vec<Op<'a>> = Vec::new();
    for prec in [Precision::Bf16, Precision::F32] {
        for (name, n, k) in [("qkv", 3 * D, D), ("fc1", F, D), ("fc2", D, F)] {
            let gm = Gemm::linear(pb.y.dev(), pb.x.dev(), pb.w.dev(), None, ROWS, n, k);
            ops.push(Op {
                label: format!("gemm {name} {ROWS}x{n}x{k} {}", prec.name()),
                work: Work::Flops(2.0 * (ROWS * n * k) as f64),
                run: Box::new(move || gemm(g, prec, &gm).unwrap()),
            });
        }
    }
    let gm = Gemm::linear(pb.y_h.dev(), pb.x.dev(), pb.w.dev(), None, ROWS, 3 * D, D);
    ops.push(Op {
        label: format!("gemm qkv {ROWS}x{}x{D} bf16, bf16 C", 3 * D),
        work: Work::Flops(2.0 * (ROWS * 3 * D * D) as f64),
        run: Box::new(move || gemm(g, Precision::Bf16, &gm).unwrap()),
    });
    let dm = AttnDims {
        b: B,
        s: S,
        d: D,
        h: H,
        fused: true,
    };
    let unfused = AttnDims { fused: false, ..dm };
    // scores and att·v: 2 products of B·H·S·S·hd multiply-adds forward, 4 backward.
    let attn_flops = 2.0 * (B * H * S * S * (D / H)) as f64;
    for prec in [Precision::Bf16, Precision::F32] {
        ops.push(Op {
            label: format!("attention forward {}", prec.name()),
            work: Work::Flops(2.0 * attn_flops),
            run: Box::new(move || {
                attention_forward(
                    g,
                    prec,
                    pb.out.dev(),
                    pb.att.dev(),
                    pb.qkv.dev(),
                    dm,
                    pb.sc.dev(),
                    1,
                    true,
                    true,
                )
                .unwrap()
            }),
        });
        ops.push(Op {
            label: format!("attention backward {}", prec.name()),
            work: Work::Flops(4.0 * attn_flops),
            run: Box::new(move || {
                attention_backward(
                    g,
                    prec,
                    pb.dqkv.dev(),
                    pb.datt.dev(),
                    pb.out.dev(),
                    pb.qkv.dev(),
                    pb.att.dev(),
                    dm,
                    pb.sc.dev(),
                    1,
                    true,
                )
                .unwrap()
            }),
        });
    }
    // bf16 qkv and output, as training stores them: fused (the default) and unfused, the
    // probabilities not kept (every block but the last) and their recomputation.
    for (name, dm) in [("fused", dm), ("unfused", unfused)] {
        ops.push(Op {
            label: format!("attention forward bf16 {name}, bf16 qkv and output, att not kept"),
            work: Work::Flops(2.0 * attn_flops),
            run: Box::new(move || {
                attention_forward(
                    g,
                    Precision::Bf16,
                    pb.out_h.dev(),
                    pb.att.dev(),
                    pb.qkv_h.dev(),
                    dm,
                    pb.sc.dev(),
                    1,
                    true,
                    false,
                )
                .unwrap()
            }),
        });
        ops.push(Op {
            label: format!("attention probabilities bf16 {name} (backward recomputation)"),
            work: Work::Flops(attn_flops),
            run: Box::new(move || {
                attention_probs(
                    g,
                    Precision::Bf16,
                    pb.att.dev(),
                    pb.qkv_h.dev(),
                    dm,
                    pb.sc.dev(),
                )
                .unwrap()
            }),
        });
    }
    ops.push(Op {
        label: "attention backward bf16, bf16 qkv".into(),
        work: Work::Flops(4.0 * attn_flops),
        run: Box::new(move || {
            attention_backward(
                g,
                Precision::Bf16,
                pb.dqkv.dev(),
                pb.datt.dev(),
                pb.out.dev(),
                pb.qkv_h.dev(),
                pb.att.dev(),
                dm,
                pb.sc.dev(),
                1,
                true,
            )
            .unwrap()
        }),
    });
    ops.push(Op {
        label: "layernorm forward".into(),
        // Reads the input, writes the output and x̂ (ROWS x D f32 each) and rstd.
        work: Work::Bytes((3 * ROWS * D * 4 + ROWS * 4) as f64),
        run: Box::new(move || {
            layernorm_forward(
                g,
                pb.out.dev(),
                pb.xhat.dev(),
                pb.rstd.dev(),
                pb.x.dev(),
                pb.ln_w.dev(),
                pb.ln_b.dev(),
                ROWS,
                D,
                1e-5,
            )
            .unwrap()
        }),
    });
    ops
}

/// Achieved rates of the kernel families at the paper's sizes against two ceilings measured in
/// the same run: device memory bandwidth (a 256 MiB device-to-device copy, read + write) and the
/// matrix rate of ndt's bf16 GEMM on a 4096³ problem (where tile edges and launch cost do not
/// matter).
fn rates(g: &Gpu, ops: &mut [Op]) {
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
    for op in ops {
        let secs = per_call(g, 20, &mut op.run);
        let (amount, unit, ceiling) = match op.work {
            Work::Flops(f) => (f, "GFLOP/s", matrix),
            Work::Bytes(b) => (b, "GB/s", bandwidth),
        };
        let rate = amount / secs;
        println!(
            "| {} | {:.1} | {:.1} {unit} | {:.0} % |",
            op.label,
            secs * 1e6,
            rate / 1e9,
            100.0 * rate / ceiling
        );
    }
}

/// The same ops under criterion.
fn kernels(c: &mut Criterion, g: &Gpu, ops: &mut [Op]) {
    let mut grp = c.benchmark_group("cuda_kernels");
    grp.throughput(Throughput::Elements((B * T) as u64));
    for op in ops {
        grp.bench_function(&op.label, |bch| {
            bch.iter_custom(|it| gpu_time(g, it, &mut op.run))
        });
    }
    grp.finish();
}

fn step(c: &mut Criterion) {
    let g = match Gpu::open(&ndt::cuda::Settings::from_env().unwrap()) {
        Ok(g) if g.is_emulated() => {
            println!("cuda_kernels: NDT_CUDA_EMU is set; the emulator is not timed");
            return;
        }
        Ok(g) => g,
        Err(e) => {
            println!("cuda_kernels: no CUDA device, nothing measured ({e})");
            return;
        }
    };
    println!("device: {}", g.info);
    {
        let pb = PaperBuffers::new(&g);
        let mut ops = paper_ops(&g, &pb);
        rates(&g, &mut ops);
        kernels(c, &g, &mut ops);
    }
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
        let mut be = CudaBackend::new(
            Gpu::open(&ndt::cuda::Settings::from_env().unwrap()).unwrap(),
            cfg.clone(),
            prec,
        )
        .unwrap();
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
