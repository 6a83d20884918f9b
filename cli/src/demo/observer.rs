//! The bot's log: watches the traffic the services cause, traces it for
//! the traced users, and checks the flow's promises.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use diana_bus::diana::{DianaInteractionCompleted, LevelUp, PieceUnlocked, PointsAwarded};
use diana_bus::{Bus, ConfigError, Context, HandlerResult, Service};

use super::per_user::PerUser;
use super::trace::Trace;

/// Subscribes to the follow-ups (`PointsAwarded`, `LevelUp`,
/// `PieceUnlocked`) and to every `DianaInteractionCompleted`, counting
/// them and checking that completions are unique and, per user, in order.
#[derive(Debug)]
pub struct Observer {
    trace: Arc<Trace>,
    points: AtomicI64,
    level_ups: AtomicU64,
    pieces: AtomicU64,
    completions: AtomicU64,
    ids: Mutex<HashSet<i64>>,
    duplicates: AtomicU64,
    last_completion: PerUser<i64>,
    out_of_order: AtomicU64,
}

/// What the observer saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// Points awarded, over every user.
    pub points: i64,
    /// `LevelUp` events.
    pub level_ups: u64,
    /// `PieceUnlocked` events.
    pub pieces: u64,
    /// `DianaInteractionCompleted` events.
    pub completions: u64,
    /// Completions whose interaction id was seen before.
    pub duplicates: u64,
    /// Completions that came before an earlier one of the same user.
    pub out_of_order: u64,
}

impl Observer {
    /// An observer tracing to `trace`.
    pub fn new(trace: Arc<Trace>) -> Self {
        Observer {
            trace,
            points: AtomicI64::new(0),
            level_ups: AtomicU64::new(0),
            pieces: AtomicU64::new(0),
            completions: AtomicU64::new(0),
            ids: Mutex::new(HashSet::new()),
            duplicates: AtomicU64::new(0),
            last_completion: PerUser::default(),
            out_of_order: AtomicU64::new(0),
        }
    }

    /// What it saw so far.
    pub fn observed(&self) -> Observed {
        Observed {
            points: self.points.load(Ordering::Relaxed),
            level_ups: self.level_ups.load(Ordering::Relaxed),
            pieces: self.pieces.load(Ordering::Relaxed),
            completions: self.completions.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            out_of_order: self.out_of_order.load(Ordering::Relaxed),
        }
    }
}

impl Service for Observer {
    fn register(self: Arc<Self>, bus: &Bus) -> Result<(), ConfigError> {
        let this = self.clone();
        bus.subscriber::<PointsAwarded>().name("log").subscribe(
            move |award: &PointsAwarded, ctx: &Context| -> HandlerResult {
                this.points.fetch_add(award.points(), Ordering::Relaxed);
                let user = award.user_id().get();
                let text = format!(
                    "  PointsAwarded {:+} for {}",
                    award.points(),
                    award.source_event()
                );
                this.trace.user(ctx.tenant(), user, text);
                Ok(())
            },
        );
        let this = self.clone();
        bus.subscriber::<LevelUp>().name("log").subscribe(
            move |up: &LevelUp, ctx: &Context| -> HandlerResult {
                this.level_ups.fetch_add(1, Ordering::Relaxed);
                let rewards = serde_json::to_string(up.rewards()).unwrap_or_default();
                let text = format!("  LevelUp to {} {rewards}", up.new_level());
                this.trace.user(ctx.tenant(), up.user_id().get(), text);
                Ok(())
            },
        );
        let this = self.clone();
        bus.subscriber::<PieceUnlocked>().name("log").subscribe(
            move |piece: &PieceUnlocked, ctx: &Context| -> HandlerResult {
                this.pieces.fetch_add(1, Ordering::Relaxed);
                let text = format!(
                    "  PieceUnlocked {} ({})",
                    piece.piece_id(),
                    piece.unlock_method()
                );
                this.trace.user(ctx.tenant(), piece.user_id().get(), text);
                Ok(())
            },
        );
        bus.subscriber::<DianaInteractionCompleted>()
            .name("log")
            .subscribe(
                move |done: &DianaInteractionCompleted, ctx: &Context| -> HandlerResult {
                    self.completions.fetch_add(1, Ordering::Relaxed);
                    let id = done.interaction_id();
                    let fresh = self
                        .ids
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(id);
                    if !fresh {
                        self.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    let user = done.user_id().get();
                    let in_order = self.last_completion.with(ctx.tenant(), user, |last| {
                        let in_order = id > *last;
                        *last = id;
                        in_order
                    });
                    if !in_order {
                        self.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                },
            );
        Ok(())
    }
}
