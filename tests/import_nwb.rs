//! `ndt import nwb` on files written by pynwb (tools/make_nwb_fixtures.py) and on a real
//! recording (fixtures/nwb/real, pynapple's test data). Each import is compared element for
//! element with numpy binning the spikes that h5py (libhdf5) read from the same file
//! (`<name>.h5py.npz`), by the rules of docs/import_nwb.md, in Python.

mod common;

use common::{TempDir, fixture, ndt, ndt_ok, run_python, snapshot, stderr};
use ndt::store::Dataset;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

fn src(name: &str) -> PathBuf {
    fixture(&format!("nwb/{name}"))
}

/// `ndt import nwb FILE --out DIR ARGS...`
fn import_args(file: &Path, dir: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["import".into(), "nwb".into(), file.into()];
    a.extend(["--out".into(), dir.into()]);
    a.extend(extra.iter().map(OsString::from));
    a
}

/// numpy's binning of `<name>.h5py.npz`, compared in Python with session `k` of `dir`.
/// `mode` is "column:NAME", "times:PATH" or "fixed"; `regions` the npz key of the expected
/// region labels. Prints and returns the number of trials checked.
const CHECK: &str = r#"
import json, os, sys
import numpy as np
npz, root, k, mode, regions, ws, bs, nb = sys.argv[1:9]
k, ws, bs, nb = int(k), float(ws), float(bs), int(nb)
z = np.load(npz)
m = json.load(open(os.path.join(root, "manifest.json")))
s = m["sessions"][k]
d = os.path.join(root, s["dir"])
got = np.load(os.path.join(d, "spikes.npy"))
st, ends, ids = z["spike_times"], z["index"], z["ids"]
starts_u = np.concatenate([[0], ends[:-1]])
keep = [u for u in range(len(ids)) if ends[u] > starts_u[u]]
trains = [st[starts_u[u]:ends[u]] for u in keep]
t0 = min(0.0, min(t[0] for t in trains))
t1 = max(t[-1] for t in trains)
width = bs * nb
if mode == "fixed":
    n = int(np.floor((t1 - t0) / width))
    wins = [t0 + i * width for i in range(n) if t0 + i * width + width <= t1]
    onset = None
else:
    if mode.startswith("column:"):
        align = z["trials_" + mode[7:]]
    else:
        p = mode[6:]
        align = np.load(p) if p.endswith(".npy") else np.loadtxt(p, ndmin=1)
    wins, rows = [], []
    for r, a in enumerate(align):
        if np.isnan(a):
            continue
        s0 = a + ws
        if s0 < t0 or s0 + width > t1:
            continue
        wins.append(s0)
        rows.append(r)
    onset = int(round(-ws / bs))
want = np.zeros((len(wins), nb, len(trains)), dtype=np.int64)
for i, s0 in enumerate(wins):
    for j, t in enumerate(trains):
        b = np.floor((t - s0) / bs)
        b = b[(b >= 0) & (b < nb)].astype(np.int64)
        want[i, :, j] = np.bincount(b, minlength=nb)
clip = s["provenance"]["flags"]["clip"]
if clip:
    want = np.minimum(want, 255)
assert got.shape == want.shape, (got.shape, want.shape)
assert np.array_equal(got.astype(np.int64), want), np.argwhere(got != want)[:5]
assert s["n_trials"] == len(wins) and s["n_bins"] == nb and s["n_neurons"] == len(trains)
assert s["onset_bin"] == onset, (s["onset_bin"], onset)
assert s["bin_size_s"] == bs
assert s["provenance"]["unit_ids"] == [int(ids[u]) for u in keep], s["provenance"]["unit_ids"]
if mode.startswith("column:") and "trials_choice" in z:
    want_choice = np.nan_to_num(z["trials_choice"][rows], nan=0.0).astype(np.int8)
    assert want_choice.any()
else:
    want_choice = np.zeros(len(wins), dtype=np.int8)
