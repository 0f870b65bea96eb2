//! `ndt import npy` on fixtures written by numpy (tools/make_npy_fixtures.py), compared with the
//! values that script computed with numpy (fixtures/npy/expected.json), then read back by numpy.

mod common;

use common::{TempDir, fixture, ndt, ndt_ok, npy_expected, run_python, snapshot, stderr};
use ndt::store::{Dataset, SplitName};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Good fixtures that import without flags, with the session id each gets.
const GOOD: [(&str, &str); 8] = [
    ("c_u8", "c-u8-session"),
    ("fortran_i64", "fortran_i64"),
    ("i16", "i16"),
    ("f64_integral", "f64_integral"),
    ("big_endian", "big_endian"),
    ("v3_header", "v3_header"),
    ("session.npz", "session"),
    ("stored.npz", "stored"),
];

fn src(name: &str) -> PathBuf {
    fixture(&format!("npy/{name}"))
}

/// Imports every good fixture in one command into `dir`.
fn import_all(dir: &Path) {
    let mut args: Vec<PathBuf> = vec!["import".into(), "npy".into()];
    args.extend(GOOD.iter().map(|(n, _)| src(n)));
    args.extend(["--out".into(), dir.to_path_buf()]);
    ndt_ok(&args);
}

/// Compares session `id` of `ds` with the numpy-computed expectations of fixture `name`.
fn check_session(ds: &Dataset, id: &str, want: &Value) {
    let s = ds
        .find(id)
        .unwrap_or_else(|| panic!("session {id} missing"));
    let info = ds.session(s);
    let shape: Vec<usize> = serde_json::from_value(want["shape"].clone()).unwrap();
    assert_eq!(
        vec![info.n_trials, info.n_bins, info.n_neurons],
        shape,
        "{id}"
    );
    let counts: Vec<u8> = serde_json::from_value(want["counts"].clone()).unwrap();
    let tn = shape[1] * shape[2];
    for t in 0..shape[0] {
        assert_eq!(
            ds.trial(s, t),
            &counts[t * tn..(t + 1) * tn],
            "{id} trial {t}"
        );
    }
    let sum: u64 = ds.counts(s).iter().map(|&c| c as u64).sum();
    assert_eq!(sum, want["sum"].as_u64().unwrap(), "{id}");
    let regions: Vec<String> = serde_json::from_value(want["regions"].clone()).unwrap();
    assert_eq!(info.regions, regions, "{id}");
    let choice: Vec<i8> = serde_json::from_value(want["choice"].clone()).unwrap();
    assert_eq!(ds.choice(s).unwrap(), choice, "{id}");
    let behaviour = want["behaviour"].as_object().unwrap();
    assert_eq!(info.behaviour.len(), behaviour.len(), "{id}");
    for (name, values) in behaviour {
        // expected.json holds the float32 values exactly as decimal; compare in float32 (the
        // JSON parser may land one f64 ulp away from the decimal, never one f32 ulp).
        let v: Vec<f32> = serde_json::from_value::<Vec<f64>>(values.clone())
            .unwrap()
            .into_iter()
            .map(|x| x as f32)
            .collect();
        assert_eq!(ds.behaviour(s, name).unwrap(), v, "{id} {name}");
    }
    assert_eq!(info.provenance["importer"], "npy");
}

#[test]
fn numpy_fixtures_import_exactly() {
    let d = TempDir::new("imp-good");
    let dir = d.join("ds");
    import_all(&dir);
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.n_sessions(), GOOD.len());
    let expected = npy_expected();
    for (k, (name, id)) in GOOD.iter().enumerate() {
        assert_eq!(
            ds.session(k).id,
            *id,
            "sessions keep the order of the command line"
        );
        check_session(&ds, id, &expected[*name]);
    }
    // meta.json of c_u8 supplies the metadata.
    let c = ds.session(0);
    assert_eq!((c.subject.as_str(), c.lab.as_str()), ("KS014", "cortexlab"));
    assert_eq!((c.bin_size_s, c.onset_bin), (0.02, Some(2)));
    // Defaults where nothing is given.
    let f = ds.session(1);
    assert_eq!((f.subject.as_str(), f.lab.as_str()), ("unknown", "unknown"));
    assert_eq!((f.bin_size_s, f.onset_bin), (0.02, None));
    assert_eq!(f.provenance["source_fortran_order"], true);
    assert_eq!(f.provenance["source_dtype"], "<i8");
}

