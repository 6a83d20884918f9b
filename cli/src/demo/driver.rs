//! The driver: plays every user of every tenant through the Diana flow,
//! traces a few, summarises the rest, and checks the flow's promises.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diana_bus::diana::{
    Coordinator, CoordinatorError, DianaInterfaceRequested, DomainError, NarrativeProgression,
    Outcome, ReactionAdded, UserMessage, UserStartedBot,
};
use diana_bus::{Bus, ConfigError, Event, Meta, PublishError, TenantId};

use super::admin::Admin;
use super::emotional::Emotional;
use super::gamification::Gamification;
use super::narrative::Narrative;
use super::observer::Observer;
use super::trace::Trace;
use super::user::Users;

/// The services, in the order they are registered.
const SERVICES: [&str; 5] = ["gamification", "narrative", "user", "admin", "emotional"];
/// The interfaces users ask for, in turn.
const INTERFACES: [&str; 3] = ["main_menu", "profile", "story"];
/// What users say, in turn (the emotional service reads the mood from it).
const MESSAGES: [&str; 3] = ["hola!", "what happens next?", "ok"];
const NAMES: [&str; 8] = [
    "ana", "bruno", "carla", "diego", "eva", "fede", "gala", "hugo",
];
/// Points per reaction.
const REACTION_POINTS: i64 = 10;
/// Every this many interactions (by id), the emotional service is slow.
const SLOW_EVERY: i64 = 5;

/// The workload of a demo run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Users per tenant.
    pub users: u64,
    /// Tenants sharing the bus.
    pub tenants: u64,
    /// Interactions per user.
    pub interactions: u64,
    /// How long an interaction waits for its services.
    pub deadline: Duration,
    /// Bus worker threads.
    pub workers: usize,
    /// Users traced in full (and twice as many interactions of other
    /// users where a service failed or timed out).
    pub traced: u64,
}

impl Default for Settings {
    /// A small workload that runs in well under a second.
    fn default() -> Self {
        Settings {
            users: 4,
            tenants: 2,
            interactions: 3,
            deadline: Duration::from_millis(100),
            workers: 4,
            traced: 2,
        }
    }
}

/// What a demo run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Interactions run.
    pub interactions: u64,
    /// (answered, failed, timed out) by service.
    pub services: BTreeMap<String, [u64; 3]>,
}

/// Why a demo run failed.
#[derive(Debug)]
pub enum DemoError {
    /// Settings the demo cannot run (zero users, ids out of range).
    Settings(String),
    /// The bus refused its settings, or a service's subscription.
    Bus(ConfigError),
    /// The async runtime could not start.
    Runtime(std::io::Error),
    /// An event could not be built or published.
    Event(String),
    /// An interaction could not run.
    Interaction(CoordinatorError),
    /// A promise of the flow did not hold (a bug).
    Broken(Vec<String>),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::Settings(why) => write!(f, "bad demo settings: {why}"),
            DemoError::Bus(error) => write!(f, "bad diana-bus settings: {error}"),
            DemoError::Runtime(error) => write!(f, "the async runtime did not start: {error}"),
            DemoError::Event(why) => write!(f, "an event was refused: {why}"),
            DemoError::Interaction(error) => write!(f, "{error}"),
            DemoError::Broken(promises) => {
                write!(f, "the flow broke its promises: {}", promises.join("; "))
            }
        }
    }
}

impl std::error::Error for DemoError {}

impl From<ConfigError> for DemoError {
    fn from(error: ConfigError) -> Self {
        DemoError::Bus(error)
    }
}

impl From<DomainError> for DemoError {
    fn from(error: DomainError) -> Self {
        DemoError::Event(error.to_string())
    }
}

impl<E> From<PublishError<E>> for DemoError {
    fn from(error: PublishError<E>) -> Self {
        DemoError::Event(error.to_string())
    }
}

