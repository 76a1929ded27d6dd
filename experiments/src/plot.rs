//! `byzsgd-exp plot`: PNG figures from a sweep's CSVs — accuracy against steps and against
//! time (median over correct servers), the largest distance between correct servers against
//! steps, and heatmaps of a summary metric over two grid axes. Drawn as SVG with `plotters`
//! and rasterised with the node's `resvg` helper (system fonts; Debian's `fonts-dejavu-core`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, anyhow};
use byzsgd_api::job::status::median;
use plotters::prelude::*;

use crate::{
    results::{SummaryRow, TidyRow, median_by_step, metric},
    scenario::{HeatmapSpec, Scenario},
};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 560;

/// Draws a swept scenario's figures into its results directory `dir` from the CSVs there:
/// the standard ones plus the scenario's heatmaps; returns the files written.
pub fn plot_scenario(
    scenario: &Scenario,
    dir: &Path,
    summary: &[SummaryRow],
) -> anyhow::Result<Vec<PathBuf>> {
    let rows = crate::results::read_tidy(&dir.join(crate::results::RESULTS_CSV))?;
    let heatmaps: Vec<HeatmapSpec> = scenario
        .spec
        .plots
        .iter()
        .map(|p| p.heatmap.clone())
        .collect();
    plot_sweep(
        dir,
        &scenario.spec.name,
        &scenario.axes(),
        &rows,
        summary,
        &heatmaps,
    )
    .with_context(|| format!("plots of {}", scenario.spec.name))
}

/// One run's line: legend text and points.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

/// Draws every figure the sweep's data allows into `dir`; returns the files written.
/// Legends list each run's labels in `axes` order (the grid's).
pub fn plot_sweep(
    dir: &Path,
    title: &str,
    axes: &[String],
    rows: &[TidyRow],
    summary: &[SummaryRow],
    heatmaps: &[HeatmapSpec],
) -> anyhow::Result<Vec<PathBuf>> {
    let labels: BTreeMap<&str, String> = summary
        .iter()
        .map(|row| (row.run.as_str(), legend(row, axes)))
        .collect();
    let mut written = Vec::new();
    let accuracy = per_run(rows, &labels, metric::ACCURACY, |step, _| step as f64);
    if !accuracy.is_empty() {
        let path = dir.join("accuracy_vs_step.png");
        lines(
            &path,
            &format!("{title}: test accuracy"),
            "step",
            "accuracy",
            &accuracy,
            Some((0.0, 1.0)),
        )?;
        written.push(path);
    }
    let times: BTreeMap<(&str, u64), f64> = median_by_step(rows, metric::TIME);
    if !times.is_empty() {
        let series = per_run(rows, &labels, metric::ACCURACY, |step, run| {
            times.get(&(run, step)).copied().unwrap_or(f64::NAN)
        });
        let path = dir.join("accuracy_vs_time.png");
        lines(
            &path,
            &format!("{title}: test accuracy over time"),
            "seconds",
            "accuracy",
            &series,
            Some((0.0, 1.0)),
        )?;
        written.push(path);
    }
    let drift = per_run(rows, &labels, metric::DRIFT, |step, _| step as f64);
    // One server has no drift to show.
    if drift.iter().flat_map(|s| &s.points).any(|p| p.1 > 0.0) {
        let path = dir.join("drift_vs_step.png");
        lines(
            &path,
            &format!("{title}: largest distance between correct servers"),
            "step",
            "‖θᵢ − θⱼ‖",
            &drift,
            None,
        )?;
        written.push(path);
    }
    for spec in heatmaps {
        let path = dir.join(format!("heatmap_{}_{}_{}.png", spec.metric, spec.x, spec.y));
        heatmap(&path, title, spec, summary)?;
        written.push(path);
    }
    Ok(written)
}

fn legend(row: &SummaryRow, axes: &[String]) -> String {
    let labels: Vec<String> = axes
        .iter()
        .filter_map(|axis| Some(format!("{axis}={}", row.labels.get(axis)?)))
        .collect();
    if labels.is_empty() {
        row.run.clone()
    } else {
        labels.join(" ")
    }
}

fn per_run(
    rows: &[TidyRow],
    labels: &BTreeMap<&str, String>,
    name: &str,
    x: impl Fn(u64, &str) -> f64,
) -> Vec<Series> {
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for ((run, step), value) in median_by_step(rows, name) {
        let at = x(step, run);
        if at.is_finite() {
            series.entry(run).or_default().push((at, value));
        }
    }
    series
        .into_iter()
        .map(|(run, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: labels.get(run).cloned().unwrap_or_else(|| run.to_owned()),
                points,
            }
        })
        .collect()
}

fn plotting(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw: {error}")
}

fn lines(
    path: &Path,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> anyhow::Result<()> {
    let all = series.iter().flat_map(|s| &s.points);
    let x_max = all.clone().map(|p| p.0).fold(1e-9, f64::max);
    let (y_min, y_max) = y_range.unwrap_or_else(|| {
        let top = all
            .map(|p| p.1)
            .filter(|v| v.is_finite())
            .fold(1e-9, f64::max);
        (0.0, top * 1.05)
    });
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plotting)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, y_min..y_max)
            .map_err(plotting)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(plotting)?;
        for (position, line) in series.iter().enumerate() {
            let colour = Palette99::pick(position).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(plotting)?
                .label(line.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(plotting)?;
        root.present().map_err(plotting)?;
    }
    save(path, &svg)
}

