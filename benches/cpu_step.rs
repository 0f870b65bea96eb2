//! One CPU training step (forward with dropout, backward, clip, AdamW) at two sizes:
//! - `demo`: D 128, 2 blocks, 4 heads, FFN 256, D_tok 128 (embed hidden 256), T 150, N 64, B 16;
//! - `paper`: the paper's Table 2 model, D 512, 5 blocks, 8 heads, FFN 1024, D_tok 668
//!   (embed hidden 1336), T 150, N 1000, B 16.
//!
//! Both are the configs of the JAX reference's `tools/reference/bench_step.py`, which times the
//! same step under `jax.jit`; `bench/cpu_vs_jax.sh` runs the two side by side.
//!
//! Run: `cargo bench --bench cpu_step` (threads: all cores; `NDT_THREADS=n` to choose).
//! Throughput is reported in tokens (B·T) per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndt::backend::{Backend, StepHyper};
use ndt::batch::Batch;
use ndt::cpu::CpuBackend;
use ndt::model::init::init_params;
use ndt::model::{ModelConfig, ParamTable};
use ndt::scheme::Scheme;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Duration;

fn demo_config() -> ModelConfig {
    ModelConfig {
        d_model: 128,
        d_tok: 128,
        d_embed_hidden: 256,
        n_layers: 2,
        n_heads: 4,
        d_ff: 256,
        n_bins: 150,
        ln_eps: 1e-5,
        sessions: BTreeMap::from([("s".to_string(), 64)]),
    }
}

fn paper_config() -> ModelConfig {
    ModelConfig::paper(150, BTreeMap::from([("s".to_string(), 1000)]))
}

fn batch(cfg: &ModelConfig, b: usize) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (t, n) = (cfg.n_bins, cfg.sessions["s"]);
    let len = b * t * n;
    // ~ a few Hz in 20 ms bins; forward-prediction masking of 30 % of the bins
    let counts: Vec<f32> = (0..len)
        .map(|_| (rng.random::<f32>() < 0.08) as u8 as f32)
        .collect();
    let mut mask = vec![0u8; len];
    for bt in 0..b * t {
        if rng.random::<f32>() < 0.3 {
            mask[bt * n..(bt + 1) * n].fill(1);
        }
    }
    Batch {
        session: 0,
        session_id: "s".into(),
        trials: (0..b as u32).collect(),
        b,
        t,
        n,
        counts,
        target: mask.clone(),
        mask,
        scheme: Scheme::Forward,
    }
}

fn bench_step(c: &mut Criterion, name: &str, cfg: ModelConfig, samples: usize, secs: u64) {
    let threads = std::env::var("NDT_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let b = 16;
    let table = ParamTable::new(&cfg);
    let mut be = CpuBackend::new(cfg.clone(), threads);
    be.set_params(&init_params(&cfg, &table, 0)).unwrap();
    let batch = batch(&cfg, b);
    let mut step = 0u64;
    let mut g = c.benchmark_group("cpu_step");
    g.sample_size(samples)
        .measurement_time(Duration::from_secs(secs))
        .throughput(Throughput::Elements((b * cfg.n_bins) as u64));
    g.bench_function(format!("{name}/threads={}", be.threads()), |bench| {
        bench.iter(|| {
            step += 1;
            let hp = StepHyper {
                lr: 1e-4,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
                clip: 1.0,
                dropout: 0.2,
                step,
                seed: step,
            };
            be.train_step(&batch, &hp).unwrap()
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_step(c, "demo", demo_config(), 20, 10);
    bench_step(c, "paper", paper_config(), 10, 30);
}

criterion_group!(cpu_step, benches);
criterion_main!(cpu_step);
