//! Batch assembly throughput at the paper's shape (B = 16, T = 150, N = 1000): counts gathered
//! from the memory-mapped store plus masks, per scheme and as the training loop sees it (all
//! schemes, shuffled). Throughput is in batches/s ("elem/s" in criterion's output). Beside it:
//! the gather alone and the masks alone, so the cost of each part shows.
//!
//! `cargo bench --bench batch`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndt::batch::{Batch, BatchIter, BatchOpts, Masking, fill_batch, session_regions};
use ndt::mask::make_masks;
use ndt::scheme::Scheme;
use ndt::store::{Dataset, DatasetWriter, NewSession, SplitName};
use std::hint::black_box;
use std::path::PathBuf;

const B: usize = 16;
const T: usize = 150;
const N: usize = 1000;
const TRIALS: usize = 320;

/// One 48 MB session (5 regions) in a temp directory, written once per bench run.
fn dataset() -> (PathBuf, Dataset) {
    let dir = std::env::temp_dir().join(format!("ndt-bench-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let w = DatasetWriter::open(&dir, 42).expect("open writer");
    let regions = ["VISp", "CA1", "LP", "PO", "MOs"];
    let session = NewSession {
        id: "bench".into(),
        subject: "m".into(),
        lab: "lab".into(),
        animal: None,
        n_trials: TRIALS,
        n_bins: T,
        n_neurons: N,
        bin_size_s: 0.02,
        onset_bin: Some(25),
        regions: (0..N).map(|j| regions[j * 5 / N].to_string()).collect(),
        choice: vec![1; TRIALS],
        behaviour: Vec::new(),
        provenance: serde_json::Value::Null,
    };
    w.add_session(session, &mut |trial, out| {
        for (i, c) in out.iter_mut().enumerate() {
            *c = (ndt::rng::bits(trial as u64, i as u64) % 16).saturating_sub(13) as u8;
        }
        Ok(())
    })
    .expect("write session");
    w.commit().expect("commit");
    let ds = Dataset::open(&dir).expect("open dataset");
    (dir, ds)
}

fn bench_batch(c: &mut Criterion) {
    let (dir, ds) = dataset();
    let mut g = c.benchmark_group("batch_b16_t150_n1000");
    g.throughput(Throughput::Elements(1));

    // The training loop: all schemes, shuffled, next_batch into a reused Batch.
    let opts = BatchOpts::train(B, &Scheme::ALL, 0.3, 1);
    let mut it = BatchIter::new(&ds, &[0], SplitName::Train, opts).expect("iterator");
    let mut batch = Batch::empty();
    let mut epoch = 0;
    g.bench_function("iter_all_schemes", |bch| {
        bch.iter(|| {
            if !it.next_batch(&mut batch) {
                epoch += 1;
                it.start_epoch(epoch);
                it.next_batch(&mut batch);
            }
            black_box(&batch);
        })
    });

    // One scheme at a time, same trials.
    let trials: Vec<u32> = (0..B as u32).map(|i| i * 7).collect();
    for scheme in Scheme::ALL {
        let mut key = 0u64;
        g.bench_function(format!("fill_{}", scheme.name()), |bch| {
            bch.iter(|| {
                key += 1;
                let m = Masking::Draw {
                    scheme,
                    ratio: 0.3,
                    key,
                };
                fill_batch(&ds, 0, &trials, &m, &mut batch).expect("fill");
                black_box(&batch);
            })
        });
    }

    // The parts: gather alone, masks alone (co-smooth).
    let mut counts = vec![0f32; B * T * N];
    g.bench_function("gather_only", |bch| {
        bch.iter(|| {
            ds.gather_f32(0, &trials, &mut counts);
            black_box(&counts);
        })
    });
    let regions = session_regions(ds.session(0));
    let (mut mask, mut target) = (vec![0u8; B * T * N], vec![0u8; B * T * N]);
    let mut key = 0u64;
    g.bench_function("masks_only_co-smooth", |bch| {
        bch.iter(|| {
            key += 1;
            make_masks(
                Scheme::CoSmooth,
                B,
                T,
                N,
                &regions,
                0.3,
                key,
                &mut mask,
                &mut target,
            );
            black_box(&mask);
        })
    });
    g.finish();
    drop(it);
    drop(ds);
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench_batch);
criterion_main!(benches);
