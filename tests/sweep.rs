//! `ndt sweep`, `ndt rank` and `ndt report` end to end on a tiny synthetic dataset: a sweep runs,
//! reruns do nothing, a sweep killed mid-job (SIGKILL, and SIGTERM with its clean stop) finishes
//! on the next run with exactly the numbers of an uninterrupted run, and the report gathers it.

mod common;

use common::{TempDir, ndt, ndt_ok, stderr};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PLAN: &str = r#"
dataset = "data"
heldout_last = 1
sizes = [1, 2, "all"]
orders = ["random", "ranked", "reverse-ranked"]
shuffles = 1
seeds = [42]
device = "cpu"
[model]
preset = "small"
d_model = 32
d_tok = 32
d_embed_hidden = 64
n_layers = 1
n_heads = 2
d_ff = 64
[pretrain]
epochs = 30
lr = 1e-3
schemes = ["forward", "co-smooth"]
[finetune]
epochs = 4
lr = 1e-3
[single]
epochs = 3
lr = 1e-3
[rank]
epochs = 2
lr = 1e-3
"#;

fn setup(dir: &Path, results: &[&str]) {
    setup_n(dir, results, "4")
}

/// `setup` with `sessions` sessions (one held out).
fn setup_n(dir: &Path, results: &[&str], sessions: &str) {
    ndt_ok(&[
        "synth",
        "--preset",
        "rs",
        "--tiny",
        "--sessions",
        sessions,
        "--bins",
        "30",
        "--onset-bin",
        "5",
        "--seed",
        "3",
        "--out",
        dir.join("data").to_str().unwrap(),
    ]);
    for r in results {
        std::fs::write(
            dir.join(format!("{r}.toml")),
            format!("results = \"{r}\"\n{PLAN}"),
        )
        .unwrap();
    }
}

/// Every point's metrics, keyed by its file name.
fn points(results: &Path) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(results.join("points")).unwrap() {
        let p = e.unwrap().path();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let m: BTreeMap<String, f64> = serde_json::from_value(v["metrics"].clone()).unwrap();
        out.insert(p.file_name().unwrap().to_string_lossy().into_owned(), m);
    }
    out
}

/// A pretraining job that has finished an epoch (a line in its log) but not the job.
fn job_in_progress(results: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(results.join("jobs")) else {
        return false;
    };
    rd.filter_map(|e| e.ok()).any(|e| {
        let d = e.path();
        d.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("pretrain")
            && std::fs::metadata(d.join("work/run/log.jsonl")).is_ok_and(|m| m.len() > 0)
            && !d.join("result.json").exists()
    })
}

