//! `ndt synth` write throughput, in bytes of counts per second (criterion's "B/s").
//!
//! - `generate`: the whole command (plan, parallel generation, store writes, manifest) for a
//!   dataset of 4 sessions x 200 trials x 150 bins x 1000 neurons (120 MB of counts).
//! - `fill_trial`: generating one trial's counts (150 x 1000) in memory, one thread: the cost of
//!   the model alone.
//! - `store_only`: the same dataset written with a trivial fill, beside it: the cost of the store
//!   and the disk alone.
//!
//! `cargo bench --bench synth`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndt::store::{DatasetWriter, NewSession};
use ndt::synth::{Config, Plan, Preset, generate};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SESSIONS: usize = 4;
const TRIALS: usize = 200;
const NEURONS: usize = 1000;
const BINS: usize = 150;

fn config() -> Config {
    let mut c = Config::preset(Preset::Rs);
    c.sessions = SESSIONS;
    c.animals = 2;
    c.trials = (TRIALS, TRIALS);
    c.neurons = (NEURONS, NEURONS);
    c.bins = BINS;
    c
}

fn bytes() -> u64 {
    (SESSIONS * TRIALS * NEURONS * BINS) as u64
}

fn out_dir(tag: &str, i: u64) -> PathBuf {
    std::env::temp_dir().join(format!("ndt-bench-synth-{}-{tag}-{i}", std::process::id()))
}

fn bench_synth(c: &mut Criterion) {
    let mut g = c.benchmark_group("synth_rs_4x200x150x1000");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes(bytes()));

    let cfg = config();
    g.bench_function("generate", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let dir = out_dir("gen", i);
                let _ = std::fs::remove_dir_all(&dir);
                let t = Instant::now();
                let s = generate(&cfg, &dir, 0).expect("generate");
                total += t.elapsed();
                assert_eq!(s.count_bytes, bytes());
                std::fs::remove_dir_all(&dir).expect("cleanup");
            }
            total
        })
    });

    g.bench_function("store_only", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let dir = out_dir("store", i);
                let _ = std::fs::remove_dir_all(&dir);
                let t = Instant::now();
                let w = DatasetWriter::open(&dir, 42).expect("open writer");
                for s in 0..SESSIONS {
                    let ns = NewSession {
                        id: format!("s{s}"),
                        subject: "m".into(),
                        lab: "lab".into(),
                        animal: None,
                        n_trials: TRIALS,
                        n_bins: BINS,
                        n_neurons: NEURONS,
                        bin_size_s: 0.02,
                        onset_bin: Some(25),
                        regions: vec!["CA1".into(); NEURONS],
                        choice: vec![1; TRIALS],
                        behaviour: Vec::new(),
                        provenance: serde_json::Value::Null,
                    };
                    w.add_session(ns, &mut |t, out| {
                        out[t % out.len()] = 1;
                        Ok(())
                    })
                    .expect("write");
                }
                w.commit().expect("commit");
                total += t.elapsed();
                std::fs::remove_dir_all(&dir).expect("cleanup");
            }
            total
        })
    });
    g.finish();

    let mut g = c.benchmark_group("synth_trial_150x1000");
    g.throughput(Throughput::Bytes((NEURONS * BINS) as u64));
    let plan = Plan::new(&cfg).expect("plan");
    let model = plan.session_model(&plan.sessions[0]).expect("model");
    let mut buf = vec![0u8; BINS * model.n_neurons()];
    let mut scratch = ndt::synth::model::Scratch::default();
    let mut trial = 0;
    g.bench_function("fill_trial", |b| {
        b.iter(|| {
            model
                .fill_trial(trial % TRIALS, &mut buf, &mut scratch)
                .expect("fill");
            trial += 1;
            black_box(&buf);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_synth);
criterion_main!(benches);
