//! ndt against IBL BrainWideBench's own scorers (`ibl-bwb-eval` 0.1.0):
//!
//! - `fixtures/bwb_vectors.json` (tools/bwb_vectors.py) holds seeded log-rates and counts and
//!   what `PoissonD2Score` and `BPS` return for them in f64: ndt's D² (per-unit mean), pooled D²
//!   and bits per spike pooled over units with spikes must equal them to 1e-9;
//! - `ndt eval --bwb` on a small model writes prediction files; their layout is checked here,
//!   and `tools/bwb_vectors.py --check` scores them with `ibl_bwb_eval.scoring.ts2.score_dir`
//!   and compares with the D² and bps that `ndt eval` reported. That needs ibl-bwb-eval in
//!   the test Python (tools/setup.sh installs it); without it the test fails, unless
//!   `NDT_SKIP_BWB_SCORER=1` says to skip that one comparison.

mod common;

use common::{TempDir, fixture, ndt, ndt_ok, python, root, stderr};
use ndt::eval::bps::accumulate;
use ndt::eval::d2::poisson_d2;
use ndt::model::ModelConfig;
use ndt::model::params::ParamTable;
use ndt::store::{DatasetWriter, NewSession};
use safetensors::tensor::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixture("bwb_vectors.json"))
        .expect("fixtures/bwb_vectors.json (tools/bwb_vectors.py)");
    let v: Value = serde_json::from_str(&text).expect("valid json");
    v["cases"].as_array().expect("cases").clone()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

#[test]
fn d2_and_pooled_bps_equal_ibl_bwb_evals_scorers() {
    let cases = cases();
    assert!(cases.len() >= 4);
    for c in &cases {
        let name = c["name"].as_str().unwrap();
        let n = c["shape"][1].as_u64().unwrap() as usize;
        let rates: Vec<f64> = floats(&c["log_rates"]).iter().map(|l| l.exp()).collect();
        let counts = floats(&c["counts"]);
        let want = &c["scorer_f64"];
        let d = poisson_d2(&rates, &counts, n);
        let b = accumulate(&rates, &counts, n).finish();
        let close = |got: f64, key: &str| {
            let w = want[key].as_f64().unwrap();
            assert!(
                (got - w).abs() <= 1e-9,
                "{name}: ndt {key} {got} vs ibl_bwb_eval {w} (diff {:e})",
                got - w
            );
        };
        close(d.mean, "d2");
        close(d.pooled, "d2_pooled");
        close(b.pooled_spiking, "bps");
        assert_eq!(d.n_units as u64, want["n_units_d2"].as_u64().unwrap());
        // The stock float32 scorer agrees to its own precision.
        let stock = &c["scorer_stock_f32"];
        for (got, key) in [(d.mean, "d2"), (b.pooled_spiking, "bps")] {
            let w = stock[key].as_f64().unwrap();
            assert!((got - w).abs() <= 1e-5 * w.abs().max(1.0), "{name} {key}");
        }
    }
    // The silent and constant units are left out of D², and the silent one out of the BWB
    // pooled bps (it stays in nlb_tools' pooled value, which then differs).
    let c = cases
        .iter()
        .find(|c| c["name"] == "silent_and_constant_units")
        .unwrap();
    let n = c["shape"][1].as_u64().unwrap() as usize;
    let rates: Vec<f64> = floats(&c["log_rates"]).iter().map(|l| l.exp()).collect();
    let d = poisson_d2(&rates, &floats(&c["counts"]), n);
    assert!(d.per_unit[1].is_nan() && d.per_unit[4].is_nan());
    let b = accumulate(&rates, &floats(&c["counts"]), n).finish();
    assert!((b.pooled - b.pooled_spiking).abs() > 1e-3);
}

const T: usize = 20;
const N: usize = 6;
const ONSET: usize = 4;
const TRIALS: usize = 40;

