//! `diana-bus`: load profiles for diana-bus, side by side with its peers,
//! the tools to compare and plot the runs, and a demo of the Diana
//! interaction flow.

mod alloc_count;
mod compare;
mod demo;
mod idle;
mod load;
mod plot;
mod progress;
mod record;
mod report;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use diana_bus::{Bus, BusBuilder};

use load::{Pattern, Peer, Profile, MAX_TYPES, PEERS, PROFILES};
use record::{Record, RecordFile};
use run::{Length, Plan};

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

/// Load profiles for diana-bus, side by side with its peers, and a demo
/// of the Diana interaction flow.
#[derive(Debug, Parser)]
#[command(name = "diana-bus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the load profiles.
    Profiles,
    /// Run one profile on diana-bus and on its peers, alternately, and
    /// print a summary of the medians.
    Run(RunArgs),
    /// Run a simulated Diana bot: five independent services, many users
    /// and tenants, every interaction through the Diana flow, with a trace.
    Demo(DemoArgs),
    /// Measure the CPU that diana-bus and its peers use while no events
    /// come: each takes one event, then sits idle.
    Idle(IdleArgs),
    /// Print the ratios B/A between two runs saved with `run --json`.
    Compare {
        /// The first run (the denominator).
        a: PathBuf,
        /// The second run.
        b: PathBuf,
    },
    /// Draw throughput and latency percentiles of runs saved with `run
    /// --json` into an SVG file.
    Plot {
        /// The runs, one series each.
        #[arg(required = true, value_name = "RUN.json")]
        runs: Vec<PathBuf>,
        /// The SVG file to write.
        #[arg(short, long, value_name = "FILE.svg")]
        output: PathBuf,
    },
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// Seconds each implementation sits idle while its CPU time is read
    /// (at least 0.1: shorter windows are below what the CPU clocks tell).
    #[arg(long, value_name = "S", default_value = "5", value_parser = parse_idle_window)]
    seconds: Duration,
    /// diana-bus worker threads.
    #[arg(long, value_name = "W", default_value_t = 2)]
    workers: usize,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Users per tenant.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    users: u64,
    /// Tenants (bots) sharing the bus.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    tenants: u64,
    /// Interactions per user.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    interactions: u64,
    /// How long an interaction waits for its services, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    deadline_ms: u64,
    /// Users traced step by step (and up to twice as many troubled
    /// interactions of others); the rest is only summarised.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    trace: u64,
    /// diana-bus worker threads.
    #[arg(long, value_name = "W", default_value_t = 4)]
    workers: usize,
}

impl DemoArgs {
    fn settings(&self) -> demo::Settings {
        demo::Settings {
            users: self.users,
            tenants: self.tenants,
            interactions: self.interactions,
            deadline: Duration::from_millis(self.deadline_ms),
            workers: self.workers,
            traced: self.trace,
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The load profile (see `diana-bus profiles`).
    #[arg(long, value_name = "NAME", value_parser = parse_profile)]
    profile: &'static Profile,
    /// Events per run [default: the profile's, 2,000,000 (100,000 round
    /// trips for latency, 100,000 interactions for diana)].
    #[arg(long, value_name = "N", conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..))]
    events: Option<u64>,
    /// Seconds per run instead of a number of events: each implementation's
    /// events are sized by a calibration run.
    #[arg(long, value_name = "S", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// diana-bus worker threads.
    #[arg(long, value_name = "W", default_value_t = 2)]
    workers: usize,
    /// diana-bus shards [default: 4 per worker].
    #[arg(long, value_name = "S")]
    shards: Option<usize>,
    /// Slots per diana-bus shard, and per peer queue.
    #[arg(long, value_name = "C", default_value_t = 1024)]
    capacity: usize,
    /// Most events a diana-bus worker takes from a shard at once [default:
    /// 256, or the capacity if smaller].
    #[arg(long, value_name = "B")]
    batch: Option<usize>,
    /// Alternating runs of each implementation; the table shows medians.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..1000))]
    repeat: u64,
    /// The peers to run beside diana-bus, comma-separated, or `none`:
    /// direct, crossbeam-channel, flume, kanal, thingbuf, tokio-mpsc, tokio-broadcast,
    /// std-sync-channel, disruptor-spin, disruptor-yield, and for the diana
    /// profile only direct and tokio-tasks [default: all that run the
    /// profile, but disruptor-spin when its busy-spinning threads
    /// outnumber the cores].
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_peer)]
    peers: Option<Vec<Option<&'static Peer>>>,
    /// Event types the events take in turn, each with its own subscription
    /// (1 to 1,000) [default: 1,000 for the types profile].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TYPES as u64))]
    types: Option<u64>,
    /// Tenants the events spread over, tenant 1 taking half [default:
    /// 10,000 for the tenants profile].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    tenants: Option<u64>,
    /// Also write the results to this JSON file (for `compare` and `plot`).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

impl RunArgs {
    /// The bus these arguments ask for.
    fn bus(&self) -> BusBuilder {
        let builder = Bus::builder().workers(self.workers).capacity(self.capacity);
        let builder = match self.shards {
            Some(shards) => builder.shards(shards),
            None => builder,
        };
        match self.batch {
            Some(batch) => builder.batch(batch),
            None => builder,
        }
    }

