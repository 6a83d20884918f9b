//! Bad builder settings are errors, never panics; good ones are rounded.

use diana_bus::{Bus, ConfigError, MAX_CAPACITY, MAX_SHARDS, MAX_SLOTS, MAX_WORKERS};

#[test]
fn impossible_settings_are_config_errors() {
    let err = |b: diana_bus::BusBuilder| b.build().unwrap_err();
    assert_eq!(err(Bus::builder().workers(0)), ConfigError::Workers(0));
    assert_eq!(
        err(Bus::builder().workers(MAX_WORKERS + 1)),
        ConfigError::Workers(MAX_WORKERS + 1)
    );
    assert_eq!(err(Bus::builder().capacity(0)), ConfigError::Capacity(0));
    assert_eq!(
        err(Bus::builder().capacity(usize::MAX)),
        ConfigError::Capacity(usize::MAX)
    );
    assert_eq!(
        err(Bus::builder().capacity(MAX_CAPACITY + 1)),
        ConfigError::Capacity(MAX_CAPACITY + 1)
    );
    assert_eq!(
        err(Bus::builder().workers(1).shards(0)),
        ConfigError::Shards {
            shards: 0,
            workers: 1
        }
    );
    assert_eq!(
        err(Bus::builder().workers(4).shards(2)),
        ConfigError::Shards {
            shards: 2,
            workers: 4
        }
    );
    assert_eq!(
        err(Bus::builder().workers(1).shards(usize::MAX)),
        ConfigError::Shards {
            shards: usize::MAX,
            workers: 1
        }
    );
    assert!(matches!(
        err(Bus::builder().workers(1).shards(MAX_SHARDS + 1)),
        ConfigError::Shards { .. }
    ));
    assert_eq!(
        err(Bus::builder().capacity(8).batch(9)),
        ConfigError::Batch(9)
    );
    assert_eq!(err(Bus::builder().batch(0)), ConfigError::Batch(0));
    assert_eq!(
        err(Bus::builder().shards(MAX_SHARDS).capacity(MAX_CAPACITY)),
        ConfigError::Slots {
            shards: MAX_SHARDS,
            capacity: MAX_CAPACITY
        }
    );
    assert_eq!(
        err(Bus::builder()
            .workers(2)
            .shards(9)
            .capacity(MAX_SLOTS / 16 + 1)),
        ConfigError::Slots {
            shards: 16,
            capacity: MAX_SLOTS / 8
        },
        "both rounded up first"
    );
    let text = err(Bus::builder().shards(64).capacity(MAX_CAPACITY)).to_string();
    assert!(text.contains("64 shards of 4194304 slots"), "{text}");
    let text = err(Bus::builder().capacity(0)).to_string();
    assert!(text.contains("capacity(0)"), "{text}");
}

#[test]
fn sizes_round_up_to_powers_of_two() {
    let bus = Bus::builder()
        .workers(3)
        .shards(5)
        .capacity(1000)
        .build()
        .unwrap();
    assert_eq!((bus.workers(), bus.shards(), bus.capacity()), (3, 8, 1024));
    let tiny = Bus::builder().workers(1).capacity(1).build().unwrap();
    assert_eq!(tiny.capacity(), 2);
    assert!(format!("{tiny:?}").contains("capacity: 2"));
}
