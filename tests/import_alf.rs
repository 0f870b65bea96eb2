//! `ndt import alf` on the ALF sessions of tools/make_alf_fixtures.py: the counts equal a NumPy
//! binning of the same spikes done here (keyed by cluster id), the region labels, choices and
//! filter drops equal what the fixture maker planted, and each kind of bad input fails with
//! exit 1, names the file and the problem, and leaves the dataset as it was.

mod common;

use common::{TempDir, copy_tree, fixture, ndt, ndt_ok, run_python, snapshot, stderr};
use ndt::store::Dataset;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn expected() -> Vec<Value> {
    let p = fixture("alf/good/expected.json");
    let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v["sessions"].as_array().unwrap().clone()
}

fn session_dir(e: &Value) -> PathBuf {
    fixture("alf/good").join(e["dir"].as_str().unwrap())
}

fn import(dirs: &[PathBuf], out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<std::ffi::OsString> = vec!["import".into(), "alf".into()];
    args.extend(dirs.iter().map(|d| d.as_os_str().to_owned()));
    args.push("--out".into());
    args.push(out.as_os_str().to_owned());
    args.extend(extra.iter().map(|a| a.into()));
    ndt(&args)
}

fn import_ok(dirs: &[PathBuf], out: &Path, extra: &[&str]) {
    let o = import(dirs, out, extra);
    assert!(o.status.success(), "import failed: {}", stderr(&o));
}

/// NumPy's binning of the spikes of `units` ((probe, cluster) of session `e`) around the
/// `align` times of trials `kept`: counts [trial][bin][unit] flattened, and each unit's total.
const BIN_PY: &str = r#"
import json, os, sys
import numpy as np
spec = json.load(open(sys.argv[1]))
d = spec["dir"]
if spec["layout"] == "table":
    import pyarrow.parquet as pq
    align = np.asarray(pq.read_table(os.path.join(d, spec["trials"])).column(spec["align"]).to_numpy(zero_copy_only=False), dtype=np.float64)
else:
    align = np.load(os.path.join(d, spec["trials"], "_ibl_trials.%s.npy" % spec["align"]))
kept = np.asarray(spec["kept"], dtype=np.int64)
starts = align[kept] + spec["window_start"]
bs, nb = spec["bin_size"], spec["n_bins"]
units = spec["units"]
out = np.zeros((len(kept), nb, len(units)), dtype=np.int64)
for j, (tpath, cpath, cluster) in enumerate(units):
    times = np.load(os.path.join(d, tpath))
    clusters = np.load(os.path.join(d, cpath))
    st = times[clusters == cluster]
    for i, s in enumerate(starts):
        x = st[st >= s]
        k = np.floor((x - s) / bs)
        k = k[k < nb].astype(np.int64)
        np.add.at(out[i, :, j], k, 1)
print(json.dumps({"counts": out.ravel().tolist(), "totals": out.sum(axis=(0, 1)).tolist()}))
"#;

struct Binned {
    counts: Vec<u64>,
    totals: Vec<u64>,
}