assert np.array_equal(np.load(os.path.join(d, "choice.npy")), want_choice)
# Empty labels are stored as "unknown".
want_regions = [str(x) if str(x).strip() else "unknown" for x in z[regions][keep]]
assert s["regions"] == want_regions, (s["regions"], want_regions)
assert np.load(os.path.join(d, "regions.npy")).tolist() == want_regions
print(len(wins), int(want.sum()))
"#;

/// Runs CHECK; returns (trials, total count).
fn check(
    name: &str,
    dir: &Path,
    k: usize,
    mode: &str,
    regions: &str,
    window: (f64, f64, usize),
) -> (usize, u64) {
    let npz = src(&format!("{name}.h5py.npz"));
    let args: Vec<PathBuf> = vec![
        npz,
        dir.to_path_buf(),
        k.to_string().into(),
        mode.into(),
        regions.into(),
        window.0.to_string().into(),
        window.1.to_string().into(),
        window.2.to_string().into(),
    ];
    let refs: Vec<&Path> = args.iter().map(|p| p.as_path()).collect();
    let out = run_python(CHECK, &refs);
    let mut it = out.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap() as usize, it.next().unwrap())
}

const PAPER: (f64, f64, usize) = (-0.5, 0.02, 150);

#[test]
fn trials_aligned_to_stimulus_match_numpy() {
    let d = TempDir::new("nwb-trials");
    let dir = d.join("ds");
    let out = ndt_ok(&import_args(
        &src("trials.nwb"),
        &dir,
        &["--align", "stim_on_time"],
    ));
    assert!(out.contains("imported `sess-01`"), "{out}");
    let (trials, total) = check("trials", &dir, 0, "column:stim_on_time", "location", PAPER);
    // 20 trials 3.3 s apart from 2 s in a 70 s recording: every 3 s window fits.
    assert_eq!(trials, 20);
    assert!(total > 1000, "{total}");
    let ds = Dataset::open(&dir).unwrap();
    let s = ds.session(0);
    assert_eq!(s.id, "sess-01", "the id comes from /general/session_id");
    assert_eq!((s.n_bins, s.onset_bin, s.bin_size_s), (150, Some(25), 0.02));
    assert_eq!(s.lab, "fixture-lab");
    assert_eq!(s.subject, "unknown");
    // Three electrode groups with different locations give three regions.
    let mut r = s.regions.clone();
    r.sort();
    r.dedup();
    assert_eq!(r, ["CA1", "LP", "VISp"]);
    let p = &s.provenance;
    assert_eq!(p["importer"], "nwb");
    assert_eq!(p["choice_from"], "/intervals/trials/choice");
    assert_eq!(p["flags"]["align"], "stim_on_time");
    assert_eq!(p["trials_in_source"], 20);
    assert_eq!(p["dropped_trials"], serde_json::json!({}));
    assert_eq!(p["overlapping_windows"], 0);
    assert_eq!(
        p["regions_from"],
        "/general/extracellular_ephys/electrodes/location via /units/electrodes"
    );
}

#[test]
fn provenance_names_the_file_its_size_and_hash() {
    let d = TempDir::new("nwb-prov");
    let dir = d.join("ds");
    let f = src("trials.nwb");
    ndt_ok(&import_args(&f, &dir, &[]));
    let ds = Dataset::open(&dir).unwrap();
    let p = &ds.session(0).provenance;
    let code = "import hashlib, os, sys; p = sys.argv[1]; \
                print(os.path.getsize(p), hashlib.sha256(open(p, 'rb').read()).hexdigest())";
    let out = run_python(code, &[&f]);
    let mut it = out.split_whitespace();
    assert_eq!(p["source_bytes"].to_string(), it.next().unwrap());
    assert_eq!(p["source_sha256"], it.next().unwrap());
    assert_eq!(p["nwb_version"], "2.11.0");
    assert_eq!(p["flags"]["window_start_s"], -0.5);
    assert_eq!(p["flags"]["n_bins"], 150);
    assert!(
        p["source"]
            .as_str()
            .unwrap()
            .ends_with("fixtures/nwb/trials.nwb")
    );
}

