//! The timed part of every flow run, the same for every implementation:
//! the shape's users as tasks on an async runtime, each running its share
//! of the interactions one after the other, and timing each from its
//! request to its completion.

use std::future::Future;
use std::panic::resume_unwind;
use std::sync::Arc;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinSet;

use super::meter::Reading;
use super::publishers::share;
use super::runner::Timed;
use super::{clock, Latencies, RunError, Shape};

/// A user of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    /// Its Diana user id, from 1 up: the key of its events.
    pub id: i64,
    /// Its tenant, from 1 up (the shape's tenants take turns), or 0 when
    /// the shape has none.
    pub tenant: u64,
}

impl User {
    /// User number `index` (from 0) of `shape`.
    fn nth(shape: &Shape, index: usize) -> Self {
        Self {
            id: index as i64 + 1,
            tenant: (index as u64)
                .checked_rem(shape.tenants)
                .map_or(0, |tenant| tenant + 1),
        }
    }
}

/// The runtime `builder` makes, or why it could not.
pub fn runtime(builder: &mut Builder) -> Result<Runtime, RunError> {
    builder
        .build()
        .map_err(|error| RunError::Runtime(error.to_string()))
}

/// Runs the interactions `1..=events` of `shape` on `runtime`: one task per
/// user, each a contiguous share of the ids, one after the other through
/// `interact(user, id)`, which resolves to whether the interaction
/// completed (a user stops at the first that did not). Then `interact` is
/// dropped (closing the channels it owns) and `settle` waits until every
/// completion is handled.
///
/// The clock starts before the users are spawned (which takes
/// microseconds) and stops when `settle` returns.
pub fn run<I, F, S>(shape: &Shape, events: u64, runtime: &Runtime, interact: I, settle: S) -> Timed
where
    I: Fn(User, u64) -> F + Clone + Send + 'static,
    F: Future<Output = bool> + Send + 'static,
    S: FnOnce(),
{
    let users = shape.publishers;
    let latencies = Arc::new(Latencies::new(users));
    let (start, accepted) = runtime.block_on(async {
        let start = Reading::now();
        let mut tasks = JoinSet::new();
        for index in 0..users {
            let (user, ids) = (User::nth(shape, index), share(events, users, index));
            let (interact, latencies) = (interact.clone(), Arc::clone(&latencies));
            tasks.spawn(async move {
                let mut accepted = 0;
                for id in ids {
                    let asked = clock::now();
                    if !interact(user, id).await {
                        break;
                    }
                    latencies.record(index, clock::since(asked));
                    accepted += 1;
                }
                accepted
            });
        }
        let mut accepted = 0;
        while let Some(user) = tasks.join_next().await {
            // Not a cancellation: nothing aborts the tasks, and the runtime
            // outlives them.
            accepted += user.unwrap_or_else(|error| resume_unwind(error.into_panic()));
        }
        (start, accepted)
    });
    drop(interact);
    settle();
    let window = start.window();
    Timed {
        window,
        accepted,
        latency: latencies.take(),
    }
}

#[cfg(test)]
mod tests {
    // Paths instead of `use`: see the note in `publishers.rs`.
    #[test]
    fn users_take_the_tenants_in_turn() {
        let shape = super::Shape::flow(5, 2);
        let users: Vec<_> = (0..5)
            .map(|index| super::User::nth(&shape, index))
            .map(|user| (user.id, user.tenant))
            .collect();
        assert_eq!(users, [(1, 1), (2, 2), (3, 1), (4, 2), (5, 1)]);
        let shape = super::Shape::flow(2, 0);
        assert_eq!(super::User::nth(&shape, 1).tenant, 0);
    }

    #[test]
    fn every_interaction_runs_once_and_is_timed() {
        let runtime = super::runtime(&mut tokio::runtime::Builder::new_current_thread()).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&seen);
        let interact = move |user: super::User, id| {
            log.lock().unwrap().push((user.id, id));
            async { true }
        };
        let timed = super::run(&super::Shape::flow(3, 1), 10, &runtime, interact, || {});
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(
            seen,
            [
                (1, 1),
                (1, 2),
                (1, 3),
                (2, 4),
                (2, 5),
                (2, 6),
                (3, 7),
                (3, 8),
                (3, 9),
                (3, 10)
            ]
        );
        assert_eq!((timed.accepted, timed.latency.len()), (10, 10));
    }
}
