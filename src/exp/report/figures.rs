//! The report's figures as data: which series, bands, markers and reference line each plot
//! shows (points with their ±1 sd, fitted lines with their bands, the measured full-data point,
//! the baseline with its band). `draw` turns a [`Figure`] into SVG.

use super::draw::{COLORS, GREY, order_color};
use super::{Curve, Fit, Improvement, PRIMARY, PointOrder};
use plotters::style::RGBColor;

pub use super::draw::{draw, log_ticks, tick_label};

/// A mean with its spread (`sd` 0: no error bar).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub sd: f64,
}

/// A line through points; `markers` draws circles and error bars, `dashed` a thin dashed line.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry (none when empty).
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<Point>,
    pub markers: bool,
    pub dashed: bool,
}

/// A shaded band between `lo` and `hi` along `x`.
#[derive(Clone, Debug)]
pub struct Band {
    pub label: String,
    pub color: RGBColor,
    pub x: Vec<f64>,
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
}

/// A single point drawn as a triangle with its error bar (the measured full-data model).
#[derive(Clone, Debug)]
pub struct Marker {
    pub label: String,
    pub color: RGBColor,
    pub point: Point,
}

/// A horizontal reference line with a ±sd band (the baseline).
#[derive(Clone, Debug)]
pub struct Reference {
    pub label: String,
    pub y: f64,
    pub sd: f64,
}

