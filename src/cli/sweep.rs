//! `ndt sweep PLAN.toml`: runs a sweep plan's points (SPEC §6), resumably.
//!
//! - no flags: every point, `--jobs K` at a time (child processes; `--gpus 0,1` gives each child
//!   one GPU through `CUDA_VISIBLE_DEVICES`, round robin);
//! - `--task I`: point I only (what a Slurm array task runs);
//! - `--list`: the points with their index and whether they are done;
//! - `--emit-slurm FILE`: an `sbatch --array` script running one point per task.

use crate::error::{Result, internal, io_at, usage};
use crate::exp::plan::Plan;
use crate::exp::slurm::{SlurmOpts, script};
use crate::exp::sweep::Sweep;
use crate::exp::work::DatasetWork;
use crate::train::group::PerDevice;
use std::path::PathBuf;
use std::process::Command;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sweep plan (TOML; see `docs/experiments.md`).
    pub plan: PathBuf,
    /// Run only point I (0-based; `--list` shows them).
    #[arg(long)]
    pub task: Option<usize>,
    /// Points run side by side.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// GPUs to spread the jobs over (e.g. `0,1,2,3`), one per job, round robin.
    #[arg(long)]
    pub gpus: Option<String>,
    /// CPU threads per job (0 = the plan's `threads`, else cores / jobs).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// List the points and their state, run nothing.
    #[arg(long)]
    pub list: bool,
    /// Write an sbatch array script to FILE instead of running.
    #[arg(long)]
    pub emit_slurm: Option<PathBuf>,
    /// GPUs per Slurm task (0 for CPU-only clusters).
    #[arg(long, default_value_t = 0)]
    pub slurm_gpus: usize,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm time limit per task.
    #[arg(long, default_value = "24:00:00")]
    pub time: String,
    /// At most this many Slurm tasks at once (`--array=0-N%M`).
    #[arg(long)]
    pub max_parallel: Option<usize>,
    /// How often each job writes its resume state and checkpoints: epochs (`50`, `50e`; `0` =
    /// every epoch) or time (`90s`, `10m`, `2h`) [default: the plan's `checkpoint_every`, else
    /// 10m].
    #[arg(long)]
    pub checkpoint_every: Option<String>,
    /// How many of the ranking's finetunes to train side by side: a number or `auto`
    /// [default: the plan's `models_per_device`, else 1] (CPU backend; docs/training.md).
    #[arg(long, value_name = "K|auto")]
    pub models_per_device: Option<String>,
}

/// `--models-per-device` of sweep and rank, checked; else the plan's.
pub fn per_device(flag: &Option<String>, plan: &Plan) -> Result<PerDevice> {
    match flag.as_deref() {
        Some(t) => PerDevice::parse(t).map_err(|m| usage(format!("--models-per-device: {m}"))),
        None => plan.per_device().map_err(usage),
    }
}

/// `--checkpoint-every` of sweep and rank, checked.
pub fn cadence(flag: &Option<String>) -> Result<Option<crate::train::cadence::Cadence>> {
    flag.as_deref()
        .map(|t| {
            crate::train::cadence::Cadence::parse(t)
                .map_err(|m| usage(format!("--checkpoint-every: {m}")))
        })
        .transpose()
}

fn open(args: &Args) -> Result<Sweep> {
    let plan = Plan::load(&args.plan)?;
    let manifest = plan.dataset.join("manifest.json");
    let bytes = crate::fsutil::read_bounded(&manifest, crate::fsutil::MAX_TEXT_BYTES)?;
    let ds = crate::store::Dataset::open(&plan.dataset)?;
    let ids: Vec<String> = (0..ds.n_sessions())
        .map(|i| ds.session(i).id.clone())
        .collect();
    Sweep::new(plan, &bytes, &ids, &args.plan)
}

fn threads(args: &Args) -> usize {
    if args.threads > 0 {
        return args.threads;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores / args.jobs.max(1)).max(1)
}

