//! The kernel emulator (kernels/emu.h, src/cuda/emu.rs) runs CUDA kernels on the CPU with
//! block barriers and warp operations as on a GPU, and turns the bugs a GPU would hide or hang
//! on into errors naming the kernel, block and thread. Needs a host C++ compiler (`c++` or
//! `$CXX`), no GPU. The real kernels under the emulator: `NDT_CUDA_EMU=1 cargo test --test
//! cuda_kernels` (and cuda_layers, cuda_loss_optim, cuda_backend), as tools/test.sh does.

mod common;

use common::{TempDir, ndt_ok, python, root};
use cudarc::driver::LaunchConfig;
use ndt::cuda::device::{Args, Gpu};
use ndt::cuda::kernels::KernelFile;

fn gpu() -> Gpu {
    Gpu::emulated(ndt::cuda::emu::Order::FirstToLast)
}

fn cfg(blocks: u32, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The `ndt` binary with the kernel emulator as its CUDA device, in CUDA precision `precision`.
fn ndt_emu(precision: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ndt"));
    c.env("NDT_CUDA_EMU", "1")
        .env("NDT_CUDA_PRECISION", precision);
    c
}

/// Launches `k` of `file`, returning the error text (or "" on success).
fn run(g: &Gpu, file: &KernelFile, c: LaunchConfig, args: &Args) -> String {
    // SAFETY: the emulator checks argument counts and sizes and catches faults; these tests
    // are about exactly that.
    match unsafe { g.launch(file, "k", c, args) } {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}

// Block-wide reversal through shared memory, then a warp sum: needs the barrier between the
// write and the read, and all 32 lanes in the shuffles.
const GOOD: KernelFile = KernelFile {
    name: "emu_test_good.cu",
    text: r#"#include "common.cuh"
extern "C" __global__ void k(float* out, const float* in) {
    __shared__ float s[128];
    int i = threadIdx.x, base = blockIdx.x * blockDim.x;
    s[i] = in[base + i];
    __syncthreads();
    float v = s[blockDim.x - 1 - i];
    out[base + i] = v;
    float w = ndt_warp_sum(v);
    if ((i & 31) == 0) out[gridDim.x * blockDim.x + blockIdx.x * 4 + i / 32] = w;
}
"#,
    entries: &["k"],
};

#[test]
fn barriers_and_warp_sums_behave_as_on_a_gpu() {
    let g = gpu();
    let (blocks, threads) = (3usize, 128usize);
    let input: Vec<f32> = (0..blocks * threads).map(|i| i as f32).collect();
    let inp = g.upload_new(&input).unwrap();
    let out = g.alloc::<f32>(blocks * threads + blocks * 4).unwrap();
    let args = Args::new().ptr(out.dev()).ptr(inp.dev());
    let e = run(&g, &GOOD, cfg(blocks as u32, threads as u32), &args);
    assert_eq!(e, "");
    let got = g.download(out.dev()).unwrap();
    for b in 0..blocks {
        for i in 0..threads {
            let want = input[b * threads + threads - 1 - i];
            assert_eq!(got[b * threads + i], want, "block {b} thread {i}");
        }
        for w in 0..4 {
            let want: f32 = (0..32)
                .map(|l| input[b * threads + threads - 1 - (w * 32 + l)])
                .sum();
            assert_eq!(
                got[blocks * threads + b * 4 + w],
                want,
                "block {b} warp {w}"
            );
        }
    }
}

const DIVERGENT_SYNC: KernelFile = KernelFile {
    name: "emu_test_divergent_sync.cu",
    text: r#"extern "C" __global__ void k(float* x) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    x[threadIdx.x] = 1.0f;
}
"#,
    entries: &["k"],
};

#[test]
fn a_barrier_on_different_lines_is_reported() {
    let g = gpu();
    let x = g.alloc::<f32>(64).unwrap();
    let e = run(&g, &DIVERGENT_SYNC, cfg(1, 64), &Args::new().ptr(x.dev()));
    assert!(e.contains("__syncthreads on line 5"), "{e}");
    assert!(e.contains("wait at line 3"), "{e}");
    assert!(e.contains("kernel k, block (0,0,0)"), "{e}");
}

const EARLY_EXIT_SHUFFLE: KernelFile = KernelFile {
    name: "emu_test_exit_shuffle.cu",
    text: r#"extern "C" __global__ void k(float* x) {
    if (threadIdx.x == 5) return;
    x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
}
"#,
    entries: &["k"],
};

