//! `ndt rank --method` and `ndt rank --compare` on a tiny synthetic dataset: each method writes
//! its ranking with its cost, `--compare` tabulates every method against `full`, and bad input
//! (an unknown method, a region-matched proxy on a one-region session) is a usage error; `stitch`
//! ranks from the single-session models alone and caches its evaluations.

mod common;

use common::{TempDir, ndt, ndt_ok, stderr};
use serde_json::Value;
use std::path::Path;

const PLAN: &str = r#"
dataset = "data"
results = "r"
heldout_last = 1
sizes = [1, "all"]
orders = ["ranked"]
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
[single]
epochs = 3
lr = 1e-3
[rank]
epochs = 3
lr = 1e-3
"#;

fn setup(dir: &Path, regions: &str) -> std::path::PathBuf {
    ndt_ok(&[
        "synth",
        "--preset",
        "rs",
        "--tiny",
        "--sessions",
        "4",
        "--bins",
        "30",
        "--onset-bin",
        "5",
        "--regions",
        regions,
        "--seed",
        "3",
        "--out",
        dir.join("data").to_str().unwrap(),
    ]);
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, PLAN).unwrap();
    plan
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn unknown_methods_are_usage_errors() {
    let dir = TempDir::new("rank-bad-method");
    let plan = setup(dir.path(), "3");
    let out = ndt(&["rank", plan.to_str().unwrap(), "--method", "oracle"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("oracle"), "{}", stderr(&out));
    let out = ndt(&["rank", plan.to_str().unwrap(), "--method", "short:0"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = ndt(&[
        "rank",
        plan.to_str().unwrap(),
        "--compare",
        "--methods",
        "full,nope",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    // Pretraining on no session, or a downstream column without the comparison.
    for (args, says) in [
        (&["--compare", "--downstream", "0"][..], "--downstream 0"),
        (&["--downstream", "2"][..], "--compare"),
    ] {
        let out = ndt(&[&["rank", plan.to_str().unwrap()][..], args].concat());
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    // The plan key names the file.
    std::fs::write(&plan, format!("rank_method = \"fast\"\n{PLAN}")).unwrap();
    let out = ndt(&["sweep", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("plan.toml") && stderr(&out).contains("fast"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("r").exists(), "nothing ran");
}

#[test]
fn region_matched_proxies_refuse_a_one_region_session() {
    let dir = TempDir::new("rank-one-region");
    let plan = setup(dir.path(), "1");
    for m in ["psth", "subspace"] {
        let out = ndt(&["rank", plan.to_str().unwrap(), "--method", m]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("1 region"), "{}", stderr(&out));
        assert!(!dir.path().join(format!("r/rankings/{m}")).exists());
    }
}

#[test]
fn data_only_methods_rank_the_whole_pool_and_record_their_cost() {
    let dir = TempDir::new("rank-data");
    let plan = setup(dir.path(), "3");
    for m in ["psth", "subspace"] {
        let out: Value = serde_json::from_str(&ndt_ok(&[
            "rank",
            plan.to_str().unwrap(),
            "--method",
            m,
            "--json",
        ]))
        .unwrap();
        let ranking = out[0]["ranking"].as_array().unwrap();
        assert_eq!(ranking.len(), 3, "{out}");
        let scores: Vec<f64> = ranking
            .iter()
            .map(|r| r["score"].as_f64().unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
        let file = read(&dir.path().join(format!("r/rankings/{m}/syn-0003.json")));
        assert_eq!(file["method"], m);
        assert!(file["cpu_s"].as_f64().unwrap() >= 0.0);
        assert!(file["trained"].as_str().unwrap().starts_with("nothing"));
        // No model was trained.
        assert!(!dir.join("r/jobs").exists());
    }
}

#[test]
fn compare_tabulates_every_method_against_full() {
    let dir = TempDir::new("rank-compare");
    let plan = setup(dir.path(), "3");
    let md = ndt_ok(&[
        "rank",
        plan.to_str().unwrap(),
        "--compare",
        "--methods",
        "full,short:1,subspace",
        "--top-k",
        "2",
    ]);
    assert!(md.contains("| subspace |"), "{md}");
    let csv = std::fs::read_to_string(dir.join("r/rank_compare.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let row = |m: &str| rows.iter().find(|r| r[1] == m).unwrap().clone();
    let num = |r: &[&str], i: usize| r[i].parse::<f64>().unwrap();
    let full = row("full");
    assert_eq!(num(&full, 2), 1.0, "full agrees with itself");
    assert_eq!(num(&full, 5), 1.0);
    assert_eq!(num(&full, 8), 1.0);
    // The short finetunes and the data-only proxy cost less than the full ranking.
    assert!(num(&row("short:1"), 8) < 1.0, "{csv}");
    assert!(num(&row("subspace"), 8) < 0.2, "{csv}");
    assert!(dir.join("r/rank_compare.md").exists());
    // The full ranking's file is the sweep's, with its cost.
    let file = read(&dir.join("r/rankings/syn-0003.json"));
    assert!(file["cpu_s"].as_f64().unwrap() > 0.0, "{file}");
    // Without `--downstream` nothing is pretrained on a top k and no column says so.
    assert!(
        !md.contains("downstream") && !csv.contains("downstream"),
        "{md}\n{csv}"
    );
    assert_eq!(
        job_kinds(&dir.join("r/jobs")),
        [("pretrain".to_string(), 3), ("rankft".to_string(), 6)]
    );
}

/// The CSV of `--compare` as one map of column -> value per row.
fn csv_rows(csv: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            // Quoted fields hold no comma in these tables but may hold spaces.
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells.len(), header.len(), "{l}");
            header
                .iter()
                .zip(cells)
                .map(|(h, c)| (h.to_string(), c.trim_matches('"').to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn downstream_pretrains_on_each_methods_top_k_with_the_sweeps_jobs() {
    let dir = TempDir::new("rank-downstream");
    let plan = setup(dir.path(), "3");
    let text = format!("{PLAN}[pretrain]\nepochs = 2\n[finetune]\nepochs = 2\n");
    std::fs::write(&plan, &text).unwrap();
    let p = plan.to_str().unwrap();
    let md = ndt_ok(&[
        "rank",
        p,
        "--compare",
        "--methods",
        "full,psth",
        "--downstream",
        "2",
    ]);
    assert!(md.contains("downstream_forward_bps_top2 |"), "{md}");
    assert!(md.contains("From-scratch baseline"), "{md}");
    let rows = csv_rows(&std::fs::read_to_string(dir.join("r/rank_compare.csv")).unwrap());
    assert_eq!(rows.len(), 2);
    let mut tops = std::collections::BTreeSet::new();
    for r in &rows {
        let v: f64 = r["downstream_forward_bps_top2"].parse().unwrap();
        assert!(v.is_finite(), "{r:?}");
        assert!(
            r["baseline_forward_bps"]
                .parse::<f64>()
                .unwrap()
                .is_finite()
        );
        assert_eq!(r["downstream_sessions"], "2");
        let mut top: Vec<&str> = r["downstream_top"].split(' ').collect();
        assert_eq!(top.len(), 2, "{r:?}");
        top.sort_unstable();
        tops.insert(top.join(" "));
    }
    // One pretraining and one evaluation per distinct top 2, one baseline evaluation, beside the
    // ranking's 3 single-session models and 3 finetunes.
    let n = tops.len();
    assert_eq!(
        job_kinds(&dir.join("r/jobs")),
        [
            ("eval".to_string(), n + 1),
            ("pretrain".to_string(), 3 + n),
            ("rankft".to_string(), 3)
        ]
    );
    // A top 5 of a pool of 3 is the whole pool, the same for both methods: one pretraining job
    // shared by both, and the baseline's evaluation reused.
    let md = ndt_ok(&[
        "rank",
        p,
        "--compare",
        "--methods",
        "full,subspace",
        "--downstream",
    ]);
    assert!(md.contains("top 5 asked, the pool has only 3"), "{md}");
    let rows = csv_rows(&std::fs::read_to_string(dir.join("r/rank_compare.csv")).unwrap());
    assert!(
        rows.iter().all(|r| r["downstream_sessions"] == "3"),
        "{rows:?}"
    );
    let all: Vec<&str> = rows
        .iter()
        .map(|r| r["downstream_forward_bps_top3"].as_str())
        .collect();
    assert_eq!(all[0], all[1], "{rows:?}");
    assert_eq!(
        job_kinds(&dir.join("r/jobs")),
        [
            ("eval".to_string(), n + 2),
            ("pretrain".to_string(), 4 + n),
            ("rankft".to_string(), 3)
        ]
    );
    // The sweep's ranked point of the whole pool and its baseline are those jobs: it trains
    // nothing new and records the same test forward bps.
    std::fs::write(
        &plan,
        text.replace("sizes = [1, \"all\"]", "sizes = [\"all\"]"),
    )
    .unwrap();
    let before = common::snapshot(&dir.join("r/jobs"));
    ndt_ok(&["sweep", p]);
    assert_eq!(common::snapshot(&dir.join("r/jobs")), before);
    let mut points = Vec::new();
    for e in std::fs::read_dir(dir.join("r/points")).unwrap() {
        points.push(read(&e.unwrap().path()));
    }
    assert_eq!(points.len(), 2);
    for pt in &points {
        let want = if pt["order"] == "baseline" {
            rows[0]["baseline_forward_bps"].as_str()
        } else {
            all[0]
        };
        let got = pt["metrics"]["forward"].as_f64().unwrap();
        assert_eq!(format!("{got:.4}"), want, "{pt}");
    }
}

/// The job folders of `r/jobs` by kind: (kind, count).
fn job_kinds(jobs: &Path) -> Vec<(String, usize)> {
    let mut kinds = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(jobs).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let kind = name.split('-').next().unwrap().to_string();
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds.into_iter().collect()
}

#[test]
fn stitch_ranks_the_pool_from_the_single_models_without_finetuning() {
    let dir = TempDir::new("rank-stitch");
    let plan = setup(dir.path(), "3");
    let out: Value = serde_json::from_str(&ndt_ok(&[
        "rank",
        plan.to_str().unwrap(),
        "--method",
        "stitch",
        "--json",
    ]))
    .unwrap();
    let ranking = out[0]["ranking"].as_array().unwrap();
    let scores: Vec<f64> = ranking
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 3, "{out}");
    assert!(scores.iter().all(|v| v.is_finite()), "{scores:?}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let file = read(&dir.join("r/rankings/stitch/syn-0003.json"));
    assert_eq!(file["method"], "stitch");
    let mut sessions: Vec<&str> = file["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["session"].as_str().unwrap())
        .collect();
    sessions.sort_unstable();
    assert_eq!(sessions, ["syn-0000", "syn-0001", "syn-0002"]);
    assert!(
        file["ranking"][0]["forward_bps_val"]
            .as_f64()
            .unwrap()
            .is_finite()
    );
    let (cpu, single) = (
        file["cpu_s"].as_f64().unwrap(),
        file["single_cpu_s"].as_f64().unwrap(),
    );
    assert!(single > 0.0 && cpu > single, "{file}");
    assert!(
        file["trained"].as_str().unwrap().contains("no finetuning"),
        "{file}"
    );
    // The single-session models and one stitched evaluation per pool session; no finetune.
    let kinds = job_kinds(&dir.join("r/jobs"));
    assert_eq!(
        kinds,
        [("pretrain".to_string(), 3), ("rankstitch".to_string(), 3)]
    );
    // A rerun trains and evaluates nothing: the job folders stay as they were.
    let before = common::snapshot(&dir.join("r/jobs"));
    ndt_ok(&["rank", plan.to_str().unwrap(), "--method", "stitch"]);
    assert_eq!(common::snapshot(&dir.join("r/jobs")), before);
    assert_eq!(
        read(&dir.join("r/rankings/stitch/syn-0003.json"))["ranking"],
        file["ranking"]
    );
}

#[test]
fn stitch_ranks_a_one_region_session_by_all_neuron_means() {
    // Unlike psth and subspace, stitch needs no second region (docs/ranking.md): here every
    // session records the same one region, so each stitcher is the mean over all of p's neurons.
    let dir = TempDir::new("rank-stitch-one-region");
    let plan = setup(dir.path(), "1");
    ndt_ok(&["rank", plan.to_str().unwrap(), "--method", "stitch"]);
    let file = read(&dir.join("r/rankings/stitch/syn-0003.json"));
    let ranking = file["ranking"].as_array().unwrap();
    assert_eq!(ranking.len(), 3, "{file}");
    assert!(
        ranking
            .iter()
            .all(|r| r["forward_bps_val"].as_f64().unwrap().is_finite()),
        "{file}"
    );
}

/// The rank finetune jobs' folders (name -> path).
fn rankft_dirs(jobs: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(jobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("rankft-")
        })
        .collect();
    v.sort();
    v
}

/// A job's result without its cost, and its log without timings.
fn result_and_log(job: &Path) -> (Value, Vec<Value>) {
    let mut r = read(&job.join("result.json"));
    r["result"]
        .as_object_mut()
        .unwrap()
        .remove("cpu_s")
        .unwrap();
    let log = common::log_sans_times(&job.join("work/run"));
    (r, log)
}

#[test]
fn finetunes_side_by_side_equal_them_one_at_a_time() {
    let dir = TempDir::new("rank-per-device");
    let plan = setup(dir.path(), "3");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, format!("models_per_device = 3\n{text}")).unwrap();
    let p = plan.to_str().unwrap();
    // The plan's models_per_device (3 side by side).
    let o = ndt(&["rank", p, "--json", "--threads", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("training 3 finetunes side by side, 2 at a time on 2 CPU threads"),
        "{}",
        stderr(&o)
    );
    let side: Value = serde_json::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    let jobs = dir.join("r/jobs");
    let fused = rankft_dirs(&jobs);
    assert_eq!(fused.len(), 3);
    let aside = dir.join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    for d in &fused {
        std::fs::rename(d, aside.join(d.file_name().unwrap())).unwrap();
    }
    std::fs::remove_dir_all(dir.join("r/rankings")).unwrap();
    // The flag overrides the plan: one at a time; the single-session models are cached.
    let alone: Value =
        serde_json::from_str(&ndt_ok(&["rank", p, "--json", "--models-per-device", "1"])).unwrap();
    assert_eq!(side[0]["ranking"], alone[0]["ranking"]);
    let solo = rankft_dirs(&jobs);
    assert_eq!(solo.len(), 3);
    for d in &solo {
        let f = aside.join(d.file_name().unwrap());
        assert_eq!(result_and_log(d), result_and_log(&f), "{}", d.display());
        for file in ["best.safetensors", "last.safetensors", "state.safetensors"] {
            let (a, b) = (d.join("work/run").join(file), f.join("work/run").join(file));
            assert!(
                std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                "{} differs",
                a.display()
            );
        }
    }
    // `auto` finds every job done: nothing trains again.
    let before = common::snapshot(&jobs);
    ndt_ok(&["rank", p, "--models-per-device", "auto"]);
    assert_eq!(common::snapshot(&jobs), before);
}

#[test]
fn models_per_device_that_make_no_sense_are_usage_errors() {
    let dir = TempDir::new("rank-per-device-bad");
    let plan = setup(dir.path(), "3");
    for bad in ["0", "-2", "many", "1.5"] {
        let flag = format!("--models-per-device={bad}");
        let o = ndt(&["rank", plan.to_str().unwrap(), &flag]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{bad}: {err}");
        assert!(err.contains("--models-per-device"), "{bad}: {err}");
    }
    // On the CUDA backend a number above 1 is refused (the fused step is not built).
    let cuda = dir.join("cuda.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&cuda, text.replace("device = \"cpu\"", "device = \"cuda\"")).unwrap();
    let o = ndt(&["rank", cuda.to_str().unwrap(), "--models-per-device", "2"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("fused CUDA step is not built"), "{err}");
    let o = ndt(&["rank", plan.to_str().unwrap(), "--heldout", "syn-0000"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--heldout syn-0000") && err.contains("not a held-out session"),
        "{err}"
    );
    assert!(!dir.join("r/jobs").exists(), "nothing ran");
}
