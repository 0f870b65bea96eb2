//! The resume contract under `kill -9`: a training and a sweep killed with SIGKILL at seeded
//! random moments (at least 10 times each) and restarted every time end with the weights, result
//! files and log of an uninterrupted run, bit for bit (CPU backend). And a SIGTERM mid-run saves
//! the state within seconds, from which the rerun continues.

mod common;

use common::{TempDir, log_sans_times, ndt_ok};
use ndt::model::checkpoint;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NDT: &str = env!("CARGO_BIN_EXE_ndt");

const TINY: &str = "preset = \"small\"
[model]
d_model = 32
d_tok = 32
d_embed_hidden = 64
n_layers = 2
n_heads = 2
d_ff = 64
[train]
lr = 1e-2
dropout = 0.1
";

/// splitmix64: the seeded kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

fn synth(dir: &Path, sessions: &str, trials: &str) -> PathBuf {
    let ds = dir.join("data");
    ndt_ok(&[
        "synth",
        "--preset",
        "rs",
        "--out",
        ds.to_str().unwrap(),
        "--sessions",
        sessions,
        "--trials",
        trials,
        "--neurons",
        "40",
        "--bins",
        "30",
        "--onset-bin",
        "5",
        "--rate",
        "20",
        "--regions",
        "2",
        "--seed",
        "5",
    ]);
    ds
}

fn spawn(args: &[&str]) -> Child {
    Command::new(NDT)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ndt")
}

/// Lets `child` run for `after`, then kills it with SIGKILL; returns whether it had already
/// finished (successfully) by itself.
fn kill_after(mut child: Child, after: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < after {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(
                st.success(),
                "ndt failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    false
}

/// A checkpoint's parameters as bits, and its metadata.
fn ckpt(path: &Path) -> (Vec<u32>, BTreeMap<String, String>) {
    let (_, p, meta) = checkpoint::load(path).unwrap();
    (p.iter().map(|x| x.to_bits()).collect(), meta)
}

fn state_bits(run: &Path) -> (Vec<u32>, ndt::train::state::Counters) {
    let st = ndt::train::state::load(&run.join("state.safetensors")).unwrap();
    let mut bits: Vec<u32> = [&st.params, &st.m, &st.v]
        .iter()
        .flat_map(|a| a.iter().map(|x| x.to_bits()))
        .collect();
    if let Some((b, _)) = &st.best {
        bits.extend(b.iter().map(|x| x.to_bits()));
    }
    (bits, st.counters)
}

/// Checks that two run directories hold the same results.
fn same_run(a: &Path, b: &Path) {
    assert_eq!(log_sans_times(a), log_sans_times(b), "log.jsonl differs");
    for f in ["best.safetensors", "last.safetensors"] {
        let (x, y) = (a.join(f), b.join(f));
        assert_eq!(x.exists(), y.exists(), "{f}");
        if x.exists() {
            assert!(ckpt(&x) == ckpt(&y), "{f} differs");
        }
    }
    assert!(state_bits(a) == state_bits(b), "state.safetensors differs");
}

#[test]
fn a_training_killed_at_random_points_ends_bit_identical() {
    let dir = TempDir::new("kill-train");
    let ds = synth(dir.path(), "2", "120");
    let cfg = dir.join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let (ds, cfg) = (ds.to_str().unwrap(), cfg.to_str().unwrap());
    let common = [
        "--sessions",
        "syn-0000,syn-0001",
        "--config",
        cfg,
        "--epochs",
        "10",
        "--val-every",
        "2",
        "--device",
        "cpu",
        "--threads",
        "1",
    ];
    let reference = dir.join("ref");
    let t0 = Instant::now();
    let mut args = vec!["train", ds, "--out", reference.to_str().unwrap()];
    args.extend(common);
    ndt_ok(&args);
    let full = t0.elapsed().as_millis() as u64;

    // Kills at random moments; each restart resumes what the last one left. The cadence of 3
    // epochs makes most kills land between writes, with the best model in memory; a run killed
    // before its first write (epoch 3) has no state and starts over. Kills come within half a
    // full run's time, so that a run gets past its first write often enough. A run that gets to
    // its end is checked and a new one started, until 12 kills have landed.
    let mut rng = Rng(0x5eed_0001);
    let (mut kills, mut mid_run) = (0, 0);
    let mut n = 0;
    let resume = |r: &str| {
        vec![
            "train".to_string(),
            ds.to_string(),
            "--out".into(),
            r.into(),
            "--resume".into(),
            "--checkpoint-every".into(),
            "3".into(),
            "--device".into(),
            "cpu".into(),
            "--threads".into(),
            "1".into(),
        ]
    };
    while kills < 12 {
        let run = dir.join(&format!("run{n}"));
        let r = run.to_str().unwrap();
        let child = if ndt::train::run::resumable(&run) {
            let a = resume(r);
            spawn(&a.iter().map(String::as_str).collect::<Vec<_>>())
        } else {
            let mut a = vec!["train", ds, "--out", r, "--checkpoint-every", "3"];
            a.extend(common);
            spawn(&a)
        };
        if kill_after(child, rng.ms(5, (full / 2).max(40))) {
            same_run(&reference, &run);
            n += 1;
        } else {
            kills += 1;
            // A kill that left a run under way (not one before its first write).
            mid_run += usize::from(ndt::train::run::resumable(&run));
        }
    }
    eprintln!("{kills} kills, {mid_run} of them mid-run; {n} runs got to their end between kills");
    assert!(mid_run >= 6, "only {mid_run} kills landed mid-run");
    let run = dir.join(&format!("run{n}"));
    if ndt::train::run::resumable(&run) {
        let a = resume(run.to_str().unwrap());
        ndt_ok(&a);
        same_run(&reference, &run);
    }
    // No leftover temporary files of the killed writers once a writer has held the lock.
    for e in std::fs::read_dir(&run).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.contains(".tmp"), "leftover {n}");
    }
}