#[test]
fn default_alignment_and_a_units_region_column() {
    let d = TempDir::new("nwb-acronym");
    let dir = d.join("ds");
    ndt_ok(&import_args(
        &src("trials.nwb"),
        &dir,
        &["--region-column", "acronym", "--id", "renamed"],
    ));
    check(
        "trials",
        &dir,
        0,
        "column:start_time",
        "units_acronym",
        PAPER,
    );
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.session(0).id, "renamed");
    assert_eq!(ds.session(0).provenance["regions_from"], "/units/acronym");
}

#[test]
fn no_trials_table_gives_fixed_windows_and_a_bad_id_asks_for_id() {
    let d = TempDir::new("nwb-fixed");
    let dir = d.join("ds");
    // The file's identifier has spaces and a slash: refused, naming --id.
    let out = ndt(&import_args(&src("no_trials.nwb"), &dir, &[]));
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("no_trials.nwb") && e.contains("--id"), "{e}");
    assert!(
        !dir.exists(),
        "a failed import into a new directory leaves nothing"
    );
    // An --id that breaks the same rule is refused too.
    let out = ndt(&import_args(
        &src("no_trials.nwb"),
        &dir,
        &["--id", "../up"],
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--id `../up`"), "{}", stderr(&out));
    assert!(!dir.exists());

    ndt_ok(&import_args(
        &src("no_trials.nwb"),
        &dir,
        &["--id", "no-trials"],
    ));
    let (trials, _) = check("no_trials", &dir, 0, "fixed", "location", PAPER);
    // 60 s of spikes in 3 s windows.
    assert!((18..=20).contains(&trials), "{trials}");
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.session(0).onset_bin, None);
    let p = &ds.session(0).provenance;
    assert_eq!(
        p["flags"]["fixed_windows"], false,
        "not asked for: the file has no trials"
    );
    assert!(
        p["windows"]
            .as_str()
            .unwrap()
            .starts_with("consecutive 3 s windows"),
        "{p}"
    );
    // --align on a file without trials is refused.
    let out = ndt(&import_args(
        &src("no_trials.nwb"),
        &d.join("ds2"),
        &["--id", "x", "--align", "stim_on_time"],
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no trials table"), "{}", stderr(&out));
}

#[test]
fn newest_file_format_reads_the_same() {
    // Superblock v3 and version-2 object headers (h5py libver="latest").
    let d = TempDir::new("nwb-latest");
    let dir = d.join("ds");
    ndt_ok(&import_args(&src("latest.nwb"), &dir, &[]));
    let (trials, total) = check("latest", &dir, 0, "fixed", "location", PAPER);
    assert!(trials >= 18 && total > 500, "{trials} {total}");
}

#[test]
fn fixed_windows_flag_ignores_the_trials_table() {
    let d = TempDir::new("nwb-forced");
    let dir = d.join("ds");
    ndt_ok(&import_args(&src("trials.nwb"), &dir, &["--fixed-windows"]));
    let (trials, _) = check("trials", &dir, 0, "fixed", "location", PAPER);
    // 70 s of spikes in 3 s windows, not the table's 20 trials.
    assert_eq!(trials, 23);
    assert_eq!(Dataset::open(&dir).unwrap().session(0).onset_bin, None);
}

#[test]
fn alignment_times_from_text_and_npy_files() {
    let d = TempDir::new("nwb-times");
    let txt = d.join("times.txt");
    let npy = d.join("times.npy");
    // Trial starts + 0.25 s, written by numpy from what h5py read; plus a NaN (dropped) and a
    // time so late its window runs past the recording (dropped).
    let code = "import sys, numpy as np; z = np.load(sys.argv[1]); \
                t = np.concatenate([z['trials_start_time'] + 0.25, [np.nan, 69.0]]); \
                np.savetxt(sys.argv[2], t, header='alignment times'); np.save(sys.argv[3], t)";
    run_python(code, &[&src("trials.h5py.npz"), &txt, &npy]);
    for (k, f) in [&txt, &npy].into_iter().enumerate() {
        let dir = d.join(&format!("ds{k}"));
        let fs = f.to_str().unwrap();
        ndt_ok(&import_args(
            &src("trials.nwb"),
            &dir,
            &["--align-times", fs],
        ));
        let (trials, _) = check("trials", &dir, 0, &format!("times:{fs}"), "location", PAPER);
        assert_eq!(trials, 20);
        let ds = Dataset::open(&dir).unwrap();
        let p = &ds.session(0).provenance;
        assert_eq!(p["trials_in_source"], 22);
        assert_eq!(p["dropped_trials"]["alignment time is NaN"], 1);
        assert_eq!(p["dropped_trials"]["window extends past the recording"], 1);
    }
    // A times file that is not times: the error names it.
    let bad = d.join("bad_times.txt");
    std::fs::write(&bad, "1.5\nsoon\n").unwrap();
    let out = ndt(&import_args(
        &src("trials.nwb"),
        &d.join("ds-bad"),
        &["--align-times", bad.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("bad_times.txt") && e.contains("line 2"), "{e}");
}

#[test]
fn a_units_region_column_stands_in_for_missing_electrodes() {
    // bad/no_electrodes.nwb is refused without --region-column (see the bad-input test).
    let d = TempDir::new("nwb-noelec");
    let dir = d.join("ds");
    ndt_ok(&import_args(
        &src("bad/no_electrodes.nwb"),
        &dir,
        &["--region-column", "acronym"],
    ));
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.session(0).regions[..3], ["VISp1", "VISp2/3", "CA1"]);
}

#[test]
fn windows_longer_than_the_trial_gap_are_allowed_and_counted() {
    let d = TempDir::new("nwb-overlap");
    let dir = d.join("ds");
    // 200 bins of 20 ms = 4 s windows; trials are about 3.3 s apart.
    let out = ndt_ok(&import_args(
        &src("trials.nwb"),
        &dir,
        &["--n-bins", "200", "--window-start", "-1.0"],
    ));
    assert!(out.contains("overlap"), "{out}");
    check(
        "trials",
        &dir,
        0,
        "column:start_time",
        "location",
        (-1.0, 0.02, 200),
    );
    let ds = Dataset::open(&dir).unwrap();
    let p = &ds.session(0).provenance;
    assert!(p["overlapping_windows"].as_u64().unwrap() >= 18, "{p}");
    assert_eq!(ds.session(0).onset_bin, Some(50));
}

#[test]
fn counts_above_255_need_clip() {
    let d = TempDir::new("nwb-dense");
    let dir = d.join("ds");
    let out = ndt(&import_args(&src("dense.nwb"), &dir, &[]));
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("dense.nwb") && e.contains("exceeds 255") && e.contains("--clip"),
        "{e}"
    );
    assert!(!dir.exists());
    let out = ndt_ok(&import_args(&src("dense.nwb"), &dir, &["--clip"]));
    assert!(out.contains("clipped"), "{out}");
    check("dense", &dir, 0, "column:start_time", "location", PAPER);
    let ds = Dataset::open(&dir).unwrap();
    assert!(ds.counts(0).contains(&255));
    // One bin of one trial per trial holds 300 spikes.
    assert_eq!(ds.session(0).provenance["clipped_counts"], 16);
}

#[test]
fn real_recording_imports_and_inspects() {
    let d = TempDir::new("nwb-real");
    let dir = d.join("ds");
    let f = src("real/A8604-211122.nwb");
    // Its units table has no `electrodes` column: the error says to name a region column.
    let out = ndt(&import_args(&f, &dir, &[]));
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("A8604-211122.nwb") && e.contains("--region-column") && e.contains("location"),
        "{e}"
    );
    ndt_ok(&import_args(&f, &dir, &["--region-column", "location"]));
    let (trials, total) = check(
        "real/A8604-211122",
        &dir,
        0,
        "fixed",
        "units_location",
        PAPER,
    );
    // 1087 s of recording in 3 s windows.
    assert_eq!(trials, 362);
    assert!(total > 20_000, "{total}");
    let ds = Dataset::open(&dir).unwrap();
    let s = ds.session(0);
    assert_eq!(s.id, "A8604-211122");
    assert_eq!(s.n_neurons, 3);
    // The file leaves subject, lab and locations empty.
    assert_eq!((s.subject.as_str(), s.lab.as_str()), ("unknown", "unknown"));
    assert_eq!(s.regions, ["unknown"; 3]);
    assert_eq!(s.provenance["empty_region_labels"], 3);
    let out = ndt_ok(&[OsString::from("inspect"), dir.clone().into()]);
    assert!(out.contains("A8604-211122"), "{out}");
}

#[test]
fn same_input_same_bytes() {
    let d = TempDir::new("nwb-det");
    let a = d.join("a");
    let b = d.join("b");
    for dir in [&a, &b] {
        let mut args = import_args(&src("trials.nwb"), dir, &[]);
        args.push(src("dense.nwb").into());
        args.push("--clip".into());
        ndt_ok(&args);
    }
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
    assert!(sa.len() > 4);
    for (k, v) in &sa {
        assert_eq!(v, &sb[k], "{k} differs between two identical imports");
    }
}

/// Bad inputs: exit 1, an error naming the file and the problem, the dataset untouched.
#[test]
fn bad_files_are_refused_and_leave_the_dataset_untouched() {
    let d = TempDir::new("nwb-bad");
    let dir = d.join("ds");
    ndt_ok(&import_args(
        &src("trials.nwb"),
        &dir,
        &["--id", "existing"],
    ));
    let before = snapshot(&dir);

    // Truncated copies of a good file, and a file that is not HDF5.
    let good = std::fs::read(src("trials.nwb")).unwrap();
    let mut cases: Vec<(PathBuf, Vec<&str>, &str)> = Vec::new();
    for (name, len) in [("half.nwb", good.len() / 2), ("short.nwb", 100)] {
        let p = d.join(name);
        std::fs::write(&p, &good[..len]).unwrap();
        cases.push((p, vec![], if len > 1000 { "truncated" } else { "HDF5" }));
    }
    let p = d.join("text.nwb");
    std::fs::write(&p, "not hdf5 at all\n").unwrap();
    cases.push((p, vec![], "not an HDF5 file"));
    for (name, needle) in [
        ("unsorted.nwb", "not sorted"),
        ("nan.nwb", "not a finite number"),
        ("index_range.nwb", "past the end of spike_times"),
        ("index_order.nwb", "not monotone"),
        ("no_electrodes.nwb", "no `electrodes` column"),
        ("trial_outside.nwb", "outside the recording"),
    ] {
        cases.push((src(&format!("bad/{name}")), vec![], needle));
    }
    cases.push((
        src("trials.nwb"),
        vec!["--align", "stim_off_time"],
        "no such column",
    ));
    cases.push((
        src("trials.nwb"),
        vec!["--region-column", "nope"],
        "--region-column nope",
    ));
    cases.push((src("dense.nwb"), vec![], "exceeds 255"));
    cases.push((
        src("trials.nwb"),
        vec!["--min-trials", "21"],
        "fewer than a batch",
    ));
    for (file, extra, needle) in &cases {
        let mut extra = extra.clone();
        extra.extend(["--id", "new"]);
        let out = ndt(&import_args(file, &dir, &extra));
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {e}", file.display());
        let fname = file.file_name().unwrap().to_str().unwrap();
        assert!(
            e.contains(fname) && e.contains(needle),
            "{fname}: expected `{needle}` in: {e}"
        );
        assert_eq!(snapshot(&dir), before, "{fname} changed the dataset");
    }
    // A bad file among good ones: nothing of the good ones is written either.
    let mut args = import_args(&src("dense.nwb"), &dir, &["--clip"]);
    args.push(src("bad/unsorted.nwb").into());
    let out = ndt(&args);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(snapshot(&dir), before);
}

/// A dataset extent far beyond what the file can hold is refused before anything is sized by it.
#[test]
fn corrupt_extent_is_refused_before_allocating() {
    let d = TempDir::new("nwb-extent");
    let dir = d.join("ds");
    let mut bytes = std::fs::read(src("trials.nwb")).unwrap();
    // The dataspace of /units/spike_times stores its length as a little-endian u64: the only
    // such occurrence in the file (the spike data themselves are deflated).
    let n = run_python(
        "import sys, numpy as np; print(len(np.load(sys.argv[1])['spike_times']))",
        &[&src("trials.h5py.npz")],
    );
    let pat = n.trim().parse::<u64>().unwrap().to_le_bytes();
    let at: Vec<usize> = (0..bytes.len() - 8)
        .filter(|&i| bytes[i..i + 8] == pat)
        .collect();
    assert_eq!(at.len(), 1, "{at:?}");
    bytes[at[0]..at[0] + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let f = d.join("extent.nwb");
    std::fs::write(&f, &bytes).unwrap();
    let out = ndt(&import_args(&f, &dir, &["--id", "x"]));
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("extent.nwb") && e.contains("/units/spike_times") && e.contains("corrupt"),
        "{e}"
    );
    assert!(!dir.exists());
}

/// Bytes changed at random places: the import succeeds or fails with exit 1 (an error, never a
/// crash), and a failure leaves the dataset as it was.
#[test]
fn corrupted_bytes_never_crash_the_import() {
    let d = TempDir::new("nwb-flip");
    let dir = d.join("ds");
    ndt_ok(&import_args(&src("no_trials.nwb"), &dir, &["--id", "base"]));
    let before = snapshot(&dir);
    let good = std::fs::read(src("trials.nwb")).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut failed, mut passed) = (0, 0);
    for case in 0..48 {
        let mut b = good.clone();
        for _ in 0..(1 + case % 8) {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        let f = d.join("flip.nwb");
        std::fs::write(&f, &b).unwrap();
        let out = ndt(&import_args(&f, &dir, &["--id", &format!("case-{case}")]));
        match out.status.code() {
            Some(0) => passed += 1,
            Some(1) => {
                failed += 1;
                assert!(stderr(&out).contains("flip.nwb"), "{}", stderr(&out));
                assert_eq!(snapshot(&dir), before, "case {case} changed the dataset");
            }
            other => panic!("case {case}: exit {other:?}: {}", stderr(&out)),
        }
        if out.status.success() {
            // Keep comparing against the dataset as it now is.
            let _ = std::fs::remove_dir_all(&dir);
            ndt_ok(&import_args(&src("no_trials.nwb"), &dir, &["--id", "base"]));
        }
    }
    assert!(failed > 0, "no corruption was detected in 48 cases");
    eprintln!("{passed} imported, {failed} refused");
}

#[test]
fn units_without_spikes_are_dropped_and_counted() {
    let d = TempDir::new("nwb-empty");
    let dir = d.join("ds");
    let out = ndt_ok(&import_args(&src("empty_units.nwb"), &dir, &[]));
    assert!(out.contains("2 units without spikes dropped"), "{out}");
    // CHECK keeps the units whose index range is not empty, and compares ids and regions.
    check("empty_units", &dir, 0, "fixed", "location", PAPER);
    let ds = Dataset::open(&dir).unwrap();
    let p = &ds.session(0).provenance;
    assert_eq!(ds.session(0).n_neurons, 2);
    assert_eq!(p["dropped_units"]["no spikes"], 2);
    assert_eq!(p["dropped_unit_ids"], serde_json::json!([100, 102]));
    assert_eq!(p["unit_ids"], serde_json::json!([101, 103]));
    assert_eq!(ds.session(0).regions, ["ORBl", "ORBl"]);
}