#[test]
fn a_shuffle_missing_an_exited_lane_is_a_reported_deadlock() {
    let g = gpu();
    // One warp; then two, where the second completes its shuffle, which wakes every waiter,
    // the stuck lanes of the first included: they must wait again and still be reported.
    for threads in [32, 64] {
        let x = g.alloc::<f32>(threads as usize).unwrap();
        let e = run(
            &g,
            &EARLY_EXIT_SHUFFLE,
            cfg(1, threads),
            &Args::new().ptr(x.dev()),
        );
        assert!(e.contains("deadlock"), "{threads} threads: {e}");
        assert!(e.contains("31 threads wait"), "{threads} threads: {e}");
    }
}

const TWO_ARGS: KernelFile = KernelFile {
    name: "emu_test_two_args.cu",
    text: r#"extern "C" __global__ void k(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = 2.0f;
}
"#,
    entries: &["k"],
};

#[test]
fn arguments_that_differ_from_the_signature_are_reported() {
    let g = gpu();
    let x = g.alloc::<f32>(32).unwrap();
    let e = run(&g, &TWO_ARGS, cfg(1, 32), &Args::new().ptr(x.dev()));
    assert!(e.contains("takes 2 arguments, the launch passed 1"), "{e}");
    let e = run(&g, &TWO_ARGS, cfg(1, 32), &Args::new().ptr(x.dev()).u64(32));
    assert!(
        e.contains("argument 1 is 4 bytes in the kernel, 8 in the launch"),
        "{e}"
    );
    let e = run(&g, &TWO_ARGS, cfg(1, 32), &Args::new().ptr(x.dev()).i32(32));
    assert_eq!(e, "");
    assert_eq!(g.download(x.dev()).unwrap(), vec![2.0f32; 32]);
}

#[test]
fn a_write_past_the_end_of_a_buffer_is_caught() {
    let g = gpu();
    let x = g.alloc::<f32>(64).unwrap();
    // 96 threads for 64 elements: the bounds check uses the wrong n.
    let e = run(&g, &TWO_ARGS, cfg(3, 32), &Args::new().ptr(x.dev()).i32(96));
    assert!(e.contains("memory fault"), "{e}");
    assert!(e.contains("block (2,0,0), thread (0,0,0)"), "{e}");
    // The emulated device is still usable afterwards.
    let e = run(&g, &TWO_ARGS, cfg(2, 32), &Args::new().ptr(x.dev()).i32(64));
    assert_eq!(e, "");
}

#[test]
fn a_graph_records_and_replays_stream_operations() {
    let g = gpu();
    let x = g.alloc::<f32>(64).unwrap();
    let y = g.alloc::<f32>(64).unwrap();
    let graph = g
        .capture(|| {
            g.fill_f32(x.dev(), 7.0)?;
            // SAFETY: matches the kernel's signature; 64 elements.
            unsafe {
                g.launch(
                    &TWO_ARGS,
                    "k",
                    cfg(1, 32),
                    &Args::new().ptr(x.dev()).i32(32),
                )?;
            }
            g.copy(y.dev(), x.dev(), 64)
        })
        .unwrap();
    // Nothing ran while capturing.
    assert_eq!(g.download(y.dev()).unwrap(), vec![0.0f32; 64]);
    g.replay(&graph).unwrap();
    let want: Vec<f32> = (0..64).map(|i| if i < 32 { 2.0 } else { 7.0 }).collect();
    assert_eq!(g.download(y.dev()).unwrap(), want);
}

