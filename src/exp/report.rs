//! `ndt report`: the paper's tables and figures from sweep results (SPEC §6): Table 1 (percent
//! improvement over the baseline per session order, best and top-5), Table 3 (baseline vs best
//! pretrained on every metric), percent improvement over the smallest model (Fig. 2c/4c), bps
//! against total pretraining trials with a log-linear fit and its extrapolation to the full-data
//! point (Fig. 4b), per-session curves (Fig. 2e, App. D) and the top-k overlap of rankings (App. F).
//! Markdown and CSV tables, SVG plots.

use crate::error::{Result, internal, usage};
use crate::exp::stats::log_linear_fit;
use crate::fsutil::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// The evaluation of one finetuned (or baseline) model on a held-out session's test split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    /// [`RESULTS_VERSION`](crate::exp::jobs::RESULTS_VERSION) of the build that computed it
    /// (0 in files written before it was recorded).
    #[serde(default)]
    pub results_version: u32,
    pub heldout: String,
    /// "random" | "ranked" | "reverse-ranked" | "baseline".
    pub order: String,
    /// Which random order (0 for the others).
    pub shuffle: usize,
    /// Number of pretraining sessions (0 for the baseline).
    pub k: usize,
    pub seed: u64,
    /// Trials of the pretraining sessions' train splits.
    pub total_trials: usize,
    /// Whether `k` is the whole pretraining pool.
    pub full: bool,
    /// Metric name -> value: "<task>" (per-neuron bps), "<task>.pooled", "choice", "choice.majority".
    pub metrics: BTreeMap<String, f64>,
}

