//! `ndt report`'s figures and tables checked from their files: the SVG text carries the error
//! bars, fit bands, full-data marker, readable log ticks and a legend beside the data; the
//! tables' numbers are recomputed here from the point results.

mod common;

use common::TempDir;
use ndt::exp::report::{PointOrder, PointResult, write_report};
use std::collections::BTreeMap;
use std::path::Path;

const RANKED: &str = "#2CA02C";
const RANDOM: &str = "#1F77B4";

fn pt(
    h: &str,
    order: PointOrder,
    k: usize,
    seed: u64,
    trials: usize,
    metrics: &[(&str, f64)],
) -> PointResult {
    PointResult {
        results_version: ndt::exp::jobs::RESULTS_VERSION,
        heldout: h.into(),
        order,
        shuffle: 0,
        k,
        seed,
        total_trials: trials,
        full: k == 8,
        metrics: metrics.iter().map(|(m, v)| (m.to_string(), *v)).collect(),
    }
}

fn fwd(h: &str, order: PointOrder, k: usize, seed: u64, v: f64) -> PointResult {
    pt(h, order, k, seed, k * 300, &[("forward", v)])
}

/// An SVG element: its tag, attributes and text content.
struct El {
    tag: String,
    attrs: BTreeMap<String, String>,
    text: String,
}

fn elements(svg: &str) -> Vec<El> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').unwrap();
        let head = &rest[..end];
        rest = &rest[end + 1..];
        if head.starts_with('/') || head.starts_with('?') || head.starts_with('!') {
            continue;
        }
        let tag: String = head.chars().take_while(|c| c.is_alphanumeric()).collect();
        let mut attrs = BTreeMap::new();
        let mut a = &head[tag.len()..];
        while let Some(eq) = a.find("=\"") {
            let name = a[..eq].trim().to_string();
            let v0 = eq + 2;
            let v1 = v0 + a[v0..].find('"').unwrap();
            attrs.insert(name, a[v0..v1].to_string());
            a = &a[v1 + 1..];
        }
        let text = if tag == "text" {
            rest[..rest.find("</text>").unwrap()].trim().to_string()
        } else {
            String::new()
        };
        out.push(El { tag, attrs, text });
    }
    out
}

fn pairs(points: &str) -> Vec<(f64, f64)> {
    points
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// Pixel lengths of the vertical two-point lines drawn in `color` (the error bars), by x.
fn vertical_bars(els: &[El], color: &str) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = els
        .iter()
        .filter(|e| e.tag == "polyline" && e.attrs.get("stroke").map(String::as_str) == Some(color))
        .map(|e| pairs(&e.attrs["points"]))
        .filter(|p| p.len() == 2 && p[0].0 == p[1].0 && p[0].1 != p[1].1)
        .map(|p| (p[0].0, (p[0].1 - p[1].1).abs()))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))
}

