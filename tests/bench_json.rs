//! `ndt bench`'s JSON object against its schema in docs/bench.md: per mode exactly the
//! documented keys, each once in the raw text, and the medians the text prints equal to the
//! JSON's (one run writes both: `--json FILE`). A tiny model on the CPU, a few steps; the
//! `--memory-only` and `--profile` cases on the kernel emulator.

mod common;

use common::TempDir;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Keys of every mode (docs/bench.md, "Every mode").
const EVERY: &[&str] = &[
    "device",
    "config",
    "batch_size",
    "bins",
    "neurons",
    "scheme",
    "peak_memory_bytes",
    "peak_memory_kind",
];
/// Keys of the timing modes, on the CPU (no `workspace_bytes`).
const TIMED: &[&str] = &[
    "mode",
    "steps",
    "evals",
    "ms_per_step",
    "ms_per_step_min",
    "tokens_per_s",
    "eval_ms_per_batch",
    "eval_ms_per_batch_min",
    "eval_tokens_per_s",
    "last_loss",
];
/// Keys `--mode frozen-core` adds.
const FROZEN_CORE: &[&str] = &[
    "frozen_core_ms_per_step",
    "frozen_core_ms_per_step_min",
    "frozen_core_tokens_per_s",
    "frozen_core_speedup",
    "frozen_core_speedup_pairs",
    "frozen_core_trainable_share",
];
/// Keys `--profile` adds.
const PROFILE: &[&str] = &[
    "profile_ms_per_step",
    "profile_operations",
    "profile_products",
    "profile_flops",
    "profile_kernels",
    "profile_csv",
];
/// Keys `--profile --mode frozen-core` adds beside `PROFILE`.
const PROFILE_FULL: &[&str] = &[
    "profile_full_ms_per_step",
    "profile_full_operations",
    "profile_full_products",
    "profile_full_flops",
    "profile_full_csv",
    "profile_operations_saved",
];
/// Keys `--memory-only` adds.
const MEMORY_ONLY: &[&str] = &["workspace_bytes", "workspace_buffers"];

/// A model of a few thousand parameters (D 16, 1 block).
fn tiny_config(dir: &Path) -> String {
    let p = dir.join("tiny.toml");
    std::fs::write(
        &p,
        "preset = \"small\"\n[model]\nd_model = 16\nn_layers = 1\nn_heads = 2\nd_ff = 32\n\
         d_tok = 12\nd_embed_hidden = 24\n",
    )
    .unwrap();
    p.display().to_string()
}

/// `ndt bench` on the tiny model, the batch 2 trials x 10 bins x 12 neurons, with `steps`
/// timed steps after one untimed, and 3 timed evaluation passes.
fn bench(dir: &Path, steps: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ndt"));
    c.args(["bench", "--config", &tiny_config(dir), "--threads", "1"])
        .args(["--batch-size", "2", "--bins", "10", "--neurons", "12"])
        .args(["--steps", steps, "--warmup", "1", "--evals", "3"]);
    c
}

/// Runs `c`, asserting success; returns stdout.
fn stdout(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The top-level keys of the JSON object `raw` in the order written, read from the raw text
/// (a parser keeps only one of a repeated key).
fn raw_keys(raw: &str) -> Vec<String> {
    let (mut keys, mut depth, mut chars) = (Vec::new(), 0, raw.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => s.extend(chars.next()),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if depth == 1 && chars.peek() == Some(&':') {
                    keys.push(s);
                }
            }
            _ => {}
        }
    }
    keys
}

#[test]
fn raw_keys_reads_the_top_level_keys_with_repeats() {
    let raw = r#"{"a": 1, "b": {"c": [1, {"d": 2}]}, "e\"": "x:y", "a":2}"#;
    assert_eq!(raw_keys(raw), ["a", "b", "e\"", "a"]);
}

/// Parses `raw` and asserts that its keys are exactly `want`, each written once.
fn check_keys(raw: &str, want: &[&[&str]]) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(raw.trim()).unwrap_or_else(|e| panic!("{e}: {raw}"));
    assert!(v.is_object(), "{raw}");
    let keys = raw_keys(raw);
    let unique: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), keys.len(), "a key written twice: {keys:?}");
    let want: BTreeSet<&str> = want.iter().flat_map(|k| k.iter().copied()).collect();
    assert_eq!(unique, want, "{raw}");
    v
}

/// The number after `prefix` on the line that starts with `line`.
fn text_number(text: &str, line: &str, prefix: &str) -> String {
    let l = text
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no line {line:?} in {text}"));
    let rest = &l[l.find(prefix).unwrap_or_else(|| panic!("{l}")) + prefix.len()..];
    rest.split_whitespace().next().unwrap().to_string()
}

/// The medians of the text (two decimals) against the JSON's.
fn check_medians(text: &str, v: &serde_json::Value, pairs: &[(&str, &str, &str)]) {
    for &(line, prefix, key) in pairs {
        let json = v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"));
        assert!(json > 0.0 && json.is_finite(), "{key} {json}");
        let shown = text_number(text, line, prefix);
        assert_eq!(shown, format!("{json:.2}"), "{key}: {text}\n{v}");
        assert!(
            text.lines()
                .find(|l| l.starts_with(line))
                .is_some_and(|l| l.contains("median")),
            "{line} says median: {text}"
        );
    }
}