#[test]
fn numpy_reads_the_dataset_back() {
    let d = TempDir::new("imp-numpy");
    let dir = d.join("ds");
    import_all(&dir);
    // For every session: every .npy opens with mmap_mode="r", and equals its source.
    let code = r#"
import json, os, sys
import numpy as np
root = sys.argv[1]
m = json.load(open(os.path.join(root, "manifest.json")))
n = 0
for s in m["sessions"]:
    d = os.path.join(root, s["dir"])
    files = sorted(f for f in os.listdir(d) if f.endswith(".npy"))
    arrs = {f[:-4]: np.load(os.path.join(d, f), mmap_mode="r") for f in files}
    sp = arrs["spikes"]
    assert sp.dtype == np.uint8 and sp.flags.c_contiguous, (s["id"], sp.dtype)
    assert sp.shape == (s["n_trials"], s["n_bins"], s["n_neurons"]), s["id"]
    source = s["provenance"]["source"]
    if source.endswith(".npz"):
        z = np.load(source)
        srcs = {k: z[k] for k in z.files}
    else:
        srcs = {f[:-4]: np.load(os.path.join(source, f)) for f in os.listdir(source) if f.endswith(".npy")}
    assert np.array_equal(sp, srcs["spikes"]), s["id"]
    assert arrs["choice"].dtype == np.int8
    if "choice" in srcs:
        c = np.nan_to_num(srcs["choice"].astype(np.float64), nan=0.0)
        assert np.array_equal(arrs["choice"], c), s["id"]
    else:
        assert not arrs["choice"].any()
    if "regions" in srcs:
        r = [x.decode() if isinstance(x, bytes) else str(x) for x in srcs["regions"].tolist()]
        assert arrs["regions"].tolist() == r, s["id"]
    assert arrs["regions"].tolist() == s["regions"], s["id"]
    for b in s["behaviour"]:
        assert arrs[b].dtype == np.float32
        assert np.array_equal(arrs[b], srcs[b].astype(np.float32)), (s["id"], b)
    assert sorted(s["split"]["train"] + s["split"]["val"] + s["split"]["test"]) == list(range(s["n_trials"]))
    n += 1
print("checked", n)
"#;
    let out = run_python(code, &[&dir]);
    assert_eq!(out.trim(), format!("checked {}", GOOD.len()));
}

