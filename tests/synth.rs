//! `ndt synth`: determinism, round trip through the store, NumPy compatibility, and the
//! statistics the generator promises (docs/synth.md).

use ndt::store::Dataset;
use ndt::synth::{Config, Plan, Preset};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn ndt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ndt"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ndt-test-synth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn python() -> PathBuf {
    let p = match std::env::var_os("NDT_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    };
    assert!(
        p.exists(),
        "python not found at {} (set NDT_PYTHON or run tools/setup.sh)",
        p.display()
    );
    p
}

/// Runs `ndt synth` with `args` into `out`; panics with stderr on failure.
fn synth(out: &Path, args: &[&str]) {
    let o = ndt()
        .arg("synth")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ndt synth {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
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

const TINY_RS: [&str; 7] = [
    "--preset",
    "rs",
    "--tiny",
    "--sessions",
    "12",
    "--animals",
    "3",
];

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let (a, b, c) = (tmp("det-a"), tmp("det-b"), tmp("det-c"));
    synth(
        &a,
        &["--preset", "bwm", "--tiny", "--seed", "7", "--threads", "1"],
    );
    synth(
        &b,
        &["--preset", "bwm", "--tiny", "--seed", "7", "--threads", "3"],
    );
    synth(
        &c,
        &["--preset", "bwm", "--tiny", "--seed", "8", "--threads", "3"],
    );
    let (sa, sb, sc) = (snapshot(&a), snapshot(&b), snapshot(&c));
    assert!(sa.keys().any(|k| k.ends_with("spikes.npy")));
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
    for (k, v) in &sa {
        assert!(
            v == &sb[k],
            "{} differs between 1 and 3 threads",
            k.display()
        );
    }
    let spikes = PathBuf::from("sessions/0000/spikes.npy");
    assert_ne!(
        sa[&spikes], sc[&spikes],
        "a different seed gives the same counts"
    );
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn store_round_trip_is_bit_exact() {
    let dir = tmp("roundtrip");
    synth(&dir, &["--preset", "bwm", "--tiny", "--seed", "3"]);
    let ds = Dataset::open(&dir).unwrap();
    // The same configuration through the library.
    let mut cfg = Config::preset(Preset::Bwm);
    cfg.sessions = 6;
    cfg.animals = 2;
    cfg.trials = (64, 96);
    cfg.neurons = (40, 80);
    cfg.seed = 3;
    let plan = Plan::new(&cfg).unwrap();
    assert_eq!(ds.n_sessions(), plan.sessions.len());
    let mut scratch = ndt::synth::model::Scratch::default();
    for (s, sp) in plan.sessions.iter().enumerate() {
        let info = ds.session(s);
        let model = plan.session_model(sp).unwrap();
        let meta = plan.new_session(sp, &model);
        assert_eq!(info.id, sp.id);
        assert_eq!(
            (info.n_trials, info.n_bins, info.n_neurons),
            (meta.n_trials, meta.n_bins, meta.n_neurons)
        );
        assert_eq!(info.regions, meta.regions);
        assert_eq!(info.animal, meta.animal);
        assert_eq!(ds.choice(s).unwrap(), meta.choice);
        for (name, values) in &meta.behaviour {
            assert_eq!(&ds.behaviour(s, name).unwrap(), values, "behaviour {name}");
        }
        let mut buf = vec![0u8; info.n_bins * info.n_neurons];
        for t in 0..info.n_trials {
            model.fill_trial(t, &mut buf, &mut scratch).unwrap();
            assert!(ds.trial(s, t) == buf.as_slice(), "session {s} trial {t}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn numpy_opens_every_array() {
    let dir = tmp("numpy");
    synth(&dir, &["--preset", "rs", "--tiny", "--sessions", "3"]);
    let script = r#"
import json, os, sys
import numpy as np
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
n = 0
for s in m["sessions"]:
    sd = os.path.join(d, s["dir"])
    x = np.load(os.path.join(sd, "spikes.npy"), mmap_mode="r")
    assert x.dtype == np.uint8 and x.shape == (s["n_trials"], s["n_bins"], s["n_neurons"]), x.shape
    assert x.flags["C_CONTIGUOUS"]
    c = np.load(os.path.join(sd, "choice.npy"), mmap_mode="r")
    assert c.dtype == np.int8 and c.shape == (s["n_trials"],)
    assert set(np.unique(c).tolist()) <= {-1, 1}
    for b in s["behaviour"]:
        v = np.load(os.path.join(sd, b + ".npy"), mmap_mode="r")
        assert v.dtype == np.float32 and v.shape == (s["n_trials"],), b
    for f in os.listdir(sd):
        np.load(os.path.join(sd, f), mmap_mode="r")
        n += 1
print(n)
"#;
    let o = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "numpy could not open the arrays: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let n: usize = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(n >= 3 * 5, "only {n} arrays opened");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Mean firing rate (Hz) of each session.
fn session_rates(ds: &Dataset) -> Vec<f64> {
    (0..ds.n_sessions())
        .map(|s| {
            let c = ds.counts(s);
            let total: u64 = c.iter().map(|&v| v as u64).sum();
            total as f64 / c.len() as f64 / ds.session(s).bin_size_s
        })
        .collect()
}

/// Choice decoding by a nearest-class-mean statistic: each trial's mean count per neuron after
/// stimulus onset, projected on the difference of the class means of the train split and
/// thresholded half-way; accuracy on the val + test trials of all sessions pooled.
fn choice_accuracy(ds: &Dataset) -> f64 {
    let (mut right, mut total) = (0usize, 0usize);
    for s in 0..ds.n_sessions() {
        let info = ds.session(s);
        let onset = info.onset_bin.unwrap();
        let n = info.n_neurons;
        let choice = ds.choice(s).unwrap();
        let feature = |t: usize| -> Vec<f64> {
            let x = ds.trial(s, t);
            let mut f = vec![0.0; n];
            for b in onset..info.n_bins {
                for (fi, &c) in f.iter_mut().zip(&x[b * n..(b + 1) * n]) {
                    *fi += c as f64;
                }
            }
            f
        };
        let mut mean = [vec![0.0; n], vec![0.0; n]];
        let mut count = [0usize; 2];
        for &t in &info.split.train {
            let k = usize::from(choice[t as usize] > 0);
            for (m, v) in mean[k].iter_mut().zip(feature(t as usize)) {
                *m += v;
            }
            count[k] += 1;
        }
        assert!(
            count[0] > 0 && count[1] > 0,
            "session {s} has one choice only"
        );
        for k in 0..2 {
            for m in mean[k].iter_mut() {
                *m /= count[k] as f64;
            }
        }
        let w: Vec<f64> = mean[1].iter().zip(&mean[0]).map(|(a, b)| a - b).collect();
        let mid: f64 = mean[1]
            .iter()
            .zip(&mean[0])
            .zip(&w)
            .map(|((a, b), w)| 0.5 * (a + b) * w)
            .sum();
        for &t in info.split.val.iter().chain(&info.split.test) {
            let f = feature(t as usize);
            let score: f64 = f.iter().zip(&w).map(|(a, b)| a * b).sum();
            let pred = if score > mid { 1 } else { -1 };
            right += usize::from(pred == choice[t as usize]);
            total += 1;
        }
    }
    right as f64 / total as f64
}

fn similarity(ds: &Dataset) -> (Vec<String>, Vec<Vec<f64>>) {
    let synth = &ds.manifest.extra["synth"];
    let sim = &synth["similarity"];
    let ids: Vec<String> = serde_json::from_value(sim["ids"].clone()).unwrap();
    let m: Vec<Vec<f64>> = serde_json::from_value(sim["matrix"].clone()).unwrap();
    (ids, m)
}

fn animal_of(ds: &Dataset, id: &str) -> String {
    ds.session(ds.find(id).unwrap()).animal.clone().unwrap()
}

#[test]
fn rs_statistics() {
    let dir = tmp("rs-stats");
    synth(&dir, &TINY_RS);
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.n_sessions(), 12);

    // Rates of a few Hz, counts far from saturating.
    let rates = session_rates(&ds);
    for (s, r) in rates.iter().enumerate() {
        assert!((1.0..12.0).contains(r), "session {s}: mean rate {r:.2} Hz");
    }
    let max = (0..ds.n_sessions())
        .map(|s| *ds.counts(s).iter().max().unwrap())
        .max()
        .unwrap();
    assert!(max < 50, "a bin holds {max} spikes");

    // Every session records the same regions.
    let first: BTreeSet<&String> = ds.session(0).regions.iter().collect();
    assert_eq!(first.len(), 5);
    for s in ds.sessions() {
        assert_eq!(s.regions.iter().collect::<BTreeSet<_>>(), first, "{}", s.id);
        assert_eq!((s.n_bins, s.onset_bin, s.bin_size_s), (150, Some(25), 0.02));
        assert!((64..=96).contains(&s.n_trials) && (40..=80).contains(&s.n_neurons));
    }

    // Choice is decodable but not perfectly.
    let acc = choice_accuracy(&ds);
    assert!(acc > 0.65 && acc < 0.97, "choice accuracy {acc:.3}");

    // Similarity: symmetric, unit diagonal, in [0, 1], higher within an animal.
    let (ids, m) = similarity(&ds);
    assert_eq!(ids.len(), 12);
    let (mut within, mut between) = (Vec::new(), Vec::new());
    for i in 0..ids.len() {
        assert_eq!(m[i][i], 1.0);
        for j in 0..ids.len() {
            assert_eq!(m[i][j], m[j][i]);
            assert!((0.0..=1.0).contains(&m[i][j]));
            if i < j {
                if animal_of(&ds, &ids[i]) == animal_of(&ds, &ids[j]) {
                    within.push(m[i][j]);
                } else {
                    between.push(m[i][j]);
                }
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(!within.is_empty() && !between.is_empty());
    assert!(
        mean(&within) > mean(&between) + 0.05,
        "within-animal similarity {:.3} vs between {:.3}",
        mean(&within),
        mean(&between)
    );
    // The manifest records the knobs and each session's animal.
    let synth = &ds.manifest.extra["synth"];
    assert_eq!(synth["preset"], "rs");
    assert_eq!(synth["knobs"]["animal_strength"], 1.0);
    assert_eq!(synth["sessions"].as_array().unwrap().len(), 12);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn no_animal_perturbation_means_no_animal_structure() {
    let dir = tmp("rs-flat");
    let mut args = TINY_RS.to_vec();
    args.extend(["--animal-strength", "0", "--session-strength", "0"]);
    synth(&dir, &args);
    let ds = Dataset::open(&dir).unwrap();
    let (_, m) = similarity(&ds);
    for row in &m {
        for v in row {
            assert!(
                (v - 1.0).abs() < 1e-9,
                "similarity {v} without perturbations"
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bwm_sessions_overlap_little() {
    let dir = tmp("bwm-stats");
    synth(&dir, &["--preset", "bwm", "--tiny", "--sessions", "16"]);
    let ds = Dataset::open(&dir).unwrap();
    let sets: Vec<BTreeSet<&String>> = ds
        .sessions()
        .iter()
        .map(|s| s.regions.iter().collect())
        .collect();
    let mut jaccard = Vec::new();
    for i in 0..sets.len() {
        assert!(
            (2..=5).contains(&sets[i].len()),
            "{} regions",
            sets[i].len()
        );
        for j in 0..i {
            let inter = sets[i].intersection(&sets[j]).count();
            let union = sets[i].union(&sets[j]).count();
            jaccard.push(inter as f64 / union as f64);
        }
    }
    let mean = jaccard.iter().sum::<f64>() / jaccard.len() as f64;
    assert!(mean < 0.1, "mean region overlap (Jaccard) {mean:.3}");
    let (ids, m) = similarity(&ds);
    for i in 0..ids.len() {
        for j in 0..ids.len() {
            let si = &sets[ds.find(&ids[i]).unwrap()];
            let sj = &sets[ds.find(&ids[j]).unwrap()];
            if i != j && si.is_disjoint(sj) {
                assert_eq!(m[i][j], 0.0, "sessions without a shared region");
            } else {
                assert!(m[i][j] > 0.0);
            }
        }
    }
    let rates = session_rates(&ds);
    assert!(rates.iter().all(|r| (1.0..12.0).contains(r)), "{rates:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_flags_and_existing_datasets_are_refused() {
    let dir = tmp("flags");
    for (args, want) in [
        (vec!["--preset", "rs", "--trials", "5..9"], "--trials"),
        (
            vec!["--preset", "rs", "--tiny", "--animals", "9"],
            "--animals",
        ),
        (vec!["--preset", "rs", "--latents", "3"], "--latents"),
        (
            vec!["--preset", "bwm", "--regions", "3"],
            "--regions-per-session",
        ),
        (vec!["--preset", "rs", "--trials", "9..5"], "MIN is larger"),
        (
            vec!["--preset", "rs", "--animal-layout", "ring"],
            "--animal-layout",
        ),
    ] {
        let o = ndt()
            .arg("synth")
            .args(&args)
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!dir.exists(), "{args:?} left {}", dir.display());
    }
    synth(&dir, &["--preset", "rs", "--tiny", "--sessions", "2"]);
    let before = snapshot(&dir);
    let o = ndt()
        .args(["synth", "--preset", "rs", "--tiny", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds a dataset"));
    assert_eq!(before, snapshot(&dir));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn line_layout_grades_similarity_by_animal_distance() {
    // Four animals along one perturbation: animals 0 and 1 are neighbours, 0 and 3 the two ends.
    let dir = tmp("rs-line");
    let args = [
        "--preset",
        "rs",
        "--tiny",
        "--sessions",
        "12",
        "--animals",
        "4",
        "--animal-layout",
        "line",
        "--animal-strength",
        "1.0",
    ];
    synth(&dir, &args);
    let ds = Dataset::open(&dir).unwrap();
    let (ids, m) = similarity(&ds);
    let index = |id: &str| -> usize { animal_of(&ds, id)[3..].parse().unwrap() };
    // Mean similarity of session pairs by the distance between their animals' indices.
    let mut by_distance = [(0.0, 0usize); 4];
    for i in 0..ids.len() {
        for j in i + 1..ids.len() {
            let d = index(&ids[i]).abs_diff(index(&ids[j]));
            by_distance[d].0 += m[i][j];
            by_distance[d].1 += 1;
        }
    }
    let mean: Vec<f64> = by_distance
        .iter()
        .map(|&(s, n)| {
            assert!(n > 0);
            s / n as f64
        })
        .collect();
    for d in 1..4 {
        assert!(
            mean[d] < mean[d - 1] - 0.02,
            "similarity by animal distance {mean:.3?} does not fall off"
        );
    }
    let synth = &ds.manifest.extra["synth"];
    assert_eq!(synth["knobs"]["animal_layout"], "line");
    std::fs::remove_dir_all(dir).unwrap();
}
