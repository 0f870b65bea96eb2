//! The generative model of `ndt synth` (see docs/synth.md).
//!
//! Per region, a `d`-dimensional linear latent process driven by four task inputs:
//!
//! ```text
//! x[t+1] = A x[t] + B u[t] + sigma_x * eps[t],     x[0] ~ N(0, X0_SD^2 I)
//! u[t]   = [ side*sqrt(c)*h_stim(t-onset),          stimulus, signed by side
//!            sqrt(c)*h_stim(t-onset),               stimulus, unsigned
//!            tanh(dv)*ramp(t),                      decision ramp, signed by the choice
//!            h_move(t-move) ]                       movement
//! ```
//!
//! `A = U blockdiag(r_k R(theta_k)) U^T` (damped rotations in an orthogonal basis `U`). Every region
//! has shared parameters; each animal and each session perturbs the radii `r_k`, the angles
//! `theta_k` and the input matrix `B` by standard-normal draws scaled by the heterogeneity
//! strengths. A neuron of region `r` fires Poisson counts with log-rate `b_n + c_n . x_r[t]`.

use crate::error::{Result, internal};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, Poisson, StandardNormal};

/// Number of task inputs driving the latents (stimulus signed, stimulus unsigned, decision ramp,
/// movement).
pub const N_INPUTS: usize = 4;

/// Standard deviation of the latent state at the first bin of a trial.
const X0_SD: f64 = 0.5;
/// Standard deviation of the latent innovation per bin.
const LATENT_NOISE: f64 = 0.15;
/// Modulation depth: the standard deviation of `c_n . x` when `x` has unit variance.
const LOADING_SD: f64 = 0.6;
/// Perturbation scale of a rotation block's radius, per unit strength.
const RADIUS_SCALE: f64 = 0.03;
/// Perturbation scale of a rotation block's log-angle, per unit strength.
const ANGLE_SCALE: f64 = 0.4;
/// Perturbation scale of the input matrix relative to its RMS, per unit strength.
const INPUT_SCALE: f64 = 0.35;
/// Relative gain of each input column of `B` (the region's overall gain is set by `DRIVEN_RMS`,
/// then the choice-signal knob scales the ramp).
const INPUT_GAIN: [f64; N_INPUTS] = [1.2, 0.6, 0.3, 0.8];
/// RMS of a region's noise-free, task-driven latent trajectory (shared parameters).
const DRIVEN_RMS: f64 = 0.8;
/// Approximate variance of a latent coordinate (driven part plus innovations), used to set
/// baselines so that neurons fire at their intended mean rate.
const LATENT_VAR: f64 = 1.0;
/// Highest firing rate a neuron can reach, Hz.
const MAX_RATE_HZ: f64 = 300.0;

fn normal(rng: &mut impl Rng) -> f64 {
    rng.sample::<f64, _>(StandardNormal)
}

fn normals(rng: &mut impl Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| normal(rng)).collect()
}

/// A random `d x d` orthogonal matrix (row-major), by Gram-Schmidt on Gaussian rows.
fn random_orthogonal(rng: &mut impl Rng, d: usize) -> Vec<f64> {
    loop {
        let mut m = normals(rng, d * d);
        let mut ok = true;
        for i in 0..d {
            for j in 0..i {
                let dot: f64 = (0..d).map(|k| m[i * d + k] * m[j * d + k]).sum();
                for k in 0..d {
                    m[i * d + k] -= dot * m[j * d + k];
                }
            }
            let norm = (0..d).map(|k| m[i * d + k].powi(2)).sum::<f64>().sqrt();
            if norm < 1e-6 {
                ok = false;
                break;
            }
            for k in 0..d {
                m[i * d + k] /= norm;
            }
        }
        if ok {
            return m;
        }
    }
}

/// Standard-normal draws that perturb one region's parameters; scaled by a strength when applied.
#[derive(Clone, Debug)]
pub struct Perturbation {
    radius: Vec<f64>, // [d/2]
    angle: Vec<f64>,  // [d/2]
    input: Vec<f64>,  // [d, N_INPUTS]
}

impl Perturbation {
    pub fn sample(rng: &mut impl Rng, d: usize) -> Perturbation {
        Perturbation {
            radius: normals(rng, d / 2),
            angle: normals(rng, d / 2),
            input: normals(rng, d * N_INPUTS),
        }
    }
}

