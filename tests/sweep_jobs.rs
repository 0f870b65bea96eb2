//! `ndt sweep --jobs K`: a stop signal to the parent reaches its child tasks, which save their
//! state and stop; the parent waits for them, says so and exits 1 (the resume from that state is
//! tests/sweep.rs's and tests/resume_kill.rs's).

mod common;

use common::{TempDir, ndt_ok};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PLAN: &str = r#"
results = "a"
dataset = "data"
heldout_last = 1
sizes = [1, "all"]
orders = ["random"]
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
epochs = 400
lr = 1e-3
schemes = ["forward"]
[finetune]
epochs = 2
lr = 1e-3
[single]
epochs = 400
lr = 1e-3
[rank]
epochs = 2
lr = 1e-3
"#;

/// The run folders of the jobs that have logged an epoch and have no result.
fn under_way(results: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(results.join("jobs")) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|d| {
            std::fs::metadata(d.join("work/run/log.jsonl")).is_ok_and(|m| m.len() > 0)
                && !d.join("result.json").exists()
        })
        .map(|d| d.join("work/run"))
        .collect()
}

#[test]
fn sigterm_to_a_parallel_sweep_stops_its_tasks_with_their_state_saved() {
    let dir = TempDir::new("sweep-jobs-term");
    ndt_ok(&[
        "synth",
        "--preset",
        "rs",
        "--tiny",
        "--sessions",
        "3",
        "--bins",
        "30",
        "--onset-bin",
        "5",
        "--seed",
        "3",
        "--out",
        dir.join("data").to_str().unwrap(),
    ]);
    let plan = dir.join("a.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let results = dir.join("a");
    let child = Command::new(env!("CARGO_BIN_EXE_ndt"))
        .args([
            "sweep",
            plan.to_str().unwrap(),
            "--jobs",
            "2",
            "--threads",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while under_way(&results).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no job got under way"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The signal goes to the parent alone (not its process group).
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    // At the default cadence (10 minutes) only the signal writes a state: a stopped task's run
    // has one, part way through its 400 epochs, and no task goes on once the parent is gone.
    let runs = under_way(&results);
    assert!(!runs.is_empty());
    let mut saved = 0;
    for run in &runs {
        let p = run.join("state.safetensors");
        if p.exists() {
            let st = ndt::train::state::load(&p).unwrap();
            assert!(st.counters.epoch < 400);
            assert!(!st.params.is_empty());
            saved += 1;
        }
    }
    assert!(saved > 0, "no task saved its state: {runs:?}");
    let logs = |rs: &[std::path::PathBuf]| -> Vec<usize> {
        rs.iter()
            .map(|r| {
                std::fs::read_to_string(r.join("log.jsonl"))
                    .map(|t| t.lines().count())
                    .unwrap_or(0)
            })
            .collect()
    };
    let before = logs(&runs);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(logs(&runs), before, "a task kept training after the stop");
}
