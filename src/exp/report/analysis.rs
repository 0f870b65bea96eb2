//! What the report computes from curves: improvement over the baseline and over the smallest
//! model, the log-linear scaling fits, the top-k overlap of rankings, and the warnings about
//! non-finite results.

use super::curves::*;
use crate::exp::stats::{log_linear_fit, log_linear_residual_sd, mean, pct, sd};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One row of an improvement table: percent improvement of (order, k) over a reference,
/// mean ± sd over the held-out sessions where it could be computed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Improvement {
    pub order: PointOrder,
    pub k: usize,
    pub mean_pct: f64,
    pub sd_pct: f64,
    /// Held-out sessions averaged.
    pub n: usize,
    /// Held-out sessions left out because their reference was missing or near zero.
    pub skipped: usize,
}

fn improvement(c: &Curves, reference: impl Fn(&Curve) -> f64) -> Vec<Improvement> {
    let mut acc: BTreeMap<(PointOrder, usize), (Vec<f64>, usize)> = BTreeMap::new();
    for curve in &c.curves {
        let r = reference(curve);
        let usable = r.is_finite() && r.abs() >= NEAR_ZERO_BPS;
        for (k, cell) in &curve.cells {
            let e = acc.entry((curve.order, *k)).or_default();
            let v = pct(cell.mean(), r);
            if usable && v.is_finite() {
                e.0.push(v);
            } else {
                e.1 += 1;
            }
        }
    }
    acc.into_iter()
        .map(|((order, k), (v, skipped))| Improvement {
            order,
            k,
            mean_pct: mean(&v),
            sd_pct: sd(&v),
            n: v.len(),
            skipped,
        })
        .collect()
}

/// Percent improvement of each (order, k) over the from-scratch baseline of its held-out session
/// (Fig. 4c), averaged over held-out sessions.
pub fn improvement_over_baseline(points: &[PointResult]) -> Vec<Improvement> {
    let c = curves(points, PRIMARY);
    improvement(&c, |curve| c.baseline_mean(&curve.heldout))
}

/// Percent improvement over the smallest model of each order (Fig. 2c), averaged over held-out
/// sessions; a session whose smallest model is near zero bps is left out (counted in `skipped`).
pub fn improvement_over_smallest(points: &[PointResult]) -> Vec<Improvement> {
    let c = curves(points, PRIMARY);
    improvement(&c, |curve| {
        curve.cells.values().next().map_or(f64::NAN, Cell::mean)
    })
}

/// One fitted line of Fig. 4b: `bps = a + b·log10(trials)` over the partial-data cell means of a
/// (held-out, order), its residual spread, its extrapolation to the full pool, and the measured
/// full-data point.
#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    pub heldout: String,
    pub order: PointOrder,
    pub a: f64,
    pub b: f64,
    pub r2: f64,
    /// Standard deviation of the residuals (n − 2 degrees of freedom); NaN under 3 points.
    pub resid_sd: f64,
    /// Partial-data points fitted, and their range of trials.
    pub n_points: usize,
    pub min_trials: f64,
    pub max_trials: f64,
    pub full_trials: f64,
    pub extrapolated: f64,
    pub measured_full: f64,
    /// Sd of the measured full-data point over seeds and shuffles.
    pub measured_full_sd: f64,
}

impl Fit {
    pub fn at(&self, trials: f64) -> f64 {
        self.a + self.b * trials.log10()
    }
}

pub fn scaling_fits(points: &[PointResult]) -> Vec<Fit> {
    fits_of(&curves(points, PRIMARY))
}

pub(super) fn fits_of(c: &Curves) -> Vec<Fit> {
    let mut out = Vec::new();
    for curve in &c.curves {
        let partial: Vec<&Cell> = curve.cells.values().filter(|c| !c.full).collect();
        let xs: Vec<f64> = partial.iter().map(|c| c.trials).collect();
        let ys: Vec<f64> = partial.iter().map(|c| c.mean()).collect();
        let Some((a, b, r2)) = log_linear_fit(&xs, &ys) else {
            continue;
        };
        let used: Vec<f64> = xs
            .iter()
            .zip(&ys)
            .filter(|(x, y)| **x > 0.0 && y.is_finite())
            .map(|(x, _)| *x)
            .collect();
        let full = curve.cells.values().find(|c| c.full);
        let (full_trials, measured_full, measured_full_sd) = full
            .map(|c| (c.trials, c.mean(), c.sd()))
            .unwrap_or((f64::NAN, f64::NAN, f64::NAN));
        out.push(Fit {
            heldout: curve.heldout.clone(),
            order: curve.order,
            a,
            b,
            r2,
            resid_sd: log_linear_residual_sd(&xs, &ys, a, b).unwrap_or(f64::NAN),
            n_points: used.len(),
            min_trials: used.iter().copied().fold(f64::INFINITY, f64::min),
            max_trials: used.iter().copied().fold(0.0, f64::max),
            full_trials,
            extrapolated: if full_trials > 0.0 {
                a + b * full_trials.log10()
            } else {
                f64::NAN
            },
            measured_full,
            measured_full_sd,
        });
    }
    out
}

/// For k = 1..n: how many sessions appear in the top k of every held-out session's ranking (App. F).
pub fn shared_top_k(rankings: &BTreeMap<String, Vec<String>>) -> Vec<(usize, usize)> {
    let n = rankings.values().map(|r| r.len()).min().unwrap_or(0);
    (1..=n)
        .map(|k| {
            let mut sets = rankings
                .values()
                .map(|r| r[..k].iter().collect::<BTreeSet<_>>());
            let first = sets.next().unwrap_or_default();
            let shared = sets.fold(first, |acc, s| acc.intersection(&s).cloned().collect());
            (k, shared.len())
        })
        .collect()
}

/// One line per evaluated model whose primary metric is missing or not finite (a diverged or
/// degenerate model): such models never count as the best of anything.
pub fn non_finite_warnings(points: &[PointResult]) -> Vec<String> {
    points
        .iter()
        .filter_map(|p| {
            let v = p.metrics.get(PRIMARY).copied();
            if v.is_some_and(f64::is_finite) {
                return None;
            }
            let shown = v.map_or_else(|| "missing".to_string(), |v| v.to_string());
            Some(format!(
                "{} {} k={} shuffle={} seed={}: {PRIMARY} bps is {shown}; never counted as best",
                p.heldout, p.order, p.k, p.shuffle, p.seed
            ))
        })
        .collect()
}
