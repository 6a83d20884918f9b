//! The `diana-bus` binary end to end: every profile runs on diana-bus and
//! every peer that runs it, `--json` writes what `compare` and `plot` read,
//! the demo runs the Diana flow and prints its trace, and bad input gets a
//! clear error and a non-zero exit, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const PROFILES: [&str; 7] = [
    "spsc", "mpsc", "fanout4", "latency", "types", "tenants", "diana",
];

/// Every implementation a run of a queue profile (all but diana) may show;
/// disruptor-spin only where its spinning threads fit the machine's cores.
const PEERS: [&str; 7] = [
    "direct",
    "crossbeam-channel",
    "flume",
    "tokio-mpsc",
    "tokio-broadcast",
    "std-sync-channel",
    "disruptor-yield",
];

/// The peers that run the Diana flow of the diana profile.
const FLOW_PEERS: [&str; 2] = ["direct", "tokio-tasks"];

/// diana-bus and the peers a run of `profile` shows by default.
fn implementations(profile: &str) -> Vec<&'static str> {
    let peers: &[&str] = match profile {
        "diana" => &FLOW_PEERS,
        _ => &PEERS,
    };
    std::iter::once("diana-bus")
        .chain(peers.iter().copied())
        .collect()
}

fn diana_bus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diana-bus"))
        .args(args)
        .output()
        .expect("the diana-bus binary starts")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// A fresh path in cargo's temporary directory for integration tests.
