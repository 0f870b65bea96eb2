//! Several runs trained side by side in one step loop (`--models-per-device K`, SPEC §4 and
//! docs/training.md "Models per device").
//!
//! A group is K runs, each with its own backend, run directory, data, seed, schedule, masks,
//! dropout, validation, cadence and lock: exactly what `trainer::train` would do with each alone.
//! The group takes one step of every run that still has steps, then the next, until every run
//! is done; a run that finishes, diverges or fails leaves the group with its own result and the
//! others go on. Each run's results are those of training it alone, bit for bit on the CPU
//! backend (whose results do not depend on its thread count; tested).
//!
//! On the CPU the K steps of a group step run in parallel, on at most `threads` threads at a
//! time (each member's backend on `threads / K` threads, at least one): a group is K jobs on
//! one process's threads, with nothing between them but the step boundary. The work between
//! steps (epoch ends, validation, checkpoint writes) runs in parallel the same way.

use crate::backend::Backend;
use crate::error::{Result, internal};
use crate::model::ModelConfig;
use crate::train::trainer::{Init, Opened, Outcome, Run, Stepper};
use std::time::Instant;

/// One run of a group.
pub struct Member<'r, 'a> {
    pub backend: &'r mut (dyn Backend + Send),
    pub cfg: &'r ModelConfig,
    pub init: Init,
    pub run: &'r Run<'a>,
}

/// A member between steps.
struct Active<'r, 'a> {
    /// Index in the group.
    i: usize,
    backend: &'r mut (dyn Backend + Send),
    stepper: Box<Stepper<'r, 'a>>,
}

/// Goes one step further: up to the next step, the step, its record. Some(result) once the run
/// is done or failed.
fn advance(a: &mut Active<'_, '_>) -> Option<Result<Outcome>> {
    let hp = match a.stepper.next(a.backend) {
        Ok(Some(hp)) => hp,
        Ok(None) => return Some(a.stepper.outcome()),
        Err(e) => return Some(Err(e)),
    };
    let t = Instant::now();
    let st = match a.backend.train_step(a.stepper.batch(), &hp) {
        Ok(st) => st,
        Err(e) => return Some(Err(e)),
    };
    match a.stepper.record(&st, t.elapsed().as_secs_f64()) {
        Ok(()) => None,
        Err(e) => Some(Err(e)),
    }
}

/// Trains every member side by side, at most `threads` of them at a time (0 = one per core),
/// and returns each member's result in order: what `trainer::train` returns for it alone.
pub fn train_group(members: Vec<Member<'_, '_>>, threads: usize) -> Vec<Result<Outcome>> {
    let k = members.len();
    let mut results: Vec<Option<Result<Outcome>>> = (0..k).map(|_| None).collect();
    let mut active = Vec::with_capacity(k);
    for (i, m) in members.into_iter().enumerate() {
        match Stepper::open(m.backend, m.cfg, m.init, m.run) {
            Ok(Opened::Steps(stepper)) => active.push(Active {
                i,
                backend: m.backend,
                stepper,
            }),
            Ok(Opened::Finished(o)) => results[i] = Some(Ok(o)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let threads = crate::train::device::cpu_threads(threads).max(1);
    while !active.is_empty() {
        let per = active.len().div_ceil(threads);
        let done: Vec<(usize, Result<Outcome>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = active
                .chunks_mut(per)
                .map(|chunk| {
                    let ids: Vec<usize> = chunk.iter().map(|a| a.i).collect();
                    let h = scope.spawn(move || {
                        let mut done = Vec::new();
                        for a in chunk.iter_mut() {
                            if let Some(r) = advance(a) {
                                done.push((a.i, r));
                            }
                        }
                        done
                    });
                    (ids, h)
                })
                .collect();
            let mut done = Vec::new();
            for (ids, h) in handles {
                match h.join() {
                    Ok(d) => done.extend(d),
                    // A thread that panicked fails its members, not the group.
                    Err(_) => done.extend(
                        ids.into_iter()
                            .map(|i| (i, Err(internal("a training step panicked")))),
                    ),
                }
            }
            done
        });
        for (i, r) in done {
            results[i] = Some(r);
        }
        active.retain(|a| results[a.i].is_none());
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(internal("a group member ended without a result"))))
        .collect()
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
                if k > fit
                    && let Some((have, from)) = available
                {
                    return Err(format!(
                        "{k} models side by side need {} bytes of memory ({need} bytes each), \
                         but {have} bytes are available ({from}); use fewer models per device",
                        need.saturating_mul(k as u64)
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
        let e = PerDevice::K(8).resolve(20, 400, mem, 2).unwrap_err();
        assert!(e.contains("3200 bytes") && e.contains("1000 bytes"), "{e}");
    }
}
