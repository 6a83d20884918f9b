//! `diana-bus plot A.json [B.json ...] -o FILE.svg`: throughput and latency
//! percentiles of one or more runs, per implementation, in one SVG.
//!
//! Top: deliveries/s, one bar per run in each implementation's group.
//! Bottom: latency on a log scale, one column of markers per run (p50
//! circle, p99 triangle, p99.9 cross) joined by a line. plotters is built
//! with its SVG backend only and without `ttf`: text goes into the SVG as
//! text, sized by plotters' own estimate, so no system font is needed.

use std::path::Path;

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::record::{Measured, Record};

/// Colours of the runs, in file order (then round again).
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

const FONT: &str = "sans-serif";

/// Draws `runs` (a label, usually the file name, and its record) into an
/// SVG at `out`.
pub fn plot(runs: &[(String, Record)], out: &Path) -> Result<(), String> {
    let is_svg = out
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("svg"));
    if !is_svg {
        return Err(format!(
            "{}: plot writes SVG only; name the output FILE.svg",
            out.display()
        ));
    }
    let names = implementations(runs);
    if names.is_empty() {
        return Err("nothing to plot: the runs hold no results".to_owned());
    }
    let root = SVGBackend::new(out, (1200, 900)).into_drawing_area();
    draw(&root, runs, &names).map_err(|error| format!("cannot draw {}: {error}", out.display()))?;
    root.present()
        .map_err(|error| format!("cannot write {}: {error}", out.display()))
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    runs: &[(String, Record)],
    names: &[String],
) -> Drawn {
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(450);
    throughput(&top, runs, names)?;
    latency(&bottom, runs, names)?;
    Ok(())
}

/// Every implementation in any run, in order of first appearance.
fn implementations(runs: &[(String, Record)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, record) in runs {
        for measured in &record.results {
            if !names.contains(&measured.implementation) {
                names.push(measured.implementation.clone());
            }
        }
    }
    names
}

/// "profile spsc", or "profiles spsc, mpsc" for runs of several.
fn profiles(runs: &[(String, Record)]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for (_, record) in runs {
        if !names.contains(&record.profile.as_str()) {
            names.push(&record.profile);
        }
    }
    let noun = if names.len() == 1 {
        "profile"
    } else {
        "profiles"
    };
    format!("{noun} {}", names.join(", "))
}

/// The measurements of implementation `name` in `record`.
fn find<'a>(record: &'a Record, name: &str) -> Option<&'a Measured> {
    record.results.iter().find(|m| m.implementation == name)
}

/// Where run `run` of `runs` sits within group `group`: its share of the
/// group's width, centred on the group.
fn slot(group: usize, run: usize, runs: usize) -> (f64, f64) {
    let width = 0.8 / runs as f64;
    let left = group as f64 - 0.4 + run as f64 * width;
    (left, left + width)
}

/// The x axis: one unit per implementation, centred on whole numbers,
/// with a tick (and its name, see [`label`]) at each centre.
#[derive(Clone, Copy, Debug)]
struct Groups(usize);

impl Ranged for Groups {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let Range { start, end } = self.range();
        let share = (value - start) / (end - start);
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.0).map(|group| group as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.0 as f64 - 0.5
    }
}

fn x_axis(names: &[String]) -> Groups {
    Groups(names.len().max(1))
}

fn label<'a>(names: &'a [String]) -> impl Fn(&f64) -> String + 'a {
    |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    }
}

fn throughput(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    runs: &[(String, Record)],
    names: &[String],
) -> Drawn {
    let highest = runs
        .iter()
        .flat_map(|(_, record)| record.results.iter().map(|m| m.deliveries_per_s))
        .filter(|rate| rate.is_finite())
        .fold(0.0, f64::max);
    // Headroom above the bars for the legend: a line per run.
    let top = highest * (1.2 + 0.08 * runs.len() as f64);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("deliveries/s ({})", profiles(runs)), (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x_axis(names), 0.0..top.max(1.0))?;
    let name_of = label(names);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&name_of)
        .y_label_formatter(&|rate| format!("{:.1} M", rate / 1e6))
        .y_desc("deliveries per second")
        .label_style((FONT, 13))
        .draw()?;
    for (run, (file, record)) in runs.iter().enumerate() {
        let color = COLORS[run % COLORS.len()];
        let bars = names.iter().enumerate().filter_map(|(group, name)| {
            let rate = find(record, name)?.deliveries_per_s;
            let (left, right) = slot(group, run, runs.len());
            rate.is_finite()
                .then(|| Rectangle::new([(left, 0.0), (right, rate)], color.filled()))
        });
        chart
            .draw_series(bars)?
            .label(file.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

fn latency(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    runs: &[(String, Record)],
    names: &[String],
) -> Drawn {
    let sampled = |m: &&Measured| m.latency_samples > 0;
    let values = runs
        .iter()
        .flat_map(|(_, record)| record.results.iter().filter(sampled))
        .flat_map(|m| [m.latency_ns.p50, m.latency_ns.p999])
        .map(|ns| ns.max(1) as f64);
    let (lowest, highest) = values.fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lowest = if lowest > highest { 1.0 } else { lowest };
    let mut chart = ChartBuilder::on(area)
        .caption(
            "latency: p50 (circle), p99 (triangle), p99.9 (cross)",
            (FONT, 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        // Headroom for the legend, which takes more of a log scale per run
        // (up to 16 runs' worth: the axis must stay finite).
        .build_cartesian_2d(
            x_axis(names),
            ((lowest / 2.0).max(1.0)..highest * 4f64.powi(1 + runs.len().min(16) as i32))
                .log_scale(),
        )?;
    let name_of = label(names);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&name_of)
        .y_label_formatter(&|ns| crate::report::nanos(*ns as u64))
        .y_desc("nanoseconds, log scale")
        .label_style((FONT, 13))
        .draw()?;
    for (run, (file, record)) in runs.iter().enumerate() {
        let color = COLORS[run % COLORS.len()];
        let points: Vec<(f64, [f64; 3])> = names
            .iter()
            .enumerate()
            .filter_map(|(group, name)| {
                let m = find(record, name).filter(|m| m.latency_samples > 0)?;
                let (left, right) = slot(group, run, runs.len());
                let l = m.latency_ns;
                Some((
                    (left + right) / 2.0,
                    [l.p50, l.p99, l.p999].map(|ns| ns.max(1) as f64),
                ))
            })
            .collect();
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, [p50, _, p999])| PathElement::new(vec![(x, p50), (x, p999)], color)),
            )?
            .label(file.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(3))
            });
        chart.draw_series(
            points
                .iter()
                .map(|&(x, [p50, ..])| Circle::new((x, p50), 4, color.filled())),
        )?;
        chart.draw_series(
            points
                .iter()
                .map(|&(x, [_, p99, _])| TriangleMarker::new((x, p99), 5, color.filled())),
        )?;
        chart.draw_series(
            points
                .iter()
                .map(|&(x, [.., p999])| Cross::new((x, p999), 4, color.stroke_width(2))),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn slots_split_a_group_without_overlap() {
        let slots: Vec<(f64, f64)> = (0..3).map(|run| super::slot(2, run, 3)).collect();
        assert!((slots[0].0 - 1.6).abs() < 1e-9 && (slots[2].1 - 2.4).abs() < 1e-9);
        assert!(slots
            .windows(2)
            .all(|pair| (pair[0].1 - pair[1].0).abs() < 1e-9));
    }
}
