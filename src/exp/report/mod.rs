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
//! The rooms: [`curves`] gathers point results into curves, [`analysis`] computes the
//! improvements, fits and overlaps, [`tables`] formats Markdown and CSV, [`figures`] decides
//! what each plot shows and `draw` draws it as SVG; this file writes `report.md`, one page that
//! links every table and figure.

pub mod analysis;
pub mod curves;
mod draw;
pub mod figures;
pub mod tables;

pub use analysis::*;
pub use curves::*;
pub use tables::{table1, table3};

use crate::error::{Result, usage};
use crate::exp::stats::{mean, sd};
use crate::fsutil::write_atomic;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

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
    let fits = analysis::fits_of(&c);
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
