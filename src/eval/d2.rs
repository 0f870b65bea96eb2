//! Poisson D² (deviance explained, the pseudo-R² of Cohen et al.), as IBL BrainWideBench scores
//! it (`ibl_bwb_eval.metrics.PoissonD2Score`, `ibl-bwb-eval` 0.1.0), accumulated in f64.
//!
//! For one unit over its evaluated entries (`n` entries, counts `x`, `S = Σx`, predicted rates
//! `λ̂`), with the Poisson NLL without its `log x!` term, `L(λ) = Σ (λ − x ln λ)`:
//!
//! ```text
//! D² = 1 − (L(λ̂) − L(x)) / (L(λ̄) − L(x)),   λ̄ = S / n (the null model: the unit's mean
//!                                              count over the same entries)
//! L(λ̂) − L(x) = Σ (λ̂ − x ln λ̂) − (S − Σ x ln x)       (x ln x = 0 at x = 0)
//! L(λ̄) − L(x) = Σ x ln x − S ln max(λ̄, 1e-9)
//! ```
//!
//! - **zero rates**: a predicted rate of exactly 0 is replaced by 1e-9 as in bits per spike
//!   (`BpsAccum::add`); predictions written as log-rates never reach it;
//! - **units with no spikes** (`S = 0`), and units whose null deviance is below 1e-9 in absolute
//!   value (every count equal, e.g. all ones), have no D² and are left out;
//! - **per-unit mean** (BrainWideBench's number): the mean of the units' D²;
//! - **pooled**: `1 − Σ_j (L(λ̂) − L(x))_j / Σ_j (L(λ̄) − L(x))_j` over the same units, the
//!   deviance explained of all units together (each unit keeping its own null rate).
//!
//! The model's NLL comes from a `BpsAccum` over the same entries; `Σ x ln x` per unit is the
//! only extra statistic (`XlogxAccum`).

use crate::eval::bps::BpsAccum;

/// The floor BrainWideBench puts under the null rate and under the null deviance.
pub const EPS: f64 = 1e-9;

/// `x ln x`, 0 at 0 (`torch.xlogy(x, x)`).
#[inline]
pub fn xlogx(x: f64) -> f64 {
    if x > 0.0 { x * x.ln() } else { 0.0 }
}

/// D² of one task.
#[derive(Clone, Debug, PartialEq)]
pub struct D2 {
    /// Mean over the scored units (NaN when none).
    pub mean: f64,
    /// Pooled over the scored units (NaN when none).
    pub pooled: f64,
    /// Each unit's D² (NaN where left out).
    pub per_unit: Vec<f64>,
    /// Units that entered the mean.
    pub n_units: usize,
}

/// D² from the model's statistics `acc` and `Σ x ln x` per unit over the same entries.
pub fn d2(acc: &BpsAccum, sum_xlogx: &[f64]) -> D2 {
    assert_eq!(acc.n_neurons(), sum_xlogx.len(), "d2: sizes");
    let mut per_unit = vec![f64::NAN; acc.n_neurons()];
    let (mut sum, mut n_units) = (0.0f64, 0usize);
    let (mut num_all, mut den_all) = (0.0f64, 0.0f64);
    for (j, d) in per_unit.iter_mut().enumerate() {
        let (n, s, xl) = (acc.count[j] as f64, acc.spikes[j], sum_xlogx[j]);
        if n == 0.0 || s <= 0.0 {
            continue;
        }
        let num = acc.model_nll[j] - (s - xl);
        let den = xl - s * (s / n).max(EPS).ln();
        if den.abs() < EPS {
            continue;
        }
        *d = 1.0 - num / den;
        sum += *d;
        n_units += 1;
        num_all += num;
        den_all += den;
    }
    let (mean, pooled) = if n_units > 0 {
        (sum / n_units as f64, 1.0 - num_all / den_all)
    } else {
        (f64::NAN, f64::NAN)
    };
    D2 {
        mean,
        pooled,
        per_unit,
        n_units,
    }
}

/// `Σ x ln x` per unit, NaN counts skipped (as `BpsAccum::add` skips them).
#[derive(Clone, Debug, PartialEq)]
pub struct XlogxAccum(pub Vec<f64>);

impl XlogxAccum {
    pub fn new(n_units: usize) -> XlogxAccum {
        XlogxAccum(vec![0.0; n_units])
    }

    #[inline]
    pub fn add(&mut self, j: usize, x: f64) {
        if !x.is_nan() {
            self.0[j] += xlogx(x);
        }
    }
}

/// Both accumulators of `rates` and `spikes`, `[.., n_units]` row-major (the last axis is the
/// unit), NaN spikes left out.
pub fn accumulate(rates: &[f64], spikes: &[f64], n_units: usize) -> (BpsAccum, XlogxAccum) {
    let acc = crate::eval::bps::accumulate(rates, spikes, n_units);
    let mut xl = XlogxAccum::new(n_units);
    for (i, &x) in spikes.iter().enumerate() {
        xl.add(i % n_units, x);
    }
    (acc, xl)
}

/// D² of `rates` against `spikes` (last axis the unit), per-unit mean and pooled.
pub fn poisson_d2(rates: &[f64], spikes: &[f64], n_units: usize) -> D2 {
    let (acc, xl) = accumulate(rates, spikes, n_units);
    d2(&acc, &xl.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_model_scores_zero_and_the_saturated_model_one() {
        let spikes = [0.0, 1.0, 2.0, 3.0, 1.0, 0.0, 4.0, 1.0];
        // Neuron 0: 0, 2, 1, 4 -> mean 7/4; neuron 1: 1, 3, 0, 1 -> mean 5/4.
        let null: Vec<f64> = (0..8)
            .map(|i| if i % 2 == 0 { 1.75 } else { 1.25 })
            .collect();
        let d = poisson_d2(&null, &spikes, 2);
        assert!(d.mean.abs() < 1e-14 && d.pooled.abs() < 1e-14, "{d:?}");
        // The saturated model (rate = count; 0 counts as 1e-9) explains all the deviance.
        let sat: Vec<f64> = spikes.to_vec();
        let d = poisson_d2(&sat, &spikes, 2);
        assert!((d.mean - 1.0).abs() < 1e-8, "{d:?}");
    }

    #[test]
    fn silent_and_constant_units_are_left_out() {
        // Neuron 0 silent, neuron 1 all ones (zero null deviance), neuron 2 scored.
        let spikes = [0.0, 1.0, 2.0, 0.0, 1.0, 0.0];
        let rates = [0.3, 1.0, 1.5, 0.3, 1.0, 0.5];
        let d = poisson_d2(&rates, &spikes, 3);
        assert_eq!(d.n_units, 1);
        assert!(d.per_unit[0].is_nan() && d.per_unit[1].is_nan());
        // Neuron 2 by hand: counts 2, 0; rates 1.5, 0.5; mean 1.
        let num = (1.5 - 2.0 * 1.5f64.ln() + 0.5) - (2.0 - 2.0 * 2.0f64.ln());
        let den = 2.0 * 2.0f64.ln() - 2.0 * 1.0f64.ln();
        assert!((d.mean - (1.0 - num / den)).abs() < 1e-14);
        assert_eq!(d.mean, d.pooled);
    }
}