/// A one-session dataset ("rec-a"), and a checkpoint of a 2-block model for it (random
/// weights: the predictions only have to be the model's).
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let ds = dir.join("ds");
    let w = DatasetWriter::open(&ds, 7).unwrap();
    let s = NewSession {
        id: "rec-a".into(),
        subject: "s".into(),
        lab: "l".into(),
        animal: None,
        n_trials: TRIALS,
        n_bins: T,
        n_neurons: N,
        bin_size_s: 0.02,
        onset_bin: Some(ONSET),
        regions: vec!["X".into(); N],
        choice: (0..TRIALS)
            .map(|t| if t % 2 == 0 { 1 } else { -1 })
            .collect(),
        behaviour: Vec::new(),
        provenance: serde_json::json!({}),
    };
    w.add_session(s, &mut |trial: usize, out: &mut [u8]| {
        for (i, o) in out.iter_mut().enumerate() {
            let (b, j) = (i / N, i % N);
            *o = (((trial * 7 + b * 3 + j * 5) % 11) / 4) as u8 * u8::from(j != 5 || b == 3);
        }
        Ok(())
    })
    .unwrap();
    w.commit().unwrap();
    let cfg = ModelConfig {
        d_model: 8,
        d_tok: 4,
        d_embed_hidden: 8,
        n_layers: 2,
        n_heads: 2,
        d_ff: 16,
        n_bins: T,
        ln_eps: 1e-5,
        sessions: BTreeMap::from([("rec-a".to_string(), N)]),
    };
    let table = ParamTable::new(&cfg);
    let params = ndt::model::init::init_params(&cfg, &table, 3);
    let ckpt = dir.join("model.safetensors");
    ndt::model::checkpoint::save(&ckpt, &cfg, &table, &params, &BTreeMap::new()).unwrap();
    (ds, ckpt)
}

/// A file's metadata, and its tensors' dtypes and shapes.
type StInfo = (
    BTreeMap<String, String>,
    BTreeMap<String, (Dtype, Vec<usize>)>,
);

fn read_st(path: &Path) -> StInfo {
    let buf = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, header) = SafeTensors::read_metadata(&buf).unwrap();
    let meta = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let st = SafeTensors::deserialize(&buf).unwrap();
    let tensors = st
        .iter()
        .map(|(k, v)| (k.to_string(), (v.dtype(), v.shape().to_vec())))
        .collect();
    (meta, tensors)
}

#[test]
fn ndt_eval_bwb_writes_files_that_the_bwb_scorer_scores_as_ndt_does() {
    let tmp = TempDir::new("bwb-eval");
    let (ds, ckpt) = setup(tmp.path());
    let (pred, gt, out) = (tmp.join("pred"), tmp.join("gt"), tmp.join("eval.json"));
    let p = |x: &Path| x.display().to_string();
    ndt_ok(&[
        "eval",
        &p(&ckpt),
        &p(&ds),
        "--session",
        "rec-a",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-choice",
        "--tasks",
        "co-smooth,forward",
        "--bwb",
        &p(&pred),
        "--bwb-seed",
        "43",
        "--bwb-label",
        "ndt-test",
        "--bwb-ground-truth",
        &p(&gt),
        "--out",
        &p(&out),
    ]);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let n_test = report["n_trials"].as_u64().unwrap() as usize;
    assert!(n_test > 0);
    // The layout: label/task/recording_id/seed_{s}.safetensors, the writer's metadata keys,
    // predictions F32 [windows, time, units] and window_timestamps [windows].
    for (task, time) in [("ts2-co_smoothing", T), ("ts2-forecasting", T - ONSET)] {
        let f = pred
            .join("ndt-test")
            .join(task)
            .join("rec-a/seed_43.safetensors");
        let (meta, tensors) = read_st(&f);
        assert_eq!(meta["label"], "ndt-test");
        assert_eq!(meta["task"], task);
        assert_eq!(meta["seed"], "43");
        assert_eq!(meta["recording_id"], "rec-a");
        assert_eq!(meta["ibl_bwb_eval_version"], "0.1.0");
        assert_eq!(tensors["predictions"], (Dtype::F32, vec![n_test, time, N]));
        assert_eq!(tensors["window_timestamps"], (Dtype::F64, vec![n_test]));
        assert_eq!(tensors.len(), 2);
        let g = gt.join(task).join("rec-a/ground_truth.safetensors");
        let (_, tensors) = read_st(&g);
        assert_eq!(tensors["targets"], (Dtype::F32, vec![n_test, time, N]));
    }
    assert_eq!(report["bwb_files"].as_array().unwrap().len(), 2);

    // The benchmark's own scorer on those files gives ndt's numbers.
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import ibl_bwb_eval.scoring.ts2"])
        .output()
        .expect("start python");
    if !probe.status.success() {
        if std::env::var("NDT_SKIP_BWB_SCORER").as_deref() == Ok("1") {
            eprintln!("NDT_SKIP_BWB_SCORER=1: the scorer comparison is skipped");
            return;
        }
        panic!(
            "{} cannot import ibl_bwb_eval: run tools/setup.sh (or set NDT_SKIP_BWB_SCORER=1 to skip this comparison)\n{}",
            py.display(),
            String::from_utf8_lossy(&probe.stderr)
        );
    }
    let check = Command::new(&py)
        .arg(root().join("tools/bwb_vectors.py"))
        .arg("--check")
        .args([&pred, &gt, &out])
        .output()
        .expect("start python");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "bwb_vectors.py --check failed:\n{text}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let v: Value = serde_json::from_str(text.trim()).expect("check prints JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(v["compared"].as_array().unwrap().len(), 4, "{v}");
}