fn scratch(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs `args` and asserts success, a row for each of `implementations`,
/// and a clean stderr (no progress bar when stderr is not a terminal).
fn assert_runs(args: &[&str], implementations: &[&str]) -> String {
    let output = diana_bus(args);
    let (stdout, stderr) = (stdout(&output), stderr(&output));
    assert!(
        output.status.success(),
        "{args:?} failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(stderr, "", "{args:?}: stderr is not a terminal, so no bar");
    for implementation in implementations {
        assert!(
            stdout
                .lines()
                .any(|line| line.starts_with(&format!("{implementation} "))),
            "{args:?}: no {implementation} row in\n{stdout}"
        );
    }
    stdout
}

/// Asserts a failure with exit code 1 or 2 (clap's usage errors), a
/// message containing `expected`, and no panic.
fn assert_fails(args: &[&str], expected: &str) {
    let output = diana_bus(args);
    let stderr = stderr(&output);
    assert!(
        matches!(output.status.code(), Some(1 | 2)),
        "{args:?}: {:?}\n{stderr}",
        output.status
    );
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn profiles_lists_every_profile_with_a_description() {
    let output = diana_bus(&["profiles"]);
    assert!(output.status.success());
    let stdout = stdout(&output);
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(names, PROFILES);
    assert!(
        stdout
            .lines()
            .all(|line| line.split_whitespace().count() > 1),
        "{stdout}"
    );
}

#[test]
fn every_profile_runs_on_diana_bus_and_every_peer() {
    for profile in PROFILES {
        let events = match profile {
            "latency" | "diana" => "300",
            _ => "3000",
        };
        let stdout = assert_runs(
            &[
                "run",
                "--profile",
                profile,
                "--events",
                events,
                "--repeat",
                "1",
            ],
            &implementations(profile),
        );
        assert!(stdout.contains("p99.9") && stdout.contains("allocs/event"));
        // A queue has no flow, and tokio tasks run only the flow.
        let elsewhere = match profile {
            "diana" => "crossbeam-channel ",
            _ => "tokio-tasks ",
        };
        assert!(
            !stdout.lines().any(|line| line.starts_with(elsewhere)),
            "{stdout}"
        );
    }
}

#[test]
fn busy_spin_runs_when_asked_for() {
    for profile in ["spsc", "fanout4", "latency"] {
        assert_runs(
            &[
                "run",
                "--profile",
                profile,
                "--events",
                "300",
                "--repeat",
                "1",
            ]
            .into_iter()
            .chain(["--peers", "disruptor-spin"])
            .collect::<Vec<_>>(),
            &["diana-bus", "disruptor-spin"],
        );
    }
}

#[test]
fn tiny_rings_exercise_backpressure() {
    for profile in PROFILES {
        assert_runs(
            &[
                "run",
                "--profile",
                profile,
                "--events",
                "1000",
                "--repeat",
                "1",
                "--workers",
                "1",
                "--shards",
                "2",
                "--capacity",
                "2",
                "--batch",
                "1",
            ],
            &implementations(profile),
        );
    }
}

#[test]
fn peers_narrow_the_run() {
    let stdout = assert_runs(
        &[
            "run",
            "--profile",
            "mpsc",
            "--events",
            "2000",
            "--repeat",
            "1",
            "--peers",
            "flume,direct",
        ],
        &["diana-bus", "flume", "direct"],
    );
    assert!(!stdout.contains("crossbeam-channel "), "{stdout}");
    let stdout = assert_runs(
        &[
            "run",
            "--profile",
            "spsc",
            "--events",
            "2000",
            "--peers",
            "none",
        ],
        &["diana-bus"],
    );
    let rows = stdout.lines().filter(|line| line.ends_with('x')).count();
    assert_eq!(rows, 1, "{stdout}");
}

#[test]
fn types_tenants_and_duration_are_taken() {
    let stdout = assert_runs(
        &[
            "run",
            "--profile",
            "types",
            "--types",
            "7",
            "--events",
            "2000",
            "--repeat",
            "1",
            "--peers",
            "crossbeam-channel",
        ],
        &["diana-bus", "crossbeam-channel"],
    );
    assert!(stdout.contains("7 event types"), "{stdout}");
    let stdout = assert_runs(
        &[
            "run",
            "--profile",
            "spsc",
            "--tenants",
            "3",
            "--duration",
            "0.02",
            "--repeat",
            "1",
            "--peers",
            "none",
        ],
        &["diana-bus"],
    );
    assert!(stdout.contains("3 tenants"), "{stdout}");
}

#[test]
fn json_records_every_implementation_with_the_documented_fields() {
    let path = scratch("run.json");
    let path_arg = path.display().to_string();
    assert_runs(
        &[
            "run",
            "--profile",
            "fanout4",
            "--events",
            "4000",
            "--repeat",
            "2",
            "--peers",
            "crossbeam-channel,direct",
            "--json",
            &path_arg,
        ],
        &["diana-bus"],
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["format"], 1);
    assert_eq!(json["profile"], "fanout4");
    let settings = &json["settings"];
    assert_eq!(settings["events"], 4000);
    assert_eq!(settings["repeat"], 2);
    assert_eq!(settings["capacity"], 1024);
    for field in ["workers", "shards", "sample_every"] {
        assert!(settings[field].as_u64().unwrap() > 0, "{field}: {settings}");
    }
    let results = json["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["implementation"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["diana-bus", "crossbeam-channel", "direct"]);
    for result in results {
        assert_eq!(result["profile"], "fanout4");
        assert_eq!(result["params"]["handlers"], 4);
        assert_eq!(result["params"]["keys"], 64);
        assert_eq!(result["params"]["pattern"], "stream");
        assert_eq!(result["events"], 4000);
        let events = result["events_per_s"].as_f64().unwrap();
        let deliveries = result["deliveries_per_s"].as_f64().unwrap();
        assert!(
            events > 0.0 && (deliveries / events - 4.0).abs() < 1e-9,
            "{result}"
        );
        let latency = &result["latency_ns"];
        let (p50, p99, p999) = (
            latency["p50"].as_u64().unwrap(),
            latency["p99"].as_u64().unwrap(),
            latency["p999"].as_u64().unwrap(),
        );
        assert!(0 < p50 && p50 <= p99 && p99 <= p999, "{result}");
        // 4,000 events, 1 in 64 sampled, 4 handlers, 2 runs.
        assert_eq!(result["latency_samples"], 62 * 4 * 2, "{result}");
        assert!(result["allocations_per_event"].as_f64().unwrap() >= 0.0);
        assert!(result["cpu_seconds"].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn diana_runs_the_flow_on_diana_bus_and_its_peers_into_json_compare_and_plot() {
    let path = scratch("diana.json");
    let path_arg = path.display().to_string();
    let summary = assert_runs(
        &[
            "run",
            "--profile",
            "diana",
            "--events",
            "500",
            "--repeat",
            "2",
            "--json",
            &path_arg,
        ],
        &implementations("diana"),
    );
    assert!(summary.contains("64 users of 4 tenant(s)"), "{summary}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["profile"], "diana");
    let results = json["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["implementation"].as_str().unwrap())
        .collect();
    assert_eq!(names, implementations("diana"));
    for result in results {
        let params = &result["params"];
        assert_eq!(params["pattern"], "flow");
        assert_eq!(
            (
                &params["publishers"],
                &params["handlers"],
                &params["tenants"]
            ),
            (&Value::from(64), &Value::from(4), &Value::from(4))
        );
        // One answer per service per interaction.
        let events = result["events_per_s"].as_f64().unwrap();
        let deliveries = result["deliveries_per_s"].as_f64().unwrap();
        assert!(
            events > 0.0 && (deliveries / events - 4.0).abs() < 1e-9,
            "{result}"
        );
        // Every interaction of both runs is timed.
        assert_eq!(result["latency_samples"], 500 * 2, "{result}");
    }

    let output = diana_bus(&["compare", &path_arg, &path_arg]);
    let stdout = stdout(&output);
    assert!(output.status.success(), "{stdout}{}", stderr(&output));
    assert!(
        stdout.lines().any(|line| line.starts_with("tokio-tasks ")),
        "{stdout}"
    );
    let svg = scratch("diana.svg");
    let output = diana_bus(&["plot", &path_arg, "-o", svg.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(text.contains("tokio-tasks") && text.contains("profile diana"));
}

#[test]
fn compare_prints_ratios_b_over_a() {
    let output = diana_bus(&["compare", &fixture("spsc-a.json"), &fixture("spsc-b.json")]);
    let stdout = stdout(&output);
    assert!(output.status.success(), "{stdout}{}", stderr(&output));
    let cells = |implementation: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("{implementation} ")))
            .unwrap_or_else(|| panic!("no {implementation} row in\n{stdout}"));
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    // events/s, deliveries/s, p50, p99, p99.9 of B over A, by hand from the
    // fixtures: diana-bus 25 M/10 M, 500/1000, 4000/4000, 40000/10000 ns.
    assert_eq!(
        cells("diana-bus"),
        ["2.50x", "2.50x", "0.50x", "1.00x", "4.00x"]
    );
    assert_eq!(
        cells("crossbeam-channel"),
        ["0.50x", "0.50x", "1.00x", "2.00x", "1.00x"]
    );
    assert!(stdout.contains("only in A: flume"), "{stdout}");
    assert!(stdout.contains("only in B: tokio-mpsc"), "{stdout}");
    assert!(stdout.contains("differs: workers 2 -> 4"), "{stdout}");
}

#[test]
fn compare_reads_what_run_writes() {
    let (a, b) = (scratch("compare-a.json"), scratch("compare-b.json"));
    for (path, types) in [(&a, "1"), (&b, "10")] {
        let path = path.display().to_string();
        assert_runs(
            &[
                "run",
                "--profile",
                "types",
                "--types",
                types,
                "--events",
                "2000",
                "--repeat",
                "1",
                "--peers",
                "direct",
                "--json",
                &path,
            ],
            &["diana-bus"],
        );
    }
    let output = diana_bus(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    let stdout = stdout(&output);
    assert!(output.status.success(), "{stdout}{}", stderr(&output));
    assert!(stdout.contains("differs: types 1 -> 10"), "{stdout}");
    assert!(
        stdout.lines().any(|line| line.starts_with("direct ")),
        "{stdout}"
    );
}

#[test]
fn plot_draws_an_svg() {
    let svg = scratch("plot.svg");
    let output = diana_bus(&[
        "plot",
        &fixture("spsc-a.json"),
        &fixture("spsc-b.json"),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(200)]);
    assert!(text.trim_end().ends_with("</svg>"));
    for label in [
        "deliveries/s",
        "latency",
        "diana-bus",
        "tokio-mpsc",
        "spsc-b.json",
    ] {
        assert!(text.contains(label), "no {label} in the SVG");
    }
}

#[test]
fn unknown_profile_fails_with_the_known_ones() {
    let output = diana_bus(&["run", "--profile", "nope"]);
    assert!(!output.status.success());
    let stderr = stderr(&output);
    assert!(stderr.contains("unknown profile"), "{stderr}");
    for profile in PROFILES {
        assert!(
            stderr.contains(profile),
            "{profile} not listed in: {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_bus_settings_fail_without_a_panic() {
    for bad in [
        ["--workers", "0"],
        ["--capacity", "0"],
        ["--batch", "0"],
        ["--shards", "0"],
    ] {
        let mut args = vec!["run", "--profile", "spsc", "--events", "10"];
        args.extend(bad);
        let output = diana_bus(&args);
        let stderr = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: bad diana-bus settings"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn bad_run_arguments_are_refused() {
    let run = |extra: &[&'static str]| {
        let mut args = vec!["run", "--profile", "spsc"];
        args.extend(extra);
        args
    };
    assert_fails(&run(&["--events", "0"]), "--events");
    assert_fails(&run(&["--duration", "0"]), "--duration");
    assert_fails(
        &run(&["--events", "10", "--duration", "1"]),
        "cannot be used with",
    );
    assert_fails(&run(&["--peers", "zeromq"]), "unknown peer");
    assert_fails(&run(&["--types", "1001"]), "--types");
    assert_fails(&run(&["--tenants", "0"]), "--tenants");
    assert_fails(
        &["run", "--profile", "latency", "--types", "3"],
        "do not apply to the latency profile",
    );
    assert_fails(
        &["run", "--profile", "diana", "--tenants", "3"],
        "do not apply to the diana profile",
    );
    assert_fails(
        &["run", "--profile", "diana", "--peers", "direct,flume"],
        "flume cannot run the diana profile; the peers that can: direct, tokio-tasks",
    );
    assert_fails(
        &["run", "--profile", "spsc", "--peers", "tokio-tasks"],
        "tokio-tasks cannot run the spsc profile",
    );
}

#[test]
fn run_refuses_a_json_path_it_cannot_write_before_it_runs() {
    // A brief spsc run with `workers` workers, its record to `json`.
    let run = |workers: &str, json: &str| {
        diana_bus(&[
            "run",
            "--profile",
            "spsc",
            "--events",
            "1000",
            "--repeat",
            "1",
            "--peers",
            "none",
            "--workers",
            workers,
            "--json",
            json,
        ])
    };
    let output = run("2", "/nonexistent/run.json");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot write /nonexistent/run.json"));
    assert_eq!(stdout(&output), "", "nothing ran");

    // A run that fails leaves an earlier record as it was; one that
    // succeeds replaces it whole, however long it was.
    let path = scratch("kept.json");
    let earlier = format!("{{\"earlier\": \"{}\"}}", "x".repeat(100_000));
    std::fs::write(&path, &earlier).unwrap();
    let run = |workers: &str| run(workers, path.to_str().unwrap());
    assert!(!run("0").status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), earlier);
    assert!(run("1").status.success());
    let record: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(record["profile"], "spsc");
}

#[test]
fn malformed_or_missing_records_are_refused() {
    let malformed = fixture("malformed.json");
    let good = fixture("spsc-a.json");
    assert_fails(
        &["compare", &good, &malformed],
        "not a diana-bus run record",
    );
    assert_fails(&["compare", &malformed, &good], "malformed.json");
    let svg = scratch("never.svg");
    assert_fails(
        &["plot", &malformed, "-o", svg.to_str().unwrap()],
        "not a diana-bus run record",
    );
    assert!(!svg.exists(), "no SVG for a bad record");
    assert_fails(&["compare", &good, "/nonexistent/b.json"], "cannot read");

    // An image of another kind would get SVG under its name.
    let png = scratch("chart.png");
    assert_fails(&["plot", &good, "-o", png.to_str().unwrap()], "SVG only");
    assert!(!png.exists(), "no SVG named .png");
    // Runs with no results would give empty axes.
    let mut record: Value = serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    record["results"] = serde_json::json!([]);
    let empty = scratch("no-results.json");
    std::fs::write(&empty, record.to_string()).unwrap();
    assert_fails(
        &["plot", empty.to_str().unwrap(), "-o", svg.to_str().unwrap()],
        "nothing to plot",
    );

    // Figures no run measures: plotting 1.5e308 deliveries/s hung.
    let text = std::fs::read_to_string(&good).unwrap();
    for (field, value) in [
        ("deliveries_per_s", serde_json::json!(1.5e308)),
        ("events_per_s", serde_json::json!(-1.0)),
        ("cpu_seconds", serde_json::json!(-0.5)),
    ] {
        let mut record: Value = serde_json::from_str(&text).unwrap();
        record["results"][0][field] = value;
        let bad = scratch(&format!("implausible-{field}.json"));
        std::fs::write(&bad, record.to_string()).unwrap();
        let bad = bad.to_str().unwrap();
        let expected = format!("{field} = ");
        assert_fails(&["plot", bad, "-o", svg.to_str().unwrap()], &expected);
        assert_fails(&["compare", &good, bad], "is not a measured figure");
    }
    assert!(!svg.exists(), "no SVG for a bad record");
}

#[test]
fn demo_runs_the_diana_flow_and_prints_a_trace_and_a_summary() {
    let output = diana_bus(&["demo"]);
    let (stdout, stderr) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // The traced users' steps, one line each.
    for step in [
        "tenant 1 user 1 #",
        " main_menu requested",
        " gamification -> {",
        " narrative -> {",
        " user -> {",
        " emotional ",
        "PointsAwarded +10 for ReactionAdded",
        "published once -> {",
    ] {
        assert!(stdout.contains(step), "no {step:?} in\n{stdout}");
    }
    assert!(stdout.contains("tenant 2 user 1 #"), "{stdout}");
    assert!(
        stdout.contains("24 interactions in") && stdout.contains("24 completion events delivered"),
        "{stdout}"
    );
    assert!(stdout.contains("0 reactions, chapters or completions out of order"));
    for service in ["gamification", "narrative", "user", "admin", "emotional"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(service)),
            "no summary row for {service} in\n{stdout}"
        );
    }
    assert!(stdout.lines().count() < 200, "the trace is bounded");
}

#[test]
fn demo_summarises_a_larger_workload_in_a_bounded_trace() {
    let output = diana_bus(&[
        "demo",
        "--users",
        "30",
        "--tenants",
        "3",
        "--interactions",
        "2",
        "--trace",
        "1",
    ]);
    let stdout = stdout(&output);
    assert!(output.status.success(), "{stdout}\n{}", stderr(&output));
    assert!(
        stdout.contains("180 completion events delivered"),
        "{stdout}"
    );
    assert!(stdout.lines().count() < 80, "{stdout}");
}

#[test]
fn demo_refuses_an_empty_workload_or_an_absurd_trace() {
    assert_fails(&["demo", "--trace", "18446744073709551615"], "--trace");
    for flag in ["--users", "--tenants", "--interactions"] {
        let output = diana_bus(&["demo", flag, "0"]);
        assert!(!output.status.success(), "{flag} 0 was accepted");
        let stderr = stderr(&output);
        assert!(stderr.contains(flag), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn idle_measures_every_implementation_at_rest() {
    let output = diana_bus(&["idle", "--seconds", "0.1", "--workers", "3"]);
    let stdout = stdout(&output);
    assert!(output.status.success(), "{stdout}\n{}", stderr(&output));
    for (implementation, threads) in [
        ("diana-bus", "3"),
        ("crossbeam-channel", "1"),
        ("disruptor-yield", "1"),
        ("disruptor-spin", "1"),
    ] {
        let row = stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(implementation))
            .unwrap_or_else(|| panic!("no {implementation} row in\n{stdout}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], threads, "{row}");
        assert!(
            cells[2]
                .strip_suffix('%')
                .is_some_and(|share| share.parse::<f64>().is_ok()),
            "no share of a core in {row}"
        );
    }
    for window in ["0", "1e-300", "0.09"] {
        assert_fails(&["idle", "--seconds", window], "must be at least 0.1");
    }
    assert_fails(&["idle", "--workers", "0"], "worker threads");
}
