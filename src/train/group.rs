//! Several runs trained side by side in one step loop (`--models-per-device K`, SPEC §4 and
//! docs/training.md "Models per device").
//!
//! A group is K runs, each with its own backend, run directory, data, seed, schedule, masks,
//! dropout, validation, cadence and lock: exactly what `trainer::train` would do with each alone.
//! A run that finishes, diverges or fails leaves the group with its own result and the others
//! go on. Each run's results are those of training it alone, bit for bit on the CPU
//! backend (whose results do not depend on its thread count; tested).
//!
//! On the CPU a group is K jobs on one process's threads: `min(K, threads)` worker threads each
//! take the next member, set it up (only then: a group of any size holds one member per worker
//! in memory), open a backend for it (on `threads / workers` threads, at least one;
//! kept for the worker's next member of the same config, as `train::device::Worker` keeps one
//! from job to job), train it to its end and hand it to the caller's `then` (its evaluation). Nothing is shared
//! between the models, so there is nothing to fuse: stepping them in lockstep would only make
//! each step wait for the slowest model's, and a model's working set stays in its core's caches
//! for its whole run. A device backend that runs K models' products in one launch would have to
//! step them together instead (not built).

use crate::backend::Backend;
use crate::error::{Result, internal};
use crate::model::ModelConfig;
use crate::train::device::{Device, Worker};
use crate::train::trainer::{Init, Outcome, Run, train};

/// One run of a group, set up.
pub struct Member<'a> {
    pub cfg: ModelConfig,
    pub init: Init,
    pub run: Run<'a>,
}

const PANICKED: &str = "a group member ended without a result (its thread panicked)";

/// Trains every member side by side on the CPU, `k` of them at a time on `threads` threads
/// (0 = one per core; at most one model per thread), and returns each member's result in
/// order: what `trainer::train` returns for it alone.
pub fn train_group(members: Vec<Member<'_>>, k: usize, threads: usize) -> Vec<Result<Outcome>> {
    let n = members.len();
    let slots: Vec<std::sync::Mutex<Option<Member>>> = members
        .into_iter()
        .map(|m| std::sync::Mutex::new(Some(m)))
        .collect();
    let take = |i: usize| -> Result<Member> {
        slots
            .get(i)
            .and_then(|m| m.lock().ok())
            .and_then(|mut m| m.take())
            .ok_or_else(|| internal("a group member taken twice"))
    };
    train_group_then(n, k, threads, take, |_, r| r.map(|(_, o)| o))
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(internal(PANICKED))))
        .collect()
}

/// `train_group` of `n` members that `setup(i)` sets up when a worker takes member `i` (so at
/// most one member per worker is in memory, whatever `n`), and then `then(index, result)` for
/// each on the thread that trained it, as soon as it is done, with its backend when it trained
/// (to evaluate it, say). Returns what `then` returns, in order, None for a member whose
/// thread panicked (the others go on).
///
/// `min(k, threads, n)` workers each take the next member in order, on a CPU backend of
/// `threads / workers` threads that the worker keeps for its next member of the same config
/// (`train::device::Worker`, as a sweep keeps one from job to job).
pub fn train_group_then<'a, R: Send>(
    n: usize,
    k: usize,
    threads: usize,
    setup: impl Fn(usize) -> Result<Member<'a>> + Sync,
    then: impl Fn(usize, Result<(&mut dyn Backend, Outcome)>) -> R + Sync,
) -> Vec<Option<R>> {
    let threads = crate::train::device::cpu_threads(threads).max(1);
    let workers = threads.min(k.max(1)).min(n.max(1));
    let per = (threads / workers).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::with_capacity(workers));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut worker = Worker::new(Device::Cpu, per, crate::cuda::Settings::default());
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let out = match setup(i) {
                        Err(e) => then(i, Err(e)),
                        Ok(m) => match worker.backend(&m.cfg) {
                            Ok(b) => match train(b, &m.cfg, m.init, &m.run) {
                                Ok(o) => then(i, Ok((b, o))),
                                Err(e) => then(i, Err(e)),
                            },
                            Err(e) => then(i, Err(e)),
                        },
                    };
                    if let Ok(mut d) = done.lock() {
                        d.push((i, out));
                    }
                }
            });
        }
    });
    let mut results: Vec<Option<R>> = (0..n).map(|_| None).collect();
    for (i, r) in done.into_inner().unwrap_or_default() {
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(r);
        }
    }
    results
}

