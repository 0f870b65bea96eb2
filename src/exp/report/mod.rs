//! `ndt report`: the paper's tables and figures from sweep results (SPEC §6).
//!
//! - Table 1: percent improvement over the from-scratch baseline per session order (best size,
//!   and ranked with 5 sessions).
//! - Table 3: baseline vs best pretrained model on every metric, beside the classical references
//!   (smoothed-spikes Poisson GLM where the evaluation computed it; the mean-rate null model).
//! - Improvement over the baseline per pretraining-set size (Fig. 4c), mean ± sd over held-out
//!   sessions; improvement over the smallest model (Fig. 2c) as a table, guarded when that
//!   reference is near zero.
//! - Per held-out session: bps against pretraining sessions, mean ± sd over seeds and shuffles
//!   (Fig. 4a), and against total pretraining trials on a log axis with the log-linear fits, their
//!   ±1 sd residual bands, the extrapolation and the measured full-data point (Fig. 4b).
//! - The top-k overlap of rankings (App. F).
//!
//! This module gathers point results into curves and fits and writes `report.md`, one page that
//! links every table and figure; [`tables`] formats Markdown and CSV, [`figures`] draws SVG.

pub mod figures;
pub mod tables;

pub use tables::{table1, table3};

use crate::error::{Result, usage};
use crate::exp::plan::Order;
use crate::exp::stats::{log_linear_fit, log_linear_residual_sd, mean, pct, sd};
use crate::fsutil::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

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

