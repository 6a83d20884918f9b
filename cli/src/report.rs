//! Plain-text output: the profile list and the summary table.

use std::fmt::Write;

use crate::load::Profile;
use crate::record::Measured;

/// The implementation the last column compares every row with.
const BASELINE: &str = "diana-bus";

/// One line per profile: its name and description, aligned.
pub fn profiles(profiles: &[Profile]) -> String {
    let width = profiles.iter().map(|p| p.name.len()).max().unwrap_or(0);
    profiles.iter().fold(String::new(), |mut out, profile| {
        let _ = writeln!(out, "{:width$}  {}", profile.name, profile.description);
        out
    })
}

/// An aligned table of `rows`, and a line saying what its last column is:
/// diana-bus's deliveries/s over each row's.
pub fn table(rows: &[Measured]) -> String {
    let baseline = rows.iter().find(|row| row.implementation == BASELINE);
    let header = [
        "implementation",
        "events/s",
        "deliveries/s",
        "p50",
        "p99",
        "p99.9",
        "allocs/event",
        "CPU s",
        "diana-bus/this",
    ]
    .map(str::to_owned);
    let mut lines = vec![header.to_vec()];
    lines.extend(rows.iter().map(|row| {
        let latency = |ns| match row.latency_samples {
            0 => "-".to_owned(),
            _ => nanos(ns),
        };
        vec![
            row.implementation.clone(),
            grouped(row.events_per_s),
            grouped(row.deliveries_per_s),
            latency(row.latency_ns.p50),
            latency(row.latency_ns.p99),
            latency(row.latency_ns.p999),
            format!("{:.3}", row.allocations_per_event),
            format!("{:.3}", row.cpu_seconds),
            baseline.map_or("-".to_owned(), |baseline| {
                format!("{:.2}x", baseline.deliveries_per_s / row.deliveries_per_s)
            }),
        ]
    }));
    let mut out = aligned(&lines);
    let _ = writeln!(
        out,
        "diana-bus/this: {BASELINE}'s deliveries/s over the row's (above 1.00x, diana-bus is faster)"
    );
    out
}

/// `lines` as columns: the first left-aligned, the others right-aligned,
/// two spaces apart.
pub fn aligned(lines: &[Vec<String>]) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            lines
                .iter()
                .filter_map(|line| line.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    lines.iter().fold(String::new(), |mut out, line| {
        for (column, (cell, &width)) in line.iter().zip(&widths).enumerate() {
            // The name column reads left to right, figures line up on the right.
            let _ = match column {
                0 => write!(out, "{cell:<width$}"),
                _ => write!(out, "  {cell:>width$}"),
            };
        }
        out.push('\n');
        out
    })
}

/// `rate` rounded, with thousands separated: `12,345,678`.
pub fn grouped(rate: f64) -> String {
    if !rate.is_finite() {
        return "-".to_owned();
    }
    let digits = format!("{:.0}", rate);
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A duration in nanoseconds, in the unit that keeps it short: `850 ns`,
/// `1.25 µs`, `3.4 ms`.
pub fn nanos(ns: u64) -> String {
    let ns = ns as f64;
    match ns {
        _ if ns < 1e3 => format!("{ns:.0} ns"),
        _ if ns < 1e6 => format!("{:.2} µs", ns / 1e3),
        _ if ns < 1e9 => format!("{:.2} ms", ns / 1e6),
        _ => format!("{:.2} s", ns / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Params, Percentiles};

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0.4), "0");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(1000.0), "1,000");
        assert_eq!(grouped(12_345_678.0), "12,345,678");
        assert_eq!(grouped(f64::INFINITY), "-");
    }

    #[test]
    fn durations_pick_their_unit() {
        assert_eq!(nanos(850), "850 ns");
        assert_eq!(nanos(1_250), "1.25 µs");
        assert_eq!(nanos(3_400_000), "3.40 ms");
        assert_eq!(nanos(2_000_000_000), "2.00 s");
    }

    fn row(implementation: &str, deliveries_per_s: f64) -> Measured {
        Measured {
            implementation: implementation.to_owned(),
            profile: "p".to_owned(),
            params: Params {
                pattern: "stream".to_owned(),
                publishers: 1,
                handlers: 1,
                keys: 0,
                types: 0,
                tenants: 0,
            },
            events: 1000,
            events_per_s: deliveries_per_s,
            deliveries_per_s,
            latency_ns: Percentiles {
                p50: 1_500,
                p99: 20_000,
                p999: 1_000_000,
            },
            latency_samples: 10,
            allocations_per_event: 0.0,
            cpu_seconds: 0.5,
        }
    }

    #[test]
    fn table_is_aligned_with_diana_bus_as_baseline() {
        let table = table(&[row("diana-bus", 4000.0), row("slow-peer", 1000.0)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        let width = |line: &str| line.chars().count();
        assert!(lines[..3].iter().all(|line| width(line) == width(lines[0])));
        assert!(lines[1].starts_with("diana-bus ") && lines[1].ends_with("1.00x"));
        assert!(lines[2].starts_with("slow-peer ") && lines[2].ends_with("4.00x"));
        assert!(lines[2].contains("1.50 µs") && lines[2].contains("1.00 ms"));
    }
}
