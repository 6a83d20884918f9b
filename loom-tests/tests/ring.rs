//! The ring's push/pop protocol at its full and empty edges, with two
//! producers (one trusting the room another saw), consumers taking turns
//! under a claim, its close bit, and its side entries. Values are
//! `loom::alloc::Track`ed, so a leak or a double drop fails the model too.
#![cfg(diana_bus_loom)]

use diana_bus::model::{InSlot, PushError, Ring};
use loom::alloc::Track;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

fn values(batch: Vec<Track<u32>>) -> Vec<u32> {
    batch.into_iter().map(|t| *t.get_ref()).collect()
}

/// `pop_batch`, for a model whose pops are ordered: one consumer thread,
/// pops after joining it, or pops under a claim.
fn pop<T>(ring: &Ring<T>, out: &mut Vec<T>, max: usize) -> usize {
    // SAFETY: the models keep the ring's one-consumer rule (see above).
    unsafe { ring.pop_batch(out, max) }
}

/// A ring of two slots holding 1 and 2.
fn full_ring_of_two() -> Arc<Ring<Track<u32>>> {
    let ring = Arc::new(Ring::new(2));
    ring.push(Track::new(1)).unwrap();
    ring.push(Track::new(2)).unwrap();
    ring
}

/// Runs `body` on `ring` in a new thread.
fn with_ring_in_thread<R: 'static>(
    ring: &Arc<Ring<Track<u32>>>,
    body: impl FnOnce(&Ring<Track<u32>>) -> R + 'static,
) -> thread::JoinHandle<R> {
    let ring = ring.clone();
    thread::spawn(move || body(&ring))
}

/// A consumer thread that calls `pop_batch(2)` `times` times.
fn pop_in_thread(ring: &Arc<Ring<Track<u32>>>, times: usize) -> thread::JoinHandle<Vec<u32>> {
    with_ring_in_thread(ring, move |ring| {
        let mut out = Vec::new();
        for _ in 0..times {
            pop(ring, &mut out, 2);
        }
        values(out)
    })
}

/// A producer thread that pushes `value`; returns it if accepted.
fn push_one(ring: &Arc<Ring<Track<u32>>>, value: u32) -> thread::JoinHandle<Option<u32>> {
    with_ring_in_thread(ring, move |ring| match ring.push(Track::new(value)) {
        Ok(_) => Some(value),
        Err(PushError::Full(back)) => {
            assert_eq!(
                *back.get_ref(),
                value,
                "a refused push gives its value back"
            );
            None
        }
        Err(PushError::Closed(_)) => panic!("the ring is open"),
    })
}

/// Two producers pushing `values` race a consumer that calls
/// `pop_batch(2)` `pops` times; returns the values accepted, and every
/// value popped then or after.
fn two_producers_race_a_consumer(
    ring: &Arc<Ring<Track<u32>>>,
    values: [u32; 2],
    pops: usize,
) -> (Vec<u32>, Vec<u32>) {
    let producers = values.map(|value| push_one(ring, value));
    let consumer = pop_in_thread(ring, pops);
    let accepted: Vec<u32> = producers
        .into_iter()
        .filter_map(|p| p.join().unwrap())
        .collect();
    let mut popped = consumer.join().unwrap();
    let mut rest = Vec::new();
    pop(ring, &mut rest, 4);
    popped.extend(self::values(rest));
    (accepted, popped)
}

#[test]
fn two_producers_race_a_consumer_at_the_full_edge() {
    loom::model(|| {
        let ring = Arc::new(Ring::<_>::new(2));
        ring.push(Track::new(0)).unwrap(); // one slot left
        let (accepted, mut popped) = two_producers_race_a_consumer(&ring, [1, 2], 1);
        assert!(!accepted.is_empty(), "one slot was free, so one push fits");
        assert_eq!(
            popped.first(),
            Some(&0),
            "FIFO: the oldest value comes out first"
        );
        let mut expected = accepted;
        expected.push(0);
        expected.sort();
        popped.sort();
        assert_eq!(
            popped, expected,
            "every accepted value comes out exactly once"
        );
    });
}

#[test]
fn two_producers_race_a_consumer_at_the_empty_edge() {
    loom::model(|| {
        let ring = Arc::new(Ring::<_>::new(2));
        let (accepted, mut popped) = two_producers_race_a_consumer(&ring, [1, 2], 2);
        assert_eq!(accepted.len(), 2, "an empty ring of two takes both");
        popped.sort();
        assert_eq!(popped, [1, 2]);
        assert!(ring.is_empty());
    });
}

#[test]
fn a_push_racing_close_is_either_in_the_ring_or_refused_with_its_value() {
    loom::model(|| {
        let ring = Arc::new(Ring::<_>::new(2));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || match ring.push(Track::new(7)) {
                Ok(_) => true,
                Err(PushError::Closed(back)) => {
                    assert_eq!(*back.get_ref(), 7);
                    false
                }
                Err(PushError::Full(_)) => panic!("the ring has room"),
            })
        };
        assert!(ring.close());
        let accepted = producer.join().unwrap();
        let mut out = Vec::new();
        pop(&ring, &mut out, 2);
        assert_eq!(values(out), if accepted { vec![7] } else { vec![] });
        assert!(matches!(
            ring.push(Track::new(8)),
            Err(PushError::Closed(_))
        ));
    });
}

