//! The PyTorch NDT of the speed comparison (bench/torch_ndt.py) computes the model of SPEC §2:
//! it reproduces every reference fixture, its loss check rejects a wrong loss, and
//! bench/compare.sh builds its table (dry run on the CPU, a stand-in `ndt` with known numbers).
//!
//! PyTorch is a large download, so these run on request: `tools/setup.sh --reference`, then
//! `cargo test --test torch_reference -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's Python with PyTorch; fails with the set-up instruction when it is missing.
fn python() -> PathBuf {
    let py = std::env::var_os("NDT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    assert!(
        py.exists(),
        "no Python at {} (set NDT_PYTHON or run tools/setup.sh)",
        py.display()
    );
    let ok = Command::new(&py)
        .args(["-c", "import torch"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} cannot import torch: run tools/setup.sh (or pip install torch into it)",
        py.display()
    );
    py
}

fn run(cmd: &mut Command) -> (Output, String) {
    let out = cmd.output().expect("the command starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures"))
        .expect("fixtures/ exists")
        .map(|e| e.expect("readable fixtures/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    v.sort();
    v
}

fn torch_ndt(py: &Path) -> Command {
    let mut c = Command::new(py);
    c.current_dir(root()).arg("bench/torch_ndt.py");
    c
}

#[test]
#[ignore = "needs PyTorch (6 GB): tools/setup.sh --reference, then cargo test --test torch_reference -- --ignored"]
fn torch_model_reproduces_every_fixture() {
    let py = python();
    let files = fixtures();
    assert!(!files.is_empty(), "no fixtures in fixtures/");
    let (out, text) = run(torch_ndt(&py).arg("--fixture").args(&files));
    assert!(out.status.success(), "{text}");
    // One section per fixture, each ending in "ok", with a row per parameter gradient.
    let sections: Vec<&str> = text.split("\nfixture ").collect();
    assert_eq!(sections.len(), files.len(), "{text}");
    for (f, sec) in files.iter().zip(&sections) {
        assert!(
            sec.contains(&*f.to_string_lossy()),
            "{}:\n{sec}",
            f.display()
        );
        assert!(sec.lines().any(|l| l == "ok"), "{}:\n{sec}", f.display());
        let grads = sec.lines().filter(|l| l.starts_with("grad.")).count();
        assert!(
            grads >= 20,
            "{}: only {grads} gradient rows:\n{sec}",
            f.display()
        );
    }
}

/// The fixture's expected loss, as torch_ndt.py prints it.
fn fixture_loss(py: &Path, f: &Path) -> f64 {
    let (out, text) = run(torch_ndt(py).arg("--fixture").arg(f));
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("loss: fixture "))
        .unwrap_or_else(|| panic!("no loss line:\n{text}"));
    line["loss: fixture ".len()..]
        .split(',')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("unparsable loss line: {line}"))
}

#[test]
#[ignore = "needs PyTorch (6 GB): tools/setup.sh --reference, then cargo test --test torch_reference -- --ignored"]
fn loss_check_accepts_the_fixture_loss_and_rejects_another() {
    let py = python();
    let f = fixtures()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("forward"))
        .expect("a forward-scheme fixture");
    let want = fixture_loss(&py, &f);
    let check = |loss: f64| {
        run(torch_ndt(&py)
            .args(["--device", "cpu", "--weights"])
            .arg(&f)
            .arg("--batch-file")
            .arg(&f)
            .arg("--check-loss")
            .arg(format!("{loss:.9e}")))
    };
    let (out, text) = check(want);
    assert!(out.status.success(), "{text}");
    let (out, text) = check(want * 1.001);
    assert!(!out.status.success(), "a 1e-3 loss error passed:\n{text}");
    assert!(text.contains("FAIL"), "{text}");
}

