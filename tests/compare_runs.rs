//! `tools/compare_runs.py`, which tools/gpu-validate.sh uses to decide whether a GPU training run
//! tracks the CPU run: it passes within the tolerance and fails past it or on different epochs.

mod common;

use common::{TempDir, python, root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A run folder whose log.jsonl has one line per (train, val) loss pair.
fn run(dir: &Path, name: &str, losses: &[(f64, f64)]) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let lines: Vec<String> = losses
        .iter()
        .enumerate()
        .map(|(i, (t, v))| {
            format!(
                "{{\"epoch\":{},\"step\":{},\"train_loss\":{t},\"val_loss\":{v}}}",
                i + 1,
                27 * (i + 1)
            )
        })
        .collect();
    std::fs::write(d.join("log.jsonl"), lines.join("\n") + "\n").unwrap();
    d
}

fn compare(a: &Path, b: &Path, tol: &str) -> (i32, String) {
    let out = Command::new(python())
        .arg(root().join("tools/compare_runs.py"))
        .args([a.as_os_str(), b.as_os_str()])
        .args(["--tol", tol])
        .output()
        .expect("python3 runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn within_tolerance_passes_beyond_fails() {
    let tmp = TempDir::new("compare-runs");
    let dir = tmp.path();
    let a = run(dir, "a", &[(1.0, 0.9), (0.8, 0.7)]);
    // Relative differences 5e-4 (train, epoch 2) and 0 elsewhere.
    let b = run(dir, "b", &[(1.0, 0.9), (0.8004, 0.7)]);
    let (rc, out) = compare(&a, &b, "1e-3");
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("4.998e-04") || out.contains("5.00e-04"),
        "{out}"
    );
    let (rc, out) = compare(&a, &b, "1e-4");
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("TOO LARGE"), "{out}");
}

#[test]
fn different_epochs_or_a_nan_loss_fail() {
    let tmp = TempDir::new("compare-runs");
    let dir = tmp.path();
    let a = run(dir, "a", &[(1.0, 0.9), (0.8, 0.7)]);
    let short = run(dir, "short", &[(1.0, 0.9)]);
    assert_eq!(compare(&a, &short, "1").0, 1);
    let nan = dir.join("nan");
    std::fs::create_dir_all(&nan).unwrap();
    std::fs::write(
        nan.join("log.jsonl"),
        "{\"epoch\":1,\"train_loss\":NaN,\"val_loss\":0.9}\n{\"epoch\":2,\"train_loss\":0.8,\"val_loss\":0.7}\n",
    )
    .unwrap();
    assert_eq!(compare(&a, &nan, "1").0, 1);
}