/// Shared parameters of one region's latent dynamics.
#[derive(Clone, Debug)]
pub struct RegionBase {
    pub name: String,
    d: usize,
    basis: Vec<f64>,  // U [d, d], orthogonal
    radius: Vec<f64>, // [d/2]
    angle: Vec<f64>,  // [d/2], radians per bin
    input: Vec<f64>,  // B [d, N_INPUTS]
}

/// Effective dynamics of one region in one session: `x' = A x + B u`.
#[derive(Clone, Debug)]
pub struct Dynamics {
    pub d: usize,
    pub a: Vec<f64>, // [d, d]
    pub b: Vec<f64>, // [d, N_INPUTS]
}

impl Dynamics {
    /// `next = A x + B u` (noise-free step).
    pub fn step(&self, x: &[f64], u: &[f64; N_INPUTS], next: &mut [f64]) {
        let d = self.d;
        for (i, out) in next.iter_mut().enumerate().take(d) {
            let a = &self.a[i * d..(i + 1) * d];
            let b = &self.b[i * N_INPUTS..(i + 1) * N_INPUTS];
            let ax: f64 = a.iter().zip(x).map(|(a, x)| a * x).sum();
            let bu: f64 = b.iter().zip(u).map(|(b, u)| b * u).sum();
            *out = ax + bu;
        }
    }
}

impl RegionBase {
    /// Draws a region. `B` is scaled so that the region's noise-free canonical trajectory has
    /// RMS `DRIVEN_RMS`; then `choice_signal` scales the decision-ramp column.
    pub fn sample(
        rng: &mut impl Rng,
        name: String,
        d: usize,
        choice_signal: f64,
        timing: Timing,
    ) -> RegionBase {
        let basis = random_orthogonal(rng, d);
        let radius = (0..d / 2).map(|_| rng.random_range(0.86..0.96)).collect();
        let angle = (0..d / 2).map(|_| rng.random_range(0.03..0.25)).collect();
        // Regions differ in how strongly each input drives them (log-normal tuning per input).
        let tuning: Vec<f64> = (0..N_INPUTS).map(|_| (0.5 * normal(rng)).exp()).collect();
        let mut input = normals(rng, d * N_INPUTS);
        for i in 0..d {
            for k in 0..N_INPUTS {
                input[i * N_INPUTS + k] *= INPUT_GAIN[k] * tuning[k];
            }
        }
        let mut region = RegionBase {
            name,
            d,
            basis,
            radius,
            angle,
            input,
        };
        let traj = canonical_trajectory(&region.dynamics(&[]), timing);
        let n: usize = traj.iter().map(Vec::len).sum();
        let ss: f64 = traj.iter().flatten().map(|v| v * v).sum();
        let rms = (ss / n.max(1) as f64).sqrt();
        let scale = if rms > 0.0 { DRIVEN_RMS / rms } else { 1.0 };
        for i in 0..d {
            for k in 0..N_INPUTS {
                let knob = if k == 2 { choice_signal } else { 1.0 };
                region.input[i * N_INPUTS + k] *= scale * knob;
            }
        }
        region
    }

    /// Effective dynamics after adding `sum_i strength_i * perturbation_i`.
    pub fn dynamics(&self, perturbations: &[(f64, &Perturbation)]) -> Dynamics {
        let d = self.d;
        let h = d / 2;
        let mut radius = self.radius.clone();
        let mut log_angle: Vec<f64> = self.angle.iter().map(|a| a.ln()).collect();
        let mut b = self.input.clone();
        let b_rms = (b.iter().map(|v| v * v).sum::<f64>() / b.len() as f64).sqrt();
        for &(s, p) in perturbations {
            for k in 0..h {
                radius[k] += s * RADIUS_SCALE * p.radius[k];
                log_angle[k] += s * ANGLE_SCALE * p.angle[k];
            }
            for (bi, pi) in b.iter_mut().zip(&p.input) {
                *bi += s * INPUT_SCALE * b_rms * pi;
            }
        }
        // M = blockdiag(r_k R(theta_k)), then A = U^T M U with U's rows the basis vectors.
        let mut m = vec![0.0; d * d];
        for k in 0..h {
            let r = radius[k].clamp(0.5, 0.985);
            let th = log_angle[k].exp().min(1.0);
            let (i, j) = (2 * k, 2 * k + 1);
            m[i * d + i] = r * th.cos();
            m[i * d + j] = -r * th.sin();
            m[j * d + i] = r * th.sin();
            m[j * d + j] = r * th.cos();
        }
        let u = &self.basis;
        let mut a = vec![0.0; d * d];
        for p in 0..d {
            for q in 0..d {
                let mut acc = 0.0;
                for i in 0..d {
                    for j in 0..d {
                        acc += u[i * d + p] * m[i * d + j] * u[j * d + q];
                    }
                }
                a[p * d + q] = acc;
            }
        }
        Dynamics { d, a, b }
    }
}