impl Reference {
    pub fn baseline(mean: f64, sd: f64) -> Self {
        Reference {
            label: "baseline (mean ± sd)".into(),
            y: mean,
            sd,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Figure {
    pub title: String,
    pub xdesc: String,
    pub ydesc: String,
    pub log_x: bool,
    pub series: Vec<Series>,
    pub bands: Vec<Band>,
    pub markers: Vec<Marker>,
    pub reference: Option<Reference>,
}

fn baseline_of(figure: &mut Figure, baseline: Option<Reference>) {
    figure.reference = baseline;
}

/// Fig. 4a for one held-out session: bps against pretraining sessions, mean ± sd over seeds and
/// shuffles, with the baseline.
pub fn curve_figure(heldout: &str, curves: &[&Curve], baseline: Option<Reference>) -> Figure {
    let mut f = Figure {
        title: format!("{heldout}: {PRIMARY} bps"),
        xdesc: "pretraining sessions".into(),
        ydesc: format!("{PRIMARY} bps"),
        ..Figure::default()
    };
    for c in curves {
        f.series.push(Series {
            label: format!("{} (mean ± sd)", c.order),
            color: order_color(c.order),
            points: c
                .cells
                .iter()
                .map(|(k, cell)| Point {
                    x: *k as f64,
                    y: cell.mean(),
                    sd: cell.sd(),
                })
                .collect(),
            markers: true,
            dashed: false,
        });
    }
    baseline_of(&mut f, baseline);
    f
}

/// Fig. 4b for one held-out session: bps against total pretraining trials (log axis), the
/// partial-data cells (mean ± sd), each order's fit over them with its ±1 residual-sd band,
/// the fit's extrapolation (dashed) to the full pool and the measured full-data point.
pub fn trials_figure(
    heldout: &str,
    curves: &[&Curve],
    fits: &[&Fit],
    baseline: Option<Reference>,
) -> Figure {
    let mut f = Figure {
        title: format!("{heldout}: {PRIMARY} bps vs pretraining trials"),
        xdesc: "total pretraining trials (log scale)".into(),
        ydesc: format!("{PRIMARY} bps"),
        log_x: true,
        ..Figure::default()
    };
    for c in curves {
        let color = order_color(c.order);
        f.series.push(Series {
            label: format!("{} (mean ± sd)", c.order),
            color,
            points: c
                .cells
                .values()
                .filter(|cell| !cell.full)
                .map(|cell| Point {
                    x: cell.trials,
                    y: cell.mean(),
                    sd: cell.sd(),
                })
                .collect(),
            markers: true,
            dashed: false,
        });
        if let Some(fit) = fits.iter().find(|fit| fit.order == c.order) {
            let line = |x: f64| Point {
                x,
                y: fit.at(x),
                sd: 0.0,
            };
            f.series.push(Series {
                label: format!("{} fit (r² {:.2})", c.order, fit.r2),
                color,
                points: vec![line(fit.min_trials), line(fit.max_trials)],
                markers: false,
                dashed: false,
            });
            let end = if fit.full_trials > fit.max_trials {
                fit.full_trials
            } else {
                fit.max_trials
            };
            if end > fit.max_trials {
                f.series.push(Series {
                    label: String::new(),
                    color,
                    points: vec![line(fit.max_trials), line(end)],
                    markers: false,
                    dashed: true,
                });
            }
            if fit.resid_sd.is_finite() {
                // Evenly spaced in log10(trials) so the band follows the line on the log axis.
                let (l0, l1) = (fit.min_trials.log10(), end.log10());
                let x: Vec<f64> = (0..=16)
                    .map(|i| 10f64.powf(l0 + (l1 - l0) * i as f64 / 16.0))
                    .collect();
                f.bands.push(Band {
                    label: format!("{} fit ± 1 sd of residuals", c.order),
                    color,
                    lo: x.iter().map(|x| fit.at(*x) - fit.resid_sd).collect(),
                    hi: x.iter().map(|x| fit.at(*x) + fit.resid_sd).collect(),
                    x,
                });
            }
        }
        if let Some(cell) = c.cells.values().find(|cell| cell.full) {
            f.markers.push(Marker {
                label: format!("{} full data (measured)", c.order),
                color,
                point: Point {
                    x: cell.trials,
                    y: cell.mean(),
                    sd: cell.sd(),
                },
            });
        }
    }
    if f.series.iter().any(|s| s.dashed) {
        f.series.push(Series {
            label: "extrapolation to the full pool".into(),
            color: GREY,
            points: Vec::new(),
            markers: false,
            dashed: true,
        });
    }
    baseline_of(&mut f, baseline);
    f
}

/// Fig. 4c: percent improvement over the from-scratch baseline by pretraining sessions, mean ±
/// sd over held-out sessions.
pub fn improvement_figure(rows: &[Improvement]) -> Figure {
    let mut f = Figure {
        title: format!("{PRIMARY} bps over the baseline (mean ± sd over sessions)"),
        xdesc: "pretraining sessions".into(),
        ydesc: "% improvement over baseline".into(),
        reference: Some(Reference {
            label: "baseline (0 %)".into(),
            y: 0.0,
            sd: 0.0,
        }),
        ..Figure::default()
    };
    for o in PointOrder::PRETRAINED {
        let points: Vec<Point> = rows
            .iter()
            .filter(|r| r.order == o && r.n > 0)
            .map(|r| Point {
                x: r.k as f64,
                y: r.mean_pct,
                sd: r.sd_pct,
            })
            .collect();
        if !points.is_empty() {
            f.series.push(Series {
                label: format!("{o} (mean ± sd)"),
                color: order_color(o),
                points,
                markers: true,
                dashed: false,
            });
        }
    }
    f
}

/// App. F: sessions shared by every held-out session's top k.
pub fn overlap_figure(shared: &[(usize, usize)]) -> Figure {
    Figure {
        title: "Sessions in every held-out session's top k".into(),
        xdesc: "k".into(),
        ydesc: "shared sessions".into(),
        series: vec![Series {
            label: "shared".into(),
            color: COLORS[0],
            points: shared
                .iter()
                .map(|(k, s)| Point {
                    x: *k as f64,
                    y: *s as f64,
                    sd: 0.0,
                })
                .collect(),
            markers: true,
            dashed: false,
        }],
        ..Figure::default()
    }
}