#[test]
fn clip_flag_clips_counts() {
    let d = TempDir::new("imp-clip");
    let dir = d.join("ds");
    let out = ndt_ok(&[
        "import".as_ref(),
        "npy".as_ref(),
        src("clip").as_os_str(),
        "--clip".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    assert!(out.contains("clipped to 255"), "{out}");
    let ds = Dataset::open(&dir).unwrap();
    check_session(&ds, "clip", &npy_expected()["clip"]);
    assert!(ds.counts(0).contains(&255));
    assert!(ds.session(0).provenance["clipped_counts"].as_u64().unwrap() > 0);
}

#[test]
fn flags_override_meta_json() {
    let d = TempDir::new("imp-flags");
    let dir = d.join("ds");
    let c = src("c_u8");
    let args: Vec<&std::ffi::OsStr> = vec![
        "import".as_ref(),
        "npy".as_ref(),
        c.as_os_str(),
        "--out".as_ref(),
        dir.as_os_str(),
        "--id".as_ref(),
        "renamed".as_ref(),
        "--subject".as_ref(),
        "NYU-01".as_ref(),
        "--lab".as_ref(),
        "angelakilab".as_ref(),
        "--bin-size".as_ref(),
        "0.01".as_ref(),
        "--onset-bin".as_ref(),
        "5".as_ref(),
        "--split-seed".as_ref(),
        "7".as_ref(),
    ];
    ndt_ok(&args);
    let ds = Dataset::open(&dir).unwrap();
    let s = ds.session(0);
    assert_eq!(s.id, "renamed");
    assert_eq!(
        (s.subject.as_str(), s.lab.as_str()),
        ("NYU-01", "angelakilab")
    );
    assert_eq!((s.bin_size_s, s.onset_bin), (0.01, Some(5)));
    assert_eq!(s.split.seed, 7);
    assert_eq!(s.split, ndt::store::writer::split_trials(20, 7));
    assert_eq!(
        (
            s.split(SplitName::Train).len(),
            s.split(SplitName::Val).len(),
            s.split(SplitName::Test).len()
        ),
        (16, 2, 2)
    );

    // --id names one session only.
    let out = ndt(&[
        "import".as_ref(),
        "npy".as_ref(),
        src("i16").as_os_str(),
        src("v3_header").as_os_str(),
        "--id".as_ref(),
        "x".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--id"), "{}", stderr(&out));
}

#[test]
fn import_adds_to_an_existing_dataset() {
    let d = TempDir::new("imp-add");
    let dir = d.join("ds");
    let run = |name: &str| {
        ndt_ok(&[
            "import".as_ref(),
            "npy".as_ref(),
            src(name).as_os_str(),
            "--out".as_ref(),
            dir.as_os_str(),
        ])
    };
    run("c_u8");
    let first = snapshot(&dir.join("sessions/0000"));
    run("session.npz");
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.n_sessions(), 2);
    assert_eq!(ds.session(1).dir, "sessions/0001");
    check_session(&ds, "c-u8-session", &npy_expected()["c_u8"]);
    check_session(&ds, "session", &npy_expected()["session.npz"]);
    assert_eq!(snapshot(&dir.join("sessions/0000")), first);
    // The same session again is a duplicate id, and changes nothing.
    let before = snapshot(&dir);
    let out = ndt(&[
        "import".as_ref(),
        "npy".as_ref(),
        src("c_u8").as_os_str(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("c-u8-session") && stderr(&out).contains("already"));
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn inspect_reports_sessions_rates_and_splits() {
    let d = TempDir::new("imp-inspect");
    let dir = d.join("ds");
    import_all(&dir);
    let expected = npy_expected();
    let json: Value = serde_json::from_str(&ndt_ok(&[
        "inspect".as_ref(),
        dir.as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap();
    assert_eq!(json["n_sessions"], GOOD.len());
    let sessions = json["sessions"].as_array().unwrap();
    let mut trials = 0;
    for ((name, id), s) in GOOD.iter().zip(sessions) {
        let want = &expected[*name];
        assert_eq!(s["id"], *id);
        let shape: Vec<f64> = serde_json::from_value(want["shape"].clone()).unwrap();
        // Rate from numpy's sum: counts / (trials * bins * neurons * bin size).
        let rate = want["sum"].as_f64().unwrap() / (shape.iter().product::<f64>() * 0.02);
        let got = s["mean_rate_hz"].as_f64().unwrap();
        assert!(
            (got - rate).abs() < 1e-9 * rate.max(1.0),
            "{id}: {got} vs {rate}"
        );
        let n = shape[0] as usize;
        let split = &s["split"];
        assert_eq!(split["val"].as_u64().unwrap() as usize, (n + 5) / 10);
        assert_eq!(
            (split["train"].as_u64().unwrap()
                + split["val"].as_u64().unwrap()
                + split["test"].as_u64().unwrap()) as usize,
            n
        );
        trials += n;
    }
    assert_eq!(json["n_trials"].as_u64().unwrap() as usize, trials);
    assert_eq!(
        sessions[0]["regions"],
        serde_json::json!([["VISp", 2], ["CA1", 2], ["LP", 1]])
    );

    let table = ndt_ok(&["inspect".as_ref(), dir.as_os_str()]);
    assert!(table.contains("8 sessions"), "{table}");
    assert!(
        table.contains("c-u8-session") && table.contains("VISp:2 CA1:2 LP:1"),
        "{table}"
    );
    assert!(table.contains("16/2/2"), "{table}");
}

/// A real recording (Stevenson et al. 2011 macaque M1, 310 windows of 50 bins, 171 neurons;
/// provenance in fixtures/m1_reaching/README.json), kept in the checkout so that the test runs
/// on every machine: it must import and read back unchanged.
#[test]
fn real_m1_reaching_session_imports() {
    let p = fixture("m1_reaching/session.npz");
    assert!(p.is_file(), "{} is missing from the checkout", p.display());
    let d = TempDir::new("imp-m1");
    let dir = d.join("ds");
    ndt_ok(&[
        "import".as_ref(),
        "npy".as_ref(),
        p.as_os_str(),
        "--id".as_ref(),
        "m1_reaching".as_ref(),
        "--bin-size".as_ref(),
        "0.05".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    let ds = Dataset::open(&dir).unwrap();
    let s = ds.session(0);
    assert_eq!((s.n_trials, s.n_bins, s.n_neurons), (310, 50, 171));
    assert!(s.regions.iter().all(|r| r == "M1"));
    let code = r#"
import sys, numpy as np
a = np.load(sys.argv[1])["spikes"]
b = np.load(sys.argv[2] + "/sessions/0000/spikes.npy", mmap_mode="r")
assert a.shape == b.shape and np.array_equal(a, b)
print(int(a.astype(np.int64).sum()))
"#;
    let sum: u64 = run_python(code, &[&p, &dir]).trim().parse().unwrap();
    assert_eq!(ds.counts(0).iter().map(|&c| c as u64).sum::<u64>(), sum);
}
