//! Services: a set of handlers subscribed together.

use std::sync::Arc;

use crate::bus::Bus;
use crate::error::ConfigError;

/// A service: the handlers and responders of one part of a bot
/// (gamification, narrative, ...), subscribed at once by
/// [`Bus::register`]. The Rust form of the Python bus's `auto_subscribe`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use diana_bus::{Bus, ConfigError, Context, Event, HandlerResult, Service};
///
/// struct ReactionAdded { points: u64 }
/// impl Event for ReactionAdded {}
///
/// #[derive(Default)]
/// struct Gamification { points: AtomicU64 }
///
/// impl Service for Gamification {
///     fn register(self: Arc<Self>, bus: &Bus) -> Result<(), ConfigError> {
///         bus.subscriber::<ReactionAdded>().name("gamification").subscribe(
///             move |r: &ReactionAdded, _: &Context| -> HandlerResult {
///                 self.points.fetch_add(r.points, Ordering::Relaxed);
///                 Ok(())
///             },
///         );
///         Ok(())
///     }
/// }
///
/// let bus = Bus::builder().workers(1).build()?;
/// let gamification = Arc::new(Gamification::default());
/// bus.register(gamification.clone())?;
/// bus.publish(ReactionAdded { points: 5 })?;
/// bus.flush();
/// assert_eq!(gamification.points.load(Ordering::Relaxed), 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Service: Send + Sync + 'static {
    /// Subscribes every handler of the service to `bus`; fails with the
    /// first subscription refused (an async handler on a bus without a
    /// runtime, say: see [`crate::SubscriberBuilder::subscribe_async`]).
    /// The subscriptions made before it stay.
    fn register(self: Arc<Self>, bus: &Bus) -> Result<(), ConfigError>;
}

impl Bus {
    /// Subscribes every handler of `service` (see [`Service`]); fails as
    /// [`Service::register`] does.
    pub fn register<S: Service>(&self, service: Arc<S>) -> Result<(), ConfigError> {
        service.register(self)
    }
}