#[test]
fn the_check_fails_when_ndts_numbers_differ_from_the_scorers() {
    // The check is not a rubber stamp: a report whose D² is off by 1e-3 is rejected.
    let tmp = TempDir::new("bwb-tamper");
    let (ds, ckpt) = setup(tmp.path());
    let (pred, gt, out) = (tmp.join("pred"), tmp.join("gt"), tmp.join("eval.json"));
    let p = |x: &Path| x.display().to_string();
    ndt_ok(&[
        "eval",
        &p(&ckpt),
        &p(&ds),
        "--session",
        "rec-a",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-choice",
        "--tasks",
        "co-smooth",
        "--bwb",
        &p(&pred),
        "--bwb-seed",
        "44",
        "--bwb-ground-truth",
        &p(&gt),
        "--out",
        &p(&out),
    ]);
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import ibl_bwb_eval.scoring.ts2"])
        .output()
        .expect("start python");
    if !probe.status.success() {
        if std::env::var("NDT_SKIP_BWB_SCORER").as_deref() == Ok("1") {
            return;
        }
        panic!(
            "{} cannot import ibl_bwb_eval: run tools/setup.sh",
            py.display()
        );
    }
    let mut report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let d2 = report["tasks"]["co-smooth"]["d2"].as_f64().unwrap();
    report["tasks"]["co-smooth"]["d2"] = serde_json::json!(d2 + 1e-3);
    std::fs::write(&out, report.to_string()).unwrap();
    let check = Command::new(&py)
        .arg(root().join("tools/bwb_vectors.py"))
        .arg("--check")
        .args([&pred, &gt, &out])
        .output()
        .expect("start python");
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("poisson_d2"));
}

#[test]
fn bad_bwb_and_choice_block_flags_are_usage_errors() {
    let tmp = TempDir::new("bwb-usage");
    let (ds, ckpt) = setup(tmp.path());
    let p = |x: &Path| x.display().to_string();
    let base = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "eval",
            &p(&ckpt),
            &p(&ds),
            "--session",
            "rec-a",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--tasks",
            "co-smooth",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        ndt(&a)
    };
    // The model has 2 blocks: block 3 is past the last one.
    let o = base(&["--choice-block", "3"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("--choice-block 3") && e.contains("2 blocks"),
        "{e}"
    );
    let o = base(&["--choice-block", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // Without the flag the paper's block 3 is skipped with its reason, not an error.
    let text = String::from_utf8_lossy(&base(&[]).stdout).into_owned();
    assert!(
        text.contains("choice decoding: skipped (block 3 does not exist"),
        "{text}"
    );

    let dir = p(&tmp.join("bwb"));
    let o = base(&["--bwb", &dir]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--bwb-seed"), "{}", stderr(&o));
    let o = base(&["--bwb", &dir, "--bwb-seed", "1", "--bwb-label", "../x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--bwb-label"), "{}", stderr(&o));
    assert!(!tmp.join("bwb").exists() && !tmp.join("x").exists());
    let o = base(&["--bwb-seed", "1"]);
    assert_eq!(o.status.code(), Some(1));
}