/// Every fixture through `ndt check-fixture --device cuda` on the emulator, in f32 at the
/// fixture tolerances and in bf16 at the bf16 ones.
#[test]
fn every_fixture_passes_check_fixture_on_the_emulated_device() {
    let dir = root().join("fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "fixtures: {files:?}");
    for prec in ["f32", "bf16"] {
        let out = ndt_emu(prec)
            .args(["check-fixture", "--device", "cuda", "--precision", prec])
            .args(&files)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{prec}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let heads: Vec<&str> = stdout.lines().filter(|l| l.starts_with('/')).collect();
        assert_eq!(heads.len(), files.len(), "{stdout}");
        for h in heads {
            assert!(
                h.contains("cuda:kernel emulator (CPU)") && h.ends_with("PASS"),
                "{h}"
            );
        }
    }
}

const MISSING_BARRIER: KernelFile = KernelFile {
    name: "emu_test_missing_barrier.cu",
    text: r#"extern "C" __global__ void k(float* out, const float* in) {
    __shared__ float s[64];
    s[threadIdx.x] = in[threadIdx.x];
    out[threadIdx.x] = s[63 - threadIdx.x];  // a barrier belongs before this read
}
"#,
    entries: &["k"],
};

#[test]
fn a_missing_barrier_shows_as_results_that_depend_on_the_thread_order() {
    use ndt::cuda::emu::Order;
    let reversed = |order: Order, file: &KernelFile, seed: f32| -> Vec<f32> {
        let g = Gpu::emulated(order);
        let input: Vec<f32> = (0..64).map(|i| seed + i as f32).collect();
        let inp = g.upload_new(&input).unwrap();
        let out = g.alloc::<f32>(64).unwrap();
        let e = run(
            &g,
            file,
            cfg(1, 64),
            &Args::new().ptr(out.dev()).ptr(inp.dev()),
        );
        assert_eq!(e, "");
        g.download(out.dev()).unwrap()
    };
    let want: Vec<f32> = (0..64).map(|i| 2000.0 + (63 - i) as f32).collect();
    let fwd = reversed(Order::FirstToLast, &MISSING_BARRIER, 1000.0);
    let rev = reversed(Order::LastToFirst, &MISSING_BARRIER, 2000.0);
    // Each order gets half of the block wrong (stale shared memory), differently.
    assert_ne!(
        fwd.iter().map(|v| v - 1000.0).collect::<Vec<_>>(),
        rev.iter().map(|v| v - 2000.0).collect::<Vec<_>>()
    );
    assert_ne!(rev, want);
    // With the barrier both orders give the reversal.
    for (order, seed) in [(Order::FirstToLast, 2000.0), (Order::LastToFirst, 2000.0)] {
        let g = Gpu::emulated(order);
        let input: Vec<f32> = (0..128).map(|i| seed + (i % 64) as f32).collect();
        let inp = g.upload_new(&input).unwrap();
        let out = g.alloc::<f32>(128 + 4).unwrap();
        let e = run(
            &g,
            &GOOD,
            cfg(1, 64),
            &Args::new().ptr(out.dev()).ptr(inp.dev()),
        );
        assert_eq!(e, "");
        assert_eq!(
            &g.download(out.dev()).unwrap()[..64],
            &want[..],
            "{order:?}"
        );
    }
}

