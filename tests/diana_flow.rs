//! The Diana interaction flow end to end, through the public API: a
//! `Coordinator` fans `DianaInteraction` out to responder services,
//! gathers their `ServiceResponse`s within a deadline and publishes one
//! `DianaInteractionCompleted` per interaction.
// Async handlers are not built for loom (see `async_api`).
#![cfg(not(diana_bus_loom))]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use common::{within, Gate};
use diana_bus::diana::{
    Coordinator, CoordinatorError, DianaInteraction, DianaInteractionCompleted,
    DianaInterfaceRequested, DomainError, JsonObject, Outcome, ReactionAdded, Rule,
    ServiceResponse,
};
use diana_bus::{
    AsyncContext, Bus, Context, HandlerError, HandlerResult, Meta, RequestError, RetryPolicy,
    TenantId,
};
use serde_json::{json, Value};

/// A deadline no healthy service comes near.
const PATIENT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn object(value: Value) -> JsonObject {
    value.as_object().cloned().unwrap_or_default()
}

fn request(user: i64, interface: &str) -> DianaInterfaceRequested {
    DianaInterfaceRequested::new(user, interface, object(json!({"source": "test"}))).unwrap()
}

fn tenant(t: u64) -> Meta {
    Meta::new().tenant(TenantId(t))
}

/// The answer of service `name` to `interaction`.
fn reply(
    interaction: &DianaInteraction,
    name: &str,
    data: Value,
) -> Result<ServiceResponse, HandlerError> {
    ServiceResponse::new(
        interaction.interaction_id(),
        interaction.user_id().get(),
        name,
        object(data),
    )
    .map_err(|e| HandlerError::permanent(e.to_string()))
}

/// Subscribes a service that always answers `data`.
fn steady(bus: &Bus, name: &'static str, data: Value) {
    bus.responder::<DianaInteraction, ServiceResponse>()
        .name(name)
        .respond(move |i: &DianaInteraction, _: &Context| reply(i, name, data.clone()));
}

/// Every completion event delivered: (tenant, the event).
#[derive(Clone, Default)]
struct Completions(Arc<Mutex<Vec<(TenantId, DianaInteractionCompleted)>>>);

impl Completions {
    fn subscribe(bus: &Bus) -> Self {
        let completions = Completions::default();
        let log = completions.0.clone();
        bus.subscribe(
            move |c: &DianaInteractionCompleted, ctx: &Context| -> HandlerResult {
                log.lock().unwrap().push((ctx.tenant(), c.clone()));
                Ok(())
            },
        );
        completions
    }

    fn all(&self) -> Vec<(TenantId, DianaInteractionCompleted)> {
        self.0.lock().unwrap().clone()
    }
}

/// Polls every future, always in the order given, until all are done: the
/// first poll of each comes in that order, and with it its publishes.
async fn join_in_order<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + 'a>>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

#[test]
fn all_services_answer_and_one_completion_carries_their_answers() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        steady(&bus, "gamification", json!({"points": 40, "level": 2}));
        steady(&bus, "narrative", json!({"chapter": "intro", "level": 9}));
        steady(&bus, "user", json!({"name": "ana"}));
        steady(&bus, "admin", json!({"role": "member"}));
        steady(&bus, "emotional", json!({"mood": "curious"}));
        let completions = Completions::subscribe(&bus);
        let coordinator = Coordinator::new(&bus, PATIENT);

        let started = Instant::now();
        let outcome = runtime()
            .block_on(coordinator.interact(request(7, "profile"), tenant(3)))
            .unwrap();
        assert!(
            started.elapsed() < PATIENT / 2,
            "waited for the deadline although every service answered"
        );

        let done = &outcome.completed;
        assert_eq!(done.user_id().get(), 7);
        assert_eq!(done.interface_type(), "profile");
        assert!(done.interaction_id() > 0);
        let services: Vec<&str> = done.responses().keys().map(String::as_str).collect();
        assert_eq!(
            services,
            ["admin", "emotional", "gamification", "narrative", "user"]
        );
        assert_eq!(
            done.responses()["narrative"],
            object(json!({"chapter": "intro", "level": 9}))
        );
        assert!(done.failed().is_empty() && done.timed_out().is_empty());
        assert!(outcome.failures.is_empty());
        // Merged in service-name order: gamification's level beats narrative's.
        assert_eq!(
            outcome.response,
            object(
                json!({"points": 40, "level": 2, "chapter": "intro", "name": "ana",
                          "role": "member", "mood": "curious"})
            )
        );

        bus.flush();
        assert_eq!(completions.all(), [(TenantId(3), outcome.completed)]);
    });
}

