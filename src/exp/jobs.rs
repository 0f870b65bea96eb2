//! Content-addressed, resumable jobs.
//!
//! A job is named by a hash of its full specification (canonical JSON) and of
//! [`RESULTS_VERSION`], so the same work asked for twice (by two sweeps, two orders that share a
//! prefix, two Slurm tasks) is done once, and work done before the numerics changed is never
//! taken for work done after. Its folder:
//!
//! ```text
//! RESULTS/jobs/<kind>-<hash>/spec.json     what the job is: {"results_version": V, "spec": ...}
//!                            result.json   written atomically when it finished:
//!                                          {"results_version": V, "result": ...}
//!                            lock          held (flock) while a process works on it
//!                            work/         checkpoints etc.; a restarted job resumes from here
//! ```
//! A finished job (a `result.json` of the current version) is never rerun; a `result.json` of
//! another version is recomputed and replaced. A killed job leaves no `result.json`; its lock dies
//! with the process, and the next run picks it up again from `work/`.

use crate::error::{Result, internal, io_at};
use crate::fsutil::write_atomic;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Version of the numbers every result holds (job results, sweep points, rankings).
///
/// Bump it whenever a change alters what a job computes: training or evaluation numerics,
/// metrics, initialisation, data loading, the schedule. Every job id includes it, so a bump
/// makes every job run afresh; every result file records it, so a file of another version is
/// recomputed by `ndt sweep` and left out of `ndt report` (with a note), never mixed with
/// current results.
pub const RESULTS_VERSION: u32 = 1;

/// Canonical JSON: object keys sorted (serde_json's map is a BTreeMap), no whitespace.
pub fn canonical(v: &Value) -> String {
    v.to_string()
}

/// 128-bit content hash of a job spec (SHA-256 of its canonical JSON), as 32 hex digits.
pub fn content_hash(spec: &Value) -> String {
    crate::hash::id_of(&[canonical(spec).as_bytes()])
}

#[derive(Clone, Debug)]
pub struct Job {
    pub kind: String,
    pub spec: Value,
    pub dir: PathBuf,
}

/// What a job's id hashes and its `spec.json` holds: the spec under a results version.
fn versioned(spec: &Value, version: u32) -> Value {
    serde_json::json!({"results_version": version, "spec": spec})
}

/// The folder name of a `kind` job with `spec` at results version `version`.
fn job_name(kind: &str, spec: &Value, version: u32) -> String {
    format!("{kind}-{}", content_hash(&versioned(spec, version)))
}

impl Job {
    pub fn new(root: &Path, kind: &str, spec: Value) -> Job {
        let dir = root
            .join("jobs")
            .join(job_name(kind, &spec, RESULTS_VERSION));
        Job {
            kind: kind.to_string(),
            spec,
            dir,
        }
    }