/// Starts `ndt sweep plan`, waits until a job is mid-training, sends `signal`, returns the exit.
fn interrupt(dir: &Path, plan: &str, results: &str, signal: &str) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_ndt"))
        .args(["sweep", dir.join(plan).to_str().unwrap(), "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !job_in_progress(&dir.join(results)) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no job got under way"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    child.wait_with_output().unwrap()
}

#[test]
fn killed_sweep_finishes_with_the_numbers_of_an_uninterrupted_one() {
    let dir = TempDir::new("sweep-kill");
    setup(dir.path(), &["a", "b", "c"]);
    let a = dir.join("a.toml");
    ndt_ok(&["sweep", a.to_str().unwrap(), "--threads", "1"]);
    let want = points(&dir.join("a"));
    assert_eq!(want.len(), 10, "1 baseline + 3 orders x 3 sizes");

    // SIGKILL mid-job: no result for the job; the rerun resumes it.
    let out = interrupt(dir.path(), "b.toml", "b", "-KILL");
    assert!(!out.status.success());
    ndt_ok(&[
        "sweep",
        dir.join("b.toml").to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(points(&dir.join("b")), want);

    // SIGTERM mid-job: the job stops cleanly after its epoch, says so, exits 1; rerun resumes.
    let out = interrupt(dir.path(), "c.toml", "c", "-TERM");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ndt_ok(&[
        "sweep",
        dir.join("c.toml").to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(points(&dir.join("c")), want);
}

#[test]
fn finished_sweep_is_not_rerun_and_reports_gather_it() {
    let dir = TempDir::new("sweep-report");
    setup(dir.path(), &["a"]);
    let a = dir.join("a.toml");
    ndt_ok(&[
        "sweep",
        a.to_str().unwrap(),
        "--jobs",
        "2",
        "--threads",
        "1",
    ]);
    let results = dir.join("a");
    let jobs_before: Vec<_> = std::fs::read_dir(results.join("jobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let stamp = |p: &Path| {
        std::fs::metadata(p.join("result.json"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let stamps: Vec<_> = jobs_before.iter().map(|p| stamp(p)).collect();
    let listed = ndt_ok(&["sweep", a.to_str().unwrap(), "--list"]);
    assert_eq!(
        listed.lines().filter(|l| l.contains("done")).count(),
        10,
        "{listed}"
    );
    ndt_ok(&["sweep", a.to_str().unwrap(), "--threads", "1"]);
    let stamps_after: Vec<_> = jobs_before.iter().map(|p| stamp(p)).collect();
    assert_eq!(stamps, stamps_after, "a finished job ran again");

    let json: Value =
        serde_json::from_str(&ndt_ok(&["report", results.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(json["points"], 10);
    for f in [
        "report.md",
        "table1.csv",
        "table3.csv",
        "improvement_over_baseline.svg",
        "improvement_over_smallest.csv",
        "points.csv",
        "rank_overlap.csv",
    ] {
        assert!(results.join("report").join(f).is_file(), "{f}");
    }
    let ranking = json["rankings"].as_object().unwrap();
    assert_eq!(ranking.len(), 1);
    assert_eq!(
        ranking.values().next().unwrap().as_array().unwrap().len(),
        3
    );

    // The ranking command reuses the cached single-session models and prints the agreement with
    // the synthetic ground truth.
    let rank: Value = serde_json::from_str(&ndt_ok(&[
        "rank",
        a.to_str().unwrap(),
        "--json",
        "--threads",
        "1",
    ]))
    .unwrap();
    assert!(rank[0]["spearman"].is_number(), "{rank}");
    assert_eq!(rank[0]["ranking"].as_array().unwrap().len(), 3);

    // Results of another results version are never mixed with current ones: a point file of
    // another version is pending and left out of the report (with a note), and a job result of
    // another version (here with a planted wrong number) is recomputed by the next sweep.
    let current = ndt::exp::jobs::RESULTS_VERSION;
    let want = points(&results);
    let mut files: Vec<_> = std::fs::read_dir(results.join("points"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let set_version = |p: &Path, version: u32, planted: Option<f64>| {
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        v["results_version"] = version.into();
        if let Some(x) = planted {
            v["result"]["forward"] = x.into();
        }
        std::fs::write(p, v.to_string()).unwrap();
    };
    set_version(&files[0], current + 1, None);
    let eval_job = jobs_before
        .iter()
        .find(|j| {
            j.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("eval-")
        })
        .unwrap();
    set_version(&eval_job.join("result.json"), 0, Some(99.0));
    let listed = ndt_ok(&["sweep", a.to_str().unwrap(), "--list"]);
    assert_eq!(
        listed.lines().filter(|l| l.contains("done")).count(),
        9,
        "{listed}"
    );
    let out = ndt(&["report", results.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["points"], 9);
    assert!(
        stderr(&out).contains("left out 1 point results of another results version"),
        "{}",
        stderr(&out)
    );
    ndt_ok(&["sweep", a.to_str().unwrap(), "--threads", "1"]);
    assert_eq!(points(&results), want, "the stale job's number survived");
    let job: Value =
        serde_json::from_str(&std::fs::read_to_string(eval_job.join("result.json")).unwrap())
            .unwrap();
    assert_eq!(job["results_version"], current);
    let json: Value =
        serde_json::from_str(&ndt_ok(&["report", results.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(json["points"], 10);
}

#[test]
fn a_plan_with_baselines_scores_them_beside_each_model_and_the_report_shows_them() {
    let dir = TempDir::new("sweep-baselines");
    setup(dir.path(), &[]);
    let plan = PLAN
        .replace("sizes = [1, 2, \"all\"]", "sizes = [1]")
        .replace(
            "orders = [\"random\", \"ranked\", \"reverse-ranked\"]",
            "orders = [\"random\"]",
        );
    for (name, extra) in [("with", "baselines = true\n"), ("without", "")] {
        std::fs::write(
            dir.join(&format!("{name}.toml")),
            format!("results = \"{name}\"\n{extra}{plan}"),
        )
        .unwrap();
        ndt_ok(&[
            "sweep",
            dir.join(&format!("{name}.toml")).to_str().unwrap(),
            "--threads",
            "1",
        ]);
    }
    let with = points(&dir.join("with"));
    let without = points(&dir.join("without"));
    assert_eq!(with.len(), 2, "{with:?}"); // the baseline and random k=1
    assert_eq!(
        with.keys().collect::<Vec<_>>(),
        without.keys().collect::<Vec<_>>()
    );
    for (name, m) in &with {
        for key in ["co-smooth.glm", "co-smooth.glm.pooled"] {
            assert!(
                m.get(key).is_some_and(|v| v.is_finite()),
                "{name}: {key} in {m:?}"
            );
        }
        // The model's own numbers are those of the plan without baselines.
        for (k, v) in &without[name] {
            assert_eq!(m.get(k), Some(v), "{name}: {k}");
        }
    }
    for m in without.values() {
        assert!(!m.keys().any(|k| k.contains(".glm")), "{m:?}");
    }
    for (name, glm_column) in [("with", true), ("without", false)] {
        ndt_ok(&["report", dir.join(name).to_str().unwrap()]);
        let csv =
            std::fs::read_to_string(dir.join(name).join("report").join("table3.csv")).unwrap();
        let row = csv
            .lines()
            .find(|l| l.starts_with("co-smooth,"))
            .unwrap_or_else(|| panic!("{name}: no co-smooth row in\n{csv}"));
        let glm = row.split(',').nth(3).unwrap();
        assert_eq!(!glm.is_empty(), glm_column, "{name}: {row}");
        if glm_column {
            assert!(glm.parse::<f64>().unwrap().is_finite(), "{row}");
        }
    }
}

#[test]
fn bad_plans_fail_naming_the_file() {
    let dir = TempDir::new("sweep-bad");
    setup(dir.path(), &[]);
    let p = dir.join("bad.toml");
    std::fs::write(
        &p,
        "dataset = \"data\"\nresults = \"r\"\nheldout = [\"nope\"]\nsizes = [1]\n",
    )
    .unwrap();
    let out = ndt(&["sweep", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bad.toml") && stderr(&out).contains("nope"),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        &p,
        "dataset = \"data\"\nresults = \"r\"\nheldout_last = 1\nsizes = [1]\nseeds = [\n",
    )
    .unwrap();
    let out = ndt(&["sweep", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.toml"), "{}", stderr(&out));
    let out = ndt(&["report", dir.join("nothing-here").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

/// Every job of a results folder: its result without its cost, its run's log without timings,
/// and its checkpoints' parameters (the folder's own path taken out of the result).
type JobRecord = (String, Vec<Value>, Vec<Vec<u32>>);

fn job_records(results: &Path) -> BTreeMap<String, JobRecord> {
    let root = results.display().to_string();
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(results.join("jobs")).unwrap() {
        let d = e.unwrap().path();
        let mut r: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("result.json")).unwrap()).unwrap();
        r["result"].as_object_mut().unwrap().remove("cpu_s");
        let run = d.join("work/run");
        let log = common::log_sans_times(&run);
        let mut ckpts = Vec::new();
        for f in ["best.safetensors", "last.safetensors"] {
            if run.join(f).exists() {
                let (_, p, _) = ndt::model::checkpoint::load(&run.join(f)).unwrap();
                ckpts.push(p.iter().map(|x| x.to_bits()).collect());
            }
        }
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(name, (r.to_string().replace(&root, "R"), log, ckpts));
    }
    out
}

#[test]
fn a_sweep_side_by_side_equals_it_one_job_at_a_time() {
    let dir = TempDir::new("sweep-per-device");
    // A pool of 5: most points' orders are not sorted.
    setup_n(dir.path(), &["a", "b"], "6");
    ndt_ok(&[
        "sweep",
        dir.join("a.toml").to_str().unwrap(),
        "--threads",
        "2",
    ]);
    let o = ndt(&[
        "sweep",
        dir.join("b.toml").to_str().unwrap(),
        "--threads",
        "2",
        "--models-per-device",
        "4",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    // Every stage ran side by side: the single-session models, the rankings' finetunes, the
    // pretrainings and the finetune-and-evaluate jobs.
    for what in ["finetunes", "pretrainings"] {
        assert!(
            err.contains(&format!(
                "{what} side by side, 2 at a time on 2 CPU threads"
            )),
            "{err}"
        );
    }
    assert_eq!(
        err.matches("side by side").count(),
        4,
        "four stages side by side: {err}"
    );
    assert_eq!(points(&dir.join("a")), points(&dir.join("b")));
    let (ja, jb) = (job_records(&dir.join("a")), job_records(&dir.join("b")));
    assert_eq!(ja.keys().collect::<Vec<_>>(), jb.keys().collect::<Vec<_>>());
    for (k, x) in &ja {
        assert!(*x == jb[k], "job {k} differs");
    }
    // A pretraining trains its job's sessions in the job's order (sorted), whichever point's
    // order reached it first.
    let mut unsorted = 0;
    for e in std::fs::read_dir(dir.join("b/jobs")).unwrap() {
        let d = e.unwrap().path();
        if !d
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("pretrain-")
        {
            continue;
        }
        let read = |p: &Path| -> Value {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
        };
        let spec = read(&d.join("spec.json"))["spec"]["sessions"].clone();
        let run = read(&d.join("work/run/run.json"))["sessions"].clone();
        assert_eq!(run, spec, "{}", d.display());
        let ids: Vec<&str> = spec
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        unsorted += usize::from(ids.len() > 1);
    }
    assert!(unsorted > 0, "no pretraining of several sessions");
    // Runs a one-at-a-time sweep left behind (here: finished runs whose results are gone) are
    // resumed side by side: the pretrainings train the sessions of their job, in its order,
    // whatever the order of the point that reached them first.
    for e in std::fs::read_dir(dir.join("a/jobs")).unwrap() {
        let d = e.unwrap().path();
        if d.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("pretrain-")
        {
            std::fs::remove_file(d.join("result.json")).unwrap();
        }
    }
    std::fs::remove_dir_all(dir.join("a/points")).unwrap();
    let o = ndt(&[
        "sweep",
        dir.join("a.toml").to_str().unwrap(),
        "--threads",
        "2",
        "--models-per-device",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(points(&dir.join("a")), points(&dir.join("b")));
    let ja = job_records(&dir.join("a"));
    for (k, x) in &ja {
        assert!(*x == jb[k], "job {k} differs after the resume");
    }
}