/// Task timing shared by every trial of a dataset.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub bins: usize,
    pub onset: usize,
}

/// One trial's behaviour: what drives the latents and what is stored per trial.
#[derive(Clone, Copy, Debug)]
pub struct TrialInfo {
    /// Stimulus side: -1 left, +1 right.
    pub side: i8,
    /// Stimulus contrast in [0, 1].
    pub contrast: f32,
    /// Prior probability of a left stimulus in this block (0.2, 0.5, 0.8).
    pub block: f32,
    /// The animal's decision variable; its sign is the choice.
    pub dv: f64,
    /// -1 left, +1 right.
    pub choice: i8,
    /// Bin of movement onset.
    pub move_bin: usize,
}

impl TrialInfo {
    pub fn reward(&self) -> f32 {
        if self.choice == self.side { 1.0 } else { 0.0 }
    }
    /// Signed contrast: positive for a right stimulus.
    pub fn signed_contrast(&self) -> f32 {
        self.side as f32 * self.contrast
    }
}

/// An animal's behaviour: psychometric sensitivity and a side bias of its decision variable.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    pub sensitivity: f64,
    pub bias: f64,
}

const CONTRASTS: [f32; 5] = [1.0, 0.25, 0.125, 0.0625, 0.0];
/// Weight of the block prior in the decision variable.
const PRIOR_WEIGHT: f64 = 0.8;

/// Draws the trials of a session: IBL-like blocks, sides, contrasts, choices and reaction times.
pub fn sample_trials(
    rng: &mut impl Rng,
    n: usize,
    behaviour: Behaviour,
    timing: Timing,
) -> Vec<TrialInfo> {
    let mut out = Vec::with_capacity(n);
    // The first 90 trials are unbiased; then blocks of 20-100 trials alternate 0.2 / 0.8.
    let mut block = 0.5f32;
    let mut left_in_block = 90usize;
    let mut next_block = if rng.random::<bool>() { 0.2f32 } else { 0.8 };
    for _ in 0..n {
        if left_in_block == 0 {
            block = next_block;
            next_block = if block < 0.5 { 0.8 } else { 0.2 };
            left_in_block = rng.random_range(20..=100);
        }
        left_in_block -= 1;
        let side: i8 = if rng.random::<f32>() < block { -1 } else { 1 };
        // Zero contrast appears half as often as the others, as in the IBL task.
        let contrast = loop {
            let c = CONTRASTS[rng.random_range(0..CONTRASTS.len())];
            if c > 0.0 || rng.random::<bool>() {
                break c;
            }
        };
        let evidence = side as f64 * (contrast as f64).sqrt();
        let prior = PRIOR_WEIGHT * 2.0 * (0.5 - block as f64);
        let dv = behaviour.sensitivity * evidence + prior + behaviour.bias + normal(rng);
        let choice: i8 = if dv >= 0.0 { 1 } else { -1 };
        // Reaction time: slower for weak stimuli, log-normal spread, at least 3 bins.
        let median = 6.0 + 10.0 * (1.0 - (contrast as f64).sqrt());
        let rt = (median * (0.35 * normal(rng)).exp()).round().max(3.0) as usize;
        let move_bin = (timing.onset + rt).min(timing.bins.saturating_sub(2));
        out.push(TrialInfo {
            side,
            contrast,
            block,
            dv,
            choice,
            move_bin,
        });
    }
    out
}

/// Alpha function peaking at 1 when `tau == peak`, zero for `tau < 0`.
fn alpha(tau: f64, peak: f64) -> f64 {
    if tau < 0.0 {
        0.0
    } else {
        let z = tau / peak;
        z * (1.0 - z).exp()
    }
}

