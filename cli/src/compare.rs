//! `diana-bus compare A.json B.json`: how run B compares with run A, per
//! implementation, as ratios B/A of throughput and of latency percentiles.

use crate::record::{Measured, Record};
use crate::report;

/// B/A for one implementation present in both runs. A ratio is None when
/// A's figure is zero or either is missing (latencies not sampled).
#[derive(Clone, Debug, PartialEq)]
pub struct Ratios {
    /// The implementation.
    pub implementation: String,
    /// Events per second, B over A (above 1: B is faster).
    pub events_per_s: Option<f64>,
    /// Deliveries per second, B over A (above 1: B is faster).
    pub deliveries_per_s: Option<f64>,
    /// Median latency, B over A (above 1: B is slower).
    pub p50: Option<f64>,
    /// 99th percentile, B over A.
    pub p99: Option<f64>,
    /// 99.9th percentile, B over A.
    pub p999: Option<f64>,
}

/// `b / a`, when both are positive and finite.
fn ratio(b: f64, a: f64) -> Option<f64> {
    (a > 0.0 && b >= 0.0 && a.is_finite() && b.is_finite()).then(|| b / a)
}

/// The ratios of every implementation in both runs, in A's order.
pub fn ratios(a: &Record, b: &Record) -> Vec<Ratios> {
    a.results
        .iter()
        .filter_map(|in_a| {
            let in_b = b
                .results
                .iter()
                .find(|in_b| in_b.implementation == in_a.implementation)?;
            let latency = |pick: fn(&Measured) -> u64| {
                let sampled = in_a.latency_samples > 0 && in_b.latency_samples > 0;
                sampled
                    .then(|| ratio(pick(in_b) as f64, pick(in_a) as f64))
                    .flatten()
            };
            Some(Ratios {
                implementation: in_a.implementation.clone(),
                events_per_s: ratio(in_b.events_per_s, in_a.events_per_s),
                deliveries_per_s: ratio(in_b.deliveries_per_s, in_a.deliveries_per_s),
                p50: latency(|m| m.latency_ns.p50),
                p99: latency(|m| m.latency_ns.p99),
                p999: latency(|m| m.latency_ns.p999),
            })
        })
        .collect()
}

/// The comparison as text: what differs between the two runs' settings, a
/// table of ratios, and the implementations only one run has.
pub fn render(a_name: &str, a: &Record, b_name: &str, b: &Record) -> String {
    let mut out = format!(
        "A: {a_name} (profile {})\nB: {b_name} (profile {})\n",
        a.profile, b.profile
    );
    if a.profile != b.profile {
        out += "note: the runs are of different profiles\n";
    }
    for note in differences(a, b) {
        out += &format!("differs: {note}\n");
    }
    out.push('\n');
    let header = [
        "implementation",
        "events/s",
        "deliveries/s",
        "p50",
        "p99",
        "p99.9",
    ];
    let mut lines = vec![header.map(str::to_owned).to_vec()];
    let cell = |ratio: Option<f64>| ratio.map_or("-".to_owned(), |ratio| format!("{ratio:.2}x"));
    for row in ratios(a, b) {
        lines.push(vec![
            row.implementation,
            cell(row.events_per_s),
            cell(row.deliveries_per_s),
            cell(row.p50),
            cell(row.p99),
            cell(row.p999),
        ]);
    }
    out += &report::aligned(&lines);
    out += "ratios are B/A: above 1.00x, B has the higher throughput, or the longer latency\n";
    let only = |from: &Record, other: &Record| -> Vec<String> {
        from.results
            .iter()
            .filter(|m| {
                !other
                    .results
                    .iter()
                    .any(|o| o.implementation == m.implementation)
            })
            .map(|m| m.implementation.clone())
            .collect()
    };
    for (name, list) in [("A", only(a, b)), ("B", only(b, a))] {
        if !list.is_empty() {
            out += &format!("only in {name}: {}\n", list.join(", "));
        }
    }
    out
}

