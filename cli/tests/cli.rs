//! The `diana-bus` binary end to end: every profile runs on both
//! implementations, and bad input gets a clear error and a non-zero exit,
//! never a panic.

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
