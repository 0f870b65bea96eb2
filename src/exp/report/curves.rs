//! Point results gathered into curves: the orders a model can be pretrained in, one cell per
//! (order, pretraining size) with its mean and spread over seeds, shuffles and held-out sessions.

use crate::exp::plan::Order;
use crate::exp::stats::{mean, sd};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How an evaluated model was pretrained: the from-scratch baseline or one session order.
/// Serialized as in the point files: "baseline", "random", "ranked", "reverse-ranked".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointOrder {
    Baseline,
    Random,
    Ranked,
    ReverseRanked,
}

impl PointOrder {
    /// The pretrained orders, in the tables' column order.
    pub const PRETRAINED: [PointOrder; 3] = [
        PointOrder::Random,
        PointOrder::Ranked,
        PointOrder::ReverseRanked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PointOrder::Baseline => "baseline",
            PointOrder::Random => "random",
            PointOrder::Ranked => "ranked",
            PointOrder::ReverseRanked => "reverse-ranked",
        }
    }
}

impl From<Option<&Order>> for PointOrder {
    /// `None` is the baseline (no pretraining).
    fn from(o: Option<&Order>) -> Self {
        match o {
            None => PointOrder::Baseline,
            Some(Order::Random) => PointOrder::Random,
            Some(Order::Ranked) => PointOrder::Ranked,
            Some(Order::ReverseRanked) => PointOrder::ReverseRanked,
        }
    }
}

impl std::fmt::Display for PointOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The evaluation of one finetuned (or baseline) model on a held-out session's test split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    /// [`RESULTS_VERSION`](crate::exp::jobs::RESULTS_VERSION) of the build that computed it
    /// (0 in files written before it was recorded).
    #[serde(default)]
    pub results_version: u32,
    pub heldout: String,
    pub order: PointOrder,
    /// Which random order (0 for the others).
    pub shuffle: usize,
    /// Number of pretraining sessions (0 for the baseline).
    pub k: usize,
    pub seed: u64,
    /// Trials of the pretraining sessions' train splits.
    pub total_trials: usize,
    /// Whether `k` is the whole pretraining pool.
    pub full: bool,
    /// Metric name -> value: "<task>" (per-neuron bps), "<task>.pooled", "choice",
    /// "choice.majority", and where the evaluation computed them "<task>.d2", "<task>.d2.pooled"
    /// (Poisson D²) and "<task>.glm", "<task>.glm.pooled", "<task>.glm.d2" (the smoothed-spikes
    /// Poisson GLM baseline on the same entries).
    pub metrics: BTreeMap<String, f64>,
}

/// The metric the scaling figures and Table 1 use (the paper's Sec. 4: forward prediction).
pub const PRIMARY: &str = "forward";
pub const TASKS: [&str; 4] = ["co-smooth", "forward", "inter-region", "intra-region"];
/// A percent change is not computed against a reference whose |bps| is below this: near zero,
/// any change is a huge percentage that says nothing.
pub const NEAR_ZERO_BPS: f64 = 0.01;

/// One (held-out, order, k) cell: the metric over seeds and shuffles.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cell {
    /// The metric of every seed and shuffle.
    pub values: Vec<f64>,
    /// Mean total pretraining trials (shuffles differ).
    pub trials: f64,
    /// Whether `k` is the whole pretraining pool.
    pub full: bool,
}

impl Cell {
    pub fn mean(&self) -> f64 {
        mean(&self.values)
    }
    /// Sample standard deviation over seeds and shuffles (0 for one value).
    pub fn sd(&self) -> f64 {
        sd(&self.values)
    }
}

/// The cells of one (held-out session, order) by pretraining-set size.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub heldout: String,
    pub order: PointOrder,
    pub cells: BTreeMap<usize, Cell>,
}

/// Results of one metric grouped into curves, seeds and shuffles pooled; the baseline apart.
#[derive(Clone, Debug, Default)]
pub struct Curves {
    /// Sorted by (held-out, order).
    pub curves: Vec<Curve>,
    /// Held-out session -> the baseline's values over seeds.
    pub baseline: BTreeMap<String, Vec<f64>>,
}

impl Curves {
    pub fn get(&self, heldout: &str, order: PointOrder) -> Option<&Curve> {
        self.curves
            .iter()
            .find(|c| c.heldout == heldout && c.order == order)
    }
    pub fn heldouts(&self) -> BTreeSet<String> {
        self.curves.iter().map(|c| c.heldout.clone()).collect()
    }
    /// The baseline's mean over seeds (NaN when it was not evaluated).
    pub fn baseline_mean(&self, heldout: &str) -> f64 {
        self.baseline.get(heldout).map_or(f64::NAN, |v| mean(v))
    }
}

/// A cell while its points are gathered: values, trials of each, whether the full pool.
#[derive(Default)]
struct CellAcc {
    values: Vec<f64>,
    trials: Vec<f64>,
    full: bool,
}

pub fn curves(points: &[PointResult], metric: &str) -> Curves {
    let mut by: BTreeMap<(String, PointOrder), BTreeMap<usize, CellAcc>> = BTreeMap::new();
    let mut baseline: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in points {
        let Some(&v) = p.metrics.get(metric) else {
            continue;
        };
        if p.order == PointOrder::Baseline {
            baseline.entry(p.heldout.clone()).or_default().push(v);
            continue;
        }
        let e = by
            .entry((p.heldout.clone(), p.order))
            .or_default()
            .entry(p.k)
            .or_default();
        e.values.push(v);
        e.trials.push(p.total_trials as f64);
        e.full |= p.full;
    }
    let curves = by
        .into_iter()
        .map(|((heldout, order), m)| Curve {
            heldout,
            order,
            cells: m
                .into_iter()
                .map(|(k, a)| {
                    (
                        k,
                        Cell {
                            values: a.values,
                            trials: mean(&a.trials),
                            full: a.full,
                        },
                    )
                })
                .collect(),
        })
        .collect();
    Curves { curves, baseline }
}