/// The cells of a heatmap: x labels, y labels and the median metric per (x, y) cell.
struct Cells {
    xs: Vec<String>,
    ys: Vec<String>,
    values: BTreeMap<(usize, usize), f64>,
}

impl Cells {
    fn collect(spec: &HeatmapSpec, summary: &[SummaryRow]) -> anyhow::Result<Self> {
        let rows: Vec<&SummaryRow> = summary
            .iter()
            .filter(|row| {
                spec.filter
                    .iter()
                    .all(|(a, l)| row.labels.get(a) == Some(l))
            })
            .collect();
        let order = |axis: &str| {
            let mut seen: Vec<String> = Vec::new();
            for row in &rows {
                if let Some(label) = row.labels.get(axis)
                    && !seen.contains(label)
                {
                    seen.push(label.clone());
                }
            }
            seen
        };
        let xs = order(&spec.x);
        let ys = order(&spec.y);
        if xs.is_empty() || ys.is_empty() {
            return Err(anyhow!(
                "heatmap: the summary has no axis `{}` or `{}` (its columns are the grid's axes)",
                spec.x,
                spec.y
            ));
        }
        let mut values = BTreeMap::new();
        for (i, x) in xs.iter().enumerate() {
            for (j, y) in ys.iter().enumerate() {
                let cell = median(
                    rows.iter()
                        .filter(|r| r.labels.get(&spec.x) == Some(x))
                        .filter(|r| r.labels.get(&spec.y) == Some(y))
                        .filter_map(|r| r.metric(&spec.metric)),
                );
                if let Some(value) = cell {
                    values.insert((i, j), value);
                }
            }
        }
        Ok(Self { xs, ys, values })
    }

    /// Maps a value to [0, 1] for colouring: as is when every value lies there (accuracies),
    /// else over the cells' own range.
    fn shade_of(&self, value: f64) -> RGBColor {
        let low = self.values.values().copied().fold(f64::INFINITY, f64::min);
        let high = self
            .values
            .values()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if (low >= 0.0 && high <= 1.0) || high <= low {
            shade(value)
        } else {
            shade((value - low) / (high - low))
        }
    }
}

fn heatmap(
    path: &Path,
    title: &str,
    spec: &HeatmapSpec,
    summary: &[SummaryRow],
) -> anyhow::Result<()> {
    let cells = Cells::collect(spec, summary)?;
    let (xs, ys) = (&cells.xs, &cells.ys);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plotting)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{title}: {} over {} × {}", spec.metric, spec.x, spec.y),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..xs.len() as f64, 0f64..ys.len() as f64)
            .map_err(plotting)?;
        let x_names = xs.clone();
        let y_names = ys.clone();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(spec.x.as_str())
            .y_desc(spec.y.as_str())
            .x_labels(xs.len() * 2 + 1)
            .y_labels(ys.len() * 2 + 1)
            .x_label_formatter(&move |v| category(&x_names, *v))
            .y_label_formatter(&move |v| category(&y_names, *v))
            .draw()
            .map_err(plotting)?;
        for i in 0..xs.len() {
            for j in 0..ys.len() {
                let value = cells.values.get(&(i, j)).copied();
                let colour = value.map_or(RGBColor(220, 220, 220), |v| cells.shade_of(v));
                let (x0, y0) = (i as f64, j as f64);
                chart
                    .draw_series([Rectangle::new(
                        [(x0, y0), (x0 + 1.0, y0 + 1.0)],
                        colour.filled(),
                    )])
                    .map_err(plotting)?;
                let text = value.map_or_else(
                    || "–".to_owned(),
                    |v| {
                        if v.abs() >= 100.0 {
                            format!("{v:.0}")
                        } else {
                            format!("{v:.2}")
                        }
                    },
                );
                chart
                    .draw_series([Text::new(text, (x0 + 0.42, y0 + 0.55), ("sans-serif", 16))])
                    .map_err(plotting)?;
            }
        }
        root.present().map_err(plotting)?;
    }
    save(path, &svg)
}

/// The category name at the middle of a cell, nothing at its edges.
fn category(names: &[String], at: f64) -> String {
    let index = at.floor();
    if (at - index - 0.5).abs() < 1e-6 && index >= 0.0 {
        names.get(index as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// Red (0) through yellow to green (1), for values in [0, 1].
fn shade(value: f64) -> RGBColor {
    let v = value.clamp(0.0, 1.0);
    let (r, g) = if v < 0.5 {
        (230.0, 80.0 + 300.0 * v)
    } else {
        (230.0 - 360.0 * (v - 0.5), 230.0)
    };
    RGBColor(r as u8, g as u8, 90)
}

fn save(path: &Path, svg: &str) -> anyhow::Result<()> {
    let png = byzsgd_node::local::plot::rasterise(svg)?;
    std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
}
