//! Plain-text output: the profile list and the comparison table.

use std::fmt::Write;
use std::time::Duration;

use crate::load::Profile;

/// One implementation's figures for one run.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// The implementation's name.
    pub implementation: &'static str,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
    /// Events published.
    pub events: u64,
    /// Handler runs.
    pub deliveries: u64,
}

impl Row {
    fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64()
    }
}

/// One line per profile: its name and description, aligned.
pub fn profiles(profiles: &[Profile]) -> String {
    let width = profiles.iter().map(|p| p.name.len()).max().unwrap_or(0);
    profiles.iter().fold(String::new(), |mut out, profile| {
        let _ = writeln!(out, "{:width$}  {}", profile.name, profile.description);
        out
    })
}

/// An aligned table of `rows`, and a line saying what its last column is:
/// each row's deliveries/s over the last row's (the baseline).
pub fn table(rows: &[Row]) -> String {
    let Some(baseline) = rows.last() else {
        return String::new();
    };
    let header = [
        "implementation".to_owned(),
        "elapsed".to_owned(),
        "events/s".to_owned(),
        "deliveries/s".to_owned(),
        "ratio".to_owned(),
    ];
    let mut lines = vec![header];
    lines.extend(rows.iter().map(|row| {
        [
            row.implementation.to_owned(),
            format!("{:.1} ms", row.elapsed.as_secs_f64() * 1e3),
            grouped(row.per_second(row.events)),
            grouped(row.per_second(row.deliveries)),
            format!(
                "{:.2}x",
                row.per_second(row.deliveries) / baseline.per_second(baseline.deliveries)
            ),
        ]
    }));
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|column| {
            lines
                .iter()
                .map(|line| line[column].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = lines.iter().fold(String::new(), |mut out, line| {
        for (column, (cell, &width)) in line.iter().zip(&widths).enumerate() {
            // The name column reads left to right, figures line up on the right.
            let _ = match column {
                0 => write!(out, "{cell:<width$}"),
                _ => write!(out, "  {cell:>width$}"),
            };
        }
        out.push('\n');
        out
    });
    let _ = writeln!(
        out,
        "ratio: deliveries/s over {}'s deliveries/s",
        baseline.implementation
    );
    out
}

/// `rate` rounded, with thousands separated: `12,345,678`.
fn grouped(rate: f64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0.4), "0");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(1000.0), "1,000");
        assert_eq!(grouped(12_345_678.0), "12,345,678");
    }

    #[test]
    fn table_is_aligned_with_the_last_row_as_baseline() {
        let row = |implementation, millis| Row {
            implementation,
            elapsed: Duration::from_millis(millis),
            events: 1000,
            deliveries: 4000,
        };
        let table = table(&[row("fast", 1), row("baseline-impl", 2)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[..3].iter().all(|line| line.len() == lines[0].len()));
        assert!(lines[1].starts_with("fast ") && lines[1].ends_with("2.00x"));
        assert!(lines[2].ends_with("1.00x"));
    }
}
