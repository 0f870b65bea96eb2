//! Drawing a [`Figure`] as SVG with plotters: the axes (1-2-5 ticks on log axes), points with
//! ±1 sd error bars, lines, bands, markers, the baseline with its band, and the legend in a
//! column beside the plot area, never over the data. What a figure shows is decided in
//! `figures`; this file only draws it.

use super::PointOrder;
use super::figures::{Figure, Point};
use crate::error::{Result, internal};
use crate::fsutil::write_atomic;
use plotters::prelude::*;
use std::path::Path;

pub(super) const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
];
pub(super) const GREY: RGBColor = RGBColor(90, 90, 90);
/// Figure size in pixels, and the width of the legend column on the right.
const SIZE: (u32, u32) = (900, 480);
const LEGEND_W: u32 = 240;

pub fn order_color(o: PointOrder) -> RGBColor {
    PointOrder::PRETRAINED
        .iter()
        .position(|x| *x == o)
        .map_or(GREY, |i| COLORS[i])
}

/// Ticks 1, 2, 5 × 10ⁿ inside [lo, hi] (lo > 0); the two ends when fewer than two fall inside.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    for e in e0..=e1 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9) {
                out.push(v);
            }
        }
    }
    if out.len() < 2 {
        out = vec![lo, hi];
    }
    out
}

/// A tick label without exponents: 500, 1k, 2.5k, 20k, 1M; small values with the digits they need.
pub fn tick_label(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e3 {
        format!("{}k", trim(format!("{:.2}", v / 1e3)))
    } else if a >= 1.0 || a == 0.0 {
        trim(format!("{v:.2}"))
    } else {
        trim(format!("{v:.4}"))
    }
}

/// Ticks of a linear axis of whole numbers (pretraining sessions, k): every value drawn, thinned
/// to at most 12.
fn integer_ticks(xs: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = xs.iter().map(|x| x.round()).collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    let step = v.len().div_ceil(12).max(1);
    v.into_iter().step_by(step).collect()
}

enum Swatch {
    Line(RGBColor, bool),
    Band(RGBColor),
    Triangle(RGBColor),
}

/// Draws `fig` into `path` (nothing when it has no finite point).
pub fn draw(path: &Path, fig: &Figure) -> Result<()> {
    let err = |e: String| internal(format!("plot {}: {e}", path.display()));
    let ok_x = |x: f64| x.is_finite() && (!fig.log_x || x > 0.0);
    let mut xs: Vec<f64> = Vec::new();
    let mut ys: Vec<f64> = Vec::new();
    let mut add = |p: &Point| {
        if ok_x(p.x) && p.y.is_finite() {
            xs.push(p.x);
            let s = if p.sd.is_finite() { p.sd } else { 0.0 };
            ys.extend([p.y - s, p.y + s]);
        }
    };
    fig.series.iter().flat_map(|s| &s.points).for_each(&mut add);
    fig.markers.iter().map(|m| &m.point).for_each(&mut add);
    if xs.is_empty() {
        return Ok(());
    }
    for b in &fig.bands {
        for ((x, lo), hi) in b.x.iter().zip(&b.lo).zip(&b.hi) {
            if ok_x(*x) && lo.is_finite() && hi.is_finite() {
                xs.push(*x);
                ys.extend([*lo, *hi]);
            }
        }
    }
    if let Some(r) = fig.reference.as_ref().filter(|r| r.y.is_finite()) {
        let s = if r.sd.is_finite() { r.sd } else { 0.0 };
        ys.extend([r.y - s, r.y + s]);
    }
    let fold = |v: &[f64]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            })
    };
    let ((mut x0, mut x1), (mut y0, mut y1)) = (fold(&xs), fold(&ys));
    let ypad = ((y1 - y0) * 0.08).max(1e-3);
    y0 -= ypad;
    y1 += ypad;
    let ticks;
    if fig.log_x {
        if x1 <= x0 {
            x1 = x0 * 2.0;
        }
        x0 /= 1.25;
        x1 *= 1.25;
        ticks = log_ticks(x0, x1);
    } else {
        ticks = integer_ticks(&xs);
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        x0 -= 0.5;
        x1 += 0.5;
    }
    let n_ticks = ticks.len().max(2);
    let mut legend: Vec<(String, Swatch)> = Vec::new();
    if let Some(r) = &fig.reference {
        legend.push((r.label.clone(), Swatch::Line(BLACK, false)));
    }
    for s in &fig.series {
        legend.push((s.label.clone(), Swatch::Line(s.color, s.dashed)));
    }
    for b in &fig.bands {
        legend.push((b.label.clone(), Swatch::Band(b.color)));
    }
    for m in &fig.markers {
        legend.push((m.label.clone(), Swatch::Triangle(m.color)));
    }
    legend.retain(|(l, _)| !l.is_empty());

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let (plot_area, legend_area) = root.split_horizontally(SIZE.0 - LEGEND_W);
        let mut b = ChartBuilder::on(&plot_area);
        b.caption(&fig.title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64);
        macro_rules! draw_chart {
            ($chart:expr, $xlabels:expr, $xfmt:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(fig.xdesc.as_str())
                    .y_desc(fig.ydesc.as_str())
                    .x_labels($xlabels)
                    .x_label_formatter(&$xfmt)
                    .y_label_formatter(&|v: &f64| tick_label(*v))
                    .light_line_style(WHITE.mix(0.0))
                    .bold_line_style(BLACK.mix(0.08))
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
                if let Some(r) = &fig.reference {
                    if r.y.is_finite() {
                        if r.sd > 0.0 && r.sd.is_finite() {
                            chart
                                .draw_series(std::iter::once(Rectangle::new(
                                    [(x0, r.y - r.sd), (x1, r.y + r.sd)],
                                    BLACK.mix(0.08).filled(),
                                )))
                                .map_err(|e| err(e.to_string()))?;
                        }
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                vec![(x0, r.y), (x1, r.y)],
                                BLACK.stroke_width(1),
                            )))
                            .map_err(|e| err(e.to_string()))?;
                    }
                }
                for band in &fig.bands {
                    let up: Vec<(f64, f64)> =
                        band.x.iter().zip(&band.hi).map(|(x, y)| (*x, *y)).collect();
                    let down = band.x.iter().zip(&band.lo).rev().map(|(x, y)| (*x, *y));
                    let poly: Vec<(f64, f64)> = up
                        .into_iter()
                        .chain(down)
                        .filter(|(x, y)| ok_x(*x) && y.is_finite())
                        .collect();
                    chart
                        .draw_series(std::iter::once(Polygon::new(
                            poly,
                            band.color.mix(0.18).filled(),
                        )))
                        .map_err(|e| err(e.to_string()))?;
                }
                for s in &fig.series {
                    let pts: Vec<Point> = s
                        .points
                        .iter()
                        .copied()
                        .filter(|p| ok_x(p.x) && p.y.is_finite())
                        .collect();
                    let line = pts.iter().map(|p| (p.x, p.y));
                    if s.dashed {
                        chart
                            .draw_series(DashedLineSeries::new(line, 6, 4, s.color.stroke_width(1)))
                            .map_err(|e| err(e.to_string()))?;
                    } else {
                        let w = if s.markers { 2 } else { 1 };
                        chart
                            .draw_series(LineSeries::new(line, s.color.stroke_width(w)))
                            .map_err(|e| err(e.to_string()))?;
                    }
                    if s.markers {
                        draw_error_bars(&mut chart, &pts, s.color).map_err(err)?;
                        chart
                            .draw_series(
                                pts.iter()
                                    .map(|p| Circle::new((p.x, p.y), 3, s.color.filled())),
                            )
                            .map_err(|e| err(e.to_string()))?;
                    }
                }
                for m in &fig.markers {
                    let p = m.point;
                    if ok_x(p.x) && p.y.is_finite() {
                        draw_error_bars(&mut chart, &[p], m.color).map_err(err)?;
                        chart
                            .draw_series(std::iter::once(TriangleMarker::new(
                                (p.x, p.y),
                                7,
                                m.color.filled(),
                            )))
                            .map_err(|e| err(e.to_string()))?;
                    }
                }
            }};
        }
        if fig.log_x {
            draw_chart!(
                b.build_cartesian_2d((x0..x1).log_scale().with_key_points(ticks), y0..y1)
                    .map_err(|e| err(e.to_string()))?,
                n_ticks,
                |v: &f64| tick_label(*v)
            );
        } else {
            draw_chart!(
                b.build_cartesian_2d(x0..x1, y0..y1)
                    .map_err(|e| err(e.to_string()))?,
                n_ticks,
                // Whole numbers only: the axis counts sessions.
                |v: &f64| {
                    if (v - v.round()).abs() < 1e-6 {
                        tick_label(v.round())
                    } else {
                        String::new()
                    }
                }
            );
        }
        draw_legend(&legend_area, &legend).map_err(err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    write_atomic(path, svg.as_bytes())
}

