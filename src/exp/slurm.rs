//! `ndt sweep PLAN --emit-slurm`: an `sbatch --array` script in which task i runs point i of the
//! sweep (`ndt sweep PLAN --task i`). Points share their prerequisites (single-session models,
//! rankings, pretrained models) through content-addressed jobs, so whichever task needs one first
//! runs it and the others wait on its lock. SIGUSR1 (sent by `--signal`) or SIGTERM make a running
//! job checkpoint and exit non-zero; `--requeue` then restarts the task and it resumes.

use std::path::Path;

/// Options of the emitted script.
#[derive(Clone, Debug)]
pub struct SlurmOpts {
    pub partition: Option<String>,
    pub gpus_per_task: usize,
    pub cpus_per_task: usize,
    pub time: String,
    pub max_parallel: Option<usize>,
}

impl Default for SlurmOpts {
    fn default() -> Self {
        SlurmOpts {
            partition: None,
            gpus_per_task: 0,
            cpus_per_task: 2,
            time: "24:00:00".into(),
            max_parallel: None,
        }
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The script text for `n_tasks` points of the plan at `plan` run by the binary `ndt`.
pub fn script(ndt: &Path, plan: &Path, results: &Path, n_tasks: usize, o: &SlurmOpts) -> String {
    let mut s = String::new();
    s.push_str("#!/usr/bin/env bash\n");
    s.push_str("#SBATCH --job-name=ndt-sweep\n");
    let cap = o.max_parallel.map(|k| format!("%{k}")).unwrap_or_default();
    s.push_str(&format!(
        "#SBATCH --array=0-{}{cap}\n",
        n_tasks.saturating_sub(1)
    ));
    s.push_str(&format!(
        "#SBATCH --output={}/slurm/%A_%a.out\n",
        results.display()
    ));
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", o.cpus_per_task));
    s.push_str(&format!("#SBATCH --time={}\n", o.time));
    if o.gpus_per_task > 0 {
        s.push_str(&format!("#SBATCH --gres=gpu:{}\n", o.gpus_per_task));
    }
    if let Some(p) = &o.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    s.push_str("#SBATCH --signal=B:USR1@120\n#SBATCH --requeue\n#SBATCH --open-mode=append\n\n");
    s.push_str("set -u\n");
    s.push_str(&format!(
        "{} sweep {} --task \"$SLURM_ARRAY_TASK_ID\" --threads \"${{SLURM_CPUS_PER_TASK:-1}}\" &\n",
        quote(&ndt.display().to_string()),
        quote(&plan.display().to_string())
    ));
    s.push_str("child=$!\n");
    s.push_str("trap 'kill -USR1 $child; wait $child; exit $?' USR1 TERM\n");
    s.push_str("wait $child\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_has_array_signal_and_task_index() {
        let o = SlurmOpts {
            gpus_per_task: 1,
            max_parallel: Some(4),
            ..Default::default()
        };
        let s = script(
            Path::new("/opt/ndt"),
            Path::new("/p/plan's.toml"),
            Path::new("/r"),
            12,
            &o,
        );
        assert!(s.contains("#SBATCH --array=0-11%4\n"));
        assert!(s.contains("#SBATCH --gres=gpu:1\n"));
        assert!(s.contains("--signal=B:USR1@120"));
        assert!(s.contains("--task \"$SLURM_ARRAY_TASK_ID\""));
        assert!(s.contains("'/p/plan'\\''s.toml'"));
    }
}
