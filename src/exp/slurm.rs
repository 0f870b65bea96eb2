//! `ndt sweep PLAN --emit-slurm`: an `sbatch --array` script in which task i runs point i of the
//! sweep (`ndt sweep PLAN --task i`). Points share their prerequisites (single-session models,
//! rankings, pretrained models) through content-addressed jobs, so whichever task needs one first
//! runs it and the others wait on its lock.
//!
//! Near the time limit: Slurm does not requeue a task that reaches its time limit by itself.
//! The script asks for `--signal=B:USR1@LEAD` (LEAD = 120 s, or half the time limit when that is
//! shorter), so Slurm signals the batch shell LEAD seconds (up to a minute more: Slurm checks
//! time limits every 30 s or so) before the limit. The shell's handler passes SIGUSR1 to ndt,
//! which stops at the next epoch boundary with its last finished epoch on disk and exits
//! non-zero; the handler then runs `scontrol requeue JOB_TASK` (allowed by `--requeue`), and the
//! requeued task resumes where it stopped. SIGTERM (`scancel`, or the requeue itself) makes ndt
//! stop the same way, without a requeue.

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
    s.push_str(&format!(
        "#SBATCH --signal=B:USR1@{}\n#SBATCH --requeue\n#SBATCH --open-mode=append\n\n",
        signal_lead(&o.time)
    ));
    s.push_str("set -u\n");
    s.push_str(
        "task=\"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n\
         echo \"ndt-sweep: task $task starts (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname)\"\n",
    );
    s.push_str(&format!(
        "{} sweep {} --task \"$SLURM_ARRAY_TASK_ID\" --threads \"${{SLURM_CPUS_PER_TASK:-1}}\" &\n",
        quote(&ndt.display().to_string()),
        quote(&plan.display().to_string())
    ));
    s.push_str("child=$!\n");
    // Near the time limit: ndt saves and stops, then the task is put back in the queue (unless
    // ndt finished its point meanwhile, rc 0).
    s.push_str(
        "near_limit() {\n\
         \x20   echo \"ndt-sweep: task $task: time limit near; stopping at an epoch boundary\"\n\
         \x20   kill -USR1 \"$child\" 2>/dev/null\n\
         \x20   wait \"$child\"\n\
         \x20   rc=$?\n\
         \x20   if [ \"$rc\" -ne 0 ]; then\n\
         \x20       echo \"ndt-sweep: task $task: stopped (exit $rc); requeueing\"\n\
         \x20       scontrol requeue \"$task\"\n\
         \x20   fi\n\
         \x20   exit \"$rc\"\n\
         }\n",
    );
    s.push_str("trap near_limit USR1\n");
    s.push_str("trap 'kill -TERM \"$child\" 2>/dev/null; wait \"$child\"; exit $?' TERM\n");
    // `wait` returns early when a trapped signal arrives; the trap then runs and exits.
    s.push_str("wait \"$child\"\n");
    s
}

/// Seconds before the time limit at which Slurm is asked to signal the task: 120, or half the
/// limit when that is shorter; 120 when the limit cannot be read (e.g. `UNLIMITED`).
fn signal_lead(time: &str) -> u64 {
    time_limit_secs(time).map_or(120, |t| (t / 2).clamp(1, 120))
}

/// A Slurm time limit in seconds: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn time_limit_secs(time: &str) -> Option<u64> {
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (days, rest) = match time.split_once('-') {
        Some((d, r)) => (Some(num(d)?), r),
        None => (None, time),
    };
    let parts: Vec<u64> = rest.split(':').map(num).collect::<Option<_>>()?;
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => m.checked_mul(60)?,
        (None, [m, s]) => m.checked_mul(60)?.checked_add(*s)?,
        (None, [h, m, s]) | (Some(_), [h, m, s]) => h
            .checked_mul(3600)?
            .checked_add(m.checked_mul(60)?)?
            .checked_add(*s)?,
        (Some(_), [h]) => h.checked_mul(3600)?,
        (Some(_), [h, m]) => h.checked_mul(3600)?.checked_add(m.checked_mul(60)?)?,
        _ => return None,
    };
    days.unwrap_or(0).checked_mul(86_400)?.checked_add(secs)
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
        assert!(s.contains("#SBATCH --signal=B:USR1@120\n"));
        assert!(s.contains("#SBATCH --requeue\n"));
        assert!(s.contains("trap near_limit USR1\n"));
        assert!(s.contains("scontrol requeue \"$task\""));
        assert!(s.contains("task=\"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\""));
        assert!(s.contains("--task \"$SLURM_ARRAY_TASK_ID\""));
        assert!(s.contains("'/p/plan'\\''s.toml'"));
    }

    #[test]
    fn the_signal_comes_120_s_or_half_the_limit_before_it() {
        for (t, lead) in [
            ("24:00:00", 120),
            ("1", 30),
            ("2", 60),
            ("3:00", 90),
            ("0:40", 20),
            ("1-0", 120),
            ("2-03:04", 120),
            ("1-00:00:01", 120),
            ("UNLIMITED", 120),
            ("", 120),
            ("1:2:3:4", 120),
        ] {
            assert_eq!(signal_lead(t), lead, "{t}");
        }
        assert_eq!(time_limit_secs("1-02:03:04"), Some(93784));
        assert_eq!(time_limit_secs("2-03"), Some(2 * 86400 + 3 * 3600));
        assert_eq!(time_limit_secs("5:30"), Some(330));
        assert_eq!(time_limit_secs("-5"), None);
        assert_eq!(time_limit_secs("99999999999999999999"), None);
        let s = script(
            Path::new("/opt/ndt"),
            Path::new("/p.toml"),
            Path::new("/r"),
            1,
            &SlurmOpts {
                time: "1".into(),
                ..Default::default()
            },
        );
        assert!(s.contains("#SBATCH --time=1\n#"), "{s}");
        assert!(s.contains("#SBATCH --signal=B:USR1@30\n"), "{s}");
    }

    /// The script is valid bash (`bash -n`).
    #[test]
    fn the_script_parses() {
        let s = script(
            Path::new("/opt/ndt"),
            Path::new("/p.toml"),
            Path::new("/r"),
            3,
            &SlurmOpts::default(),
        );
        let dir = std::env::temp_dir().join(format!("ndt-slurm-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s.sbatch");
        std::fs::write(&f, &s).unwrap();
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg(&f)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{}\n{s}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
