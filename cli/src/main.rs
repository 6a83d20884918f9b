//! `diana-bus`: load profiles for diana-bus, side by side with
//! crossbeam-channel, and a demo of the Diana interaction flow.

mod compare;
mod demo;
mod load;
mod report;

use std::process::ExitCode;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use diana_bus::{Bus, BusBuilder};

use load::{Profile, PROFILES};

/// Load profiles for diana-bus, side by side with crossbeam-channel, and
/// a demo of the Diana interaction flow.
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
    /// Run one profile on diana-bus, then on crossbeam-channel, and compare.
    Run(RunArgs),
    /// Run a simulated Diana bot: five independent services, many users
    /// and tenants, every interaction through the Diana flow, with a trace.
    Demo(DemoArgs),
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
    #[arg(long, value_name = "N", default_value_t = 2)]
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
    /// Events to publish.
    #[arg(long, value_name = "N", default_value_t = 2_000_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// diana-bus worker threads.
    #[arg(long, value_name = "W", default_value_t = 2)]
    workers: usize,
    /// diana-bus shards [default: 4 per worker].
    #[arg(long, value_name = "S")]
    shards: Option<usize>,
    /// Slots per diana-bus shard, and per crossbeam channel.
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
}

fn parse_profile(name: &str) -> Result<&'static Profile, String> {
    Profile::find(name).ok_or_else(|| {
        let known: Vec<_> = PROFILES.iter().map(|profile| profile.name).collect();
        format!("unknown profile; known profiles: {}", known.join(", "))
    })
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Profiles => {
            print!("{}", report::profiles(PROFILES));
            ExitCode::SUCCESS
        }
        Command::Demo(args) => match demo::run(&args.settings()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            match compare::run(
                args.profile,
                args.events,
                args.bus(),
                args.capacity,
                args.repeat as usize,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