/// The four inputs of one trial at bin `t`; `conf` is the signed decision strength (tanh(dv)).
pub fn inputs(
    t: usize,
    onset: usize,
    side: f64,
    contrast: f64,
    conf: f64,
    move_bin: usize,
) -> [f64; N_INPUTS] {
    let tau = t as f64 - onset as f64;
    let stim = if tau < 0.0 {
        0.0
    } else {
        alpha(tau, 3.0) + 0.3 * (-tau / 25.0).exp()
    };
    let c = contrast.sqrt();
    let ramp = if t < onset {
        0.0
    } else if t < move_bin {
        (t - onset) as f64 / (move_bin - onset).max(1) as f64
    } else {
        (-((t - move_bin) as f64) / 10.0).exp()
    };
    let mv = alpha(t as f64 - move_bin as f64, 4.0) + 0.2 * alpha(t as f64 - move_bin as f64, 20.0);
    [side * c * stim, c * stim, conf * ramp, mv]
}

/// Canonical conditions: (side, contrast).
const CONDITIONS: [(f64, f64); 4] = [(-1.0, 1.0), (1.0, 1.0), (-1.0, 0.25), (1.0, 0.25)];
/// Decision strength of the canonical conditions (signed by the side).
const CANON_CONF: f64 = 0.8;
/// Movement onset of the canonical conditions, in bins after stimulus onset.
const CANON_RT: usize = 10;

/// Noise-free, column-centred trajectory `[4 * bins, d]` of `dy` under the canonical conditions,
/// returned as `d` columns.
pub fn canonical_trajectory(dy: &Dynamics, timing: Timing) -> Vec<Vec<f64>> {
    let d = dy.d;
    let move_bin = (timing.onset + CANON_RT).min(timing.bins.saturating_sub(2));
    let mut cols = vec![Vec::with_capacity(CONDITIONS.len() * timing.bins); d];
    for &(side, contrast) in &CONDITIONS {
        let mut x = vec![0.0; d];
        let mut next = vec![0.0; d];
        for t in 0..timing.bins {
            for (c, xi) in cols.iter_mut().zip(&x) {
                c.push(*xi);
            }
            let u = inputs(t, timing.onset, side, contrast, side * CANON_CONF, move_bin);
            dy.step(&x, &u, &mut next);
            std::mem::swap(&mut x, &mut next);
        }
    }
    for c in cols.iter_mut() {
        let mean = c.iter().sum::<f64>() / c.len().max(1) as f64;
        for v in c.iter_mut() {
            *v -= mean;
        }
    }
    cols
}

/// Reusable buffers of `SessionModel::fill_trial`.
#[derive(Default)]
pub struct Scratch {
    latents: Vec<f64>, // [regions, bins, d]
    eta: Vec<f32>,     // [n_neurons] log-rates of one bin
}

/// Everything needed to generate the counts of one session, trial by trial.
pub struct SessionModel {
    pub timing: Timing,
    /// Effective dynamics of each recorded region, in recording order.
    pub dynamics: Vec<Dynamics>,
    /// Index into `dynamics` of each neuron's region.
    pub neuron_region: Vec<usize>,
    /// Baseline log-rate per bin of each neuron.
    pub baseline: Vec<f64>,
    /// Loadings `c_n`, [n_neurons, d].
    pub loading: Vec<f64>,
    pub trials: Vec<TrialInfo>,
    /// Seed of the per-trial random streams.
    pub seed: u64,
    /// Upper bound of the log-rate per bin (`MAX_RATE_HZ`).
    pub max_log_rate: f64,
}

/// `max_log_rate` of a session with bins of `bin_size_s` seconds.
pub fn max_log_rate(bin_size_s: f64) -> f64 {
    (MAX_RATE_HZ * bin_size_s).ln()
}

/// Draws the neurons of a session: how many per region, baseline rates and loadings.
/// `counts[r]` neurons belong to region `r`. Returns (neuron_region, baseline, loading).
pub fn sample_neurons(
    rng: &mut impl Rng,
    counts: &[usize],
    d: usize,
    rate_hz: f64,
    bin_size_s: f64,
) -> (Vec<usize>, Vec<f64>, Vec<f64>) {
    let n: usize = counts.iter().sum();
    let mut region = Vec::with_capacity(n);
    for (r, &c) in counts.iter().enumerate() {
        region.extend(std::iter::repeat_n(r, c));
    }
    // Rates are log-normal across neurons with mean `rate_hz`; a session-wide gain varies a little.
    let sd = 0.8f64;
    let gain = (0.2 * normal(rng)).exp();
    // E[exp(c.x)] ~= exp(var(c.x) / 2).
    let modulation = 0.5 * LOADING_SD * LOADING_SD * LATENT_VAR;
    let baseline = (0..n)
        .map(|_| {
            let rate = rate_hz * gain * (sd * normal(rng) - 0.5 * sd * sd).exp();
            (rate.clamp(0.05, 80.0) * bin_size_s).ln() - modulation
        })
        .collect();
    let scale = LOADING_SD / (d as f64).sqrt();
    let loading = (0..n * d).map(|_| scale * normal(rng)).collect();
    (region, baseline, loading)
}

