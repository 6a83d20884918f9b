//! Idle workers park instead of spinning, and an idle bus costs under 1% of
//! a core. Alone in its test binary: it measures the whole process's CPU
//! time.
#![cfg(target_os = "linux")]

use std::time::Duration;

use diana_bus::{Bus, Event};

struct Tick;
impl Event for Tick {}

/// CPU time of this process so far, all threads, to the nanosecond.
fn cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id, and `now` is a timespec to write.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The share of one core this process used while sleeping `window`.
fn share_of_a_core(window: Duration) -> f64 {
    let before = cpu_time();
    std::thread::sleep(window);
    (cpu_time() - before).as_secs_f64() / window.as_secs_f64()
}

#[test]
fn an_idle_bus_parks_its_workers_and_uses_under_one_percent_of_a_core() {
    // four times the development machine's cores
    let bus = Bus::builder().workers(8).build().unwrap();
    bus.publish(Tick).unwrap();
    bus.flush();
    std::thread::sleep(Duration::from_millis(50)); // past the spin-then-yield phase
    let parked = share_of_a_core(Duration::from_millis(500));
    // eight spinning workers would use both cores
    assert!(parked < 0.05, "idle bus used {parked:.4} of a core");
    // past a second of idleness the workers look for work less often
    std::thread::sleep(Duration::from_millis(1000));
    let idle = share_of_a_core(Duration::from_secs(2));
    assert!(idle < 0.01, "idle bus used {idle:.4} of a core");
    bus.shutdown();
}
