//! A snapshot in Prometheus's text exposition format (version 0.0.4), for
//! a `/metrics` endpoint.

use std::fmt::Write;

use super::{LatencyHistogram, MetricsSnapshot, TypeMetrics};

/// The prefix of every metric's name.
const PREFIX: &str = "diana_bus";

/// A counter: its name (after the prefix, before `_total`), its help, and
/// how to read it from `T`.
type Counter<T> = (&'static str, &'static str, fn(&T) -> u64);

/// The bus-wide counters.
const TOTALS: [Counter<MetricsSnapshot>; 10] = [
    ("published", "Events accepted.", |s| s.published),
    ("dispatched", "Events taken up by a worker.", |s| {
        s.dispatched
    }),
    ("delivered", "Successful handler runs.", |s| s.delivered),
    ("failed", "Failed or panicked handler runs.", |s| s.failed),
    ("panicked", "Handler runs that panicked.", |s| s.panicked),
    ("retried", "Re-runs after a failure.", |s| s.retried),
    (
        "dead_lettered",
        "(event, handler) pairs dead-lettered.",
        |s| s.dead_lettered,
    ),
    (
        "dead_letters_dropped",
        "Dead letters dropped from a full store.",
        |s| s.dead_letters_dropped,
    ),
    (
        "deduplicated",
        "Publishes acknowledged as duplicates.",
        |s| s.deduplicated,
    ),
    ("rejected", "Publishes refused.", |s| s.rejected),
];

/// The per-type counters, labelled by event name.
const PER_TYPE: [Counter<TypeMetrics>; 3] = [
    (
        "event_dispatched",
        "Events of the type taken up by a worker.",
        |t| t.dispatched,
    ),
    (
        "event_delivered",
        "Successful handler runs for the type.",
        |t| t.delivered,
    ),
    (
        "event_failed",
        "Failed or panicked handler runs for the type.",
        |t| t.failed,
    ),
];

impl MetricsSnapshot {
    /// The snapshot in Prometheus's text format: the totals as counters
    /// `diana_bus_<name>_total`, the per-type counts as
    /// `diana_bus_event_<name>_total{event="<name>"}`, and the handling
    /// latency (see [`crate::TypeMetrics::latency`]) as the histogram
    /// `diana_bus_handling_seconds{event="<name>"}`, with a bucket at each
    /// doubling from 64 ns. Types that share a name are summed into one
    /// series.
    pub fn prometheus(&self) -> String {
        let mut rows: Vec<(&str, [u64; 3], LatencyHistogram)> = Vec::new();
        for row in &self.per_type {
            let counts = PER_TYPE.map(|(_, _, read)| read(row));
            match rows.iter_mut().find(|(name, ..)| *name == row.name) {
                Some((_, sums, latency)) => {
                    sums.iter_mut().zip(counts).for_each(|(sum, n)| *sum += n);
                    latency.merge(&row.latency);
                }
                None => rows.push((row.name, counts, row.latency.clone())),
            }
        }
        let mut text = String::new();
        for (name, help, read) in TOTALS {
            header(&mut text, &format!("{name}_total"), help, "counter");
            let _ = writeln!(text, "{PREFIX}_{name}_total {}", read(self));
        }
        for (column, (name, help, _)) in PER_TYPE.iter().enumerate() {
            header(&mut text, &format!("{name}_total"), help, "counter");
            for (event, counts, _) in &rows {
                let event = escape(event);
                let _ = writeln!(
                    text,
                    "{PREFIX}_{name}_total{{event=\"{event}\"}} {}",
                    counts[column]
                );
            }
        }
        header(
            &mut text,
            "handling_seconds",
            "How long handlers took (sync handlers sampled).",
            "histogram",
        );
        for (event, _, latency) in &rows {
            histogram(&mut text, &escape(event), latency);
        }
        text
    }
}

fn header(text: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(text, "# HELP {PREFIX}_{name} {help}");
    let _ = writeln!(text, "# TYPE {PREFIX}_{name} {kind}");
}

/// One series of the histogram: cumulative buckets at each doubling (every
/// fourth bound), `+Inf`, the sum and the count.
fn histogram(text: &mut String, event: &str, latency: &LatencyHistogram) {
    let name = format!("{PREFIX}_handling_seconds");
    for (bound, count) in latency.cumulative() {
        let le = match bound {
            Some(bound) if bound.as_nanos().is_power_of_two() => bound.as_secs_f64().to_string(),
            Some(_) => continue,
            None => "+Inf".to_owned(),
        };
        let _ = writeln!(
            text,
            "{name}_bucket{{event=\"{event}\",le=\"{le}\"}} {count}"
        );
    }
    let sum = latency.sum().as_secs_f64();
    let _ = writeln!(text, "{name}_sum{{event=\"{event}\"}} {sum}");
    let _ = writeln!(
        text,
        "{name}_count{{event=\"{event}\"}} {}",
        latency.count()
    );
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::LatencyCells;
    use super::*;

    #[test]
    fn counters_and_histograms_follow_the_text_format() {
        let timed = |took: Duration, n: usize| {
            let cells = LatencyCells::default();
            (0..n).for_each(|_| cells.record(took));
            let mut histogram = LatencyHistogram::default();
            cells.add_to(&mut histogram);
            histogram
        };
        let (fast, slow) = (
            timed(Duration::from_micros(3), 4),
            timed(Duration::from_nanos(1 << 21), 1),
        );
        let snapshot = MetricsSnapshot {
            published: 7,
            rejected: 2,
            per_type: vec![
                TypeMetrics {
                    name: "Ping",
                    dispatched: 3,
                    delivered: 3,
                    latency: fast,
                    ..Default::default()
                },
                TypeMetrics {
                    name: "say \"hi\"\\\n",
                    failed: 1,
                    ..Default::default()
                },
                TypeMetrics {
                    name: "Ping",
                    dispatched: 2,
                    latency: slow,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let text = snapshot.prometheus();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"diana_bus_published_total 7"));
        assert!(lines.contains(&"diana_bus_rejected_total 2"));
        assert!(lines.contains(&"# TYPE diana_bus_rejected_total counter"));
        // Two types named Ping: one series, summed.
        assert!(lines.contains(&"diana_bus_event_dispatched_total{event=\"Ping\"} 5"));
        assert!(lines.contains(&r#"diana_bus_event_failed_total{event="say \"hi\"\\\n"} 1"#));
        assert!(lines.contains(&"diana_bus_handling_seconds_count{event=\"Ping\"} 5"));
        assert!(lines.contains(&"diana_bus_handling_seconds_bucket{event=\"Ping\",le=\"+Inf\"} 5"));
        // 3 µs lies below 4.096 µs; 2.097152 ms is on its bound, which
        // `le` includes.
        assert!(lines
            .contains(&"diana_bus_handling_seconds_bucket{event=\"Ping\",le=\"0.000004096\"} 4"));
        assert!(lines
            .contains(&"diana_bus_handling_seconds_bucket{event=\"Ping\",le=\"0.002097152\"} 5"));
        // Every sample line is a name, labels, a value; buckets ascend.
        let mut last = (String::new(), 0u64);
        for line in lines.iter().filter(|line| !line.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            assert!(series.starts_with("diana_bus_"), "{line}");
            if let Some(event) = series.strip_prefix("diana_bus_handling_seconds_bucket") {
                let event = event.split(",le=").next().unwrap().to_owned();
                if event == last.0 {
                    assert!(value as u64 >= last.1, "{line}");
                }
                last = (event, value as u64);
            }
        }
    }
}
