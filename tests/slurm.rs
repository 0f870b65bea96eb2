//! The sweep on a real single-node Slurm cluster: each test starts a private one in a temporary
//! folder (`tools/slurm-local.sh start DIR`: munged, slurmctld and slurmd as the invoking user,
//! with their own configuration, ports, munge key and socket; stopped by pid when the test ends,
//! also on failure).
//!
//! - `ndt sweep --emit-slurm` writes an array job, `sbatch --wait` runs it, `ndt report` gathers
//!   every point, and the same sweep run locally gives identical numbers.
//! - A task signalled near its time limit saves, is requeued by the script and finishes on its
//!   next run with the numbers of an uninterrupted run.
//!
//! Where Slurm is not installed (and cannot be: installing needs root) or cannot run, each test
//! prints `SKIPPED: no Slurm cluster: <test> (<reason>)` straight to the terminal (past the
//! harness's capture; tools/test.sh counts these lines) and passes, unless
//! `NDT_TEST_REQUIRE_SLURM=1` (tools/test.sh sets it where it installed Slurm), when it fails.

mod common;

use common::{TempDir, ndt_ok, root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MODEL: &str = r#"
[model]
preset = "small"
d_model = 16
d_tok = 16
d_embed_hidden = 32
n_layers = 1
n_heads = 2
d_ff = 32
"#;

const PLAN: &str = r#"
dataset = "data"
heldout_last = 1
sizes = [1, "all"]
orders = ["random", "ranked"]
shuffles = 1
seeds = [7]
device = "cpu"
[pretrain]
epochs = 4
lr = 1e-3
[finetune]
epochs = 3
lr = 1e-3
[single]
epochs = 2
[rank]
epochs = 2
"#;

/// One cluster at a time: the clusters of the two tests would share the machine's cores and
/// upset the time-limit test's timing.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running private cluster; stopped (by the pids in its folder) when dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("tools/slurm-local.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

impl Cluster {
    /// Starts a cluster in `dir/cluster`, or None after printing the skip line.
    fn start(test: &str, dir: &Path) -> Option<Cluster> {
        let cdir = dir.join("cluster");
        let out = Command::new("bash")
            .arg(root().join("tools/slurm-local.sh"))
            .arg("start")
            .arg(&cdir)
            .output()
            .expect("run tools/slurm-local.sh");
        let err = String::from_utf8_lossy(&out.stderr);
        let cluster = Cluster {
            conf: cdir.join("slurm.conf"),
            dir: cdir,
        };
        if out.status.success() {
            return Some(cluster);
        }
        let required = std::env::var_os("NDT_TEST_REQUIRE_SLURM").is_some_and(|v| v != "0");
        match err
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("unavailable: "))
        {
            Some(why) if out.status.code() == Some(3) && !required => {
                // One write, so that the line stays whole among the harness's output.
                let _ = std::io::stderr()
                    .write_all(format!("SKIPPED: no Slurm cluster: {test} ({why})\n").as_bytes());
                None
            }
            _ => panic!("{test}: the private Slurm cluster did not start:\n{err}"),
        }
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// `sbatch --parsable SCRIPT` in `cwd`, then waits (at most `limit`) until the job has
    /// left the queue; returns the job id. On time out the job is cancelled and the test fails.
    fn run(&self, script: &Path, cwd: &Path, limit: Duration, logs: &Path) -> String {
        let out = self
            .cmd("sbatch")
            .arg("--parsable")
            .arg(script)
            .current_dir(cwd)
            .output()
            .expect("run sbatch");
        assert!(
            out.status.success(),
            "sbatch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        let start = Instant::now();
        loop {
            let q = self
                .cmd("squeue")
                .args(["-h", "-j", &id, "-o", "%i %T"])
                .output()
                .expect("run squeue");
            let q = String::from_utf8_lossy(&q.stdout).to_string();
            if q.trim().is_empty() {
                return id;
            }
            if start.elapsed() > limit {
                let _ = self.cmd("scancel").arg(&id).status();
                panic!(
                    "job {id} still queued after {limit:?}:\n{q}\n{}",
                    read_logs(logs)
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// `scontrol show job ID` (the record stays for MinJobAge after the job ends).
    fn show(&self, id: &str) -> String {
        let out = self
            .cmd("scontrol")
            .args(["show", "job", id])
            .output()
            .expect("run scontrol");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn read_logs(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    format!(
                        "== {}\n{}",
                        e.path().display(),
                        std::fs::read_to_string(e.path()).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn metrics(results: &Path) -> BTreeMap<String, Value> {
    std::fs::read_dir(results.join("points"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                v["metrics"].clone(),
            )
        })
        .collect()
}

fn synth(dir: &Path, sessions: &str) {
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
        "5",
        "--out",
        dir.join("data").to_str().unwrap(),
    ]);
}

fn emit(dir: &Path, plan: &str, extra: &[&str]) -> (PathBuf, String) {
    let script = dir.join("sweep.sbatch");
    let mut args = vec![
        "sweep",
        plan,
        "--emit-slurm",
        script.to_str().unwrap(),
        "--threads",
        "1",
    ];
    args.extend_from_slice(extra);
    let out = ndt_ok(&args);
    (script, out)
}

#[test]
fn slurm_array_runs_the_sweep_and_report_gathers_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("slurm");
    let Some(cluster) = Cluster::start(
        "slurm_array_runs_the_sweep_and_report_gathers_it",
        dir.path(),
    ) else {
        return;
    };
    synth(dir.path(), "4");
    for name in ["cluster", "local"] {
        std::fs::write(
            dir.path().join(format!("{name}.toml")),
            format!("results = \"{name}\"\n{PLAN}{MODEL}"),
        )
        .unwrap();
    }
    let (script, out) = emit(dir.path(), dir.join("cluster.toml").to_str().unwrap(), &[]);
    assert!(out.contains("5 tasks"), "{out}");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --array=0-4"), "{text}");

    let logs = dir.join("cluster/slurm");
    let id = cluster.run(&script, dir.path(), Duration::from_secs(600), &logs);
    let report: Value = serde_json::from_str(&ndt_ok(&[
        "report",
        dir.join("cluster").to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        report["points"],
        5,
        "every array task's point is gathered (job {id}):\n{}",
        read_logs(&logs)
    );

    ndt_ok(&[
        "sweep",
        dir.join("local.toml").to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(metrics(&dir.join("cluster")), metrics(&dir.join("local")));
}

/// The plan of the time-limit test: one session to pretrain on, `epochs` pretraining epochs.
fn requeue_plan(results: &str, epochs: u64) -> String {
    format!(
        "results = \"{results}\"\ndataset = \"data\"\nheldout_last = 1\nsizes = [\"all\"]\n\
         orders = [\"random\"]\nshuffles = 1\nseeds = [7]\ndevice = \"cpu\"\n{MODEL}\n\
         [pretrain]\nepochs = {epochs}\nlr = 1e-3\n[finetune]\nepochs = 2\nlr = 1e-3\n\
         [single]\nepochs = 1\n[rank]\nepochs = 1\n"
    )
}

/// Seconds an uninterrupted run of the plan's two points, one after the other, should take.
/// On the cluster they run side by side, and the task that pretrains must outlast the first
/// signal (`--time=1` gives a 30 s lead, and Slurm checks time limits about every 30 s, so the
/// signal comes 0 to 30 s after the start); short enough to keep the test to about 3 minutes.
const TARGET_RUN_S: f64 = 90.0;

#[test]
fn a_task_signalled_near_its_time_limit_is_requeued_and_resumes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let test = "a_task_signalled_near_its_time_limit_is_requeued_and_resumes";
    let dir = TempDir::new("slurm-requeue");
    let Some(cluster) = Cluster::start(test, dir.path()) else {
        return;
    };
    synth(dir.path(), "2");

    // Size the work to this machine: time the point with two numbers of pretraining epochs (the
    // difference is the cost of the epochs alone), then ask for the number of epochs that takes
    // about TARGET_RUN_S.
    let mut secs = Vec::new();
    for (name, e) in [("probe-a", 5u64), ("probe-b", 45)] {
        let plan = dir.join(&format!("{name}.toml"));
        std::fs::write(&plan, requeue_plan(name, e)).unwrap();
        let t = Instant::now();
        ndt_ok(&["sweep", plan.to_str().unwrap(), "--threads", "1"]);
        secs.push(t.elapsed().as_secs_f64());
    }
    let per_epoch = ((secs[1] - secs[0]) / 40.0).max(1e-4);
    let epochs = (((TARGET_RUN_S - secs[0]).max(0.0) / per_epoch) as u64).clamp(50, 100_000);
    eprintln!(
        "{test}: {:.1} s with 5 epochs, {:.1} s with 45; {epochs} epochs",
        secs[0], secs[1]
    );
    for name in ["cluster", "local"] {
        std::fs::write(
            dir.path().join(format!("{name}.toml")),
            requeue_plan(name, epochs),
        )
        .unwrap();
    }

    let (script, out) = emit(
        dir.path(),
        dir.join("cluster.toml").to_str().unwrap(),
        &["--time", "1"],
    );
    assert!(out.contains("2 tasks"), "{out}");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains("#SBATCH --time=1\n")
            && text.contains("#SBATCH --signal=B:USR1@30\n")
            && text.contains("#SBATCH --requeue\n"),
        "{text}"
    );

    // The uninterrupted run, side by side with the cluster's.
    let local = Command::new(env!("CARGO_BIN_EXE_ndt"))
        .args([
            "sweep",
            dir.join("local.toml").to_str().unwrap(),
            "--threads",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ndt");
    let logs = dir.join("cluster/slurm");
    let id = cluster.run(&script, dir.path(), Duration::from_secs(420), &logs);
    let log = read_logs(&logs);
    let local = local.wait_with_output().expect("wait for ndt");
    assert!(
        local.status.success(),
        "the local run: {}",
        String::from_utf8_lossy(&local.stderr)
    );
    // Every task completed; at least one was stopped, requeued and run again.
    let mut restarts = 0;
    for task in 0..2 {
        let job = cluster.show(&format!("{id}_{task}"));
        assert!(
            job.contains("JobState=COMPLETED"),
            "task {task} did not complete:\n{job}\n{log}"
        );
        restarts += job
            .split_whitespace()
            .find_map(|w| w.strip_prefix("Restarts="))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no Restarts= in:\n{job}"));
    }
    assert!(restarts >= 1, "no task was requeued:\n{log}");
    assert!(
        log.contains("time limit near; stopping at an epoch boundary")
            && log.contains("requeueing")
            && log.contains("(restart 1)"),
        "{log}"
    );
    let report: Value = serde_json::from_str(&ndt_ok(&[
        "report",
        dir.join("cluster").to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(report["points"], 2, "{log}");
    assert_eq!(
        metrics(&dir.join("cluster")),
        metrics(&dir.join("local")),
        "{log}"
    );
    let resumed = log
        .lines()
        .find(|l| l.contains("stopped by a signal after epoch"))
        .unwrap_or("(stopped before its first epoch ended)");
    eprintln!("{test}: {restarts} requeue(s); {resumed}");
}
