//! The `diana-bus` binary end to end: every profile runs on both
//! implementations, the demo runs the Diana flow and prints its trace, and
//! bad input gets a clear error and a non-zero exit, never a panic.

use std::process::{Command, Output};

const PROFILES: [&str; 3] = ["spsc", "mpsc", "fanout4"];

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

/// Asserts a successful run whose table has a row for each implementation.
fn assert_compared(args: &[&str]) {
    let output = diana_bus(args);
    let (stdout, stderr) = (stdout(&output), stderr(&output));
    assert!(
        output.status.success(),
        "{args:?} failed:\n{stdout}\n{stderr}"
    );
    for implementation in ["diana-bus", "crossbeam-channel"] {
        assert!(
            stdout
                .lines()
                .any(|line| line.starts_with(&format!("{implementation} "))),
            "{args:?}: no {implementation} row in\n{stdout}"
        );
    }
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
fn every_profile_runs_on_both_implementations() {
    for profile in PROFILES {
        assert_compared(&["run", "--profile", profile, "--events", "5000"]);
    }
}

#[test]
fn tiny_rings_exercise_backpressure() {
    for profile in PROFILES {
        assert_compared(&[
            "run",
            "--profile",
            profile,
            "--events",
            "3000",
            "--workers",
            "1",
            "--shards",
            "2",
            "--capacity",
            "2",
            "--batch",
            "1",
        ]);
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
fn zero_events_is_refused() {
    let output = diana_bus(&["run", "--profile", "spsc", "--events", "0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--events"));
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
fn demo_refuses_an_empty_workload() {
    for flag in ["--users", "--tenants", "--interactions"] {
        let output = diana_bus(&["demo", flag, "0"]);
        assert!(!output.status.success(), "{flag} 0 was accepted");
        let stderr = stderr(&output);
        assert!(stderr.contains(flag), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
