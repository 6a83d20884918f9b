//! The JSON file `run --json` writes and `compare` and `plot` read: the
//! run's settings (only those that do not depend on the machine) and, per
//! implementation, what it measured.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The version of this layout; files of another version are refused.
pub const FORMAT: u32 = 1;

/// More events (or deliveries) a second than any in-process run reaches:
/// a rate above it is no measurement.
const MOST_PER_SECOND: f64 = 1e12;

/// The file a run's record goes to, opened before the run, so that a path
/// that cannot be written fails at once, not after the runs; an earlier
/// record there stays until the new one is written.
#[derive(Debug)]
pub struct RecordFile {
    file: File,
    path: PathBuf,
}

impl RecordFile {
    /// Opens (or creates) the file at `path` for writing, leaving what it
    /// holds.
    pub fn create(path: &Path) -> Result<Self, String> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(|file| RecordFile {
                file,
                path: path.to_owned(),
            })
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }

    /// Writes `record` into the file as pretty JSON, in place of what it
    /// held.
    pub fn write(mut self, record: &Record) -> Result<(), String> {
        let json = serde_json::to_string_pretty(record).expect("a record serializes");
        self.file
            .set_len(0)
            .and_then(|()| writeln!(self.file, "{json}"))
            .map_err(|error| format!("cannot write {}: {error}", self.path.display()))
    }
}

/// One `diana-bus run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`FORMAT`].
    pub format: u32,
    /// The profile run.
    pub profile: String,
    /// How it was run.
    pub settings: Settings,
    /// One entry per implementation, diana-bus first.
    pub results: Vec<Measured>,
}

/// The settings of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Events per run, when given with `--events` (else `duration_s`).
    pub events: Option<u64>,
    /// Target seconds per run, when given with `--duration`.
    pub duration_s: Option<f64>,
    /// Runs of each implementation; the figures are medians over them.
    pub repeat: u64,
    /// diana-bus worker threads.
    pub workers: usize,
    /// diana-bus shards.
    pub shards: usize,
    /// Slots per diana-bus shard, and per peer queue.
    pub capacity: usize,
    /// `--batch`, if given.
    pub batch: Option<usize>,
    /// One event in this many is timed from publish to handler.
    pub sample_every: u64,
}

/// The load's shape, as run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// "stream", "round-trip" or "flow".
    pub pattern: String,
    /// Publisher threads (a flow's users).
    pub publishers: usize,
    /// Handlers that see every event (a flow's services).
    pub handlers: usize,
    /// Ordering keys (0: unkeyed).
    pub keys: u64,
    /// Event types (0: one plain type).
    pub types: usize,
    /// Tenants (0: none).
    pub tenants: u64,
}

/// What one implementation measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Its name (see `diana-bus run --help` for `--peers`).
    pub implementation: String,
    /// The profile.
    pub profile: String,
    /// The profile's shape with the overrides of the command line.
    pub params: Params,
    /// Events per run.
    pub events: u64,
    /// Median events per second (round trips per second for `latency`,
    /// interactions per second for `diana`).
    pub events_per_s: f64,
    /// Median handler runs per second (service answers for `diana`).
    pub deliveries_per_s: f64,
    /// Latency percentiles over every run's samples.
    pub latency_ns: Percentiles,
    /// Latencies recorded, over every run.
    pub latency_samples: u64,
    /// Heap allocations in the whole process during the timed part of the
    /// runs, per event.
    pub allocations_per_event: f64,
    /// Median process CPU time (user + system) of one run's timed part.
    pub cpu_seconds: f64,
}

/// Latency percentiles, in nanoseconds (0 when nothing was sampled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
}

impl Record {
    /// Reads a record written through a [`RecordFile`], refusing one whose
    /// figures no run measures (negative, not finite, or rates beyond
    /// [`MOST_PER_SECOND`]).
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let record: Record = serde_json::from_str(&text).map_err(|error| {
            format!(
                "{} is not a diana-bus run record (written by `diana-bus run --json`): {error}",
                path.display()
            )
        })?;
        if record.format != FORMAT {
            return Err(format!(
                "{} has record format {}, this diana-bus reads format {FORMAT}",
                path.display(),
                record.format
            ));
        }
        for measured in &record.results {
            measured.check().map_err(|error| {
                format!("{}: {}: {error}", path.display(), measured.implementation)
            })?;
        }
        Ok(record)
    }
}

impl Measured {
    /// Whether its figures are ones a run measures.
    fn check(&self) -> Result<(), String> {
        let figures = [
            ("events_per_s", self.events_per_s, MOST_PER_SECOND),
            ("deliveries_per_s", self.deliveries_per_s, MOST_PER_SECOND),
            (
                "allocations_per_event",
                self.allocations_per_event,
                f64::MAX,
            ),
            ("cpu_seconds", self.cpu_seconds, f64::MAX),
        ];
        for (name, value, most) in figures {
            if !(value.is_finite() && (0.0..=most).contains(&value)) {
                return Err(format!("{name} = {value} is not a measured figure"));
            }
        }
        Ok(())
    }
}
