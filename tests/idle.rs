//! Idle workers park instead of spinning. Alone in its test binary: it
//! measures the whole process's CPU time.

use std::time::Duration;

use diana_bus::{Bus, Event};

struct Tick;
impl Event for Tick {}

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // the fields after the parenthesised command name; utime and stime are
    // the 14th and 15th fields of the whole line
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux
    Duration::from_millis(ticks * 10)
}

#[cfg(target_os = "linux")]
#[test]
fn an_idle_bus_parks_its_workers() {
    let bus = Bus::builder().workers(4).build().unwrap();
    bus.publish(Tick).unwrap();
    bus.flush();
    std::thread::sleep(Duration::from_millis(50)); // past the spin-then-yield phase
    let before = cpu_time();
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time() - before;
    // four spinning workers would burn up to 2 s of CPU here
    assert!(
        used < Duration::from_millis(100),
        "idle bus used {used:?} of CPU in 500 ms"
    );
    bus.shutdown();
}
