//! `ndt import ibl-hf` on the fixtures of tools/make_ibl_fixtures.py: parquet shards and an
//! Arrow IPC stream import to exactly the dense arrays numpy made the CSR matrices from; each bad
//! fixture fails with exit 1, names the file and the problem, and leaves the dataset unchanged.

use ndt::store::Dataset;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ibl")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ndt-test-ibl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn import(paths: &[PathBuf], out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ndt"))
        .args(["import", "ibl-hf"])
        .args(paths)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn expected() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("good/expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["sessions"].as_array().unwrap().clone()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Checks every session of `dir` against expected.json.
fn check_against_expected(dir: &Path) {
    let ds = Dataset::open(dir).unwrap();
    let want = expected();
    assert_eq!(ds.n_sessions(), want.len());
    for (s, w) in want.iter().enumerate() {
        let info = ds.session(s);
        assert_eq!(info.id, w["eid"].as_str().unwrap());
        assert_eq!(info.subject, w["subject"].as_str().unwrap());
        assert_eq!(info.lab, w["lab"].as_str().unwrap());
        let shape: Vec<usize> = serde_json::from_value(w["shape"].clone()).unwrap();
        assert_eq!(vec![info.n_trials, info.n_bins, info.n_neurons], shape);
        let regions: Vec<String> = serde_json::from_value(w["regions"].clone()).unwrap();
        assert_eq!(info.regions, regions);
        let choice: Vec<i8> = serde_json::from_value(w["choice"].clone()).unwrap();
        assert_eq!(ds.choice(s).unwrap(), choice);
        for name in ["reward", "contrast", "block"] {
            assert_eq!(ds.behaviour(s, name).unwrap(), f32s(&w[name]), "{name}");
        }
        let spikes: Vec<Vec<Vec<u8>>> = serde_json::from_value(w["spikes"].clone()).unwrap();
        for (t, trial) in spikes.iter().enumerate() {
            let flat: Vec<u8> = trial.iter().flatten().copied().collect();
            assert_eq!(ds.trial(s, t), flat.as_slice(), "session {s} trial {t}");
        }
        assert_eq!(info.bin_size_s, 0.02);
        assert_eq!(
            info.onset_bin, None,
            "onset 25 lies outside the fixtures' 6 bins"
        );
        assert_eq!(info.provenance["importer"], "ibl-hf");
    }
}

#[test]
fn parquet_shards_import_exactly() {
    let out = tmp("parquet");
    ok(&import(&[fixtures().join("good/parquet")], &out, &[]));
    check_against_expected(&out);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn shards_named_one_by_one_import_the_same() {
    let out = tmp("files");
    let dir = fixtures().join("good/parquet");
    ok(&import(
        &[
            dir.join("train-00000-of-00002.parquet"),
            dir.join("train-00001-of-00002.parquet"),
        ],
        &out,
        &[],
    ));
    check_against_expected(&out);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn arrow_stream_imports_exactly() {
    let out = tmp("arrow");
    ok(&import(&[fixtures().join("good/arrow")], &out, &[]));
    check_against_expected(&out);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn split_seed_is_recorded() {
    let (a, b) = (tmp("seed-a"), tmp("seed-b"));
    ok(&import(&[fixtures().join("good/arrow")], &a, &[]));
    ok(&import(
        &[fixtures().join("good/arrow")],
        &b,
        &["--split-seed", "7"],
    ));
    let (da, db) = (Dataset::open(&a).unwrap(), Dataset::open(&b).unwrap());
    assert_eq!(da.session(0).split.seed, 42);
    assert_eq!(db.session(0).split.seed, 7);
    for d in [&da, &db] {
        let s = &d.session(0).split;
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), 5);
    }
    std::fs::remove_dir_all(a).unwrap();
    std::fs::remove_dir_all(b).unwrap();
}

/// Every file under `dir` (relative path -> bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

/// An existing dataset whose ids do not collide with the fixtures' eids.
fn existing_dataset(name: &str) -> PathBuf {
    let out = tmp(name);
    let o = Command::new(env!("CARGO_BIN_EXE_ndt"))
        .args([
            "synth",
            "--preset",
            "rs",
            "--tiny",
            "--sessions",
            "2",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    ok(&o);
    out
}

#[test]
fn bad_fixtures_fail_naming_file_and_problem() {
    let cases = [
        (
            "indptr_length.parquet",
            "spikes_sparse_indptr has 6 entries, expected rows + 1 = 7",
        ),
        ("index_range.parquet", "is outside 0..7"),
        (
            "indptr_decreasing.parquet",
            "spikes_sparse_indptr decreases",
        ),
        (
            "data_length.parquet",
            "spikes_sparse_indices has 12 entries but spikes_sparse_data has 13",
        ),
        (
            "missing_column.parquet",
            "missing column spikes_sparse_indptr",
        ),
        (
            "shape_mismatch.parquet",
            "spikes_sparse_shape is [7, 7] but earlier trials",
        ),
        ("regions_length.parquet", "cluster_regions has 6 labels"),
        ("choice_value.parquet", "choice is 0.5"),
        (
            "choice_length.parquet",
            "choice holds 2 values for one trial",
        ),
        ("over255.parquet", "exceeds 255 (pass --clip"),
        ("truncated.arrow", "cannot decode"),
    ];
    // Into a new directory: nothing is left behind.
    for (file, want) in cases {
        let out = tmp("bad-new");
        let path = fixtures().join("bad").join(file);
        let o = import(std::slice::from_ref(&path), &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains(&path.display().to_string()), "{file}: {err}");
        assert!(err.contains(want), "{file}: {err}");
        assert!(
            !out.exists(),
            "{file}: a failed import created {}",
            out.display()
        );
    }
    // Into an existing dataset: byte for byte unchanged.
    let existing = existing_dataset("bad-existing");
    let before = snapshot(&existing);
    for (file, want) in cases {
        let path = fixtures().join("bad").join(file);
        let o = import(std::slice::from_ref(&path), &existing, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains(want), "{file}: {err}");
        assert_eq!(before, snapshot(&existing), "{file} changed the dataset");
    }
    std::fs::remove_dir_all(existing).unwrap();
}

#[test]
fn clip_saturates_large_counts() {
    let out = tmp("clip");
    ok(&import(
        &[fixtures().join("bad/over255.parquet")],
        &out,
        &["--clip"],
    ));
    let ds = Dataset::open(&out).unwrap();
    let info = ds.session(0);
    // The fixture raised the first stored count of trial 4 to 300.
    let trial = ds.trial(0, 4);
    assert_eq!(trial.iter().copied().max(), Some(255));
    assert_eq!(info.n_trials, 5);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn existing_ids_and_missing_paths_are_refused() {
    let out = tmp("twice");
    ok(&import(&[fixtures().join("good/arrow")], &out, &[]));
    let before = snapshot(&out);
    let o = import(&[fixtures().join("good/parquet")], &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already in the dataset"));
    assert_eq!(before, snapshot(&out));
    let o = import(
        &[fixtures().join("no/such/file.parquet")],
        &tmp("none"),
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/file.parquet"));
    std::fs::remove_dir_all(out).unwrap();
}

fn split_expected(which: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("splits/expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v[which].as_array().unwrap().clone()
}

/// The sessions of `dir` keep the split their files name: every trial is in the split of its
/// file, and its counts are those of the trial it came from.
fn check_release_split(dir: &Path, which: &str) {
    let ds = Dataset::open(dir).unwrap();
    let want = split_expected(which);
    let dense = expected();
    assert_eq!(ds.n_sessions(), want.len());
    for (s, w) in want.iter().enumerate() {
        let info = ds.session(s);
        assert_eq!(info.id, w["eid"].as_str().unwrap());
        let trials = w["trials"].as_array().unwrap();
        assert_eq!(info.n_trials, trials.len());
        let source = dense
            .iter()
            .find(|d| d["eid"] == w["eid"])
            .expect("session in good/expected.json");
        let mut by_split: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (t, tr) in trials.iter().enumerate() {
            by_split
                .entry(tr["split"].as_str().unwrap())
                .or_default()
                .push(t as u32);
            let k = tr["trial"].as_u64().unwrap() as usize;
            let flat: Vec<u8> = serde_json::from_value::<Vec<Vec<u8>>>(source["spikes"][k].clone())
                .unwrap()
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(ds.trial(s, t), flat.as_slice(), "session {s} trial {t}");
        }
        let get = |k: &str| by_split.get(k).cloned().unwrap_or_default();
        assert_eq!(info.split.train, get("train"), "{which} session {s}");
        assert_eq!(info.split.val, get("val"), "{which} session {s}");
        assert_eq!(info.split.test, get("test"), "{which} session {s}");
        assert!(!info.split.val.is_empty() && !info.split.test.is_empty());
        assert_eq!(info.provenance["split"]["source"], "release");
    }
}

#[test]
fn huggingface_shards_keep_their_split() {
    let out = tmp("splits-hf");
    ok(&import(&[fixtures().join("splits/hf")], &out, &[]));
    check_release_split(&out, "hf");
    let ds = Dataset::open(&out).unwrap();
    let files = &ds.session(0).provenance["split"]["val_files"];
    assert!(
        files[0]
            .as_str()
            .unwrap()
            .ends_with("validation-00000-of-00001.parquet"),
        "{files}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn save_to_disk_folders_keep_their_split() {
    let out = tmp("splits-saved");
    ok(&import(&[fixtures().join("splits/saved")], &out, &[]));
    check_release_split(&out, "saved");
    std::fs::remove_dir_all(&out).unwrap();
    // The split folders given one by one name their split too.
    let dirs: Vec<PathBuf> = ["train", "val", "test"]
        .iter()
        .map(|d| fixtures().join("splits/saved").join(d))
        .collect();
    ok(&import(&dirs, &out, &[]));
    let ds = Dataset::open(&out).unwrap();
    for s in ds.sessions() {
        assert_eq!(s.provenance["split"]["source"], "release");
        assert!(!s.split.val.is_empty() && !s.split.test.is_empty());
    }
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn resplit_merges_and_splits_again() {
    let out = tmp("splits-resplit");
    ok(&import(
        &[fixtures().join("splits/hf")],
        &out,
        &["--resplit", "--split-seed", "7"],
    ));
    let ds = Dataset::open(&out).unwrap();
    for s in ds.sessions() {
        assert_eq!(s.split, ndt::store::writer::split_trials(s.n_trials, 7));
        assert_eq!(s.provenance["split"]["source"], "resplit");
        assert_eq!(s.provenance["split"]["seed"], 7);
    }
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn files_naming_no_split_beside_named_ones_are_refused() {
    let out = tmp("splits-mixed");
    let dir = fixtures().join("splits/mixed");
    let o = import(std::slice::from_ref(&dir), &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("extra.parquet"), "{err}");
    assert!(err.contains("--resplit"), "{err}");
    assert!(!out.exists());
    ok(&import(&[dir], &out, &["--resplit"]));
    std::fs::remove_dir_all(out).unwrap();
}
