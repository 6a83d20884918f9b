//! The progress bar `run` draws while it works: on stderr, and only when
//! stderr is a terminal, so logs and pipes get the table alone.

use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress over the runs of one `diana-bus run`.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `runs` runs, drawn if stderr is a terminal, hidden if not.
    pub fn new(runs: u64) -> Self {
        let terminal = io::stderr().is_terminal();
        let target = if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(runs), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} runs  {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        if terminal {
            // Only a drawn bar needs its ticker thread.
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        Self { bar }
    }

    /// A run of `what` starts.
    pub fn running(&self, what: &str) {
        self.bar.set_message(what.to_owned());
    }

    /// A run is done.
    pub fn done(&self) {
        self.bar.inc(1);
    }

    /// Erases the bar before the table is printed.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