/// The metric the scaling figures and Table 1 use (the paper's Sec. 4: forward prediction).
pub const PRIMARY: &str = "forward";
pub const TASKS: [&str; 4] = ["co-smooth", "forward", "inter-region", "intra-region"];
const ORDERS: [&str; 3] = ["random", "ranked", "reverse-ranked"];

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn sd(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

fn pct(v: f64, base: f64) -> f64 {
    100.0 * (v - base) / base.abs()
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

/// Values of one (held-out, order, k) cell: metric values over seeds/shuffles, mean total
/// trials, whether it is the full pool.
type Cell = (Vec<f64>, f64, bool);

/// Results grouped by (heldout, order, k) with seeds and shuffles pooled.
struct Curves {
    /// (heldout, order) -> k -> (values, total trials (mean), full)
    by: BTreeMap<(String, String), BTreeMap<usize, Cell>>,
    baseline: BTreeMap<String, Vec<f64>>,
}

fn curves(points: &[PointResult], metric: &str) -> Curves {
    type Acc = BTreeMap<(String, String), BTreeMap<usize, (Vec<f64>, Vec<f64>, bool)>>;
    let mut by: Acc = BTreeMap::new();
    let mut baseline: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for p in points {
        let Some(&v) = p.metrics.get(metric) else {
            continue;
        };
        if p.order == "baseline" {
            baseline.entry(p.heldout.clone()).or_default().push(v);
            continue;
        }
        let e = by
            .entry((p.heldout.clone(), p.order.clone()))
            .or_default()
            .entry(p.k)
            .or_default();
        e.0.push(v);
        e.1.push(p.total_trials as f64);
        e.2 |= p.full;
    }
    let by = by
        .into_iter()
        .map(|(key, m)| {
            (
                key,
                m.into_iter()
                    .map(|(k, (v, t, f))| (k, (v, mean(&t), f)))
                    .collect(),
            )
        })
        .collect();
    Curves { by, baseline }
}

/// Table 1: best percent improvement over the baseline per order, and ranked with 5 sessions.
pub fn table1(points: &[PointResult]) -> (String, String) {
    let c = curves(points, PRIMARY);
    let heldouts: BTreeSet<String> = c.by.keys().map(|(h, _)| h.clone()).collect();
    let mut md = String::from(
        "| held-out session | random (best) | ranked (best) | reverse-ranked (best) | ranked (top 5) |\n|---|---|---|---|---|\n",
    );
    let mut csv = String::from(
        "heldout,random_best_pct,ranked_best_pct,reverse_ranked_best_pct,ranked_top5_pct\n",
    );
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for h in &heldouts {
        let base = c.baseline.get(h).map(|v| mean(v)).unwrap_or(f64::NAN);
        let mut row = Vec::new();
        for o in ORDERS {
            // Non-finite cells (a degenerate model) never count as the best.
            let best =
                c.by.get(&(h.clone(), o.to_string()))
                    .and_then(|m| {
                        m.values()
                            .map(|(v, _, _)| mean(v))
                            .filter(|v| v.is_finite())
                            .max_by(f64::total_cmp)
                    })
                    .unwrap_or(f64::NAN);
            row.push(pct(best, base));
        }
        let top5 =
            c.by.get(&(h.clone(), "ranked".to_string()))
                .and_then(|m| m.get(&5))
                .map(|(v, _, _)| mean(v));
        row.push(top5.map(|v| pct(v, base)).unwrap_or(f64::NAN));
        for (i, v) in row.iter().enumerate() {
            if v.is_finite() {
                cols[i].push(*v);
            }
        }
        let _ = writeln!(
            md,
            "| {h} | {} |",
            row.iter().map(|v| fmt(*v)).collect::<Vec<_>>().join(" | ")
        );
        let _ = writeln!(
            csv,
            "{h},{}",
            row.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    let avg: Vec<f64> = cols.iter().map(|c| mean(c)).collect();
    let _ = writeln!(
        md,
        "| **average** | {} |",
        avg.iter().map(|v| fmt(*v)).collect::<Vec<_>>().join(" | ")
    );
    (md, csv)
}

/// Table 3: baseline vs the best pretrained model (by the primary metric) on every metric,
/// averaged over held-out sessions.
pub fn table3(points: &[PointResult]) -> (String, String) {
    let metrics: Vec<String> = {
        let mut s: BTreeSet<String> = BTreeSet::new();
        for p in points {
            s.extend(p.metrics.keys().cloned());
        }
        s.into_iter().collect()
    };
    let heldouts: BTreeSet<String> = points.iter().map(|p| p.heldout.clone()).collect();
    let mut base_vals: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut best_vals: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for h in &heldouts {
        // Best pretrained configuration = highest mean primary metric over seeds/shuffles.
        let mut groups: BTreeMap<(String, usize), Vec<&PointResult>> = BTreeMap::new();
        for p in points.iter().filter(|p| &p.heldout == h) {
            groups.entry((p.order.clone(), p.k)).or_default().push(p);
        }
        let score = |ps: &Vec<&PointResult>| {
            mean(
                &ps.iter()
                    .filter_map(|p| p.metrics.get(PRIMARY).copied())
                    .collect::<Vec<_>>(),
            )
        };
        // A group whose score is not finite (a degenerate model) is never the best.
        let best = groups
            .iter()
            .filter(|((o, _), ps)| o != "baseline" && score(ps).is_finite())
            .max_by(|a, b| score(a.1).total_cmp(&score(b.1)));
        let base = groups.iter().find(|((o, _), _)| o == "baseline");
        for m in &metrics {
            let avg = |ps: &Vec<&PointResult>| {
                mean(
                    &ps.iter()
                        .filter_map(|p| p.metrics.get(m).copied())
                        .collect::<Vec<_>>(),
                )
            };
            if let Some((_, ps)) = base {
                base_vals.entry(m.clone()).or_default().push(avg(ps));
            }
            if let Some((_, ps)) = best {
                best_vals.entry(m.clone()).or_default().push(avg(ps));
            }
        }
    }
    let mut md = String::from("| metric | baseline | best pretrained |\n|---|---|---|\n");
    let mut csv = String::from("metric,baseline,best_pretrained\n");
    for m in &metrics {
        let b = base_vals.get(m).map(|v| mean(v)).unwrap_or(f64::NAN);
        let p = best_vals.get(m).map(|v| mean(v)).unwrap_or(f64::NAN);
        let _ = writeln!(md, "| {m} | {} | {} |", fmt(b), fmt(p));
        let _ = writeln!(csv, "{m},{b},{p}");
    }
    (md, csv)
}

/// Percent improvement over the smallest model of each order (Fig. 2c/4c), averaged over
/// held-out sessions: rows (order, k, mean %, sd %).
pub fn improvement_over_smallest(points: &[PointResult]) -> Vec<(String, usize, f64, f64)> {
    let c = curves(points, PRIMARY);
    let mut acc: BTreeMap<(String, usize), Vec<f64>> = BTreeMap::new();
    for ((_, order), m) in &c.by {
        let Some((_, (v0, _, _))) = m.iter().next() else {
            continue;
        };
        let base = mean(v0);
        for (k, (v, _, _)) in m {
            acc.entry((order.clone(), *k))
                .or_default()
                .push(pct(mean(v), base));
        }
    }
    acc.into_iter()
        .map(|((o, k), v)| (o, k, mean(&v), sd(&v)))
        .collect()
}

/// One fitted line of Fig. 4b: `bps = a + b·log10(trials)` over the partial-data points of a
/// (held-out, order), its extrapolation to the full pool, and the measured full-data point.
#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    pub heldout: String,
    pub order: String,
    pub a: f64,
    pub b: f64,
    pub r2: f64,
    pub full_trials: f64,
    pub extrapolated: f64,
    pub measured_full: f64,
}

pub fn scaling_fits(points: &[PointResult]) -> Vec<Fit> {
    let c = curves(points, PRIMARY);
    let mut out = Vec::new();
    for ((h, o), m) in &c.by {
        let partial: Vec<(f64, f64)> = m
            .values()
            .filter(|(_, _, f)| !f)
            .map(|(v, t, _)| (*t, mean(v)))
            .collect();
        let full = m.values().find(|(_, _, f)| *f);
        let xs: Vec<f64> = partial.iter().map(|p| p.0).collect();
        let ys: Vec<f64> = partial.iter().map(|p| p.1).collect();
        if let Some((a, b, r2)) = log_linear_fit(&xs, &ys) {
            let (full_trials, measured_full) = full
                .map(|(v, t, _)| (*t, mean(v)))
                .unwrap_or((f64::NAN, f64::NAN));
            out.push(Fit {
                heldout: h.clone(),
                order: o.clone(),
                a,
                b,
                r2,
                full_trials,
                extrapolated: if full_trials > 0.0 {
                    a + b * full_trials.log10()
                } else {
                    f64::NAN
                },
                measured_full,
            });
        }
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

const COLORS: [plotters::style::RGBColor; 3] = [
    plotters::style::RGBColor(31, 119, 180),
    plotters::style::RGBColor(44, 160, 44),
    plotters::style::RGBColor(255, 127, 14),
];

fn order_color(o: &str) -> plotters::style::RGBColor {
    ORDERS
        .iter()
        .position(|x| *x == o)
        .map(|i| COLORS[i])
        .unwrap_or(plotters::style::RGBColor(90, 90, 90))
}

type Series = Vec<(String, Vec<(f64, f64)>)>;

/// A line plot with one series per label; `log_x` for trial counts.
fn line_plot(
    path: &Path,
    title: &str,
    xdesc: &str,
    ydesc: &str,
    series: &Series,
    hline: Option<f64>,
    log_x: bool,
) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: String| internal(format!("plot {}: {e}", path.display()));
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let (mut x0, mut x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if let Some(h) = hline {
        y0 = y0.min(h);
        y1 = y1.max(h);
    }
    let ypad = ((y1 - y0) * 0.08).max(1e-3);
    y0 -= ypad;
    y1 += ypad;
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if log_x {
        x0 = (x0 * 0.8).max(1e-9);
        x1 *= 1.25;
    } else {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut b = ChartBuilder::on(&root);
        b.caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60);
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(xdesc)
                    .y_desc(ydesc)
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
                if let Some(h) = hline {
                    chart
                        .draw_series(LineSeries::new(
                            vec![(x0, h), (x1, h)],
                            BLACK.stroke_width(1),
                        ))
                        .map_err(|e| err(e.to_string()))?
                        .label("baseline")
                        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
                }
                for (label, v) in series {
                    let color = order_color(label.split(' ').next().unwrap_or(""));
                    let dashed = label.contains("fit");
                    let style = if dashed {
                        color.stroke_width(1)
                    } else {
                        color.stroke_width(2)
                    };
                    chart
                        .draw_series(LineSeries::new(v.iter().copied(), style))
                        .map_err(|e| err(e.to_string()))?
                        .label(label.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
                    if !dashed {
                        chart
                            .draw_series(v.iter().map(|p| Circle::new(*p, 3, color.filled())))
                            .map_err(|e| err(e.to_string()))?;
                    }
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE)
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
            }};
        }
        if log_x {
            draw!(
                b.build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                    .map_err(|e| err(e.to_string()))?
            );
        } else {
            draw!(
                b.build_cartesian_2d(x0..x1, y0..y1)
                    .map_err(|e| err(e.to_string()))?
            );
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    write_atomic(path, svg.as_bytes())
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

/// Writes every table and plot into `out` and returns the Markdown summary. Plot files are
/// named after the held-out ids, which must follow the id rule
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
         (per-neuron convention).\n",
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
        "## Table 1: percent improvement over the baseline\n\n{t1}"
    );
    let (t3, t3csv) = table3(points);
    write_atomic(&out.join("table3.csv"), t3csv.as_bytes())?;
    let _ = writeln!(
        md,
        "## Table 3: baseline vs best pretrained (mean over held-out sessions)\n\n{t3}"
    );

    let imp = improvement_over_smallest(points);
    let mut csv = String::from("order,k,mean_pct,sd_pct\n");
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (o, k, m, s) in &imp {
        let _ = writeln!(csv, "{o},{k},{m},{s}");
        series.entry(o.clone()).or_default().push((*k as f64, *m));
    }
    write_atomic(&out.join("improvement_over_smallest.csv"), csv.as_bytes())?;
    line_plot(
        &out.join("improvement_over_smallest.svg"),
        "Improvement over the smallest model",
        "pretraining sessions",
        "% improvement",
        &series.into_iter().collect(),
        None,
        false,
    )?;
    let _ = writeln!(
        md,
        "## Improvement over the smallest model (Fig. 2c/4c)\n\n![](improvement_over_smallest.svg)\n"
    );

    let fits = scaling_fits(points);
    let mut csv = String::from("heldout,order,a,b,r2,full_trials,extrapolated,measured_full\n");
    for f in &fits {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{}",
            f.heldout, f.order, f.a, f.b, f.r2, f.full_trials, f.extrapolated, f.measured_full
        );
    }
    write_atomic(&out.join("scaling_fits.csv"), csv.as_bytes())?;
    let _ = writeln!(
        md,
        "## bps vs total pretraining trials (Fig. 4b)\n\n| held-out | order | slope per decade | r² | extrapolated full | measured full |\n|---|---|---|---|---|---|"
    );
    for f in &fits {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            f.heldout,
            f.order,
            fmt(f.b),
            fmt(f.r2),
            fmt(f.extrapolated),
            fmt(f.measured_full)
        );
    }
    md.push('\n');

    let c = curves(points, PRIMARY);
    let heldouts: BTreeSet<String> = c.by.keys().map(|(h, _)| h.clone()).collect();
    for h in &heldouts {
        let base = c.baseline.get(h).map(|v| mean(v));
        let mut by_k = Series::new();
        let mut by_trials = Series::new();
        for ((hh, o), m) in &c.by {
            if hh != h {
                continue;
            }
            by_k.push((
                o.clone(),
                m.iter()
                    .map(|(k, (v, _, _))| (*k as f64, mean(v)))
                    .collect(),
            ));
            by_trials.push((
                o.clone(),
                m.values().map(|(v, t, _)| (*t, mean(v))).collect(),
            ));
            if let Some(f) = fits.iter().find(|f| &f.heldout == h && &f.order == o) {
                let t0 = m.values().map(|(_, t, _)| *t).fold(f64::MAX, f64::min);
                let t1 = if f.full_trials.is_finite() {
                    f.full_trials
                } else {
                    m.values().map(|(_, t, _)| *t).fold(0.0, f64::max)
                };
                by_trials.push((
                    format!("{o} fit"),
                    vec![(t0, f.a + f.b * t0.log10()), (t1, f.a + f.b * t1.log10())],
                ));
            }
        }
        // `h` follows the id rule (checked above): a plain file-name part, one per session.
        line_plot(
            &out.join(format!("curve_{h}.svg")),
            &format!("{h}: {PRIMARY} bps"),
            "pretraining sessions",
            "bps",
            &by_k,
            base,
            false,
        )?;
        line_plot(
            &out.join(format!("trials_{h}.svg")),
            &format!("{h}: {PRIMARY} bps vs trials"),
            "total pretraining trials",
            "bps",
            &by_trials,
            base,
            true,
        )?;
        let _ = writeln!(md, "![](curve_{h}.svg) ![](trials_{h}.svg)\n");
    }

    if !rankings.is_empty() {
        let shared = shared_top_k(rankings);
        let mut csv = String::from("k,shared_in_all\n");
        for (k, s) in &shared {
            let _ = writeln!(csv, "{k},{s}");
        }
        write_atomic(&out.join("rank_overlap.csv"), csv.as_bytes())?;
        let series = vec![(
            "shared".to_string(),
            shared.iter().map(|(k, s)| (*k as f64, *s as f64)).collect(),
        )];
        line_plot(
            &out.join("rank_overlap.svg"),
            "Sessions shared by every held-out session's top k",
            "k",
            "shared sessions",
            &series,
            None,
            false,
        )?;
        let _ = writeln!(
            md,
            "## Top-k overlap of rankings (App. F)\n\n![](rank_overlap.svg)\n"
        );
    }
    let mut all = String::from("heldout,order,shuffle,k,seed,total_trials,full,metric,value\n");
    for p in points {
        for (m, v) in &p.metrics {
            let _ = writeln!(
                all,
                "{},{},{},{},{},{},{},{m},{v}",
                p.heldout, p.order, p.shuffle, p.k, p.seed, p.total_trials, p.full
            );
        }
    }
    write_atomic(&out.join("points.csv"), all.as_bytes())?;
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
            order: o.into(),
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
        assert_eq!(row, "co-smooth,0.1,0.12", "{csv}");
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
            "improvement_over_smallest.svg",
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