#[test]
fn a_slow_sync_service_runs_past_the_deadline_and_is_reported_timed_out() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        steady(&bus, "gamification", json!({"points": 1}));
        steady(&bus, "narrative", json!({"chapter": "intro"}));
        // A sync handler holds its worker and the event's later handlers:
        // the slow one is subscribed last.
        let gate = Gate::default();
        let late = Arc::new(AtomicBool::new(false));
        let (g, l) = (gate.clone(), late.clone());
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("emotional")
            .respond(move |i: &DianaInteraction, _: &Context| {
                g.wait();
                l.store(true, Ordering::SeqCst);
                reply(i, "emotional", json!({"mood": "late"}))
            });
        let completions = Completions::subscribe(&bus);
        let deadline = Duration::from_millis(50);
        let coordinator = Coordinator::new(&bus, deadline);

        let started = Instant::now();
        let outcome = runtime()
            .block_on(coordinator.interact(request(5, "menu"), Meta::new()))
            .unwrap();
        assert!(
            started.elapsed() >= deadline,
            "returned before the deadline"
        );
        assert!(
            !late.load(Ordering::SeqCst),
            "the slow service has not answered"
        );
        let done = &outcome.completed;
        assert_eq!(done.timed_out(), ["emotional"]);
        assert!(done.failed().is_empty());
        let answered: Vec<&str> = done.responses().keys().map(String::as_str).collect();
        assert_eq!(answered, ["gamification", "narrative"]);

        // The late answer changes nothing: still one completion.
        gate.open();
        bus.flush();
        assert!(late.load(Ordering::SeqCst));
        assert_eq!(completions.all(), [(TenantId(0), outcome.completed)]);
    });
}

#[test]
fn a_slow_async_service_runs_past_the_deadline_on_the_runtime() {
    within(30, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let bus = Bus::builder()
            .workers(2)
            .runtime(rt.handle().clone())
            .build()
            .unwrap();
        let late = Arc::new(AtomicBool::new(false));
        let l = late.clone();
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("emotional")
            .respond_async(move |i: Arc<DianaInteraction>, _: AsyncContext| {
                let l = l.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    l.store(true, Ordering::SeqCst);
                    reply(&i, "emotional", json!({"mood": "late"}))
                }
            })
            .unwrap();
        // Subscribed after the slow one: an async run holds no handler.
        steady(&bus, "gamification", json!({"points": 1}));
        let completions = Completions::subscribe(&bus);
        let deadline = Duration::from_millis(50);
        let coordinator = Coordinator::new(&bus, deadline);

        let started = Instant::now();
        let outcome = rt
            .block_on(coordinator.interact(request(5, "menu"), tenant(2)))
            .unwrap();
        assert!(
            started.elapsed() >= deadline,
            "returned before the deadline"
        );
        assert!(
            !late.load(Ordering::SeqCst),
            "the slow service has not answered"
        );
        assert_eq!(outcome.completed.timed_out(), ["emotional"]);
        assert!(outcome.completed.responses().contains_key("gamification"));

        bus.flush(); // waits for the async run too
        assert!(late.load(Ordering::SeqCst));
        assert_eq!(completions.all(), [(TenantId(2), outcome.completed)]);
    });
}

