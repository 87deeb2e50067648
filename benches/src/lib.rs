//! Shared machinery for refwatch's criterion benches (the benches themselves are in
//! `benches/`).
//!
//! The one non-trivial piece is [`with_helper`]: a second thread that hammers the same object
//! as the measured thread, for contended benchmarks. It is spawned once per benchmark, stopped
//! with an [`AtomicBool`] (no sleeps), and publishes its progress on a cache line of its own so
//! that every timed window can prove the helper really ran during it ([`HelperStats`]).

use std::cell::Cell;
use std::fmt;
use std::hint::spin_loop;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// `T` on a cache line (pair) of its own, so that benchmark bookkeeping never shares a line
/// with the object being measured. 128 bytes covers adjacent-line prefetching on x86.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// How many operations the helper does between two checks of the stop flag and two
/// publications of its progress.
const HELPER_BATCH: u64 = 64;

/// What the helper thread did while the measured thread was timing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HelperStats {
    /// Timed windows (one per `iter_custom` call).
    pub windows: u64,
    /// Timed windows during which the helper published no progress at all (descheduled).
    pub idle_windows: u64,
    /// Operations done by the measured thread inside timed windows.
    pub measured_ops: u64,
    /// Operations done by the helper inside timed windows (to a granularity of 64).
    pub helper_ops: u64,
}

impl HelperStats {
    /// Helper operations per measured operation inside the timed windows: about 1 when both
    /// threads ran side by side the whole time, 0 when the helper never ran.
    pub fn overlap(&self) -> f64 {
        if self.measured_ops == 0 {
            0.0
        } else {
            self.helper_ops as f64 / self.measured_ops as f64
        }
    }
}

impl fmt::Display for HelperStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "helper did {:.2} ops per measured op over {} timed windows ({} windows with no helper progress)",
            self.overlap(),
            self.windows,
            self.idle_windows
        )
    }
}

/// The measured thread's view of a running helper: times windows and records overlap.
#[derive(Debug)]
pub struct Probe<'a> {
    progress: &'a Padded<AtomicU64>,
    stats: Cell<HelperStats>,
}

impl Probe<'_> {
    /// Waits until the helper has done its first batch of operations (so it is running, not
    /// just spawned), then times `iters` calls of `op` on this thread.
    pub fn time(&self, iters: u64, op: impl Fn()) -> Duration {
        while self.progress.load(Ordering::Relaxed) == 0 {
            spin_loop();
            // On a busy machine the helper may not have a core yet: let it have ours.
            thread::yield_now();
        }
        let before = self.progress.load(Ordering::Relaxed);
        let start = Instant::now();
        for _ in 0..iters {
            op();
        }
        let elapsed = start.elapsed();
        let after = self.progress.load(Ordering::Relaxed);
        let mut stats = self.stats.get();
        stats.windows += 1;
        stats.measured_ops += iters;
        stats.helper_ops += after - before;
        if after == before {
            stats.idle_windows += 1;
        }
        self.stats.set(stats);
        elapsed
    }

    /// What has been recorded so far.
    pub fn stats(&self) -> HelperStats {
        self.stats.get()
    }
}

/// Runs `body` on this thread while a helper thread calls `op` in a loop; stops and joins the
/// helper when `body` returns, and returns `body`'s result with the overlap statistics.
///
/// Time `body`'s operations through [`Probe::time`], which waits for the helper's first
/// operations before it starts the clock.
pub fn with_helper<Op, R>(op: &Op, body: impl FnOnce(&Probe<'_>) -> R) -> (R, HelperStats)
where
    Op: Fn() + Sync,
{
    let stop = Padded(AtomicBool::new(false));
    let progress = Padded(AtomicU64::new(0));
    thread::scope(|s| {
        let helper = s.spawn(|| {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..HELPER_BATCH {
                    op();
                }
                done += HELPER_BATCH;
                progress.store(done, Ordering::Relaxed);
            }
        });
        let probe = Probe {
            progress: &progress,
            stats: Cell::new(HelperStats::default()),
        };
        let result = body(&probe);
        stop.store(true, Ordering::Relaxed);
        helper.join().expect("benchmark helper thread panicked");
        (result, probe.stats())
    })
}

/// The destructor passed to counters in benchmarks that keep a reference for their whole run:
/// it must never run.
#[cold]
#[inline(never)]
pub fn unexpected_destroy() {
    panic!("benchmark object destroyed: the bench dropped a reference it did not hold");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_runs_while_the_probe_times() {
        let counter = AtomicU64::new(0);
        let op = || {
            counter.fetch_add(1, Ordering::Relaxed);
        };
        let (elapsed, stats) = with_helper(&op, |probe| {
            (0..10).map(|_| probe.time(10_000, op)).sum::<Duration>()
        });
        assert!(elapsed > Duration::ZERO);
        assert_eq!(stats.windows, 10);
        assert_eq!(stats.measured_ops, 100_000);
        // The probe waited for the helper's first batch, so it did at least that many.
        assert!(counter.load(Ordering::Relaxed) >= 100_000 + HELPER_BATCH);
    }

    #[test]
    fn padded_is_a_cache_line_pair() {
        assert_eq!(std::mem::align_of::<Padded<AtomicU64>>(), 128);
        assert_eq!(std::mem::size_of::<Padded<AtomicU64>>(), 128);
    }
}
