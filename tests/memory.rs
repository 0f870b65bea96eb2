//! Resident memory stays flat while batching a dataset much larger than the memory budget
//! (SPEC §1: "resident memory must not grow with dataset size").
//!
//! Writes a 1.53 GB dataset (6 sessions x 1700 trials x 150 bins x 1000 neurons), then iterates
//! every batch of its train, val and test splits twice, with masks. The measure is `RssAnon`
//! from `/proc/self/status`: the process's anonymous (heap and stack) resident memory. The
//! memory-mapped counts show up in `RssFile` instead; those are clean file pages the kernel
//! reclaims under pressure, so they are reported but not bounded here.
//!
//! The baseline is taken before the dataset is opened, and the dataset is written by a child
//! process, so that neither the writer's freed buffers (which the allocator keeps and would
//! reuse) nor anything `Dataset::open` copies into memory can hide inside the baseline.

use ndt::batch::{Batch, BatchIter, BatchOpts};
use ndt::scheme::Scheme;
use ndt::store::{Dataset, DatasetWriter, NewSession, SplitName};
use std::path::PathBuf;

const SESSIONS: usize = 6;
const TRIALS: usize = 1700;
const T: usize = 150;
const N: usize = 1000;
/// Allowed growth of anonymous resident memory from before the dataset is opened to the end.
const BUDGET_BYTES: u64 = 100 << 20;

/// A field of `/proc/self/status` in bytes (the file gives kB).
fn status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"));
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("kB value");
    kb * 1024
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn write_dataset(dir: &PathBuf) {
    let _ = std::fs::remove_dir_all(dir);
    let w = DatasetWriter::open(dir, 42).unwrap();
    let regions = ["VISp", "CA1", "LP", "PO", "MOs"];
    for s in 0..SESSIONS {
        let session = NewSession {
            id: format!("big-{s}"),
            subject: "m".into(),
            lab: "lab".into(),
            animal: None,
            n_trials: TRIALS,
            n_bins: T,
            n_neurons: N,
            bin_size_s: 0.02,
            onset_bin: Some(25),
            regions: (0..N).map(|j| regions[j % 5].to_string()).collect(),
            choice: vec![1; TRIALS],
            behaviour: Vec::new(),
            provenance: serde_json::Value::Null,
        };
        w.add_session(session, &mut |trial, out| {
            // Sparse small counts, different per trial.
            for (i, c) in out.iter_mut().enumerate() {
                let h = ndt::rng::bits(s as u64, (trial * T * N + i) as u64);
                *c = (h % 16).saturating_sub(13) as u8;
            }
            Ok(())
        })
        .unwrap();
    }
    w.commit().unwrap();
}

/// Writes the dataset in a child process (this test binary again, with
/// `NDT_TEST_MEMORY_WRITE` naming the folder), leaving this process's heap untouched.
#[test]
fn batching_a_large_dataset_keeps_anonymous_memory_flat() {
    if let Some(dir) = std::env::var_os("NDT_TEST_MEMORY_WRITE") {
        write_dataset(&PathBuf::from(dir));
        println!("child wrote the dataset");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("memory-dataset");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "batching_a_large_dataset_keeps_anonymous_memory_flat",
            "--nocapture",
        ])
        .env("NDT_TEST_MEMORY_WRITE", &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("child wrote"),
        "writing the dataset: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let baseline = status_bytes("RssAnon:");
    let ds = Dataset::open(&dir).unwrap();
    let bytes: u64 = (0..ds.n_sessions())
        .map(|s| {
            std::fs::metadata(ds.session_dir(s).join("spikes.npy"))
                .unwrap()
                .len()
        })
        .sum();
    assert!(bytes > 14 * BUDGET_BYTES, "dataset is {} MiB", mib(bytes));

    let sessions: Vec<usize> = (0..ds.n_sessions()).collect();
    let mut iters: Vec<BatchIter> = [SplitName::Train, SplitName::Val, SplitName::Test]
        .into_iter()
        .map(|split| {
            let opts = BatchOpts::train(16, &Scheme::ALL, 0.3, 1);
            BatchIter::new(&ds, &sessions, split, opts).unwrap()
        })
        .collect();
    let mut batch = Batch::empty();
    let mut peak = status_bytes("RssAnon:");
    let (mut peak_file, mut batches, mut trials) = (0, 0, 0);
    let mut checksum = 0f64;
    for pass in 0..2 {
        for it in iters.iter_mut() {
            it.start_epoch(pass);
            while it.next_batch(&mut batch) {
                batches += 1;
                trials += batch.b;
                // Touch the data so that nothing is optimised away.
                checksum += batch.counts[batch.counts.len() / 2] as f64;
                checksum += batch.target.iter().map(|&x| x as u64).sum::<u64>() as f64;
                if batches % 10 == 0 {
                    peak = peak.max(status_bytes("RssAnon:"));
                    peak_file = peak_file.max(status_bytes("RssFile:"));
                }
            }
        }
    }
    assert_eq!(trials, 2 * SESSIONS * TRIALS, "every trial twice");
    let end = status_bytes("RssAnon:");
    peak = peak.max(end);
    println!(
        "dataset {:.0} MiB, {batches} batches; RssAnon before opening it {:.1} MiB, peak {:.1} MiB \
         (+{:.1} MiB); peak RssFile {:.0} MiB; VmHWM {:.0} MiB; checksum {checksum}",
        mib(bytes),
        mib(baseline),
        mib(peak),
        mib(peak - baseline),
        mib(peak_file),
        mib(status_bytes("VmHWM:")),
    );
    assert!(
        peak - baseline < BUDGET_BYTES,
        "anonymous memory grew by {:.1} MiB",
        mib(peak - baseline)
    );
    drop(iters);
    drop(ds);
    std::fs::remove_dir_all(&dir).unwrap();
}