    /// What to run.
    fn plan(&self) -> Result<Plan, String> {
        let mut shape = self.profile.shape;
        if shape.pattern != Pattern::Stream && (self.types.is_some() || self.tenants.is_some()) {
            return Err(format!(
                "--types and --tenants do not apply to the {} profile",
                self.profile.name
            ));
        }
        if let Some(types) = self.types {
            shape.types = types as usize;
        }
        if let Some(tenants) = self.tenants {
            shape.tenants = tenants;
        }
        let length = match (self.events, self.duration) {
            (_, Some(duration)) => Length::Duration(duration),
            (events, None) => Length::Events(events.unwrap_or(self.profile.default_events)),
        };
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        let (peers, skipped) = match &self.peers {
            None => PEERS
                .iter()
                .filter(|peer| peer.runs(&shape))
                .partition(|peer| peer.fits(&shape, cores)),
            Some(peers) => {
                let peers: Vec<&Peer> = peers.iter().flatten().copied().collect();
                if let Some(peer) = peers.iter().find(|peer| !peer.runs(&shape)) {
                    let able: Vec<_> = PEERS
                        .iter()
                        .filter(|peer| peer.runs(&shape))
                        .map(|peer| peer.name)
                        .collect();
                    return Err(format!(
                        "{} cannot run the {} profile; the peers that can: {}",
                        peer.name,
                        self.profile.name,
                        able.join(", ")
                    ));
                }
                (peers, Vec::new())
            }
        };
        Ok(Plan {
            profile: self.profile,
            shape,
            length,
            repeat: self.repeat,
            capacity: self.capacity,
            batch: self.batch,
            peers,
            skipped,
            cores,
        })
    }
}

fn parse_profile(name: &str) -> Result<&'static Profile, String> {
    Profile::find(name).ok_or_else(|| {
        let known: Vec<_> = PROFILES.iter().map(|profile| profile.name).collect();
        format!("unknown profile; known profiles: {}", known.join(", "))
    })
}

/// A peer by name; `none` for no peer at all.
fn parse_peer(name: &str) -> Result<Option<&'static Peer>, String> {
    if name == "none" {
        return Ok(None);
    }
    Peer::find(name).map(Some).ok_or_else(|| {
        let known: Vec<_> = PEERS.iter().map(|peer| peer.name).collect();
        format!("unknown peer; known peers: {}, or none", known.join(", "))
    })
}

fn parse_duration(seconds: &str) -> Result<Duration, String> {
    parse_seconds(seconds, 0.001)
}

fn parse_idle_window(seconds: &str) -> Result<Duration, String> {
    parse_seconds(seconds, 0.1)
}

/// Seconds from `least` to an hour.
fn parse_seconds(seconds: &str, least: f64) -> Result<Duration, String> {
    let seconds: f64 = seconds
        .parse()
        .map_err(|_| "not a number of seconds".to_owned())?;
    if !(least..=3600.0).contains(&seconds) {
        return Err(format!("must be at least {least} and at most 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn execute(command: Command) -> Result<(), String> {
    match command {
        Command::Profiles => {
            print!("{}", report::profiles(PROFILES));
            Ok(())
        }
        Command::Demo(args) => demo::run(&args.settings())
            .map(|_| ())
            .map_err(|error| error.to_string()),
        Command::Run(args) => {
            let plan = args.plan()?;
            let file = args.json.as_deref().map(RecordFile::create).transpose()?;
            let record = run::run(&plan, args.bus())?;
            match file {
                Some(file) => file.write(&record),
                None => Ok(()),
            }
        }
        Command::Idle(args) => {
            let rows = idle::measure(args.seconds, args.workers)?;
            print!("{}", idle::render(args.seconds, &rows));
            Ok(())
        }
        Command::Compare { a, b } => {
            let (first, second) = (Record::read(&a)?, Record::read(&b)?);
            let (a, b) = (a.display().to_string(), b.display().to_string());
            print!("{}", compare::render(&a, &first, &b, &second));
            Ok(())
        }
        Command::Plot { runs, output } => {
            let runs = runs
                .iter()
                .map(|path| Ok((path.display().to_string(), Record::read(path)?)))
                .collect::<Result<Vec<_>, String>>()?;
            plot::plot(&runs, &output)?;
            println!("wrote {}", output.display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match execute(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
