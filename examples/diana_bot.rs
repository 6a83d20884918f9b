//! A simulated Diana bot: gamification, narrative, user, admin and
//! emotional services, each an independent `Service`, driven through the
//! Diana interaction flow for the users of two tenants, with a readable
//! trace and a summary.
//!
//! ```bash
//! cargo run --example diana_bot
//! cargo run --release -- demo --users 50 --tenants 3   # the same, with options
//! ```
//!
//! The bot lives in `cli/src/demo/`; `diana-bus demo` runs the very same
//! code (this package cannot depend on the CLI, which depends on it).

// Async handlers (the emotional service's) are not built for loom.
#[cfg(not(diana_bus_loom))]
#[path = "../cli/src/demo/mod.rs"]
mod demo;

#[cfg(diana_bus_loom)]
fn main() {}

#[cfg(not(diana_bus_loom))]
fn main() -> std::process::ExitCode {
    use std::process::ExitCode;

    match demo::run(&demo::Settings::default()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