pub fn run(args: Args, cuda: &crate::cuda::Settings) -> Result<()> {
    let every = cadence(&args.checkpoint_every)?;
    let sweep = open(&args)?;
    // The plan's `threads` applies unless `--threads` is given.
    let args = Args {
        threads: if args.threads > 0 {
            args.threads
        } else {
            sweep.plan.threads
        },
        ..args
    };
    let points = sweep.points();
    if args.list {
        for (i, p) in points.iter().enumerate() {
            let done = sweep.point_done(i, p);
            println!(
                "{i:5}  {}  {}",
                if done { "done   " } else { "pending" },
                p.label()
            );
        }
        return Ok(());
    }
    if let Some(path) = &args.emit_slurm {
        let exe = std::env::current_exe()
            .map_err(|e| internal(format!("cannot locate the ndt binary: {e}")))?;
        let plan = std::fs::canonicalize(&args.plan).map_err(io_at(&args.plan))?;
        std::fs::create_dir_all(sweep.root().join("slurm")).map_err(io_at(sweep.root()))?;
        let results = std::fs::canonicalize(sweep.root()).map_err(io_at(sweep.root()))?;
        let o = SlurmOpts {
            partition: args.partition.clone(),
            gpus_per_task: args.slurm_gpus,
            cpus_per_task: threads(&args),
            time: args.time.clone(),
            max_parallel: args.max_parallel,
        };
        crate::fsutil::write_atomic(
            path,
            script(&exe, &plan, &results, points.len(), &o).as_bytes(),
        )?;
        println!(
            "{} tasks; submit with: sbatch {}",
            points.len(),
            path.display()
        );
        return Ok(());
    }
    if let Some(i) = args.task {
        let work = DatasetWork::new(&sweep.plan, threads(&args), every, cuda)?
            .with_models_per_device(per_device(&args.models_per_device, &sweep.plan)?)?;
        let r = sweep.run_point(i, &work)?;
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
        return Ok(());
    }
    if args.jobs <= 1 {
        let k = per_device(&args.models_per_device, &sweep.plan)?;
        let work = DatasetWork::new(&sweep.plan, threads(&args), every, cuda)?
            .with_models_per_device(k)?;
        if k != PerDevice::K(1) {
            // Every stage's jobs side by side first; the points then find them done.
            let todo: Vec<usize> = points
                .iter()
                .enumerate()
                .filter(|(i, p)| !sweep.point_done(*i, p))
                .map(|(i, _)| i)
                .collect();
            sweep.side_by_side(&todo, &work)?;
        }
        for i in 0..points.len() {
            let r = sweep.run_point(i, &work)?;
            eprintln!(
                "[{}/{}] {} forward {:.4}",
                i + 1,
                points.len(),
                points[i].label(),
                r.metrics.get("forward").copied().unwrap_or(f64::NAN)
            );
        }
        eprintln!("sweep done: ndt report {}", sweep.root().display());
        return Ok(());
    }
    run_parallel(&args, points.len())
}

/// Asks a child task to stop at its next step boundary. SIGUSR1, whatever the parent got: it
/// raises the child's stop flag and nothing more, where a second SIGINT or SIGTERM (a Ctrl-C
/// reaches the whole process group) would end the child before it saves its state.
fn ask_to_stop(child: &std::process::Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a valid signal number and the pid of our own unreaped child.
        unsafe {
            libc::kill(pid, libc::SIGUSR1);
        }
    }
}

/// Runs every point as a child `ndt sweep PLAN --task I`, `--jobs` at a time. SIGTERM, SIGINT
/// or SIGUSR1 to this process starts no more tasks and asks the running ones to stop (each saves
/// its state at its next step boundary); it then waits for them and fails with
/// `Error::Interrupted` (the next run of the sweep resumes them).
fn run_parallel(args: &Args, n: usize) -> Result<()> {
    crate::train::signals::install()?;
    let mut forwarded = false;
    let exe = std::env::current_exe()
        .map_err(|e| internal(format!("cannot locate the ndt binary: {e}")))?;
    let gpus: Vec<String> = args
        .gpus
        .as_deref()
        .map(|g| {
            g.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let t = threads(args);
    let mut running: Vec<(usize, usize, std::process::Child)> = Vec::new();
    let mut next = 0;
    let mut failed = Vec::new();
    let mut slot_free: Vec<usize> = (0..args.jobs).rev().collect();
    while next < n || !running.is_empty() {
        if crate::train::signals::requested() && !forwarded {
            forwarded = true;
            next = n;
            for (_, _, child) in &running {
                ask_to_stop(child);
            }
        }
        while next < n && !slot_free.is_empty() {
            let slot = slot_free.pop().unwrap_or(0);
            let mut cmd = Command::new(&exe);
            cmd.arg("sweep")
                .arg(&args.plan)
                .arg("--task")
                .arg(next.to_string())
                .arg("--threads")
                .arg(t.to_string());
            if let Some(c) = &args.checkpoint_every {
                cmd.arg("--checkpoint-every").arg(c);
            }
            if let Some(k) = &args.models_per_device {
                cmd.arg("--models-per-device").arg(k);
            }
            if !gpus.is_empty() {
                cmd.env("CUDA_VISIBLE_DEVICES", &gpus[slot % gpus.len()]);
            }
            let child = cmd
                .stdout(std::process::Stdio::null())
                .spawn()
                .map_err(|e| internal(format!("cannot start {}: {e}", exe.display())))?;
            running.push((next, slot, child));
            next += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut i = 0;
        while i < running.len() {
            match running[i].2.try_wait() {
                Ok(Some(status)) => {
                    let (task, slot, _) = running.swap_remove(i);
                    slot_free.push(slot);
                    if !status.success() {
                        failed.push(task);
                    }
                    eprintln!(
                        "task {task}: {}",
                        if status.success() { "done" } else { "FAILED" }
                    );
                }
                Ok(None) => i += 1,
                Err(e) => return Err(internal(format!("waiting for a sweep task: {e}"))),
            }
        }
    }
    if forwarded {
        return Err(crate::error::Error::Interrupted(
            "the sweep was interrupted: its running tasks saved their state and stopped; \
             running the sweep again continues them"
                .into(),
        ));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(usage(format!(
            "{} task(s) failed: {failed:?}; rerun the sweep to retry them",
            failed.len()
        )))
    }
}
