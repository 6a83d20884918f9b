//! Loom models live in `tests/`; see `run.sh`. This crate only holds what
//! they share.

use diana_bus::Bus;

/// A loom-small bus: `workers` workers, one shard each, rings of two.
pub fn loom_bus(workers: usize) -> Bus {
    Bus::builder()
        .workers(workers)
        .shards(workers)
        .capacity(2)
        .build()
        .unwrap()
}
