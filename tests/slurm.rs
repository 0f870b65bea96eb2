//! The sweep on a real single-node Slurm cluster (slurmctld, slurmd and munge on localhost,
//! started by `tools/slurm-local.sh`, which the test command runs): `ndt sweep --emit-slurm`
//! writes an array job, `sbatch --wait` runs it, `ndt report` gathers every point, and the same
//! sweep run locally gives identical numbers.

mod common;

use common::{TempDir, ndt_ok};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const PLAN: &str = r#"
dataset = "data"
heldout_last = 1
sizes = [1, "all"]
orders = ["random", "ranked"]
shuffles = 1
seeds = [7]
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

fn cluster_up() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("idle"))
        .unwrap_or(false)
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

#[test]
fn slurm_array_runs_the_sweep_and_report_gathers_it() {
    assert!(
        cluster_up(),
        "no Slurm cluster answers `sinfo`: run tools/slurm-local.sh (as root) first; tools/test.sh does"
    );
    let dir = TempDir::new("slurm");
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
        "--seed",
        "5",
        "--out",
        dir.join("data").to_str().unwrap(),
    ]);
    std::fs::write(
        dir.join("cluster.toml"),
        format!("results = \"cluster\"\n{PLAN}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("local.toml"),
        format!("results = \"local\"\n{PLAN}"),
    )
    .unwrap();
    let script = dir.join("sweep.sbatch");
    let out = ndt_ok(&[
        "sweep",
        dir.join("cluster.toml").to_str().unwrap(),
        "--emit-slurm",
        script.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert!(out.contains("5 tasks"), "{out}");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --array=0-4"), "{text}");

    let sb = Command::new("sbatch")
        .arg("--wait")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let logs: String = std::fs::read_dir(dir.join("cluster/slurm"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    assert!(
        sb.status.success(),
        "sbatch failed: {}\n{}\n{logs}",
        String::from_utf8_lossy(&sb.stderr),
        String::from_utf8_lossy(&sb.stdout)
    );

    let report: Value = serde_json::from_str(&ndt_ok(&[
        "report",
        dir.join("cluster").to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        report["points"], 5,
        "every array task's point is gathered:\n{logs}"
    );

    ndt_ok(&[
        "sweep",
        dir.join("local.toml").to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(metrics(&dir.join("cluster")), metrics(&dir.join("local")));
}