/// Runs the simulated bot with `settings`, printing the trace and the
/// summary to standard output.
pub fn run(settings: &Settings) -> Result<Summary, DemoError> {
    let users = i64::try_from(settings.users)
        .ok()
        .filter(|users| *users > 0)
        .ok_or_else(|| DemoError::Settings("--users must be from 1 to 2^63-1".into()))?;
    if settings.tenants == 0 || settings.interactions == 0 {
        return Err(DemoError::Settings(
            "--tenants and --interactions must be at least 1".into(),
        ));
    }
    // The users play on this thread (`block_on`); the async handlers run
    // on the runtime's own worker, which keeps going while `flush` waits.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .map_err(DemoError::Runtime)?;
    let bus = Bus::builder()
        .workers(settings.workers)
        .runtime(runtime.handle().clone())
        .build()?;
    let trace = Arc::new(Trace::new(
        settings.tenants,
        settings.traced,
        2 * settings.traced,
    ));
    let deadline = settings.deadline;

    // Independent services: each registers its own handlers, none knows
    // another. Admin is scoped to a tenant, so each tenant has its own.
    let gamification = Arc::new(Gamification::default());
    let narrative = Arc::new(Narrative::default());
    bus.register(gamification.clone())?;
    bus.register(narrative.clone())?;
    bus.register(Arc::new(Users::default()))?;
    for tenant in 1..=settings.tenants {
        bus.register(Arc::new(Admin::new(TenantId(tenant), vec![1])))?;
    }
    let emotional = Arc::new(Emotional::new(SLOW_EVERY, deadline * 3 / 2));
    bus.register(emotional.clone())?;
    let observer = Arc::new(Observer::new(trace.clone()));
    bus.register(observer.clone())?;
    let coordinator = Coordinator::new(&bus, deadline);

    let total = settings.tenants * settings.users * settings.interactions;
    trace.say(format_args!(
        "diana-bus demo: {} tenants x {} users x {} interactions = {total} interactions, \
         deadline {} ms, {} workers",
        settings.tenants,
        settings.users,
        settings.interactions,
        deadline.as_millis(),
        settings.workers
    ));
    trace.say(format_args!(
        "services: {} (admin: one per tenant), independent, meeting only through events",
        SERVICES.join(", ")
    ));
    trace.say(format_args!(
        "tracing {} users in full, and up to {} troubled interactions of others; \
         every user is in the summary\n",
        settings.traced.min(settings.tenants * settings.users),
        2 * settings.traced
    ));

    let started = Instant::now();
    let outcomes = runtime.block_on(async {
        let mut players = Vec::new();
        for user in 1..=users {
            for tenant in 1..=settings.tenants {
                players.push(tokio::spawn(play(
                    bus.clone(),
                    coordinator.clone(),
                    trace.clone(),
                    TenantId(tenant),
                    user,
                    settings.interactions,
                )));
            }
        }
        let mut outcomes = Vec::new();
        for player in players {
            let played = player
                .await
                .map_err(|e| DemoError::Event(format!("a user's task ended early: {e}")))?;
            outcomes.extend(played?);
        }
        Ok::<_, DemoError>(outcomes)
    });
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(error) => {
            // Drain while the runtime still runs the async handlers.
            bus.shutdown();
            return Err(error);
        }
    };
    bus.flush();
    let elapsed = started.elapsed();

    let mut summary = Summary {
        interactions: outcomes.len() as u64,
        services: SERVICES.iter().map(|s| (s.to_string(), [0; 3])).collect(),
    };
    for outcome in &outcomes {
        let done = &outcome.completed;
        let lists = [
            done.responses().keys().cloned().collect::<Vec<_>>(),
            done.failed().to_vec(),
            done.timed_out().to_vec(),
        ];
        for (column, services) in lists.iter().enumerate() {
            for service in services {
                summary.services.entry(service.clone()).or_default()[column] += 1;
            }
        }
    }
    let broken = check(settings, &summary, &gamification, &narrative, &observer);
    report(
        &trace,
        &bus,
        &summary,
        elapsed,
        &gamification,
        &narrative,
        &observer,
    );
    trace.say(format_args!(
        "  tenants: the {} users of each tenant kept their own state ({} points each)",
        settings.users,
        REACTION_POINTS * settings.interactions as i64
    ));
    bus.shutdown();
    if broken.is_empty() {
        Ok(summary)
    } else {
        Err(DemoError::Broken(broken))
    }
}