fn fits_of(c: &Curves) -> Vec<Fit> {
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

/// Writes every table and figure into `out` and returns `report.md`, the page that shows and
/// links them. Figure files are named after the held-out ids, which must follow the id rule
/// ([`check_id`](crate::store::check_id); `sweep::gather` checks them when it reads results).
pub fn write_report(
    out: &Path,
    points: &[PointResult],
    rankings: &BTreeMap<String, Vec<String>>,
) -> Result<String> {
    for p in points {
        crate::store::check_id("held-out session id", &p.heldout).map_err(usage)?;
    }
    std::fs::create_dir_all(out).map_err(crate::error::io_at(out))?;
    let mut md = String::from("# Sweep report\n\n");
    let _ = writeln!(
        md,
        "{} evaluated models of results version {}; primary metric: {PRIMARY} bps \
         (per-neuron convention). Every table is also a CSV file and every figure an SVG file \
         in this folder; all evaluated models: [points.csv](points.csv).\n",
        points.len(),
        crate::exp::jobs::RESULTS_VERSION
    );
    let warnings = non_finite_warnings(points);
    if !warnings.is_empty() {
        let _ = writeln!(md, "## Warnings\n");
        for w in &warnings {
            let _ = writeln!(md, "- {w}");
            eprintln!("warning: {w}");
        }
        md.push('\n');
    }

    let (t1, t1csv) = table1(points);
    write_atomic(&out.join("table1.csv"), t1csv.as_bytes())?;
    let _ = writeln!(
        md,
        "## Table 1: percent improvement over the baseline ([CSV](table1.csv))\n\n{t1}"
    );
    let (t3, t3csv) = table3(points);
    write_atomic(&out.join("table3.csv"), t3csv.as_bytes())?;
    let _ = writeln!(
        md,
        "## Table 3: baseline vs best pretrained (mean over held-out sessions, [CSV](table3.csv))\n\n{t3}\n{}\n",
        tables::TABLE3_NOTE
    );

    let imp = improvement_over_baseline(points);
    let (imd, icsv) = tables::improvement_table(&imp);
    write_atomic(&out.join("improvement_over_baseline.csv"), icsv.as_bytes())?;
    figures::draw(
        &out.join("improvement_over_baseline.svg"),
        &figures::improvement_figure(&imp),
    )?;
    let _ = writeln!(
        md,
        "## Improvement over the from-scratch baseline (Fig. 4c)\n\n\
         Percent improvement of {PRIMARY} bps over the baseline of the same held-out session, \
         mean ± sd over held-out sessions ([CSV](improvement_over_baseline.csv)).\n\n\
         ![improvement over the baseline](improvement_over_baseline.svg)\n\n{imd}"
    );
    let small = improvement_over_smallest(points);
    let (smd, scsv) = tables::improvement_table(&small);
    write_atomic(&out.join("improvement_over_smallest.csv"), scsv.as_bytes())?;
    let _ = writeln!(
        md,
        "## Improvement over the smallest model (Fig. 2c)\n\n\
         Percent improvement over the smallest pretraining set of the same order \
         ([CSV](improvement_over_smallest.csv)). A held-out session whose smallest model scores \
         below {NEAR_ZERO_BPS} bps in absolute value is left out (column `skipped`): against a \
         reference near zero any change is a meaningless percentage.\n\n{smd}"
    );

    let c = curves(points, PRIMARY);
    let fits = fits_of(&c);
    let (fmd, fcsv) = tables::fits_table(&fits);
    write_atomic(&out.join("scaling_fits.csv"), fcsv.as_bytes())?;
    let _ = writeln!(
        md,
        "## bps vs total pretraining trials (Fig. 4b)\n\n\
         Least-squares fit of bps = a + b·log10(trials) to the partial-data cell means of each \
         order; the band is ±1 sd of its residuals (n − 2 degrees of freedom, drawn from 3 \
         points); the fit is extrapolated to the full pool's trials and compared with the \
         measured full-data model ([CSV](scaling_fits.csv)).\n\n{fmd}"
    );

    let _ = writeln!(
        md,
        "## Per held-out session (Fig. 4a, 4b)\n\n\
         Left: {PRIMARY} bps against pretraining sessions; right: against total pretraining \
         trials (log axis) with the fits. Points are means, error bars ±1 sd over seeds and \
         shuffles; the black line and grey band are the baseline's mean ± sd over seeds.\n"
    );
    for h in &c.heldouts() {
        let of_h: Vec<&Curve> = c.curves.iter().filter(|cv| &cv.heldout == h).collect();
        let base = c
            .baseline
            .get(h)
            .map(|v| figures::Reference::baseline(mean(v), sd(v)));
        let fits_h: Vec<&Fit> = fits.iter().filter(|f| &f.heldout == h).collect();
        // `h` follows the id rule (checked above): a plain file-name part, one per session.
        figures::draw(
            &out.join(format!("curve_{h}.svg")),
            &figures::curve_figure(h, &of_h, base.clone()),
        )?;
        figures::draw(
            &out.join(format!("trials_{h}.svg")),
            &figures::trials_figure(h, &of_h, &fits_h, base),
        )?;
        let _ = writeln!(
            md,
            "### {h}\n\n![{h}: bps vs sessions](curve_{h}.svg) ![{h}: bps vs trials](trials_{h}.svg)\n"
        );
    }

    if !rankings.is_empty() {
        let shared = shared_top_k(rankings);
        let mut csv = String::from("k,shared_in_all\n");
        for (k, s) in &shared {
            let _ = writeln!(csv, "{k},{s}");
        }
        write_atomic(&out.join("rank_overlap.csv"), csv.as_bytes())?;
        figures::draw(
            &out.join("rank_overlap.svg"),
            &figures::overlap_figure(&shared),
        )?;
        let _ = writeln!(
            md,
            "## Top-k overlap of rankings (App. F)\n\n\
             Sessions in the top k of every held-out session's ranking \
             ([CSV](rank_overlap.csv)).\n\n![top-k overlap](rank_overlap.svg)\n"
        );
    }
    write_atomic(
        &out.join("points.csv"),
        tables::points_csv(points).as_bytes(),
    )?;
    write_atomic(&out.join("report.md"), md.as_bytes())?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(h: &str, o: &str, k: usize, seed: u64, fwd: f64) -> PointResult {
        let mut metrics = BTreeMap::new();
        metrics.insert("forward".to_string(), fwd);
        metrics.insert("co-smooth".to_string(), fwd / 2.0);
        PointResult {
            results_version: crate::exp::jobs::RESULTS_VERSION,
            heldout: h.into(),
            order: serde_json::from_str(&format!("\"{o}\"")).unwrap(),
            shuffle: 0,
            k,
            seed,
            total_trials: k * 100,
            full: k == 10,
            metrics,
        }
    }

    #[test]
    fn table1_uses_best_mean_over_seeds_against_the_baseline() {
        let pts = vec![
            pt("h", "baseline", 0, 1, 0.2),
            pt("h", "baseline", 0, 2, 0.2),
            pt("h", "random", 1, 1, 0.21),
            pt("h", "random", 2, 1, 0.22),
            pt("h", "random", 2, 2, 0.26), // mean at k=2: 0.24 -> +20 %
            pt("h", "ranked", 5, 1, 0.25), // +25 %, also the top-5 column
        ];
        let (_, csv) = table1(&pts);
        let row: Vec<f64> = csv
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .skip(1)
            .map(|s| s.parse().unwrap())
            .collect();
        assert!((row[0] - 20.0).abs() < 1e-9, "{row:?}");
        assert!((row[1] - 25.0).abs() < 1e-9);
        assert!(row[2].is_nan());
        assert!((row[3] - 25.0).abs() < 1e-9);
    }

    #[test]
    fn non_finite_scores_are_never_the_best() {
        // A degenerate ranked model (NaN forward bps) with a huge co-smooth value, and an
        // infinite random cell: neither may be picked as the best pretrained model.
        let mut degenerate = pt("h", "ranked", 1, 1, f64::NAN);
        degenerate.metrics.insert("co-smooth".into(), 99.0);
        let pts = vec![
            pt("h", "baseline", 0, 1, 0.2),
            degenerate,
            pt("h", "random", 1, 1, f64::INFINITY),
            pt("h", "random", 2, 1, 0.24),
        ];
        let (_, csv) = table3(&pts);
        let row = csv.lines().find(|l| l.starts_with("co-smooth,")).unwrap();
        assert_eq!(row, "co-smooth,0.1,0.12,,0", "{csv}");
        let (_, csv) = table1(&pts);
        let row: Vec<f64> = csv
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .skip(1)
            .map(|s| s.parse().unwrap())
            .collect();
        assert!((row[0] - 20.0).abs() < 1e-9, "{row:?}");
        assert!(row[1].is_nan(), "{row:?}");
        let w = non_finite_warnings(&pts);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("ranked") && w[0].contains("NaN"), "{w:?}");
    }

    #[test]
    fn report_warns_about_non_finite_scores_and_refuses_bad_ids() {
        let dir = std::env::temp_dir().join(format!("ndt-report-w-{}", std::process::id()));
        let mut pts = vec![
            pt("h", "baseline", 0, 1, 0.2),
            pt("h", "ranked", 1, 1, f64::NAN),
            pt("h", "random", 1, 1, 0.25),
        ];
        let md = write_report(&dir, &pts, &BTreeMap::new()).unwrap();
        let version = format!("results version {}", crate::exp::jobs::RESULTS_VERSION);
        assert!(md.contains(&version), "{md}");
        assert!(md.contains("## Warnings"), "{md}");
        assert!(md.contains("h ranked k=1"), "{md}");
        pts.push(pt("../../escape", "baseline", 0, 1, 0.2));
        let out = dir.join("again");
        let err = write_report(&out, &pts, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(!out.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fits_extrapolate_to_the_full_pool() {
        // bps = 0.1 + 0.05 log10(trials) at 100, 200, 500 trials; full pool (k = 10) measured at 0.12.
        let mut pts = Vec::new();
        for k in [1usize, 2, 5] {
            pts.push(pt(
                "h",
                "random",
                k,
                1,
                0.1 + 0.05 * ((k * 100) as f64).log10(),
            ));
        }
        pts.push(pt("h", "random", 10, 1, 0.12));
        let f = &scaling_fits(&pts)[0];
        assert!((f.b - 0.05).abs() < 1e-12 && (f.a - 0.1).abs() < 1e-12);
        assert!((f.extrapolated - (0.1 + 0.05 * 3.0)).abs() < 1e-12);
        assert_eq!(f.measured_full, 0.12);
    }

    #[test]
    fn shared_top_k_counts_sessions_in_every_ranking() {
        let mut r = BTreeMap::new();
        r.insert(
            "h1".to_string(),
            vec!["a".to_string(), "b".to_string(), "c".to_string()],
        );
        r.insert(
            "h2".to_string(),
            vec!["b".to_string(), "c".to_string(), "a".to_string()],
        );
        assert_eq!(shared_top_k(&r), vec![(1, 0), (2, 1), (3, 3)]);
    }

    #[test]
    fn report_writes_tables_and_svgs() {
        let dir = std::env::temp_dir().join(format!("ndt-report-{}", std::process::id()));
        let pts = vec![
            pt("h", "baseline", 0, 1, 0.2),
            pt("h", "random", 1, 1, 0.21),
            pt("h", "random", 2, 1, 0.23),
            pt("h", "ranked", 1, 1, 0.25),
            pt("h", "ranked", 2, 1, 0.26),
        ];
        let md = write_report(&dir, &pts, &BTreeMap::new()).unwrap();
        assert!(md.contains("Table 1"));
        for f in [
            "table1.csv",
            "table3.csv",
            "improvement_over_baseline.svg",
            "improvement_over_smallest.csv",
            "curve_h.svg",
            "trials_h.svg",
            "points.csv",
        ] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            assert!(!text.is_empty(), "{f}");
        }
        assert!(
            std::fs::read_to_string(dir.join("curve_h.svg"))
                .unwrap()
                .starts_with("<svg")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
