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