/// One user of one tenant: starts the bot, then per interaction sends a
/// message, reacts, reaches the next chapter and asks Diana for an
/// interface.
async fn play(
    bus: Bus,
    coordinator: Coordinator,
    trace: Arc<Trace>,
    tenant: TenantId,
    user: i64,
    interactions: u64,
) -> Result<Vec<Outcome>, DemoError> {
    let meta = Meta::new().tenant(tenant);
    let name = format!("{}{user}", NAMES[(user - 1) as usize % NAMES.len()]);
    publish(&bus, UserStartedBot::new(user, Some(name))?, meta).await?;
    let mut outcomes = Vec::new();
    for step in 1..=interactions as i64 {
        let turn = (step - 1) as usize;
        let said = MESSAGES[turn % MESSAGES.len()];
        publish(&bus, UserMessage::new(user, said, timestamp(step))?, meta).await?;
        publish(&bus, ReactionAdded::new(user, step, REACTION_POINTS)?, meta).await?;
        let chapter = format!("chapter-{step}");
        let choices = BTreeMap::from([(chapter.clone(), vec![step % 2])]);
        let progress = NarrativeProgression::new(user, &chapter, choices)?;
        publish(&bus, progress, meta).await?;

        let interface = INTERFACES[turn % INTERFACES.len()];
        let context = serde_json::json!({"message": said, "step": step});
        let context = context.as_object().cloned().unwrap_or_default();
        let request = DianaInterfaceRequested::new(user, interface, context)?;
        let asked = Instant::now();
        let outcome = coordinator
            .interact(request, meta)
            .await
            .map_err(DemoError::Interaction)?;
        let troubled = !outcome.failures.is_empty() || !outcome.completed.timed_out().is_empty();
        if trace.traced(tenant, user) || (troubled && trace.notable()) {
            let lines = describe(
                &outcome,
                said,
                &chapter,
                asked.elapsed(),
                coordinator.deadline(),
            );
            trace.user_lines(tenant, user, &lines);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

async fn publish<E: Event>(bus: &Bus, event: E, meta: Meta) -> Result<(), DemoError> {
    bus.publish_async_with(event, meta).await?;
    Ok(())
}

fn timestamp(step: i64) -> String {
    format!("2025-08-05T10:{:02}:{:02}", step / 60 % 60, step % 60)
}

/// The trace of one interaction: what the user did, each service's part,
/// and the final response.
fn describe(
    outcome: &Outcome,
    said: &str,
    chapter: &str,
    took: Duration,
    deadline: Duration,
) -> Vec<String> {
    let done = &outcome.completed;
    let id = done.interaction_id();
    let json =
        |value: &diana_bus::diana::JsonObject| serde_json::to_string(value).unwrap_or_default();
    let mut lines = vec![format!(
        "#{id} {} requested, after saying {said:?}, a reaction and {chapter}",
        done.interface_type()
    )];
    for (service, data) in done.responses() {
        lines.push(format!("#{id} {service} -> {}", json(data)));
    }
    for (service, error) in &outcome.failures {
        lines.push(format!("#{id} {service} failed after its retries: {error}"));
    }
    for service in done.timed_out() {
        lines.push(format!(
            "#{id} {service} timed out (deadline {} ms)",
            deadline.as_millis()
        ));
    }
    lines.push(format!(
        "#{id} completed in {} ms, {}/{} answered, published once -> {}",
        took.as_millis(),
        done.responses().len(),
        done.responses().len() + done.failed().len() + done.timed_out().len(),
        json(&outcome.response)
    ));
    lines
}

/// The promises of the flow that this run broke, if any.
fn check(
    settings: &Settings,
    summary: &Summary,
    gamification: &Gamification,
    narrative: &Narrative,
    observer: &Observer,
) -> Vec<String> {
    let mut broken = Vec::new();
    let observed = observer.observed();
    let expected = settings.tenants * settings.users * settings.interactions;
    if summary.interactions != expected || observed.completions != expected {
        broken.push(format!(
            "{expected} interactions, {} completed, {} completion events delivered",
            summary.interactions, observed.completions
        ));
    }
    if observed.duplicates > 0 {
        broken.push(format!("{} duplicate interaction ids", observed.duplicates));
    }
    let disorder = gamification.out_of_order() + narrative.out_of_order() + observed.out_of_order;
    if disorder > 0 {
        broken.push(format!("{disorder} events out of their user's order"));
    }
    let points = REACTION_POINTS * settings.interactions as i64;
    for tenant in 1..=settings.tenants {
        for user in 1..=settings.users as i64 {
            let balance = gamification.points(TenantId(tenant), user);
            if balance != points {
                broken.push(format!(
                    "tenant {tenant} user {user} has {balance} points, not {points}"
                ));
            }
        }
    }
    broken
}

fn report(
    trace: &Trace,
    bus: &Bus,
    summary: &Summary,
    elapsed: Duration,
    gamification: &Gamification,
    narrative: &Narrative,
    observer: &Observer,
) {
    let observed = observer.observed();
    trace.say(format_args!(
        "\nsummary: {} interactions in {:.2} s; {} completion events delivered, one per interaction, ids unique",
        summary.interactions,
        elapsed.as_secs_f64(),
        observed.completions
    ));
    trace.say(format_args!(
        "  {:<14}{:>9}{:>8}{:>11}",
        "service", "answered", "failed", "timed out"
    ));
    for service in SERVICES {
        let [answered, failed, timed_out] =
            summary.services.get(service).copied().unwrap_or_default();
        trace.say(format_args!(
            "  {service:<14}{answered:>9}{failed:>8}{timed_out:>11}"
        ));
    }
    trace.say(format_args!(
        "  bot events: {} points awarded, {} level-ups, {} pieces unlocked ({} kept by narrative)",
        observed.points,
        observed.level_ups,
        observed.pieces,
        narrative.pieces()
    ));
    trace.say(format_args!(
        "  per-user order: {} reactions, chapters or completions out of order",
        gamification.out_of_order() + narrative.out_of_order() + observed.out_of_order
    ));
    let metrics = bus.metrics();
    trace.say(format_args!(
        "  bus: {} events published, {} handler runs, {} retried, {} dead letters",
        metrics.published, metrics.delivered, metrics.retried, metrics.dead_lettered
    ));
    trace.say(format_args!(
        "  handler latency (sync sampled, async every run):"
    ));
    for row in metrics
        .per_type
        .iter()
        .filter(|row| row.latency.count() > 0)
    {
        let quantile = |q| row.latency.quantile(q).unwrap_or_default();
        trace.say(format_args!(
            "  {:<28}{:>7} timed  p50 {:>10.1?}  p99 {:>10.1?}",
            row.name,
            row.latency.count(),
            quantile(0.5),
            quantile(0.99)
        ));
    }
}