#[test]
#[ignore = "needs PyTorch (6 GB): tools/setup.sh --reference, then cargo test --test torch_reference -- --ignored"]
fn compare_dry_run_builds_the_table() {
    let py = python();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("torch_reference_compare");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    // A stand-in for `ndt bench --json` (docs/bench.md) that reports 2 ms/step and 3 MiB for any
    // batch.
    let stub = dir.join("ndt");
    std::fs::write(
        &stub,
        "#!/usr/bin/env bash\n\
         while [ $# -gt 0 ]; do case \"$1\" in --batch-size) B=$2; shift;; esac; shift; done\n\
         echo \"{\\\"batch_size\\\": $B, \\\"ms_per_step\\\": 2.0, \\\"peak_memory_bytes\\\": 3145728}\"\n",
    )
    .expect("write stub");
    let (out, text) = run(Command::new("chmod").arg("+x").arg(&stub));
    assert!(out.status.success(), "{text}");
    let base = dir.join("result");
    let (out, text) = run(Command::new(root().join("bench/compare.sh"))
        .current_dir(root())
        .arg("--dry-run")
        .arg("--ndt")
        .arg(&stub)
        .arg("--python")
        .arg(&py)
        .arg("--out")
        .arg(&base));
    assert!(out.status.success(), "{text}");
    let md = std::fs::read_to_string(base.with_extension("md")).expect("the .md is written");
    let json = std::fs::read_to_string(base.with_extension("json")).expect("the .json is written");
    for b in ["### B = 4 ", "### B = 8 "] {
        assert!(md.contains(b), "no section {b}:\n{md}");
    }
    let ndt_rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ndt |")).collect();
    assert_eq!(ndt_rows.len(), 2, "{md}");
    for (row, b) in ndt_rows.iter().zip([4.0, 8.0]) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2], "2.000", "{row}");
        // tokens/s = B * T (20 bins) / 2 ms.
        let tps: f64 = cells[3].replace(',', "").parse().expect("tokens/s");
        assert_eq!(tps, b * 20.0 / 2e-3, "{row}");
        assert_eq!(cells[4], "3", "{row}");
    }
    // Every PyTorch row has a speed-up equal to its ms/step over ndt's 2 ms.
    let torch_rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| torch ")).collect();
    assert_eq!(torch_rows.len(), 2, "{md}");
    for row in torch_rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let ms: f64 = cells[2].parse().expect("ms/step");
        let speed: f64 = cells[5].trim_end_matches('x').parse().expect("speed-up");
        assert!((speed - ms / 2.0).abs() < 0.006, "{row}");
    }
    assert!(json.contains("\"flops_per_step\""), "{json}");
}

/// `--saved-memory` counts what autograd keeps for backward: both precisions, bf16 autocast
/// keeping less than fp32, the [S, S] probabilities found (whole tensors of B·H·S·S f32 each,
/// at least one per block) and never more than the total.
#[test]
#[ignore = "needs PyTorch (6 GB): tools/setup.sh --reference, then cargo test --test torch_reference -- --ignored"]
fn saved_memory_counts_the_tensors_kept_for_backward() {
    let py = python();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("torch_reference_saved");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("saved.json");
    let (b, h, s, layers) = (3usize, 2usize, 12usize, 2usize);
    let (out, text) = run(torch_ndt(&py).args([
        "--saved-memory",
        "--device",
        "cpu",
        "--batch",
        &b.to_string(),
        "--d-model",
        "16",
        "--n-heads",
        &h.to_string(),
        "--d-ff",
        "32",
        "--d-tok",
        "8",
        "--n-layers",
        &layers.to_string(),
        "--n-bins",
        &(s - 2).to_string(),
        "--n-neurons",
        "12",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]));
    assert!(out.status.success(), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
            .expect("valid json");
    let modes = v["modes"].as_array().expect("modes");
    let get = |prec: &str, key: &str| -> u64 {
        let m = modes
            .iter()
            .find(|m| m["precision"] == prec)
            .unwrap_or_else(|| panic!("no {prec} in {v}"));
        m[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{prec} {key} in {v}"))
    };
    let one = (b * h * s * s * 4) as u64;
    for prec in ["fp32", "bf16"] {
        let (total, probs) = (
            get(prec, "saved_bytes"),
            get(prec, "saved_attention_probs_bytes"),
        );
        assert!(probs <= total, "{prec}: {v}");
        assert!(
            probs >= layers as u64 * one && probs % one == 0,
            "{prec}: {probs} vs {one}"
        );
    }
    assert!(
        get("bf16", "saved_bytes") < get("fp32", "saved_bytes"),
        "{v}"
    );
}