/// `ndt train --device cuda` on the emulated device, f32, against the same training on the CPU:
/// the trainer, batches, graph-captured steps, validation on the device and checkpoints of the
/// CUDA path, end to end; per-epoch losses compared by tools/compare_runs.py.
#[test]
fn training_on_the_emulated_device_tracks_the_cpu() {
    let tmp = TempDir::new("emu-track");
    let data = tmp.join("data");
    let synth = "synth --preset rs --sessions 2 --animals 1 --trials 24 --neurons 30 --bins 30 \
                 --onset-bin 10 --seed 3 --out";
    let mut args: Vec<String> = synth.split_whitespace().map(String::from).collect();
    args.push(data.display().to_string());
    ndt_ok(&args);
    let train = |device: &str, precision: &str, out: &str| {
        let o = ndt_emu(precision)
            .arg("train")
            .arg(&data)
            .args([
                "--config",
                "small",
                "--epochs",
                "3",
                "--batch-size",
                "8",
                "--device",
                device,
            ])
            .arg("--out")
            .arg(tmp.join(out))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "train on {device}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout)
    };
    train("cpu", "f32", "cpu");
    // f32 to the tolerance of tools/gpu-validate.sh's track step; bf16 (tensor-core GEMMs, the
    // float4 and ldmatrix kernels) to 2e-3, about 30x what these 18 steps show (7e-5).
    for (precision, tol) in [("f32", "1e-3"), ("bf16", "2e-3")] {
        let run = format!("emu-{precision}");
        let log = train("cuda", precision, &run);
        assert!(log.contains("kernel emulator"), "{log}");
        let cmp = std::process::Command::new(python())
            .arg(root().join("tools/compare_runs.py"))
            .arg(tmp.join("cpu"))
            .arg(tmp.join(&run))
            .args(["--tol", tol])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&cmp.stdout);
        assert!(
            cmp.status.success(),
            "{precision}: {out}{}",
            String::from_utf8_lossy(&cmp.stderr)
        );
        let epochs = out
            .lines()
            .filter(|l| {
                l.strip_prefix("| ")
                    .is_some_and(|r| r.starts_with(char::is_numeric))
            })
            .count();
        assert_eq!(epochs, 3, "{out}");
    }

    // Evaluation of the same checkpoint on both devices: every metric agrees.
    let eval = |device: &str| -> serde_json::Value {
        let o = ndt_emu("f32")
            .arg("eval")
            .arg(tmp.join("cpu").join("last.safetensors"))
            .arg(&data)
            .args(["--session", "syn-0000", "--device", device, "--json"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "eval on {device}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["metrics"].clone()
    };
    let (cpu, emu) = (eval("cpu"), eval("cuda"));
    let (cpu, emu) = (cpu.as_object().unwrap(), emu.as_object().unwrap());
    assert!(cpu.len() >= 8, "{cpu:?}");
    assert_eq!(
        cpu.keys().collect::<Vec<_>>(),
        emu.keys().collect::<Vec<_>>()
    );
    for (k, a) in cpu {
        let (a, b) = (a.as_f64().unwrap(), emu[k].as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1e-3),
            "{k}: CPU {a}, emulated GPU {b}"
        );
    }
}

#[test]
fn a_bad_emulator_setting_is_a_usage_error() {
    let fx = root().join("fixtures/forward_one_bin.safetensors");
    for (var, value, says) in [
        ("NDT_CUDA_EMU", "revers", "NDT_CUDA_EMU=revers: expected 1"),
        (
            "NDT_CUDA_EMU_THREADS",
            "0",
            "NDT_CUDA_EMU_THREADS=0: expected a number",
        ),
        (
            "NDT_CUDA_EMU_THREADS",
            "many",
            "NDT_CUDA_EMU_THREADS=many: expected a number",
        ),
    ] {
        let o = ndt_emu("f32")
            .env(var, value)
            .args(["check-fixture", "--device", "cuda"])
            .arg(&fx)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{var}={value}: {err}");
        assert!(err.contains(says), "{var}={value}: {err}");
    }
}

const SHARED_OVERFLOW: KernelFile = KernelFile {
    name: "emu_test_shared_overflow.cu",
    text: r#"extern "C" __global__ void k(float* out) {
    __shared__ float s[32];
    s[threadIdx.x] = (float)threadIdx.x;  // 64 threads, 32 slots
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x & 31];
}
"#,
    entries: &["k"],
};

#[test]
fn an_index_past_a_shared_array_is_caught() {
    let g = gpu();
    let out = g.alloc::<f32>(64).unwrap();
    let e = run(
        &g,
        &SHARED_OVERFLOW,
        cfg(1, 64),
        &Args::new().ptr(out.dev()),
    );
    assert!(
        e.contains("index out of bounds of a fixed-size array"),
        "{e}"
    );
    assert!(e.contains("thread (32,0,0)"), "{e}");
    let e = run(
        &g,
        &SHARED_OVERFLOW,
        cfg(1, 32),
        &Args::new().ptr(out.dev()),
    );
    assert_eq!(e, "");
}