/// Splits `n` neurons among `k` regions with Gamma(2)-distributed proportions (largest remainder);
/// every region gets at least one neuron when `n >= k`.
pub fn split_neurons(rng: &mut impl Rng, n: usize, k: usize) -> Result<Vec<usize>> {
    let gamma = Gamma::new(2.0, 1.0).map_err(|e| internal(format!("gamma: {e}")))?;
    let w: Vec<f64> = (0..k).map(|_| gamma.sample(rng) + 1e-9).collect();
    let total: f64 = w.iter().sum();
    let floor_each = usize::from(n >= k);
    let rest = n - floor_each * k;
    let exact: Vec<f64> = w.iter().map(|x| x / total * rest as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut left = rest - counts.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| {
        let fa = exact[a] - exact[a].floor();
        let fb = exact[b] - exact[b].floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in &order {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    Ok(counts.into_iter().map(|c| c + floor_each).collect())
}

impl SessionModel {
    pub fn n_neurons(&self) -> usize {
        self.neuron_region.len()
    }

    /// Writes trial `trial`'s counts into `out` ([bins, n_neurons], row-major), using `scratch`
    /// for its buffers. The draws come from a stream keyed by (session seed, trial), so a trial's
    /// counts do not depend on which trials were generated before it.
    pub fn fill_trial(&self, trial: usize, out: &mut [u8], scratch: &mut Scratch) -> Result<()> {
        let Timing { bins, onset } = self.timing;
        let n = self.n_neurons();
        if out.len() != bins * n {
            return Err(internal(format!(
                "synth: trial buffer has {} bytes, expected {}",
                out.len(),
                bins * n
            )));
        }
        let info = self
            .trials
            .get(trial)
            .ok_or_else(|| internal(format!("synth: trial {trial} out of range")))?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(trial as u64 + 1);

        let d = self.dynamics.first().map_or(0, |dy| dy.d);
        let conf = info.dv.tanh();
        let u: Vec<[f64; N_INPUTS]> = (0..bins)
            .map(|t| {
                inputs(
                    t,
                    onset,
                    info.side as f64,
                    info.contrast as f64,
                    conf,
                    info.move_bin,
                )
            })
            .collect();
        // latents: [regions, bins, d]
        let latents = &mut scratch.latents;
        latents.clear();
        latents.resize(self.dynamics.len() * bins * d, 0.0);
        let mut x = vec![0.0; d];
        let mut next = vec![0.0; d];
        for (r, dy) in self.dynamics.iter().enumerate() {
            for xi in x.iter_mut() {
                *xi = X0_SD * normal(&mut rng);
            }
            for (t, ut) in u.iter().enumerate() {
                latents[(r * bins + t) * d..][..d].copy_from_slice(&x);
                dy.step(&x, ut, &mut next);
                for v in next.iter_mut() {
                    *v += LATENT_NOISE * normal(&mut rng);
                }
                std::mem::swap(&mut x, &mut next);
            }
        }
        // Log-rates of a whole bin first, then the Poisson draws (f32: lambda < 12 here).
        scratch.eta.resize(n, 0.0);
        for t in 0..bins {
            for (nn, e) in scratch.eta.iter_mut().enumerate() {
                let r = self.neuron_region[nn];
                let xt = &latents[(r * bins + t) * d..][..d];
                let c = &self.loading[nn * d..][..d];
                let eta = self.baseline[nn] + c.iter().zip(xt).map(|(a, b)| a * b).sum::<f64>();
                *e = eta.clamp(-20.0, self.max_log_rate) as f32;
            }
            let row = &mut out[t * n..(t + 1) * n];
            for (cell, &e) in row.iter_mut().zip(&scratch.eta) {
                let lambda = e.exp();
                let pois = Poisson::new(lambda)
                    .map_err(|err| internal(format!("synth: poisson({lambda}): {err}")))?;
                let k: f32 = pois.sample(&mut rng);
                *cell = k.min(255.0) as u8;
            }
        }
        Ok(())
    }
}