/// Vertical ±sd bars with 8-pixel caps.
fn draw_error_bars<'a, X>(
    chart: &mut ChartContext<
        'a,
        SVGBackend<'a>,
        Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
    >,
    pts: &[Point],
    color: RGBColor,
) -> std::result::Result<(), String>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    let bars: Vec<&Point> = pts
        .iter()
        .filter(|p| p.sd.is_finite() && p.sd > 0.0)
        .collect();
    chart
        .draw_series(bars.iter().map(|p| {
            PathElement::new(
                vec![(p.x, p.y - p.sd), (p.x, p.y + p.sd)],
                color.stroke_width(1),
            )
        }))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(bars.iter().flat_map(|p| {
            [p.y - p.sd, p.y + p.sd].map(|y| {
                EmptyElement::at((p.x, y))
                    + PathElement::new(vec![(-4, 0), (4, 0)], color.stroke_width(1))
            })
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    entries: &[(String, Swatch)],
) -> std::result::Result<(), String> {
    let e = |x: DrawingAreaErrorKind<_>| x.to_string();
    for (i, (label, swatch)) in entries.iter().enumerate() {
        let y = 56 + 22 * i as i32;
        match swatch {
            Swatch::Line(c, dashed) => {
                if *dashed {
                    for s in [4, 14, 24] {
                        area.draw(&PathElement::new(
                            vec![(s, y), (s + 6, y)],
                            c.stroke_width(1),
                        ))
                        .map_err(e)?;
                    }
                } else {
                    area.draw(&PathElement::new(vec![(4, y), (30, y)], c.stroke_width(2)))
                        .map_err(e)?;
                }
            }
            Swatch::Band(c) => {
                area.draw(&Rectangle::new(
                    [(4, y - 6), (30, y + 6)],
                    c.mix(0.18).filled(),
                ))
                .map_err(e)?;
            }
            Swatch::Triangle(c) => {
                area.draw(&TriangleMarker::new((17, y), 7, c.filled()))
                    .map_err(e)?;
            }
        }
        area.draw(&Text::new(
            label.clone(),
            (38, y - 7),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(e)?;
    }
    Ok(())
}