#[test]
fn a_failing_service_is_retried_then_reported_failed() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        steady(&bus, "user", json!({"name": "ana"}));
        let admin_runs = Arc::new(AtomicUsize::new(0));
        let runs = admin_runs.clone();
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("admin")
            .retry(RetryPolicy::fixed(3, Duration::from_millis(5)))
            .respond(
                move |_: &DianaInteraction, _: &Context| -> Result<ServiceResponse, HandlerError> {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Err(HandlerError::transient("admin is down"))
                },
            );
        // Fails once, then answers on its retry: it counts as answered.
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("gamification")
            .retry(RetryPolicy::fixed(3, Duration::from_millis(5)))
            .respond(|i: &DianaInteraction, ctx: &Context| {
                if ctx.attempt() == 1 {
                    return Err(HandlerError::transient("cold cache"));
                }
                reply(i, "gamification", json!({"points": 3}))
            });
        let completions = Completions::subscribe(&bus);
        let coordinator = Coordinator::new(&bus, PATIENT);

        let outcome = runtime()
            .block_on(coordinator.interact(request(9, "admin_panel"), tenant(1)))
            .unwrap();
        assert_eq!(
            admin_runs.load(Ordering::SeqCst),
            3,
            "retried, then reported"
        );
        let done = &outcome.completed;
        assert_eq!(done.failed(), ["admin"]);
        assert_eq!(
            outcome.failures,
            [("admin".to_owned(), "admin is down".to_owned())]
        );
        assert!(done.timed_out().is_empty());
        let answered: Vec<&str> = done.responses().keys().map(String::as_str).collect();
        assert_eq!(answered, ["gamification", "user"]);

        bus.flush();
        assert_eq!(completions.all(), [(TenantId(1), outcome.completed)]);
        let letters = bus.dead_letters();
        assert_eq!(letters.len(), 1);
        assert_eq!(
            (
                letters[0].handler(),
                letters[0].attempts(),
                letters[0].tenant()
            ),
            ("admin", 3, TenantId(1))
        );
    });
}

#[test]
fn the_completion_is_published_exactly_once_per_interaction() {
    within(60, || {
        let bus = Bus::builder().workers(4).shards(16).build().unwrap();
        steady(&bus, "steady", json!({"ok": true}));
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("failing")
            .retry(RetryPolicy::fixed(2, Duration::from_millis(1)))
            .respond(|i: &DianaInteraction, _: &Context| {
                if i.interaction_id() % 3 == 0 {
                    return Err(HandlerError::transient("every third one"));
                }
                reply(i, "failing", json!({}))
            });
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("slow")
            .respond(|i: &DianaInteraction, _: &Context| {
                if i.interaction_id() % 4 == 0 {
                    std::thread::sleep(Duration::from_millis(60));
                }
                reply(i, "slow", json!({}))
            });
        let completions = Completions::subscribe(&bus);
        let coordinator = Coordinator::new(&bus, Duration::from_millis(30));

        // 3 tenants x 4 users x 3 interactions, all at once, on a
        // multi-threaded runtime.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        let outcomes = rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 1..=3 {
                for user in 1..=4 {
                    for _ in 0..3 {
                        let coordinator = coordinator.clone();
                        tasks.push(tokio::spawn(async move {
                            let outcome =
                                coordinator.interact(request(user, "menu"), tenant(t)).await;
                            (TenantId(t), outcome.unwrap())
                        }));
                    }
                }
            }
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.unwrap());
            }
            outcomes
        });
        assert_eq!(outcomes.len(), 36);
        bus.flush();

        let expected: BTreeMap<i64, (TenantId, DianaInteractionCompleted)> = outcomes
            .iter()
            .map(|(t, o)| (o.completed.interaction_id(), (*t, o.completed.clone())))
            .collect();
        assert_eq!(expected.len(), 36, "interaction ids are unique");
        for (_, done) in expected.values() {
            let mut named: Vec<&str> = done.responses().keys().map(String::as_str).collect();
            named.extend(done.failed().iter().map(String::as_str));
            named.extend(done.timed_out().iter().map(String::as_str));
            named.sort_unstable();
            assert_eq!(named, ["failing", "slow", "steady"], "each service once");
        }
        let mut seen = completions.all();
        assert_eq!(seen.len(), 36, "one completion per interaction");
        seen.sort_by_key(|(_, done)| done.interaction_id());
        let expected: Vec<_> = expected.into_values().collect();
        assert_eq!(
            seen, expected,
            "each completion as returned, for its tenant"
        );

        // The slow and retried runs end without another completion.
        let thirds = seen
            .iter()
            .filter(|(_, c)| c.interaction_id() % 3 == 0)
            .count();
        let report = bus.shutdown();
        assert_eq!(
            report.dead_lettered, thirds as u64,
            "each interaction whose id is a multiple of 3 fails for good"
        );
        assert_eq!(completions.all().len(), 36);
    });
}