    pub fn id(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn result_path(&self) -> PathBuf {
        self.dir.join("result.json")
    }

    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The finished result, if any: None when there is no `result.json`, or when it holds the
    /// result of another [`RESULTS_VERSION`] (stale: the job runs again and replaces it). The
    /// file is read as a regular file of bounded size; anything but a JSON object is an error
    /// naming the file.
    pub fn result(&self) -> Result<Option<Value>> {
        let p = self.result_path();
        if std::fs::symlink_metadata(&p).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            return Ok(None);
        }
        let text = crate::fsutil::read_text(&p)?;
        let v: Value = match serde_json::from_str(&text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Err(crate::error::input(
                    &p,
                    "corrupt job result: not a JSON object",
                ));
            }
            Err(e) => return Err(crate::error::input(&p, format!("corrupt job result: {e}"))),
        };
        if v.get("results_version").and_then(Value::as_u64) != Some(RESULTS_VERSION as u64) {
            return Ok(None);
        }
        v.get("result")
            .cloned()
            .map(Some)
            .ok_or_else(|| crate::error::input(&p, "corrupt job result: no `result`"))
    }

    /// Runs the job unless it has finished: takes its lock (waiting while another process holds
    /// it), calls `work(work_dir)` and writes its result atomically. Returns the result.
    pub fn run(&self, work: impl FnOnce(&Path) -> Result<Value>) -> Result<Value> {
        if let Some(r) = self.result()? {
            return Ok(r);
        }
        self.prepare()?;
        let lock = self.lock()?;
        // Another process may have finished it while we waited for the lock.
        if let Some(r) = self.result()? {
            return Ok(r);
        }
        let result = work(&self.work_dir())?;
        Claimed {
            job: self,
            _lock: lock,
        }
        .finish(result)
    }

    /// Claims the job without waiting: `Done` with its result when it has finished, `Mine`
    /// (its lock held) when this process should run it, `Busy` when another process holds it.
    /// Lets a caller gather several jobs to run together (`--models-per-device`).
    pub fn try_claim(&self) -> Result<Claim<'_>> {
        if let Some(r) = self.result()? {
            return Ok(Claim::Done(r));
        }
        self.prepare()?;
        let p = self.dir.join("lock");
        let f = self.lock_file()?;
        match f.try_lock() {
            Ok(()) => match self.result()? {
                Some(r) => Ok(Claim::Done(r)),
                None => Ok(Claim::Mine(Claimed {
                    job: self,
                    _lock: f,
                })),
            },
            Err(std::fs::TryLockError::WouldBlock) => Ok(Claim::Busy),
            Err(std::fs::TryLockError::Error(e)) => Err(crate::error::io(&p, e)),
        }
    }

    /// Creates the job's folders and writes its `spec.json`.
    fn prepare(&self) -> Result<()> {
        std::fs::create_dir_all(self.work_dir()).map_err(io_at(&self.dir))?;
        let spec_path = self.dir.join("spec.json");
        let spec_text = serde_json::to_string_pretty(&versioned(&self.spec, RESULTS_VERSION))
            .map_err(|e| internal(e.to_string()))?;
        write_atomic(&spec_path, spec_text.as_bytes())
    }

    fn lock_file(&self) -> Result<File> {
        let p = self.dir.join("lock");
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_at(&p))
    }

    /// Exclusive advisory lock on `lock`, released when the returned file drops or the process dies.
    fn lock(&self) -> Result<File> {
        let p = self.dir.join("lock");
        let f = self.lock_file()?;
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(f),
                Err(std::fs::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(crate::error::io(&p, e)),
            }
        }
    }
}

/// What `Job::try_claim` found.
pub enum Claim<'j> {
    Done(Value),
    Mine(Claimed<'j>),
    Busy,
}

/// A job this process holds the lock of, to run and `finish`.
pub struct Claimed<'j> {
    pub job: &'j Job,
    _lock: File,
}

impl Claimed<'_> {
    /// Writes the job's result atomically and releases it. Returns the result.
    pub fn finish(self, result: Value) -> Result<Value> {
        let file = serde_json::json!({"results_version": RESULTS_VERSION, "result": result});
        let text = serde_json::to_string_pretty(&file).map_err(|e| internal(e.to_string()))?;
        write_atomic(&self.job.result_path(), text.as_bytes())?;
        Ok(result)
    }
}