/// Most models one group trains side by side.
pub const MAX_MODELS_PER_DEVICE: usize = 1024;

/// `--models-per-device`: a number of models, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerDevice {
    /// As many as the waiting jobs, the CPU threads and the memory allow.
    Auto,
    K(usize),
}

impl Default for PerDevice {
    fn default() -> Self {
        PerDevice::K(1)
    }
}

impl PerDevice {
    /// `auto` or a whole number from 1 to [`MAX_MODELS_PER_DEVICE`]; else a message for the
    /// caller to put beside the flag or plan key.
    pub fn parse(text: &str) -> std::result::Result<PerDevice, String> {
        let t = text.trim();
        if t == "auto" {
            return Ok(PerDevice::Auto);
        }
        match t.parse::<usize>() {
            Ok(k) if (1..=MAX_MODELS_PER_DEVICE).contains(&k) => Ok(PerDevice::K(k)),
            Ok(_) => Err(format!(
                "`{t}`: at least 1 model, at most {MAX_MODELS_PER_DEVICE} (or `auto`)"
            )),
            Err(_) => Err(format!(
                "`{t}` is not a number of models (1 to {MAX_MODELS_PER_DEVICE}, or `auto`)"
            )),
        }
    }

    /// How many of `waiting` same-shaped jobs, each needing `need` bytes, to train together on
    /// `threads` CPU threads with `available` bytes of memory (None: unknown). `auto` takes
    /// as many as fit, at most one per thread (on the CPU more buys nothing); a number that
    /// does not fit is an error naming the memory needed and available.
    pub fn resolve(
        self,
        waiting: usize,
        need: u64,
        available: Option<(u64, &str)>,
        threads: usize,
    ) -> std::result::Result<usize, String> {
        let fit = match available {
            Some((have, _)) => (have / need.max(1)).min(usize::MAX as u64) as usize,
            None => usize::MAX,
        };
        match self {
            PerDevice::Auto => Ok(waiting.min(threads.max(1)).min(fit).max(1)),
            PerDevice::K(k) => {
                let k = k.min(waiting.max(1));
                // On the CPU at most one model per thread is in memory at once.
                let at_once = k.min(threads.max(1));
                if at_once > fit
                    && let Some((have, from)) = available
                {
                    return Err(format!(
                        "{at_once} models side by side need {} bytes of memory ({need} bytes \
                         each), but {have} bytes are available ({from}); use fewer models per \
                         device",
                        need.saturating_mul(at_once as u64)
                    ));
                }
                Ok(k)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_per_device_parses_and_refuses_nonsense() {
        assert_eq!(PerDevice::parse("auto"), Ok(PerDevice::Auto));
        assert_eq!(PerDevice::parse(" 8 "), Ok(PerDevice::K(8)));
        for bad in ["0", "-1", "x", "1.5", "", "1025"] {
            assert!(PerDevice::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolving_k_respects_jobs_threads_and_memory() {
        let mem = Some((1000u64, "test"));
        assert_eq!(PerDevice::Auto.resolve(10, 100, mem, 4), Ok(4));
        assert_eq!(PerDevice::Auto.resolve(2, 100, mem, 4), Ok(2));
        assert_eq!(PerDevice::Auto.resolve(10, 400, mem, 4), Ok(2));
        assert_eq!(PerDevice::Auto.resolve(10, 4000, mem, 4), Ok(1));
        assert_eq!(PerDevice::K(8).resolve(3, 100, mem, 2), Ok(3));
        assert_eq!(PerDevice::K(8).resolve(20, 100, None, 2), Ok(8));
        assert_eq!(PerDevice::K(8).resolve(20, 400, mem, 2), Ok(8));
        let e = PerDevice::K(8).resolve(20, 400, mem, 8).unwrap_err();
        assert!(e.contains("3200 bytes") && e.contains("1000 bytes"), "{e}");
    }
}
