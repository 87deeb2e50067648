//! What a clock reading costs: `clock/now` times one `now()` of each of refwatch's clocks.
//!
//! - `monotonic`: [`MonotonicClock`], a real clock read (`std::time::Instant`, the vDSO's
//!   `clock_gettime` on Linux) per reading.
//! - `coarse`: [`CoarseClock`] (1 ms ticks, the default of `ConnTable::new`), one relaxed
//!   atomic load of the time its ticker thread advances.
//! - `manual`: [`ManualClock`], one acquire load, for reference (what a load costs here).
//!
//! Each reading goes through a function of its own that is never inlined, so that instruction
//! counts can be read per call with callgrind (criterion's profiling mode runs the loop
//! without its analysis):
//!
//! ```sh
//! cargo bench -p refwatch-benches --bench clock --no-run
//! valgrind --tool=callgrind --callgrind-out-file=clock.out \
//!     target/release/deps/clock-<hash> --bench --profile-time 2 clock/now
//! callgrind_annotate --inclusive=yes clock.out | grep read_
//! ```

use criterion::{criterion_group, criterion_main, Criterion};
use refwatch::time::{Clock, CoarseClock, Instant, ManualClock, MonotonicClock};
use std::hint::black_box;

#[inline(never)]
fn read_monotonic(clock: &MonotonicClock) -> Instant {
    clock.now()
}

#[inline(never)]
fn read_coarse(clock: &CoarseClock) -> Instant {
    clock.now()
}

#[inline(never)]
fn read_manual(clock: &ManualClock) -> Instant {
    clock.now()
}

fn now(c: &mut Criterion) {
    let monotonic = MonotonicClock::new();
    let coarse = CoarseClock::new();
    let manual = ManualClock::new();
    let mut group = c.benchmark_group("clock/now");
    group.bench_function("monotonic", |b| {
        b.iter(|| read_monotonic(black_box(&monotonic)))
    });
    group.bench_function("coarse", |b| b.iter(|| read_coarse(black_box(&coarse))));
    group.bench_function("manual", |b| b.iter(|| read_manual(black_box(&manual))));
    group.finish();
}

criterion_group!(benches, now);
criterion_main!(benches);