/// A service that records what it sees of each (tenant, user), on first
/// runs: reactions as their message id, interactions as their id.
#[derive(Clone, Default)]
struct Observed(Arc<Mutex<SeenByUser>>);

/// What a service saw: ("reaction", message id) or ("interaction", id).
type Seen = (&'static str, i64);
/// What a service saw of each user, by (tenant, user).
type SeenByUser = HashMap<(TenantId, i64), Vec<Seen>>;

impl Observed {
    fn record(&self, ctx: &Context, user: i64, what: &'static str, id: i64) {
        if ctx.attempt() == 1 {
            let mut log = self.0.lock().unwrap();
            log.entry((ctx.tenant(), user))
                .or_default()
                .push((what, id));
        }
    }

    fn of(&self, tenant: TenantId, user: i64) -> Vec<Seen> {
        self.0.lock().unwrap()[&(tenant, user)].clone()
    }
}

#[test]
fn each_service_sees_a_users_events_and_interactions_in_publish_order() {
    within(60, || {
        let bus = Bus::builder().workers(2).shards(8).build().unwrap();
        let mut services = Vec::new();
        for name in ["narrative", "gamification"] {
            let observed = Observed::default();
            let log = observed.clone();
            bus.subscriber::<ReactionAdded>().name(name).subscribe(
                move |r: &ReactionAdded, ctx: &Context| -> HandlerResult {
                    log.record(ctx, r.user_id().get(), "reaction", r.message_id());
                    Ok(())
                },
            );
            let log = observed.clone();
            // gamification fails every other first run: retries come later,
            // first runs keep their order.
            let flaky = name == "gamification";
            bus.responder::<DianaInteraction, ServiceResponse>()
                .name(name)
                .retry(RetryPolicy::fixed(3, Duration::from_millis(2)))
                .respond(move |i: &DianaInteraction, ctx: &Context| {
                    log.record(ctx, i.user_id().get(), "interaction", i.interaction_id());
                    if flaky && ctx.attempt() == 1 && i.interaction_id() % 2 == 0 {
                        return Err(HandlerError::transient("try again"));
                    }
                    reply(i, name, json!({}))
                });
            services.push(observed);
        }
        let coordinator = Coordinator::new(&bus, PATIENT);

        // 2 tenants x 3 users (the same user ids in both tenants), each
        // user: a reaction, then an interaction, five times; every user's
        // interactions in flight at once, all users at once.
        let mut plan = Vec::new();
        for t in 1..=2u64 {
            for user in 1..=3i64 {
                for step in 0..5i64 {
                    plan.push((t, user, step));
                }
            }
        }
        let (bus_ref, coordinator_ref) = (&bus, &coordinator);
        let outcomes: Vec<Outcome> = runtime().block_on(join_in_order(
            plan.iter()
                .map(|&(t, user, step)| {
                    Box::pin(async move {
                        let reaction = ReactionAdded::new(user, 100 + step, 5).unwrap();
                        bus_ref
                            .publish_async_with(reaction, tenant(t))
                            .await
                            .unwrap();
                        coordinator_ref
                            .interact(request(user, "story"), tenant(t))
                            .await
                            .unwrap()
                    }) as Pin<Box<dyn Future<Output = _>>>
                })
                .collect(),
        ));
        bus.flush();

        for t in 1..=2u64 {
            for user in 1..=3i64 {
                let published: Vec<(&str, i64)> = plan
                    .iter()
                    .zip(&outcomes)
                    .filter(|((pt, pu, _), _)| (*pt, *pu) == (t, user))
                    .flat_map(|((_, _, step), outcome)| {
                        [
                            ("reaction", 100 + step),
                            ("interaction", outcome.completed.interaction_id()),
                        ]
                    })
                    .collect();
                assert_eq!(published.len(), 10);
                for (service, observed) in ["narrative", "gamification"].iter().zip(&services) {
                    assert_eq!(
                        observed.of(TenantId(t), user),
                        published,
                        "{service}, tenant {t}, user {user}"
                    );
                }
            }
        }
        assert!(outcomes.iter().all(|o| o.completed.responses().len() == 2));
    });
}

#[test]
fn a_users_completions_arrive_in_the_order_of_their_interactions() {
    within(60, || {
        let bus = Bus::builder().workers(2).shards(8).build().unwrap();
        steady(&bus, "user", json!({}));
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("emotional")
            .respond(|i: &DianaInteraction, _: &Context| {
                // Uneven service times, so users overtake each other.
                let pause = (i.interaction_id() * 7 % 5) as u64;
                std::thread::sleep(Duration::from_millis(pause));
                reply(i, "emotional", json!({}))
            });
        let completions = Completions::subscribe(&bus);
        let coordinator = Coordinator::new(&bus, PATIENT);

        // Each user's interactions one after another, all users at once.
        let users: Vec<(u64, i64)> = (1..=2u64)
            .flat_map(|t| (1..=4i64).map(move |user| (t, user)))
            .collect();
        let coordinator_ref = &coordinator;
        let started: Vec<Vec<i64>> = runtime().block_on(join_in_order(
            users
                .iter()
                .map(|&(t, user)| {
                    Box::pin(async move {
                        let mut ids = Vec::new();
                        for _ in 0..6 {
                            let outcome = coordinator_ref
                                .interact(request(user, "menu"), tenant(t))
                                .await
                                .unwrap();
                            ids.push(outcome.completed.interaction_id());
                        }
                        ids
                    }) as Pin<Box<dyn Future<Output = _>>>
                })
                .collect(),
        ));
        bus.flush();

        let seen = completions.all();
        assert_eq!(seen.len(), users.len() * 6);
        for (&(t, user), ids) in users.iter().zip(&started) {
            let arrived: Vec<i64> = seen
                .iter()
                .filter(|(st, c)| *st == TenantId(t) && c.user_id().get() == user)
                .map(|(_, c)| c.interaction_id())
                .collect();
            assert_eq!(&arrived, ids, "tenant {t} user {user}");
        }
    });
}

#[test]
fn tenant_scoped_services_and_subscribers_see_only_their_tenant() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        steady(&bus, "user", json!({"name": "ana"}));
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("admin")
            .tenant(TenantId(1))
            .respond(|i: &DianaInteraction, ctx: &Context| {
                reply(i, "admin", json!({"tenant": ctx.tenant().0}))
            });
        let tenant_two = Arc::new(Mutex::new(Vec::new()));
        let log = tenant_two.clone();
        bus.subscriber::<DianaInteractionCompleted>()
            .tenant(TenantId(2))
            .subscribe(
                move |c: &DianaInteractionCompleted, _: &Context| -> HandlerResult {
                    log.lock().unwrap().push(c.interaction_id());
                    Ok(())
                },
            );
        let completions = Completions::subscribe(&bus);
        let coordinator = Coordinator::new(&bus, PATIENT);

        let rt = runtime();
        let one = rt
            .block_on(coordinator.interact(request(4, "admin_panel"), tenant(1)))
            .unwrap();
        let two = rt
            .block_on(coordinator.interact(request(4, "admin_panel"), tenant(2)))
            .unwrap();
        let services = |o: &Outcome| o.completed.responses().keys().cloned().collect::<Vec<_>>();
        assert_eq!(services(&one), ["admin", "user"]);
        assert_eq!(one.response["tenant"], 1);
        assert_eq!(
            services(&two),
            ["user"],
            "tenant 1's admin does not serve tenant 2"
        );
        assert!(two.completed.timed_out().is_empty());

        bus.flush();
        assert_eq!(
            *tenant_two.lock().unwrap(),
            [two.completed.interaction_id()]
        );
        let tenants: BTreeSet<(u64, i64)> = completions
            .all()
            .iter()
            .map(|(t, c)| (t.0, c.interaction_id()))
            .collect();
        assert_eq!(
            tenants,
            BTreeSet::from([
                (1, one.completed.interaction_id()),
                (2, two.completed.interaction_id())
            ])
        );
    });
}

