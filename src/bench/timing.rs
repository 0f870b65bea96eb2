//! Timing: the synthetic batch, the timed loops of training steps and evaluation passes, and
//! their statistics (median, min). `--mode frozen-core` alternates the full step and the
//! frozen-core step, so that a change of the machine's load touches both.

use crate::backend::{Backend, ForwardOpts, StepHyper};
use crate::batch::Batch;
use crate::error::Result;
use crate::mask::{Regions, make_masks};
use crate::scheme::Scheme;
use crate::train::config::TrainHyper;
use rand::SeedableRng;
use rand_distr::{Distribution, Poisson};
use std::time::Instant;

/// Median and min of timed runs, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub median_ms: f64,
    pub min_ms: f64,
}

impl Timing {
    /// Median and min of `ms`.
    pub fn of(mut all: Vec<f64>) -> Timing {
        let min_ms = all.iter().copied().fold(f64::INFINITY, f64::min);
        Timing {
            median_ms: median(&mut all),
            min_ms,
        }
    }
}

/// The median (the upper one of an even count; NaN for none).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Milliseconds of `f`.
fn ms(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t0 = Instant::now();
    f()?;
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

/// `n` runs of `f` (given the run's index), timed one by one.
fn time(n: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<Timing> {
    let all = (0..n).map(|i| ms(|| f(i))).collect::<Result<Vec<_>>>()?;
    Ok(Timing::of(all))
}

/// A batch of Poisson counts (mean 0.2 per bin) with the scheme's masks, deterministic.
pub fn synthetic_batch(
    sid: &str,
    b: usize,
    t: usize,
    n: usize,
    scheme: Scheme,
    seed: u64,
) -> Batch {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let pois = Poisson::new(0.2f64).expect("positive rate");
    let counts: Vec<f32> = (0..b * t * n)
        .map(|_| pois.sample(&mut rng) as f32)
        .collect();
    let (mut mask, mut target) = (vec![0u8; b * t * n], vec![0u8; b * t * n]);
    let regions = Regions::single(n);
    let key = crate::rng::key(seed, 1);
    make_masks(scheme, b, t, n, &regions, 0.3, key, &mut mask, &mut target);
    Batch {
        session: 0,
        session_id: sid.to_string(),
        trials: (0..b as u32).collect(),
        b,
        t,
        n,
        counts,
        mask,
        target,
        scheme,
    }
}

/// The optimizer settings of step `step` (counted from 0) under `train`.
pub fn hyper(train: &TrainHyper, step: usize) -> StepHyper {
    StepHyper {
        lr: train.lr as f32,
        beta1: train.max_momentum as f32,
        beta2: train.beta2 as f32,
        eps: train.eps as f32,
        weight_decay: train.weight_decay as f32,
        clip: train.clip as f32,
        dropout: train.dropout as f32,
        step: step as u64 + 1,
        seed: 1000 + step as u64,
    }
}

/// The timed training steps: `warmup` untimed steps, then `steps` timed ones.
pub struct Steps<'a> {
    pub batch: &'a Batch,
    pub train: &'a TrainHyper,
    pub warmup: usize,
    pub steps: usize,
}

/// The full training step, timed: its timing and the last step's loss.
pub fn full_steps(backend: &mut dyn Backend, s: &Steps) -> Result<(Timing, f32)> {
    let mut last_loss = f32::NAN;
    time(s.warmup, |i| {
        last_loss = backend.train_step(s.batch, &hyper(s.train, i))?.loss;
        Ok(())
    })?;
    let timing = time(s.steps, |i| {
        last_loss = backend
            .train_step(s.batch, &hyper(s.train, s.warmup + i))?
            .loss;
        Ok(())
    })?;
    Ok((timing, last_loss))
}

/// `--mode frozen-core`: the frozen-core step timed beside the full one, and their ratios.
pub struct FrozenCore {
    pub full: Timing,
    pub frozen: Timing,
    /// Median of the full step's time over the frozen-core step's, pair by pair (each pair
    /// run back to back, so a change of the machine's load touches both).
    pub pair_ratio: f64,
    /// Fraction of the parameters that train in the frozen-core step.
    pub trainable_share: f64,
}

impl FrozenCore {
    /// The full step's median over the frozen-core step's.
    pub fn ratio(&self) -> f64 {
        self.full.median_ms / self.frozen.median_ms
    }
}

/// Full steps (every tensor trainable, `all`) and frozen-core steps (`frozen_mask`)
/// alternating, step by step; the loss is the last full step's. The warm-up captures both
/// graphs on a GPU; only the steps are timed, not the change of trainable set between them.
pub fn frozen_core_steps(
    backend: &mut dyn Backend,
    s: &Steps,
    all: &[u8],
    frozen_mask: &[u8],
) -> Result<(FrozenCore, f32)> {
    let mut last_loss = f32::NAN;
    let (mut full, mut frozen) = (Vec::new(), Vec::new());
    for i in 0..s.warmup + s.steps {
        let hp = hyper(s.train, i);
        backend.set_trainable(all)?;
        let f = ms(|| {
            last_loss = backend.train_step(s.batch, &hp)?.loss;
            Ok(())
        })?;
        backend.set_trainable(frozen_mask)?;
        let z = ms(|| backend.train_step(s.batch, &hp).map(|_| ()))?;
        if i >= s.warmup {
            full.push(f);
            frozen.push(z);
        }
    }
    backend.set_trainable(all)?;
    let mut ratios: Vec<f64> = full.iter().zip(&frozen).map(|(f, z)| f / z).collect();
    let trainable = frozen_mask.iter().filter(|&&t| t != 0).count();
    let fc = FrozenCore {
        full: Timing::of(full),
        frozen: Timing::of(frozen),
        pair_ratio: median(&mut ratios),
        trainable_share: trainable as f64 / all.len().max(1) as f64,
    };
    Ok((fc, last_loss))
}

/// `evals` timed evaluation passes (at least one), after one untimed pass.
pub fn eval_passes(backend: &mut dyn Backend, batch: &Batch, evals: usize) -> Result<Timing> {
    let opts = ForwardOpts::default();
    backend.forward(batch, &opts)?;
    time(evals.max(1), |_| backend.forward(batch, &opts).map(|_| ()))
}
