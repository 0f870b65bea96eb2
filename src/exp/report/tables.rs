//! The report's tables, each as Markdown and CSV: Table 1, Table 3 with the classical
//! references, the improvement tables, the scaling fits, and every point.

use super::{Fit, Improvement, PRIMARY, PointOrder, PointResult, curves};
use crate::exp::stats::{mean, pct};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// A number for Markdown: three decimals, "–" when not finite.
pub fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

/// A number for CSV: empty when not finite.
fn csv_num(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

/// Table 1: best percent improvement over the baseline per order, and ranked with 5 sessions.
pub fn table1(points: &[PointResult]) -> (String, String) {
    let c = curves(points, PRIMARY);
    let mut md = String::from(
        "| held-out session | random (best) | ranked (best) | reverse-ranked (best) | ranked (top 5) |\n|---|---|---|---|---|\n",
    );
    let mut csv = String::from(
        "heldout,random_best_pct,ranked_best_pct,reverse_ranked_best_pct,ranked_top5_pct\n",
    );
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for h in &c.heldouts() {
        let base = c.baseline_mean(h);
        let mut row = Vec::new();
        for o in PointOrder::PRETRAINED {
            // Non-finite cells (a degenerate model) never count as the best.
            let best = c
                .get(h, o)
                .and_then(|curve| {
                    curve
                        .cells
                        .values()
                        .map(|cell| cell.mean())
                        .filter(|v| v.is_finite())
                        .max_by(f64::total_cmp)
                })
                .unwrap_or(f64::NAN);
            row.push(pct(best, base));
        }
        let top5 = c
            .get(h, PointOrder::Ranked)
            .and_then(|curve| curve.cells.get(&5))
            .map(|cell| cell.mean());
        row.push(top5.map_or(f64::NAN, |v| pct(v, base)));
        for (col, v) in cols.iter_mut().zip(&row) {
            if v.is_finite() {
                col.push(*v);
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

/// What Table 3's reference columns mean.
pub const TABLE3_NOTE: &str = "Smoothed-spikes GLM: NLB's co-smoothing baseline (a Poisson GLM \
    on Gaussian-smoothed held-in spikes), scored on the same entries as the models; \"not \
    computed\" where the evaluation did not record it (other tasks, or results of a build without \
    it). Mean rate: each unit predicted at its mean count, the null model every bps and D² is \
    measured against, so it is 0 on those by definition; for `choice` the reference is the \
    majority class (`choice.majority`).";

/// The GLM baseline's metric name for a model metric: `<task>` -> `<task>.glm`,
/// `<task>.pooled` -> `<task>.glm.pooled`, `<task>.d2` -> `<task>.glm.d2`.
fn glm_key(metric: &str) -> Option<String> {
    if let Some(task) = metric.strip_suffix(".d2") {
        return Some(format!("{task}.glm.d2"));
    }
    if metric.ends_with(".d2.pooled") {
        return None;
    }
    if let Some(task) = metric.strip_suffix(".pooled") {
        return Some(format!("{task}.glm.pooled"));
    }
    (!metric.contains('.') && metric != "choice").then(|| format!("{metric}.glm"))
}

/// The null model's value for a metric: 0 for bps and D² (their reference), the majority
/// class's accuracy (recorded per point) for `choice`.
fn null_key(metric: &str) -> Option<&'static str> {
    (metric == "choice").then_some("choice.majority")
}

/// Whether a metric is a reference's score shown in a reference column, not a row of its own.
fn is_reference(metric: &str) -> bool {
    metric.contains(".glm") || metric == "choice.majority"
}

/// Table 3: baseline vs the best pretrained model (by the primary metric) on every metric,
/// averaged over held-out sessions, beside the smoothed-spikes GLM and the mean-rate (null)
/// references.
pub fn table3(points: &[PointResult]) -> (String, String) {
    let all: BTreeSet<String> = points
        .iter()
        .flat_map(|p| p.metrics.keys().cloned())
        .collect();
    let metrics: Vec<&String> = all.iter().filter(|m| !is_reference(m)).collect();
    let heldouts: BTreeSet<&str> = points.iter().map(|p| p.heldout.as_str()).collect();
    let mut base_vals: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut best_vals: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    // Reference metric name -> per held-out means (over every model of the session: the
    // references do not depend on the model).
    let mut ref_vals: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let avg = |ps: &[&PointResult], m: &str| {
        mean(
            &ps.iter()
                .filter_map(|p| p.metrics.get(m).copied())
                .collect::<Vec<_>>(),
        )
    };
    for h in heldouts {
        // Best pretrained configuration = highest mean primary metric over seeds/shuffles.
        let of_h: Vec<&PointResult> = points.iter().filter(|p| p.heldout == h).collect();
        let mut groups: BTreeMap<(PointOrder, usize), Vec<&PointResult>> = BTreeMap::new();
        for p in &of_h {
            groups.entry((p.order, p.k)).or_default().push(p);
        }
        let score = |ps: &[&PointResult]| avg(ps, PRIMARY);
        // A group whose score is not finite (a degenerate model) is never the best.
        let best = groups
            .iter()
            .filter(|((o, _), ps)| *o != PointOrder::Baseline && score(ps).is_finite())
            .max_by(|a, b| score(a.1).total_cmp(&score(b.1)));
        let base = groups.iter().find(|((o, _), _)| *o == PointOrder::Baseline);
        for m in &metrics {
            if let Some((_, ps)) = base {
                base_vals.entry(m).or_default().push(avg(ps, m));
            }
            if let Some((_, ps)) = best {
                best_vals.entry(m).or_default().push(avg(ps, m));
            }
        }
        for r in all.iter().filter(|m| is_reference(m)) {
            let v = avg(&of_h, r);
            if v.is_finite() {
                ref_vals.entry(r).or_default().push(v);
            }
        }
    }
    let mut md = String::from(
        "| metric | baseline | best pretrained | smoothed-spikes GLM | mean rate (null) |\n|---|---|---|---|---|\n",
    );
    let mut csv = String::from("metric,baseline,best_pretrained,glm,null\n");
    for m in &metrics {
        let b = base_vals.get(m.as_str()).map_or(f64::NAN, |v| mean(v));
        let p = best_vals.get(m.as_str()).map_or(f64::NAN, |v| mean(v));
        let reference =
            |key: Option<String>| key.and_then(|k| ref_vals.get(k.as_str()).map(|v| mean(v)));
        let glm = reference(glm_key(m));
        let null = match null_key(m) {
            Some(k) => reference(Some(k.to_string())),
            // bps and D² are measured against the mean-rate model.
            None => Some(0.0),
        };
        let shown = |v: Option<f64>| v.map_or_else(|| "not computed".to_string(), fmt);
        let _ = writeln!(
            md,
            "| {m} | {} | {} | {} | {} |",
            fmt(b),
            fmt(p),
            shown(glm),
            shown(null)
        );
        let _ = writeln!(
            csv,
            "{m},{b},{p},{},{}",
            glm.map_or(String::new(), csv_num),
            null.map_or(String::new(), csv_num)
        );
    }
    (md, csv)
}

/// An improvement table (order, k, mean %, sd %, sessions averaged, sessions skipped).
pub fn improvement_table(rows: &[Improvement]) -> (String, String) {
    let mut md = String::from(
        "| order | k | mean % | sd % | sessions | skipped |\n|---|---|---|---|---|---|\n",
    );
    let mut csv = String::from("order,k,mean_pct,sd_pct,n_sessions,skipped\n");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            r.order,
            r.k,
            fmt(r.mean_pct),
            fmt(r.sd_pct),
            r.n,
            r.skipped
        );
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{}",
            r.order,
            r.k,
            csv_num(r.mean_pct),
            csv_num(r.sd_pct),
            r.n,
            r.skipped
        );
    }
    (md, csv)
}

/// The scaling fits of Fig. 4b.
pub fn fits_table(fits: &[Fit]) -> (String, String) {
    let mut md = String::from(
        "| held-out | order | slope per decade | r² | residual sd | extrapolated full | measured full |\n|---|---|---|---|---|---|---|\n",
    );
    let mut csv = String::from(
        "heldout,order,a,b,r2,resid_sd,n_points,full_trials,extrapolated,measured_full,measured_full_sd\n",
    );
    for f in fits {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            f.heldout,
            f.order,
            fmt(f.b),
            fmt(f.r2),
            fmt(f.resid_sd),
            fmt(f.extrapolated),
            fmt(f.measured_full)
        );
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{}",
            f.heldout,
            f.order,
            f.a,
            f.b,
            f.r2,
            csv_num(f.resid_sd),
            f.n_points,
            csv_num(f.full_trials),
            csv_num(f.extrapolated),
            csv_num(f.measured_full),
            csv_num(f.measured_full_sd)
        );
    }
    (md, csv)
}

/// Every evaluated model's every metric, one line each.
pub fn points_csv(points: &[PointResult]) -> String {
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
    all
}