#[test]
fn expected_services_that_never_answer_time_out() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        steady(&bus, "narrative", json!({}));
        steady(&bus, "unexpected", json!({"extra": 1}));
        let coordinator =
            Coordinator::new(&bus, Duration::from_millis(40)).expect(["narrative", "emotional"]);
        let outcome = runtime()
            .block_on(coordinator.interact(request(2, "story"), Meta::new()))
            .unwrap();
        assert_eq!(outcome.completed.timed_out(), ["emotional"]);
        assert!(outcome.completed.responses().contains_key("narrative"));
        assert!(outcome.completed.failed().is_empty());
    });
}

#[test]
fn empty_service_names_neither_break_interactions_nor_are_expected() {
    within(30, || {
        let bus = Bus::builder().workers(2).build().unwrap();
        steady(&bus, "narrative", json!({}));
        // A name read from an unset setting, say.
        bus.responder::<DianaInteraction, ServiceResponse>()
            .name("")
            .respond(|i: &DianaInteraction, _: &Context| {
                reply(i, "emotional", json!({"mood": "calm"}))
            });
        let rt = runtime();
        let outcome = rt
            .block_on(Coordinator::new(&bus, PATIENT).interact(request(2, "story"), Meta::new()))
            .unwrap();
        assert_eq!(outcome.completed.responses().len(), 2);
        assert_eq!(outcome.response.get("mood"), Some(&json!("calm")));

        let published = bus.metrics().published;
        let expecting = Coordinator::new(&bus, PATIENT).expect(["narrative", ""]);
        let refused = rt.block_on(expecting.interact(request(2, "story"), Meta::new()));
        assert!(
            matches!(
                refused,
                Err(CoordinatorError::Invalid(DomainError::Invalid {
                    rule: Rule::NonEmpty,
                    ..
                }))
            ),
            "{refused:?}"
        );
        assert_eq!(bus.metrics().published, published, "nothing was sent");
    });
}

#[test]
fn an_interaction_that_cannot_run_is_a_clear_error_and_completes_nothing() {
    within(30, || {
        let bus = Bus::builder().workers(1).build().unwrap();
        let completions = Completions::subscribe(&bus);
        let coordinator = Coordinator::new(&bus, PATIENT);
        let rt = runtime();

        let nobody = rt.block_on(coordinator.interact(request(1, "menu"), Meta::new()));
        assert_eq!(
            nobody,
            Err(CoordinatorError::Request(RequestError::NoResponder))
        );
        steady(&bus, "user", json!({}));
        let keyed = rt.block_on(coordinator.interact(request(1, "menu"), Meta::new().key(99)));
        assert_eq!(keyed, Err(CoordinatorError::UnsupportedMeta("key")));
        assert!(keyed.unwrap_err().to_string().contains("only the tenant"));
        bus.flush();
        assert_eq!(bus.metrics().published, 0, "nothing was published");

        bus.shutdown();
        let closed = rt.block_on(coordinator.interact(request(1, "menu"), Meta::new()));
        assert!(
            matches!(
                closed,
                Err(CoordinatorError::Request(RequestError::Failed(_)))
            ),
            "{closed:?}"
        );
        assert!(completions.all().is_empty());
    });
}