fn sd(v: &[f64]) -> f64 {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

fn scaling_points() -> Vec<PointResult> {
    use PointOrder::*;
    vec![
        fwd("h", Baseline, 0, 1, 0.10),
        fwd("h", Baseline, 0, 2, 0.12),
        // Ranked: sd over seeds 0.01·√2 at k = 1, twice that at k = 2, none at k = 4.
        fwd("h", Ranked, 1, 1, 0.14),
        fwd("h", Ranked, 1, 2, 0.16),
        fwd("h", Ranked, 2, 1, 0.17),
        fwd("h", Ranked, 2, 2, 0.21),
        fwd("h", Ranked, 4, 1, 0.20),
        fwd("h", Ranked, 4, 2, 0.20),
        fwd("h", Ranked, 8, 1, 0.24),
        fwd("h", Ranked, 8, 2, 0.26),
        // Random: two partial points, one seed: a fit but no residual band.
        fwd("h", Random, 1, 1, 0.13),
        fwd("h", Random, 2, 1, 0.15),
    ]
}

#[test]
fn figures_show_error_bars_bands_the_full_point_ticks_and_an_outside_legend() {
    let dir = TempDir::new("report-figures");
    let out = dir.join("r");
    write_report(&out, &scaling_points(), &BTreeMap::new()).unwrap();

    // Fig. 4a: one ±sd bar per ranked cell with a spread (k = 1, 2, 8; not k = 4), their
    // lengths in proportion to the sds (a linear y axis).
    let curve = elements(&read(&out, "curve_h.svg"));
    let bars = vertical_bars(&curve, RANKED);
    assert_eq!(bars.len(), 3, "{bars:?}");
    let ratio = bars[1].1 / bars[0].1;
    let want = sd(&[0.17, 0.21]) / sd(&[0.14, 0.16]);
    assert!((ratio - want).abs() < 0.05, "{ratio} vs {want}");
    assert!(
        vertical_bars(&curve, RANDOM).is_empty(),
        "one seed has no spread"
    );
    // The baseline's ±sd band (seeds 0.10, 0.12) and line.
    assert!(
        curve
            .iter()
            .any(|e| e.tag == "rect" && e.attrs.get("opacity").map(String::as_str) == Some("0.08")),
        "no baseline band"
    );

    // Fig. 4b: a residual band for ranked (3 partial points), none for random (2), and the
    // measured full-data point as a filled triangle.
    let trials = elements(&read(&out, "trials_h.svg"));
    let bands = |color: &str| {
        trials
            .iter()
            .filter(|e| {
                e.tag == "polygon"
                    && e.attrs.get("fill").map(String::as_str) == Some(color)
                    && e.attrs.get("opacity").map(String::as_str) == Some("0.18")
            })
            .count()
    };
    assert_eq!(bands(RANKED), 1);
    assert_eq!(bands(RANDOM), 0);
    let triangles = trials
        .iter()
        .filter(|e| {
            e.tag == "polygon"
                && e.attrs.get("fill").map(String::as_str) == Some(RANKED)
                && e.attrs.get("opacity").map(String::as_str) == Some("1")
                && pairs(&e.attrs["points"]).len() == 3
        })
        .count();
    // One on the plot, one in the legend.
    assert_eq!(triangles, 2);
    // 1-2-5 ticks over 300..2400 trials, no exponents.
    let texts: Vec<&El> = trials.iter().filter(|e| e.tag == "text").collect();
    for want in ["500", "1k", "2k"] {
        assert!(texts.iter().any(|t| t.text == want), "no tick {want}");
    }
    for t in &texts {
        assert!(
            !t.text.contains("e-") && !t.text.contains("e+") && !t.text.contains('^'),
            "exponent in {:?}",
            t.text
        );
    }
    // Legend beside the plot: every legend label right of every data point.
    let max_cx = trials
        .iter()
        .filter(|e| e.tag == "circle")
        .map(|e| e.attrs["cx"].parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    let legend: Vec<&&El> = texts
        .iter()
        .filter(|t| t.text.contains("mean ± sd"))
        .collect();
    assert_eq!(legend.len(), 3, "baseline, random, ranked");
    for t in legend {
        let x: f64 = t.attrs["x"].parse().unwrap();
        assert!(
            x > max_cx + 10.0,
            "legend label at {x} over data up to {max_cx}"
        );
    }
}

#[test]
fn table3_shows_the_classical_references_or_says_they_were_not_computed() {
    use PointOrder::*;
    let dir = TempDir::new("report-table3");
    let out = dir.join("r");
    let m = |f: f64, cs: f64, glm: Option<f64>| {
        let mut v = vec![
            ("forward", f),
            ("co-smooth", cs),
            ("co-smooth.d2", cs / 4.0),
        ];
        if let Some(g) = glm {
            v.extend([("co-smooth.glm", g), ("co-smooth.glm.d2", g / 4.0)]);
        }
        v
    };
    let pts = vec![
        pt("a", Baseline, 0, 1, 0, &m(0.10, 0.20, Some(0.15))),
        pt("a", Ranked, 1, 1, 300, &m(0.12, 0.22, Some(0.15))),
        pt("a", Ranked, 2, 1, 600, &m(0.14, 0.30, Some(0.15))),
        pt("b", Baseline, 0, 1, 0, &m(0.20, 0.10, Some(0.25))),
        pt("b", Random, 1, 1, 300, &m(0.26, 0.16, Some(0.25))),
        pt("b", Random, 2, 1, 600, &m(0.22, 0.40, None)),
    ];
    write_report(&out, &pts, &BTreeMap::new()).unwrap();
    let csv = read(&out, "table3.csv");
    let row = |metric: &str| -> Vec<String> {
        csv.lines()
            .find(|l| l.split(',').next() == Some(metric))
            .unwrap_or_else(|| panic!("no {metric} in {csv}"))
            .split(',')
            .skip(1)
            .map(String::from)
            .collect()
    };
    let num = |s: &str| s.parse::<f64>().unwrap();
    // Best pretrained by forward bps: a ranked k = 2 (0.14), b random k = 1 (0.26).
    let cs = row("co-smooth");
    assert!((num(&cs[0]) - (0.20 + 0.10) / 2.0).abs() < 1e-12, "{cs:?}");
    assert!((num(&cs[1]) - (0.30 + 0.16) / 2.0).abs() < 1e-12, "{cs:?}");
    // The GLM per session (a: 0.15, b: 0.25 where recorded), averaged over sessions.
    assert!((num(&cs[2]) - 0.20).abs() < 1e-12, "{cs:?}");
    assert_eq!(num(&cs[3]), 0.0, "mean rate is the reference");
    let d2 = row("co-smooth.d2");
    assert!((num(&d2[2]) - 0.05).abs() < 1e-12, "{d2:?}");
    // No GLM for forward prediction: empty in the CSV, "not computed" on the page.
    assert_eq!(row("forward")[2], "");
    assert!(
        !csv.contains(".glm"),
        "GLM scores are columns, not rows: {csv}"
    );
    let md = read(&out, "report.md");
    let fwd_line = md.lines().find(|l| l.starts_with("| forward |")).unwrap();
    assert!(fwd_line.contains("not computed"), "{fwd_line}");
}

#[test]
fn improvement_is_over_the_baseline_and_a_near_zero_smallest_model_is_left_out() {
    use PointOrder::*;
    let dir = TempDir::new("report-improvement");
    let out = dir.join("r");
    let pts = vec![
        fwd("a", Baseline, 0, 1, 0.10),
        fwd("a", Ranked, 1, 1, 0.12),
        fwd("a", Ranked, 2, 1, 0.15),
        fwd("b", Baseline, 0, 1, 0.20),
        // The smallest ranked model of b is near zero bps: 0.004.
        fwd("b", Ranked, 1, 1, 0.004),
        fwd("b", Ranked, 2, 1, 0.30),
    ];
    write_report(&out, &pts, &BTreeMap::new()).unwrap();
    let rows = |f: &str| -> Vec<Vec<String>> {
        read(&out, f)
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    let pct = |v: f64, b: f64| 100.0 * (v - b) / b;
    let base = rows("improvement_over_baseline.csv");
    let k2 = base
        .iter()
        .find(|r| r[0] == "ranked" && r[1] == "2")
        .unwrap();
    let (ia, ib) = (pct(0.15, 0.10), pct(0.30, 0.20));
    assert!(
        (k2[2].parse::<f64>().unwrap() - (ia + ib) / 2.0).abs() < 1e-9,
        "{k2:?}"
    );
    assert!(
        (k2[3].parse::<f64>().unwrap() - sd(&[ia, ib])).abs() < 1e-9,
        "{k2:?}"
    );
    assert_eq!((k2[4].as_str(), k2[5].as_str()), ("2", "0"));
    // Over the smallest model: b is skipped (its reference is near zero), a alone remains.
    let small = rows("improvement_over_smallest.csv");
    let k2 = small
        .iter()
        .find(|r| r[0] == "ranked" && r[1] == "2")
        .unwrap();
    assert!(
        (k2[2].parse::<f64>().unwrap() - pct(0.15, 0.12)).abs() < 1e-9,
        "{k2:?}"
    );
    assert_eq!((k2[4].as_str(), k2[5].as_str()), ("1", "1"));
    assert!(
        small
            .iter()
            .all(|r| r[2].parse::<f64>().unwrap().abs() < 100.0),
        "a near-zero reference leaked in: {small:?}"
    );
}

#[test]
fn report_page_links_every_table_and_figure() {
    let dir = TempDir::new("report-page");
    let out = dir.join("r");
    let mut rankings = BTreeMap::new();
    rankings.insert("h".to_string(), vec!["x".to_string(), "y".to_string()]);
    let md = write_report(&out, &scaling_points(), &rankings).unwrap();
    assert_eq!(md, read(&out, "report.md"));
    let mut n = 0;
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".csv") || name.ends_with(".svg") {
            n += 1;
            assert!(
                md.contains(&format!("({name})")),
                "{name} not linked from report.md"
            );
        }
    }
    // 5 tables + points, 2 per-session figures, improvement, overlap (svg + csv).
    assert_eq!(n, 11, "{md}");
}