#[test]
fn default_timing_reports_the_documented_keys_and_the_texts_medians() {
    let tmp = TempDir::new("bench-json-full");
    let json = tmp.join("bench.json");
    let text = stdout(
        bench(tmp.path(), "3")
            .args(["--device", "cpu", "--json"])
            .arg(&json),
    );
    let raw = std::fs::read_to_string(&json).unwrap();
    let v = check_keys(&raw, &[EVERY, TIMED]);
    assert_eq!(v["mode"], "full");
    assert_eq!(v["steps"], 3);
    assert_eq!(v["evals"], 3);
    assert!(
        v["ms_per_step_min"].as_f64() <= v["ms_per_step"].as_f64(),
        "{v}"
    );
    let tps = 2.0 * 10.0 / (v["ms_per_step"].as_f64().unwrap() / 1e3);
    assert!(
        (v["tokens_per_s"].as_f64().unwrap() - tps).abs() <= 1e-9 * tps,
        "{v}"
    );
    check_medians(
        &text,
        &v,
        &[
            ("train:", "train: ", "ms_per_step"),
            ("eval:", "eval:  ", "eval_ms_per_batch"),
        ],
    );
    // Without a file the object is all of stdout, one line.
    let out = stdout(bench(tmp.path(), "3").args(["--device", "cpu", "--json"]));
    assert_eq!(out.lines().count(), 1, "{out}");
    check_keys(&out, &[EVERY, TIMED]);
}

#[test]
fn frozen_core_reports_the_documented_keys_and_the_texts_medians() {
    let tmp = TempDir::new("bench-json-frozen");
    let json = tmp.join("bench.json");
    let text = stdout(
        bench(tmp.path(), "3")
            .args(["--device", "cpu", "--mode", "frozen-core", "--json"])
            .arg(&json),
    );
    let raw = std::fs::read_to_string(&json).unwrap();
    let v = check_keys(&raw, &[EVERY, TIMED, FROZEN_CORE]);
    assert_eq!(v["mode"], "frozen-core");
    let share = v["frozen_core_trainable_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "{v}");
    let ratio = v["ms_per_step"].as_f64().unwrap() / v["frozen_core_ms_per_step"].as_f64().unwrap();
    assert_eq!(v["frozen_core_speedup"].as_f64(), Some(ratio), "{v}");
    check_medians(
        &text,
        &v,
        &[
            ("train:", "train: ", "ms_per_step"),
            ("eval:", "eval:  ", "eval_ms_per_batch"),
            ("frozen-core step:", "step: ", "frozen_core_ms_per_step"),
        ],
    );
}

#[test]
fn memory_only_reports_the_documented_keys() {
    let tmp = TempDir::new("bench-json-memory");
    let out = stdout(bench(tmp.path(), "3").env("NDT_CUDA_EMU", "1").args([
        "--device",
        "cuda",
        "--memory-only",
        "--json",
    ]));
    let v = check_keys(&out, &[EVERY, MEMORY_ONLY]);
    let per = v["workspace_buffers"].as_object().unwrap();
    let sum: u64 = per.values().map(|b| b.as_u64().unwrap()).sum();
    assert_eq!(Some(sum), v["workspace_bytes"].as_u64(), "{v}");
    assert!(v["peak_memory_bytes"].as_u64() > Some(sum), "{v}");
}

/// On a GPU (here the emulator) the timing modes add `workspace_bytes`, and `--profile` its
/// keys; with `--mode frozen-core` the full step's too.
#[test]
fn profile_reports_the_documented_keys() {
    let tmp = TempDir::new("bench-json-profile");
    let csv = tmp.join("p.csv");
    let run = |mode: &str| {
        let out = stdout(
            bench(tmp.path(), "1")
                .env("NDT_CUDA_EMU", "1")
                .args(["--device", "cuda", "--mode", mode, "--json", "--profile"])
                .arg(&csv),
        );
        std::fs::remove_file(&csv).unwrap();
        out
    };
    let gpu: &[&str] = &["workspace_bytes"];
    let v = check_keys(&run("full"), &[EVERY, TIMED, gpu, PROFILE]);
    let rows = v["profile_kernels"].as_array().unwrap();
    assert!(!rows.is_empty(), "{v}");
    for r in rows {
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["file", "kernel", "calls", "ms_per_step"]),
            "{r}"
        );
    }
    let v = check_keys(
        &run("frozen-core"),
        &[EVERY, TIMED, gpu, FROZEN_CORE, PROFILE, PROFILE_FULL],
    );
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert!(
        n("profile_operations") < n("profile_full_operations"),
        "{v}"
    );
    assert_eq!(
        n("profile_operations_saved"),
        n("profile_full_operations") - n("profile_operations")
    );
}