/// The settings and shape parameters that differ between the runs.
fn differences(a: &Record, b: &Record) -> Vec<String> {
    let mut notes = Vec::new();
    let mut note = |what: &str, x: String, y: String| {
        if x != y {
            notes.push(format!("{what} {x} -> {y}"));
        }
    };
    let (sa, sb) = (&a.settings, &b.settings);
    note(
        "events",
        format!("{:?}", sa.events),
        format!("{:?}", sb.events),
    );
    note(
        "duration_s",
        format!("{:?}", sa.duration_s),
        format!("{:?}", sb.duration_s),
    );
    note("repeat", sa.repeat.to_string(), sb.repeat.to_string());
    note("workers", sa.workers.to_string(), sb.workers.to_string());
    note("shards", sa.shards.to_string(), sb.shards.to_string());
    note("capacity", sa.capacity.to_string(), sb.capacity.to_string());
    note(
        "batch",
        format!("{:?}", sa.batch),
        format!("{:?}", sb.batch),
    );
    if let (Some(pa), Some(pb)) = (a.results.first(), b.results.first()) {
        note(
            "types",
            pa.params.types.to_string(),
            pb.params.types.to_string(),
        );
        note(
            "tenants",
            pa.params.tenants.to_string(),
            pb.params.tenants.to_string(),
        );
        note(
            "keys",
            pa.params.keys.to_string(),
            pb.params.keys.to_string(),
        );
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Params, Percentiles, Settings, FORMAT};

    fn measured(implementation: &str, rate: f64, p50: u64, samples: u64) -> Measured {
        Measured {
            implementation: implementation.to_owned(),
            profile: "spsc".to_owned(),
            params: Params {
                pattern: "stream".to_owned(),
                publishers: 1,
                handlers: 1,
                keys: 0,
                types: 0,
                tenants: 0,
            },
            events: 1000,
            events_per_s: rate,
            deliveries_per_s: 2.0 * rate,
            latency_ns: Percentiles {
                p50,
                p99: 2 * p50,
                p999: 4 * p50,
            },
            latency_samples: samples,
            allocations_per_event: 0.0,
            cpu_seconds: 1.0,
        }
    }

    fn record(results: Vec<Measured>) -> Record {
        Record {
            format: FORMAT,
            profile: "spsc".to_owned(),
            settings: Settings {
                events: Some(1000),
                duration_s: None,
                repeat: 3,
                workers: 2,
                shards: 8,
                capacity: 1024,
                batch: None,
                sample_every: 64,
            },
            results,
        }
    }

    #[test]
    fn ratios_are_b_over_a_per_implementation() {
        let a = record(vec![
            measured("diana-bus", 100.0, 1000, 5),
            measured("flume", 50.0, 400, 5),
            measured("gone", 1.0, 1, 5),
        ]);
        let b = record(vec![
            measured("flume", 75.0, 100, 5),
            measured("diana-bus", 300.0, 500, 5),
        ]);
        let ratios = ratios(&a, &b);
        assert_eq!(ratios.len(), 2, "only implementations in both");
        assert_eq!(ratios[0].implementation, "diana-bus");
        assert_eq!(ratios[0].events_per_s, Some(3.0));
        assert_eq!(ratios[0].deliveries_per_s, Some(3.0));
        assert_eq!(ratios[0].p50, Some(0.5));
        assert_eq!(ratios[0].p999, Some(0.5));
        assert_eq!(ratios[1].implementation, "flume");
        assert_eq!(ratios[1].events_per_s, Some(1.5));
        assert_eq!(ratios[1].p99, Some(0.25));
    }

    #[test]
    fn zero_or_unsampled_figures_have_no_ratio() {
        let a = record(vec![measured("x", 0.0, 100, 0)]);
        let b = record(vec![measured("x", 10.0, 200, 7)]);
        let ratios = ratios(&a, &b);
        assert_eq!(ratios[0].events_per_s, None);
        assert_eq!(ratios[0].p50, None);
    }

    #[test]
    fn render_lists_differences_and_leftovers() {
        let a = record(vec![measured("x", 10.0, 100, 1), measured("y", 1.0, 1, 1)]);
        let mut b = record(vec![measured("x", 20.0, 100, 1)]);
        b.settings.workers = 4;
        let text = render("a.json", &a, "b.json", &b);
        assert!(text.contains("differs: workers 2 -> 4"), "{text}");
        assert!(text.contains("only in A: y"), "{text}");
        let row = text.lines().find(|line| line.starts_with("x ")).unwrap();
        assert!(row.contains("2.00x") && row.contains("1.00x"), "{row}");
    }
}