/// Writes the result of every claimed job whose work succeeded (`result(value)`), in order, and
/// then returns the first error of the others (each released without a result, to be run
/// again), so that one failed job of a group costs the others nothing.
pub fn finish_all<T>(
    claimed: Vec<Claimed<'_>>,
    results: Vec<Result<T>>,
    result: impl Fn(T) -> Value,
) -> Result<()> {
    let mut first_err = None;
    for (c, r) in claimed.into_iter().zip(results) {
        match r {
            Ok(v) => {
                c.finish(result(v))?;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_claimed_job_is_busy_for_others_and_done_once_finished() {
        let root = std::env::temp_dir().join(format!("ndt-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let job = Job::new(&root, "t", json!({"x": 1}));
        let Claim::Mine(mine) = job.try_claim().unwrap() else {
            panic!("a new job is not claimed");
        };
        assert!(job.dir.join("spec.json").is_file());
        // Another claim (another open file: another process's view of the lock) finds it busy.
        assert!(matches!(job.try_claim().unwrap(), Claim::Busy));
        mine.finish(json!({"y": 2})).unwrap();
        match job.try_claim().unwrap() {
            Claim::Done(r) => assert_eq!(r, json!({"y": 2})),
            _ => panic!("a finished job is not done"),
        }
        // `run` of a finished job returns its result without running it.
        let r = job.run(|_| panic!("rerun")).unwrap();
        assert_eq!(r, json!({"y": 2}));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn hash_depends_on_content_not_key_order() {
        let a = json!({"k": 3, "sessions": ["a", "b"], "seed": 42});
        let b: Value =
            serde_json::from_str(r#"{"seed": 42, "sessions": ["a", "b"], "k": 3}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        let c = json!({"k": 3, "sessions": ["b", "a"], "seed": 42});
        assert_ne!(content_hash(&a), content_hash(&c));
        assert_eq!(content_hash(&a).len(), 32);
    }

    #[test]
    fn finished_job_is_not_rerun_and_failed_job_leaves_no_result() {
        let root = std::env::temp_dir().join(format!("ndt-jobs-{}", std::process::id()));
        let job = Job::new(&root, "t", json!({"x": 1}));
        let err = job.run(|_| Err(crate::error::usage("boom")));
        assert!(err.is_err());
        assert!(job.result().unwrap().is_none());
        let mut calls = 0;
        let r = job
            .run(|w| {
                calls += 1;
                assert!(w.is_dir());
                Ok(json!({"bps": 0.25}))
            })
            .unwrap();
        assert_eq!(r["bps"], 0.25);
        let r2 = job.run(|_| panic!("must not rerun")).unwrap();
        assert_eq!(r, r2);
        assert_eq!(calls, 1);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn job_id_and_files_carry_the_results_version() {
        let spec = json!({"dataset": "d", "seed": 1});
        let root = std::env::temp_dir().join(format!("ndt-jobs-v-{}", std::process::id()));
        let job = Job::new(&root, "eval", spec.clone());
        assert_eq!(job.id(), job_name("eval", &spec, RESULTS_VERSION));
        assert_ne!(
            job_name("eval", &spec, RESULTS_VERSION),
            job_name("eval", &spec, RESULTS_VERSION + 1),
            "the version must change the job id"
        );
        job.run(|_| Ok(json!({"forward": 0.5}))).unwrap();
        for f in ["spec.json", "result.json"] {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(job.dir.join(f)).unwrap()).unwrap();
            assert_eq!(v["results_version"], RESULTS_VERSION, "{f}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn result_of_another_version_is_recomputed_not_reused() {
        let root = std::env::temp_dir().join(format!("ndt-jobs-stale-{}", std::process::id()));
        let job = Job::new(&root, "eval", json!({"x": 2}));
        std::fs::create_dir_all(&job.dir).unwrap();
        // A result written under another version, and one from before results were versioned.
        for stale in [
            json!({"results_version": RESULTS_VERSION + 1, "result": {"forward": 9.0}}),
            json!({"forward": 9.0}),
        ] {
            std::fs::write(job.result_path(), stale.to_string()).unwrap();
            assert!(job.result().unwrap().is_none());
            let mut calls = 0;
            let r = job
                .run(|_| {
                    calls += 1;
                    Ok(json!({"forward": 0.5}))
                })
                .unwrap();
            assert_eq!((calls, &r), (1, &json!({"forward": 0.5})));
            assert_eq!(job.result().unwrap(), Some(r));
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