/// `ndt bench --memory-only` allocates a training step's memory without running it: the
/// workspace grows with the batch, and only the workspace does (the parameters and optimizer
/// state do not depend on it); the CPU has no device memory to report.
#[test]
fn bench_memory_only_allocates_a_step_without_running_it() {
    let measure = |b: usize| -> (u64, u64) {
        let out = ndt_emu("bf16")
            .args([
                "bench",
                "--device",
                "cuda",
                "--config",
                "paper",
                "--memory-only",
            ])
            .args(["--json", "--batch-size", &b.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        let get = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        // The per-buffer list adds up to the workspace and names the saved activations.
        let per = v["workspace_buffers"].as_object().unwrap();
        let sum: u64 = per.values().map(|b| b.as_u64().unwrap()).sum();
        assert_eq!(sum, get("workspace_bytes"), "{v}");
        assert!(
            ["qkv", "atty", "xh1", "fch", "att"]
                .iter()
                .all(|k| per.contains_key(*k))
        );
        (get("peak_memory_bytes"), get("workspace_bytes"))
    };
    let (p16, w16) = measure(16);
    let (p32, w32) = measure(32);
    assert!(w16 > 0 && p16 > w16, "B16: peak {p16}, workspace {w16}");
    // The attention probabilities alone: 5 blocks x B x 8 heads x 152 x 152 f32.
    assert!(w16 > 5 * 16 * 8 * 152 * 152 * 4, "B16 workspace {w16}");
    assert!(w32 > w16, "workspace B32 {w32} <= B16 {w16}");
    assert_eq!(
        p32 - p16,
        w32 - w16,
        "only the workspace depends on the batch"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndt"))
        .args(["bench", "--device", "cpu", "--memory-only"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--memory-only") && err.contains("--device cuda"),
        "{err}"
    );
}

/// `ndt bench --profile` launches training steps operation by operation and times each (on the
/// emulator: CPU time): the CSV lists as many operations as the report counts, every row
/// whole, the products with their FLOPs; the per-kernel table is printed. Without a GPU in use
/// it is a usage error and writes nothing.
#[test]
fn bench_profile_times_every_operation_of_a_step() {
    let tmp = TempDir::new("emu-profile");
    let csv = tmp.join("profile.csv");
    let out = ndt_emu("bf16")
        .args(["bench", "--device", "cuda", "--config", "small"])
        .args(["--batch-size", "2", "--bins", "12", "--neurons", "10"])
        .args(["--steps", "1", "--warmup", "1", "--evals", "1", "--profile"])
        .arg(&csv)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("profile:"))
        .unwrap_or_else(|| panic!("no profile line in {text}"));
    assert!(line.contains("kernel emulator"), "{line}");
    let count: usize = line
        .split(" operations")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no operation count in {line}"));
    let rows = std::fs::read_to_string(&csv).unwrap();
    let mut lines = rows.lines();
    assert_eq!(
        lines.next(),
        Some("index,file,kernel,grid,block,note,flops,us")
    );
    let body: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(body.len(), count, "{rows}");
    for (i, r) in body.iter().enumerate() {
        assert_eq!(r.len(), 8, "row {i}: {r:?}");
        assert_eq!(r[0], i.to_string());
        let us: f64 = r[7].parse().unwrap();
        assert!(us.is_finite() && us >= 0.0, "row {i}: {r:?}");
    }
    // 3 blocks: per block at least the qkv, out, fc1 and fc2 products forward and 2 each
    // backward, each with its FLOPs (2·M·N·K·batch) counted.
    let products: Vec<_> = body.iter().filter(|r| r[1] == "gemm.cu").collect();
    assert!(products.len() >= 3 * 12, "{} products", products.len());
    for r in &products {
        let (dims, z) = r[5].split_once(" z").unwrap();
        let mnk: Vec<f64> = dims.split('x').map(|v| v.parse().unwrap()).collect();
        let want = 2.0 * mnk.iter().product::<f64>() * z.parse::<f64>().unwrap();
        assert_eq!(r[6].parse::<f64>().unwrap(), want, "{r:?}");
    }
    assert!(
        text.contains("| kernel | file | calls | ms/step | share |"),
        "{text}"
    );
    assert!(text.contains("| product (M x N x K, batch) |"), "{text}");

    let none = tmp.join("cpu.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndt"))
        .args(["bench", "--device", "cpu", "--profile"])
        .arg(&none)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--profile"), "{err}");
    assert!(!none.exists());
}