/// Every job's result and run, with the results folder's own path taken out.
/// A job: its result.json, its log without timings, its best and last parameters.
type JobRecord = (String, Vec<Value>, Option<Vec<u32>>, Vec<u32>);

fn jobs(results: &Path) -> BTreeMap<String, JobRecord> {
    let mut out = BTreeMap::new();
    let root = results.display().to_string();
    for e in std::fs::read_dir(results.join("jobs")).unwrap() {
        let d = e.unwrap().path();
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        // `cpu_s` is what the job cost (a measurement), not a result: left out.
        let result: String = std::fs::read_to_string(d.join("result.json"))
            .unwrap()
            .replace(&root, "RESULTS")
            .lines()
            .filter(|l| !l.trim_start().starts_with("\"cpu_s\""))
            .collect::<Vec<_>>()
            .join("\n");
        let run = d.join("work/run");
        let best = run
            .join("best.safetensors")
            .exists()
            .then(|| ckpt(&run.join("best.safetensors")).0);
        let last = ckpt(&run.join("last.safetensors")).0;
        out.insert(name, (result, log_sans_times(&run), best, last));
    }
    out
}

fn points(results: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(results.join("points")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with('.') {
            // A temporary file of a killed sweep's write (not part of the results).
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        out.insert(p.file_name().unwrap().to_string_lossy().into_owned(), text);
    }
    out
}

/// Whether a job of the sweep has a run under way (a resume state and no result).
fn job_under_way(results: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(results.join("jobs")) else {
        return false;
    };
    rd.filter_map(|e| e.ok()).any(|e| {
        let d = e.path();
        ndt::train::run::resumable(&d.join("work/run")) && !d.join("result.json").exists()
    })
}

const PLAN: &str = r#"
dataset = "data"
heldout_last = 1
sizes = [1, "all"]
orders = ["random", "ranked"]
shuffles = 1
seeds = [42]
device = "cpu"
checkpoint_every = "2e"
[model]
preset = "small"
d_model = 32
d_tok = 32
d_embed_hidden = 64
n_layers = 1
n_heads = 2
d_ff = 64
[pretrain]
epochs = 6
lr = 1e-3
schemes = ["forward", "co-smooth"]
[finetune]
epochs = 3
lr = 1e-3
[single]
epochs = 3
lr = 1e-3
[rank]
epochs = 2
lr = 1e-3
"#;

#[test]
fn a_sweep_killed_at_random_points_ends_bit_identical() {
    let dir = TempDir::new("kill-sweep");
    synth(dir.path(), "3", "80");
    let a = dir.join("a.toml");
    std::fs::write(&a, format!("results = \"a\"\n{PLAN}")).unwrap();
    let t0 = Instant::now();
    ndt_ok(&["sweep", a.to_str().unwrap(), "--threads", "1"]);
    let full = t0.elapsed().as_millis() as u64;
    let want_points = points(&dir.join("a"));
    assert!(!want_points.is_empty());

    // Kills at random moments; each restart skips the finished jobs and resumes the one under
    // way. A sweep that gets to its end is checked and a new one started.
    let mut rng = Rng(0x5eed_0002);
    let (mut kills, mut mid_job) = (0, 0);
    let mut n = 0;
    let check = |results: &Path| {
        let (ja, jb) = (jobs(&dir.join("a")), jobs(results));
        assert_eq!(ja.keys().collect::<Vec<_>>(), jb.keys().collect::<Vec<_>>());
        for (k, x) in &ja {
            let y = &jb[k];
            assert!(x.1 == y.1, "job {k}: log differs");
            assert!(x.2 == y.2, "job {k}: best differs");
            assert!(x.3 == y.3, "job {k}: last differs");
            assert!(x.0 == y.0, "job {k}: result differs:\n{}\n{}", x.0, y.0);
        }
        assert_eq!(points(results), want_points);
    };
    let plan = |n: usize| {
        let p = dir.join(&format!("b{n}.toml"));
        if !p.exists() {
            std::fs::write(&p, format!("results = \"b{n}\"\n{PLAN}")).unwrap();
        }
        p
    };
    // At least 12 kills, at least 6 of them inside a job: on a fast machine more of the early
    // kills land before the first job or between jobs, so it keeps killing (up to 80 times)
    // until both counts are reached.
    while (kills < 12 || mid_job < 6) && kills < 80 {
        let p = plan(n);
        let child = spawn(&["sweep", p.to_str().unwrap(), "--threads", "1"]);
        if kill_after(child, rng.ms(5, (full / 2).max(60))) {
            check(&dir.join(&format!("b{n}")));
            n += 1;
        } else {
            kills += 1;
            mid_job += usize::from(job_under_way(&dir.join(&format!("b{n}"))));
        }
    }
    eprintln!(
        "{kills} kills, {mid_job} of them mid-job; {n} sweeps got to their end between kills"
    );
    assert!(mid_job >= 6, "only {mid_job} kills landed mid-job");
    let p = plan(n);
    ndt_ok(&["sweep", p.to_str().unwrap(), "--threads", "1"]);
    check(&dir.join(&format!("b{n}")));
}

#[test]
fn sigterm_saves_within_seconds_and_the_rerun_continues_from_there() {
    let dir = TempDir::new("kill-term");
    let ds = synth(dir.path(), "1", "200");
    let cfg = dir.join("tiny.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let (ds, cfg) = (ds.to_str().unwrap(), cfg.to_str().unwrap());
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    let common = [
        "--sessions",
        "syn-0000",
        "--config",
        cfg,
        "--epochs",
        "8",
        "--device",
        "cpu",
        "--threads",
        "1",
    ];
    let reference = dir.join("ref");
    let mut args = vec!["train", ds, "--out", reference.to_str().unwrap()];
    args.extend(common);
    ndt_ok(&args);

    // A cadence that never writes by itself: only the signal makes the state advance.
    let mut args = vec!["train", ds, "--out", r, "--checkpoint-every", "1000"];
    args.extend(common);
    let child = spawn(&args);
    let t0 = Instant::now();
    while log_lines(&run) < 2 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no epoch finished");
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
    // Nothing finished is lost: the state is at or past every epoch in the log.
    let (_, c) = state_bits(&run);
    let logged = log_lines(&run);
    assert!(
        (2..8).contains(&logged),
        "{logged} epochs before the signal"
    );
    assert_eq!(c.epoch, logged, "the state is behind the log");
    assert!(c.step > 0);
    // The rerun continues from that point (it does not start over) and ends as an
    // uninterrupted run.
    let out = Command::new(NDT)
        .args([
            "train",
            ds,
            "--out",
            r,
            "--resume",
            "--device",
            "cpu",
            "--threads",
            "1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("after epoch {} ", c.epoch))
            && err.contains(&format!("(step {})", c.step)),
        "{err}"
    );
    same_run(&reference, &run);
    // A finished run resumed again is a no-op that says so and rewrites nothing.
    let before = common::snapshot(&run);
    let out = Command::new(NDT)
        .args(["train", ds, "--out", r, "--resume", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already finished"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        common::snapshot(&run) == before,
        "a finished run was rewritten"
    );
}

fn log_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("log.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Whether a `kind` job has a run under way (a resume state and no result).
fn kind_under_way(results: &Path, kind: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(results.join("jobs")) else {
        return false;
    };
    rd.filter_map(|e| e.ok()).any(|e| {
        let d = e.path();
        d.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(kind))
            && ndt::train::run::resumable(&d.join("work/run"))
            && !d.join("result.json").exists()
    })
}

const RANK_PLAN: &str = r#"
dataset = "data"
heldout_last = 1
sizes = [1]
orders = ["ranked"]
seeds = [42]
device = "cpu"
checkpoint_every = "1e"
[model]
preset = "small"
d_model = 32
d_tok = 32
d_embed_hidden = 64
n_layers = 1
n_heads = 2
d_ff = 64
[single]
epochs = 2
lr = 1e-3
[rank]
epochs = 8
lr = 1e-3
"#;

/// `ndt rank --models-per-device 3`, killed with SIGKILL at random moments (at least 10 times,
/// at least 5 of them while the side-by-side finetunes are under way) and restarted every time,
/// ends with the ranking and every job's results, log and weights bit for bit those of an
/// uninterrupted ranking run one finetune at a time.
#[test]
fn a_ranking_side_by_side_killed_at_random_points_ends_bit_identical() {
    let dir = TempDir::new("kill-rank-group");
    synth(dir.path(), "4", "80");
    let plan = |name: &str| {
        let p = dir.join(&format!("{name}.toml"));
        if !p.exists() {
            std::fs::write(&p, format!("results = \"{name}\"\n{RANK_PLAN}")).unwrap();
        }
        p
    };
    let ranking = |json: &str| -> Value {
        let v: Value = serde_json::from_str(json).unwrap();
        v[0]["ranking"].clone()
    };
    let a = plan("a");
    let t0 = Instant::now();
    let want = ranking(&ndt_ok(&[
        "rank",
        a.to_str().unwrap(),
        "--json",
        "--threads",
        "2",
    ]));
    let full = t0.elapsed().as_millis() as u64;
    let strip = |m: BTreeMap<String, JobRecord>, root: &str| -> Vec<JobRecord> {
        m.into_values()
            .map(|mut r| {
                r.0 = r.0.replace(root, "R");
                r
            })
            .collect()
    };
    let want_jobs = strip(jobs(&dir.join("a")), "\"a/");
    let run = |p: &Path| -> Child {
        spawn(&[
            "rank",
            p.to_str().unwrap(),
            "--json",
            "--threads",
            "2",
            "--models-per-device",
            "3",
        ])
    };
    let check = |name: &str| {
        let b = dir.path().join(name);
        assert!(
            strip(jobs(&b), &format!("\"{name}/")) == want_jobs,
            "{name}: a job differs"
        );
        let file: Value = serde_json::from_str(
            &std::fs::read_to_string(b.join("rankings/syn-0003.json")).unwrap(),
        )
        .unwrap();
        let scores: Vec<(Value, Value)> = file["ranking"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["session"].clone(), r["forward_bps_val"].clone()))
            .collect();
        let want: Vec<(Value, Value)> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["session"].clone(), r["score"].clone()))
            .collect();
        assert_eq!(scores, want, "{name}: the ranking differs");
    };
    let mut rng = Rng(0x5eed_0003);
    let (mut kills, mut in_group, mut n) = (0, 0, 0);
    while (kills < 10 || in_group < 5) && kills < 80 {
        let name = format!("b{n}");
        if kill_after(run(&plan(&name)), rng.ms(5, full.max(60))) {
            check(&name);
            n += 1;
        } else {
            kills += 1;
            in_group += usize::from(kind_under_way(&dir.join(&name), "rankft-"));
        }
    }
    eprintln!(
        "{kills} kills, {in_group} of them with side-by-side finetunes under way; \
         {n} rankings got to their end between kills"
    );
    assert!(
        in_group >= 5,
        "only {in_group} kills landed in the finetunes"
    );
    let name = format!("b{n}");
    let o = run(&plan(&name)).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check(&name);
}
