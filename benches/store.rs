//! Store read throughput at the paper's batch shape (B = 16, T = 150, N = 1000): 16 random trials
//! of one session gathered from the memory map into a [B, T, N] f32 buffer (`Dataset::gather_f32`).
//! Beside it, the same gather from a Vec<u8> already in memory, so the cost of reading through
//! the map shows. Throughput is in batches/s ("elem/s" in criterion's output); the page cache is
//! warm after the first iterations, as it is during training.
//!
//! `cargo bench --bench store`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndt::store::{Dataset, DatasetWriter, NewSession};
use std::hint::black_box;
use std::path::PathBuf;

const B: usize = 16;
const T: usize = 150;
const N: usize = 1000;
const TRIALS: usize = 320;

/// One 48 MB session in a temp directory.
fn dataset() -> (PathBuf, Dataset) {
    let dir = std::env::temp_dir().join(format!("ndt-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let w = DatasetWriter::open(&dir, 42).expect("open writer");
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
        regions: vec!["VISp".into(); N],
        choice: vec![1; TRIALS],
        behaviour: Vec::new(),
        provenance: serde_json::Value::Null,
    };
    w.add_session(session, &mut |t, out| {
        for (k, o) in out.iter_mut().enumerate() {
            // Sparse small counts, like spikes in 20 ms bins.
            let h = ndt::rng::bits(7, (t * T * N + k) as u64);
            *o = if h.is_multiple_of(10) {
                (h >> 8) as u8 % 4
            } else {
                0
            };
        }
        Ok(())
    })
    .expect("write session");
    w.commit().expect("commit");
    let ds = Dataset::open(&dir).expect("open dataset");
    (dir, ds)
}

fn bench_gather(c: &mut Criterion) {
    let (dir, ds) = dataset();
    let mut g = c.benchmark_group("store_gather");
    g.throughput(Throughput::Elements(1));
    let mut out = vec![0f32; B * T * N];
    // Random trials, a different batch each iteration.
    let batches: Vec<Vec<u32>> = (0..64)
        .map(|k| {
            (0..B)
                .map(|i| ndt::rng::below(11, (k * B + i) as u64, TRIALS as u32))
                .collect()
        })
        .collect();
    let mut k = 0;
    g.bench_function("mmap_b16_t150_n1000", |b| {
        b.iter(|| {
            ds.gather_f32(0, &batches[k % batches.len()], &mut out);
            k += 1;
            black_box(&out);
        })
    });
    let in_memory: Vec<u8> = ds.counts(0).to_vec();
    g.bench_function("vec_b16_t150_n1000", |b| {
        b.iter(|| {
            for (dst, &t) in out.chunks_exact_mut(T * N).zip(&batches[k % batches.len()]) {
                let src = &in_memory[t as usize * T * N..(t as usize + 1) * T * N];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = s as f32;
                }
            }
            k += 1;
            black_box(&out);
        })
    });
    g.finish();
    drop(ds);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_gather);
criterion_main!(benches);