#[test]
fn a_push_into_slots_the_consumer_has_freed_is_not_refused_as_full() {
    loom::model(|| {
        let ring = full_ring_of_two();
        let producer = with_ring_in_thread(&ring, |ring| {
            // Once the consumer has moved `head` past both values, the ring
            // is not full, whatever room the producers last saw.
            let freed = ring.popped() == 2;
            let pushed = ring.push(Track::new(3)).is_ok();
            assert!(pushed || !freed, "spurious Full");
            pushed
        });
        let mut out = Vec::new();
        pop(&ring, &mut out, 2);
        assert_eq!(values(out), [1, 2]);
        let pushed = producer.join().unwrap();
        let mut rest = Vec::new();
        pop(&ring, &mut rest, 2);
        assert_eq!(values(rest), if pushed { vec![3] } else { vec![] });
    });
}

#[test]
fn a_producer_trusting_the_room_another_saw_writes_only_freed_slots() {
    loom::model(|| {
        // Full ring of two. A push that finds room reads `head` and leaves
        // `head + capacity` in `room_until`; a second producer may then push
        // without reading `head`, into the slot the consumer has just
        // moved a value out of. Loom reports a write racing that move (a
        // causality violation) if `room_until` does not order the two.
        let ring = full_ring_of_two();
        let (accepted, mut popped) = two_producers_race_a_consumer(&ring, [3, 4], 1);
        let mut expected = vec![1, 2];
        expected.extend(&accepted);
        assert_eq!(popped[..2], [1, 2], "FIFO");
        popped.sort();
        expected.sort();
        assert_eq!(popped, expected, "every accepted value comes out once");
    });
}

#[test]
fn a_full_ring_takes_no_more_than_the_consumer_freed() {
    loom::model(|| {
        // Full ring of two. While the consumer frees one slot, a producer
        // tries three pushes: at most one fits, and every accepted value
        // comes out once (a `room_until` above `head + capacity` would let
        // a second one overwrite a value not yet popped).
        let ring = full_ring_of_two();
        let producer = with_ring_in_thread(&ring, |ring| {
            (3..6)
                .filter(|&value| ring.push(Track::new(value)).is_ok())
                .collect::<Vec<u32>>()
        });
        let mut out = Vec::new();
        pop(&ring, &mut out, 1);
        let accepted = producer.join().unwrap();
        assert!(accepted.len() <= 1, "one slot was freed: {accepted:?}");
        pop(&ring, &mut out, 4);
        let mut expected = vec![1, 2];
        expected.extend(&accepted);
        assert_eq!(values(out), expected);
    });
}

#[test]
fn consumers_taking_turns_racing_a_producer_lose_and_duplicate_nothing() {
    loom::model(|| {
        // Two consumers that pop only while holding a claim taken and given
        // back as a shard's is (`Shard::try_claim`: Acquire CAS; `release`:
        // Release store): `head` passes from one to the next through the
        // claim, not through the ring. A consumer that finds the claim
        // taken pops nothing.
        let ring = Arc::new(Ring::<_>::new(2));
        let claimed = Arc::new(AtomicBool::new(false));
        ring.push(Track::new(1)).unwrap();
        let producer = push_one(&ring, 2);
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (ring, claimed) = (ring.clone(), claimed.clone());
                thread::spawn(move || {
                    let mut out = Vec::new();
                    if claimed
                        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        pop(&ring, &mut out, 2);
                        claimed.store(false, Ordering::Release);
                    }
                    values(out)
                })
            })
            .collect();
        let accepted = producer.join().unwrap();
        let mut popped: Vec<u32> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        let mut rest = Vec::new();
        pop(&ring, &mut rest, 2);
        popped.extend(values(rest));
        popped.sort();
        let expected: Vec<u32> = [Some(1), accepted].into_iter().flatten().collect();
        assert_eq!(popped, expected, "each accepted value exactly once");
    });
}

#[test]
fn side_entries_travel_with_their_values_into_a_reused_slot() {
    loom::model(|| {
        // Two slots, three values: the third reuses the first slot and its
        // side entry while the consumer may still be taking the first's.
        // Value 2 carries nothing there, and its side entry is not touched
        // (as the bus does for events without a lineage).
        let carries = |value: u32| value != 2;
        let ring: Arc<Ring<Track<u32>, Option<Track<u32>>>> = Arc::new(Ring::new(2));
        let producer = {
            let ring = ring.clone();
            thread::spawn(move || {
                for value in 1..=3 {
                    let make = |value, _, side: &mut Option<Track<u32>>| {
                        if carries(value) {
                            *side = Some(Track::new(value * 10));
                        }
                        Track::new(value)
                    };
                    while let Err(PushError::Full(_)) = ring.push_with(value, make, true) {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut out = Vec::new();
        while out.len() < 3 {
            // Read in place, the side entry taken: what the bus does.
            let visit = |mut slot: InSlot<'_, Track<u32>, Option<Track<u32>>>| {
                let value = *slot.get().get_ref();
                let side = carries(value).then(|| slot.side().take()).flatten();
                out.push((value, side.map(|side| *side.get_ref())));
            };
            // SAFETY: the main thread is the one consumer.
            if unsafe { ring.pop_in_place(2, visit) } == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(out, [(1, Some(10)), (2, None), (3, Some(30))]);
    });
}