/// Runs BIN_PY on session `e`'s current spike files for `units`.
fn numpy_bins(e: &Value, dir: &Path, align: &str, kept: &[u64], units: &[(String, u64)]) -> Binned {
    let tmp = TempDir::new("alf-spec");
    let spec = json!({
        "dir": dir,
        "layout": e["layout"],
        "trials": e["trials"],
        "align": align,
        "kept": kept,
        "window_start": -0.5,
        "bin_size": 0.02,
        "n_bins": 150,
        "units": units.iter().map(|(p, c)| {
            let f = &e["spikes"][p.as_str()];
            json!([f[0], f[1], c])
        }).collect::<Vec<_>>(),
    });
    let path = tmp.join("spec.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    let v: Value = serde_json::from_str(&run_python(BIN_PY, &[&path])).unwrap();
    let get = |k: &str| -> Vec<u64> { serde_json::from_value(v[k].clone()).unwrap() };
    Binned {
        counts: get("counts"),
        totals: get("totals"),
    }
}

fn u64s(v: &Value) -> Vec<u64> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Every count of session `s` of `ds` equals NumPy's binning.
fn assert_counts(ds: &Dataset, s: usize, b: &Binned) {
    let info = ds.session(s);
    let per_trial = info.n_bins * info.n_neurons;
    assert_eq!(b.counts.len(), info.n_trials * per_trial);
    for t in 0..info.n_trials {
        let got: Vec<u64> = ds.trial(s, t).iter().map(|&c| c as u64).collect();
        assert_eq!(
            got,
            b.counts[t * per_trial..(t + 1) * per_trial],
            "session {} trial {t}",
            info.id
        );
    }
    assert!(
        b.counts.iter().any(|&c| c >= 2),
        "the fixture has bins with several spikes"
    );
}

#[test]
fn good_sessions_import_exactly() {
    let tmp = TempDir::new("alf-good");
    let out = tmp.join("ds");
    let want = expected();
    let dirs: Vec<PathBuf> = want.iter().map(session_dir).collect();
    import_ok(&dirs, &out, &[]);
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.n_sessions(), want.len());
    for (s, e) in want.iter().enumerate() {
        let info = ds.session(s);
        let prov = &info.provenance;
        assert_eq!(info.id, e["id"].as_str().unwrap());
        assert_eq!(info.subject, e["subject"].as_str().unwrap());
        assert_eq!(info.lab, e["lab"].as_str().unwrap());
        assert_eq!(prov["importer"], "alf");
        // Trial filters: the planted drops, by reason, and the rows kept.
        let kept = u64s(&e["kept"]);
        assert_eq!(info.n_trials, kept.len());
        assert_eq!(prov["trials"]["dropped"], e["dropped"], "{}", info.id);
        assert_eq!(u64s(&prov["trials"]["kept_rows"]), kept);
        assert_eq!(prov["trials"]["total"], e["n_trials"]);
        // Every cluster is a unit, silent ones included, keyed by cluster id and uuid.
        let units = e["units"].as_array().unwrap();
        assert_eq!(info.n_neurons, units.len());
        let regions: Vec<String> = units
            .iter()
            .map(|u| u["acronym"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(info.regions, regions, "{}", info.id);
        let keyed: Vec<Value> = units
            .iter()
            .map(|u| json!([u["probe"], u["cluster"], u["uuid"]]))
            .collect();
        assert_eq!(prov["units"]["kept_units"], Value::Array(keyed));
        let choice: Vec<i8> = serde_json::from_value(e["choice"].clone()).unwrap();
        assert_eq!(ds.choice(s).unwrap(), choice);
        assert_eq!(info.n_bins, 150);
        assert_eq!(info.onset_bin, Some(25));
        assert_eq!(info.bin_size_s, 0.02);
        // Counts, element for element, against NumPy.
        let ids: Vec<(String, u64)> = units
            .iter()
            .map(|u| {
                (
                    u["probe"].as_str().unwrap().into(),
                    u["cluster"].as_u64().unwrap(),
                )
            })
            .collect();
        let b = numpy_bins(e, &session_dir(e), "stimOn_times", &kept, &ids);
        assert_counts(&ds, s, &b);
        // Silent clusters stay, as all-zero columns.
        assert!(b.totals.contains(&0));
    }
}

#[test]
fn provenance_names_the_newest_revision_with_its_hash() {
    let tmp = TempDir::new("alf-prov");
    let out = tmp.join("ds");
    let e = &expected()[0];
    let dir = session_dir(e);
    import_ok(std::slice::from_ref(&dir), &out, &[]);
    let ds = Dataset::open(&out).unwrap();
    let files = ds.session(0).provenance["files"]
        .as_array()
        .unwrap()
        .clone();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    let current = e["spikes"]["probe00"][0].as_str().unwrap();
    assert!(paths.contains(&current), "{paths:?}");
    assert!(
        !paths.contains(&"alf/probe00/pykilosort/spikes.times.npy"),
        "an older sorting was read: {paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.contains("#2023-01-01#")),
        "{paths:?}"
    );
    let code = "import hashlib, os, sys\nfor p in sys.argv[2:]:\n    b = open(os.path.join(sys.argv[1], p), 'rb').read()\n    print(p, len(b), hashlib.sha256(b).hexdigest())";
    let rels: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    let mut args: Vec<&Path> = vec![dir.as_path()];
    args.extend(rels.iter().map(|p| p.as_path()));
    let py = run_python(code, &args);
    for (line, f) in py.lines().zip(&files) {
        let want = format!(
            "{} {} {}",
            f["path"].as_str().unwrap(),
            f["bytes"],
            f["sha256"].as_str().unwrap()
        );
        assert_eq!(line, want);
    }
    assert_eq!(py.lines().count(), files.len());
}

#[test]
fn good_only_and_min_rate_select_units_by_cluster_id() {
    let tmp = TempDir::new("alf-units");
    let out = tmp.join("ds");
    let e = &expected()[0];
    let dir = session_dir(e);
    let min_rate = 4.0;
    import_ok(
        std::slice::from_ref(&dir),
        &out,
        &["--good-only", "--min-rate", "4"],
    );
    let ds = Dataset::open(&out).unwrap();
    let info = ds.session(0);
    let kept = u64s(&e["kept"]);
    let units = e["units"].as_array().unwrap();
    let all: Vec<(String, u64)> = units
        .iter()
        .map(|u| {
            (
                u["probe"].as_str().unwrap().into(),
                u["cluster"].as_u64().unwrap(),
            )
        })
        .collect();
    let b = numpy_bins(e, &dir, "stimOn_times", &kept, &all);
    let seconds = kept.len() as f64 * 3.0;
    let (mut want, mut not_good, mut slow) = (Vec::new(), 0, 0);
    for (k, u) in units.iter().enumerate() {
        if !u["good"].as_bool().unwrap() {
            not_good += 1;
        } else if (b.totals[k] as f64) / seconds < min_rate {
            slow += 1;
        } else {
            want.push(k);
        }
    }
    assert!(
        not_good > 0 && slow > 0 && !want.is_empty(),
        "the fixture exercises both filters"
    );
    let regions: Vec<String> = want
        .iter()
        .map(|&k| units[k]["acronym"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(info.regions, regions);
    let keyed: Vec<Value> = want
        .iter()
        .map(|&k| json!([units[k]["probe"], units[k]["cluster"], units[k]["uuid"]]))
        .collect();
    assert_eq!(info.provenance["units"]["kept_units"], Value::Array(keyed));
    assert_eq!(info.provenance["units"]["dropped"]["not_good"], not_good);
    assert_eq!(info.provenance["units"]["dropped"]["below_min_rate"], slow);
    let ids: Vec<(String, u64)> = want.iter().map(|&k| all[k].clone()).collect();
    assert_counts(&ds, 0, &numpy_bins(e, &dir, "stimOn_times", &kept, &ids));
}

#[test]
fn align_to_go_cue_drops_its_nan_trials() {
    let tmp = TempDir::new("alf-gocue");
    let out = tmp.join("ds");
    let e = &expected()[1];
    let dir = session_dir(e);
    import_ok(
        std::slice::from_ref(&dir),
        &out,
        &["--align", "goCue_times"],
    );
    let ds = Dataset::open(&out).unwrap();
    let info = ds.session(0);
    // Trial 0's goCue is NaN: kept when aligned to stimOn, dropped here.
    let mut kept = u64s(&e["kept"]);
    assert_eq!(kept[0], 0);
    kept.remove(0);
    assert_eq!(u64s(&info.provenance["trials"]["kept_rows"]), kept);
    assert_eq!(info.provenance["trials"]["dropped"]["nan_goCue_times"], 1);
    let ids: Vec<(String, u64)> = e["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["probe"].as_str().unwrap().into(),
                u["cluster"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_counts(&ds, 0, &numpy_bins(e, &dir, "goCue_times", &kept, &ids));
}

#[test]
fn filters_switch_off() {
    let tmp = TempDir::new("alf-nofilter");
    let out = tmp.join("ds");
    let e = &expected()[0];
    import_ok(
        &[session_dir(e)],
        &out,
        &[
            "--min-rt",
            "none",
            "--max-rt",
            "none",
            "--max-trial-len",
            "none",
            "--nan-exclude",
            "none",
            "--keep-nochoice",
        ],
    );
    let ds = Dataset::open(&out).unwrap();
    let info = ds.session(0);
    // Only the trial without a stimulus onset time cannot be binned.
    assert_eq!(
        info.provenance["trials"]["dropped"],
        json!({"nan_stimOn_times": 1})
    );
    assert_eq!(info.n_trials, e["n_trials"].as_u64().unwrap() as usize - 1);
    assert!(
        ds.choice(0).unwrap().contains(&0),
        "the no-go trial is kept as choice 0"
    );
}

#[test]
fn imports_are_deterministic() {
    let tmp = TempDir::new("alf-det");
    let dirs: Vec<PathBuf> = expected().iter().map(session_dir).collect();
    import_ok(&dirs, &tmp.join("a"), &[]);
    import_ok(&dirs, &tmp.join("b"), &[]);
    let strip = |m: std::collections::BTreeMap<String, Vec<u8>>| {
        m.into_iter()
            .filter(|(k, _)| !k.starts_with(".ndt.lock"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(snapshot(&tmp.join("a"))),
        strip(snapshot(&tmp.join("b")))
    );
}

/// A copy of session `which` of the fixtures in a temp dir, changed by a Python snippet run with
/// the session folder as argv[1].
fn mutated(tmp: &TempDir, which: usize, code: &str) -> PathBuf {
    let e = &expected()[which];
    let dst = tmp.join("src").join(e["dir"].as_str().unwrap());
    copy_tree(&session_dir(e), &dst);
    let code = format!("import os, sys\nimport numpy as np\nd = sys.argv[1]\n{code}");
    run_python(&code, &[&dst]);
    dst
}

/// Imports `dir` into a new and into an existing dataset: exit 1, the message names `file` (a
/// path under the session, or "" for flag errors) and holds `want`, and nothing is left or
/// changed.
fn assert_refused(tmp: &TempDir, dir: &Path, file: &str, want: &str, extra: &[&str]) {
    let new = tmp.join("new");
    let o = import(&[dir.to_path_buf()], &new, extra);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{want}: {err}");
    assert!(err.contains(want), "expected `{want}` in: {err}");
    if !file.is_empty() {
        let named = dir.join(file).display().to_string();
        assert!(err.contains(&named), "expected `{named}` in: {err}");
    }
    assert!(!new.exists(), "a failed import created {}", new.display());
    let existing = tmp.join("existing");
    if !existing.exists() {
        import_ok(&[session_dir(&expected()[1])], &existing, &[]);
    }
    let before = snapshot(&existing);
    let o = import(&[dir.to_path_buf()], &existing, extra);
    assert_eq!(o.status.code(), Some(1), "{want}: {}", stderr(&o));
    assert_eq!(before, snapshot(&existing), "{want}: the dataset changed");
}

const B_TIMES: &str = "alf/probe00/spikes.times.npy";
const B_CLUSTERS: &str = "alf/probe00/spikes.clusters.npy";

#[test]
fn missing_files_and_columns() {
    let tmp = TempDir::new("alf-missing");
    let d = mutated(
        &tmp,
        1,
        "os.remove(os.path.join(d, 'alf/probe00/spikes.clusters.npy'))",
    );
    assert_refused(&tmp, &d, "alf/probe00", "missing spikes.clusters", &[]);

    let tmp = TempDir::new("alf-missing-trial");
    let d = mutated(
        &tmp,
        1,
        "os.remove(os.path.join(d, 'alf/task_00/_ibl_trials.stimOn_times.npy'))",
    );
    assert_refused(&tmp, &d, "", "no `stimOn_times`", &[]);

    let tmp = TempDir::new("alf-missing-col");
    let d = mutated(
        &tmp,
        0,
        "import pyarrow.parquet as pq\np = os.path.join(d, 'alf/_ibl_trials.table.pqt')\n\
         pq.write_table(pq.read_table(p).drop_columns(['firstMovement_times']), p)",
    );
    assert_refused(
        &tmp,
        &d,
        "alf/_ibl_trials.table.pqt",
        "no `firstMovement_times`",
        &[],
    );
    // The same session imports once the filters needing it are off.
    let out = tmp.join("relaxed");
    import_ok(
        std::slice::from_ref(&d),
        &out,
        &[
            "--min-rt",
            "none",
            "--max-rt",
            "none",
            "--nan-exclude",
            "stimOn_times,choice,feedbackType",
        ],
    );

    let tmp = TempDir::new("alf-missing-label");
    let d = mutated(
        &tmp,
        0,
        "import pyarrow.parquet as pq\np = os.path.join(d, 'alf/probe00/pykilosort/clusters.metrics.pqt')\n\
         pq.write_table(pq.read_table(p).drop_columns(['label']), p)",
    );
    assert_refused(
        &tmp,
        &d,
        "alf/probe00/pykilosort/clusters.metrics.pqt",
        "no column `label`",
        &["--good-only"],
    );

    let tmp = TempDir::new("alf-no-alf");
    let d = tmp.join("SW9/2020-01-01/001");
    std::fs::create_dir_all(&d).unwrap();
    assert_refused(&tmp, &d, "", "holds no alf/ folder", &[]);
}

#[test]
fn inconsistent_spikes() {
    let cases: [(&str, &str, &str); 4] = [
        (
            "c = np.load(os.path.join(d, 'alf/probe00/spikes.clusters.npy'))\n\
             np.save(os.path.join(d, 'alf/probe00/spikes.clusters.npy'), c[:-1])",
            B_CLUSTERS,
            "spike clusters but",
        ),
        (
            "c = np.load(os.path.join(d, 'alf/probe00/spikes.clusters.npy'))\nc[10] = 99\n\
             np.save(os.path.join(d, 'alf/probe00/spikes.clusters.npy'), c)",
            B_CLUSTERS,
            "has cluster 99 but",
        ),
        (
            "p = os.path.join(d, 'alf/probe00/spikes.times.npy')\nt = np.load(p)\n\
             t[20], t[21] = t[21] + 0.01, t[20]\nnp.save(p, t)",
            B_TIMES,
            "spike times are not sorted",
        ),
        (
            "p = os.path.join(d, 'alf/probe00/spikes.times.npy')\nt = np.load(p)\nt[5] = np.nan\nnp.save(p, t)",
            B_TIMES,
            "not a finite number",
        ),
    ];
    for (code, file, want) in cases {
        let tmp = TempDir::new("alf-spikes");
        let d = mutated(&tmp, 1, code);
        assert_refused(&tmp, &d, file, want, &[]);
    }
}

#[test]
fn bad_trials_and_labels() {
    let cases: [(&str, &str, &str, &[&str]); 4] = [
        (
            "p = os.path.join(d, 'alf/task_00/_ibl_trials.stimOn_times.npy')\nt = np.load(p)\n\
             t[-1] += 1000.0\nnp.save(p, t)",
            "alf/task_00/_ibl_trials.stimOn_times.npy",
            "lies outside the recording",
            &["--min-rt", "none"],
        ),
        (
            "p = os.path.join(d, 'alf/task_00/_ibl_trials.choice.npy')\nt = np.load(p)\n\
             t[6] = 2.0\nnp.save(p, t)",
            "alf/task_00/_ibl_trials.choice.npy",
            "choice 2 of trial 6",
            &[],
        ),
        (
            "p = os.path.join(d, 'alf/task_00/_ibl_trials.goCue_times.npy')\nt = np.load(p)\n\
             np.save(p, t[:-2])",
            "alf/task_00/_ibl_trials.goCue_times.npy",
            "`goCue_times` has 18 trials",
            &[],
        ),
        (
            "p = os.path.join(d, 'alf/probe00/channels.brainLocationIds_ccf_2017.npy')\n\
             t = np.load(p)\nt[1] = 123456789\nnp.save(p, t)",
            "alf/probe00/channels.brainLocationIds_ccf_2017.npy",
            "Allen id 123456789",
            &[],
        ),
    ];
    for (code, file, want, extra) in cases {
        let tmp = TempDir::new("alf-trials");
        let d = mutated(&tmp, 1, code);
        assert_refused(&tmp, &d, file, want, extra);
    }
}

#[test]
fn overlapping_windows_are_allowed_unless_refused() {
    // Trial 18 of SW001 starts 1 s after trial 17: their 3 s windows overlap.
    let tmp = TempDir::new("alf-overlap");
    let e = &expected()[0];
    let out = tmp.join("ds");
    import_ok(&[session_dir(e)], &out, &[]);
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.session(0).provenance["trials"]["overlapping_windows"], 1);
    let d = session_dir(e);
    let o = import(
        std::slice::from_ref(&d),
        &tmp.join("refused"),
        &["--no-overlap"],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the windows of trials 17 and 18 overlap"),
        "{err}"
    );
    assert!(
        err.contains(&d.join("alf/_ibl_trials.table.pqt").display().to_string()),
        "{err}"
    );
    assert!(!tmp.join("refused").exists());
}

#[test]
fn flag_errors() {
    let tmp = TempDir::new("alf-flags");
    let d = session_dir(&expected()[1]);
    for (extra, want) in [
        (vec!["--align", "lickTimes"], "unknown event"),
        (vec!["--bin-size", "0.007"], "not a whole number"),
        (
            vec!["--window-start", "1", "--window-end", "0.5"],
            "must end after it starts",
        ),
        (
            vec!["--nan-exclude", "stimOn_times,bogus"],
            "unknown trial attribute `bogus`",
        ),
        (vec!["--min-rate=-1"], "--min-rate"),
        (vec!["--bin-size", "0.0001"], "more than 10000"),
    ] {
        let out = tmp.join("ds");
        let o = import(std::slice::from_ref(&d), &out, &extra);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(!out.exists());
    }
}

#[test]
fn counts_above_255_need_clip() {
    let tmp = TempDir::new("alf-clip");
    // 300 spikes of cluster 0 in one 20 ms bin of trial 1.
    let d = mutated(
        &tmp,
        1,
        "tp = os.path.join(d, 'alf/probe00/spikes.times.npy')\n\
         cp = os.path.join(d, 'alf/probe00/spikes.clusters.npy')\n\
         t, c = np.load(tp), np.load(cp)\n\
         s = np.load(os.path.join(d, 'alf/task_00/_ibl_trials.stimOn_times.npy'))[1]\n\
         t = np.concatenate([t, s + 0.001 + np.linspace(0, 0.01, 300)])\n\
         c = np.concatenate([c, np.zeros(300, dtype=c.dtype)])\n\
         o = np.argsort(t, kind='stable')\nnp.save(tp, t[o])\nnp.save(cp, c[o])",
    );
    assert_refused(&tmp, &d, B_TIMES, "exceed 255", &[]);
    let out = tmp.join("clipped");
    import_ok(&[d], &out, &["--clip"]);
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.trial(0, 1).iter().copied().max(), Some(255));
    assert!(ds.session(0).provenance["clipped_counts"].as_u64().unwrap() >= 1);
}

#[test]
fn session_ids() {
    let tmp = TempDir::new("alf-id");
    let e = &expected()[1];
    // --id is checked with the store's rule.
    let o = import(&[session_dir(e)], &tmp.join("x"), &["--id", "../evil"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("session id"), "{}", stderr(&o));
    assert!(!tmp.join("x").exists());
    // A folder named by the eid gives the id.
    let eid = "db4df448-e449-4a6f-a0e7-288711e7a75a";
    let d = tmp.join(eid);
    copy_tree(&session_dir(e), &d);
    let out = tmp.join("ds");
    ndt_ok(&[
        "import".as_ref(),
        "alf".as_ref(),
        d.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(Dataset::open(&out).unwrap().session(0).id, eid);
    // The same session twice is refused, the dataset unchanged.
    let before = snapshot(&out);
    let o = import(&[d], &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already in the dataset"));
    assert_eq!(before, snapshot(&out));
}

#[test]
fn a_bad_second_session_leaves_the_dataset_as_it_was() {
    let tmp = TempDir::new("alf-second");
    let bad = mutated(
        &tmp,
        1,
        "c = np.load(os.path.join(d, 'alf/probe00/spikes.clusters.npy'))\nc[3] = 77\n\
         np.save(os.path.join(d, 'alf/probe00/spikes.clusters.npy'), c)",
    );
    let good = session_dir(&expected()[0]);
    // A new dataset is not created.
    let out = tmp.join("new");
    let o = import(&[good.clone(), bad.clone()], &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("has cluster 77"), "{}", stderr(&o));
    assert!(!out.exists());
    // An existing one keeps its bytes: the first session, already staged, is not committed.
    let existing = tmp.join("existing");
    import_ok(
        &[session_dir(&expected()[1])],
        &existing,
        &["--id", "other"],
    );
    let before = snapshot(&existing);
    let o = import(&[good, bad], &existing, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(before, snapshot(&existing));
}
