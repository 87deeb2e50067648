//! Shared machinery for refwatch's criterion benches (the benches themselves are in
//! `benches/`).
//!
//! - [`Clock`]: what the benches time with. The machines these benches run on are shared (other
//!   builds and model checkers run beside them), so by default they time with the measured
//!   thread's own CPU time, which does not count the time the thread spends descheduled; set
//!   `REFWATCH_BENCH_CLOCK=wall` for wall-clock time.
//! - [`with_helper`]: a second thread that hammers the same object as the measured thread, for
//!   contended benchmarks. It is spawned once per benchmark, stopped with an [`AtomicBool`] (no
//!   sleeps), and publishes its progress on a cache line of its own, so that every timed window
//!   can show whether the helper really ran beside it ([`HelperStats`]).

use std::cell::Cell;
use std::fmt;
use std::hint::spin_loop;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The environment variable that picks the [`Clock`]: `cpu` (the default) or `wall`.
pub const CLOCK_ENV: &str = "REFWATCH_BENCH_CLOCK";

/// What a benchmark measures time with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): time spent descheduled by a
    /// busy machine is not counted. Falls back to wall time where it is not available.
    ThreadCpu,
    /// Wall-clock time (`Instant`), criterion's default.
    Wall,
}

impl Clock {
    /// The clock named by [`CLOCK_ENV`]; [`Clock::ThreadCpu`] when it is unset.
    ///
    /// # Panics
    /// On a value other than `cpu` or `wall`: a typo must not silently change what is measured.
    pub fn from_env() -> Clock {
        match std::env::var(CLOCK_ENV) {
            Err(std::env::VarError::NotPresent) => Clock::ThreadCpu,
            Ok(v) if v.trim().eq_ignore_ascii_case("cpu") => Clock::ThreadCpu,
            Ok(v) if v.trim().eq_ignore_ascii_case("wall") => Clock::Wall,
            Ok(v) => panic!("{CLOCK_ENV}={v:?}: expected cpu or wall"),
            Err(e) => panic!("{CLOCK_ENV}: {e}"),
        }
    }

    /// The clock actually read: [`Clock::Wall`] where thread CPU time is not available.
    pub fn effective(self) -> Clock {
        if cfg!(all(target_os = "linux", target_pointer_width = "64")) {
            self
        } else {
            Clock::Wall
        }
    }

    /// The time now, from an arbitrary origin fixed for the process (and, for
    /// [`Clock::ThreadCpu`], for the calling thread: compare readings of one thread only).
    pub fn now(self) -> Duration {
        match self.effective() {
            Clock::ThreadCpu => thread_cpu_time(),
            Clock::Wall => {
                static ORIGIN: OnceLock<Instant> = OnceLock::new();
                ORIGIN.get_or_init(Instant::now).elapsed()
            }
        }
    }
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.effective() {
            Clock::ThreadCpu => "thread CPU time",
            Clock::Wall => "wall-clock time",
        })
    }
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_time() -> Duration {
    /// `struct timespec` on 64-bit Linux (`time_t` and `long` are both 64 bits).
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        // From the C library std already links; `clockid_t` is `int`.
        fn clock_gettime(clock: i32, now: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` has this signature on 64-bit Linux, and `now` is a valid,
    // writable `struct timespec` for the duration of the call; it keeps no pointer.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu_time() -> Duration {
    unreachable!("Clock::effective falls back to wall time on this platform")
}

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

/// How many operations the measured thread does between two looks at the helper's progress.
/// One load of the helper's line per chunk costs well under 0.1 ns per operation.
const PROBE_CHUNK: u64 = 1024;

/// What the helper thread did while the measured thread was timing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HelperStats {
    /// Timed windows (one per `iter_custom` call, warm-up included).
    pub windows: u64,
    /// Timed windows during which the helper published no progress at all.
    pub idle_windows: u64,
    /// Chunks of 1024 measured operations.
    pub chunks: u64,
    /// Chunks during which the helper published progress: it ran beside the measured thread.
    pub concurrent_chunks: u64,
    /// Operations done by the measured thread inside timed windows.
    pub measured_ops: u64,
    /// Operations done by the helper inside timed windows (to a granularity of 64).
    pub helper_ops: u64,
}

impl HelperStats {
    /// Helper operations per measured operation inside the timed windows: about 1 when both
    /// threads ran equally often, 0 when the helper never ran. Time-slicing on one core can
    /// also give 1: see [`concurrency`](Self::concurrency) for that.
    pub fn overlap(&self) -> f64 {
        ratio(self.helper_ops, self.measured_ops)
    }

    /// The fraction of measured chunks (1024 operations each) during which the helper made
    /// progress: 1 when the two threads really ran at the same time, on two cores.
    pub fn concurrency(&self) -> f64 {
        ratio(self.concurrent_chunks, self.chunks)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl fmt::Display for HelperStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "helper ran beside {:.1}% of measured chunks and did {:.2} ops per measured op \
             ({} timed windows, {} with no helper progress)",
            100.0 * self.concurrency(),
            self.overlap(),
            self.windows,
            self.idle_windows
        )
    }
}

/// The measured thread's view of a running helper: times windows and records overlap.
#[derive(Debug)]
pub struct Probe<'a> {
    clock: Clock,
    progress: &'a Padded<AtomicU64>,
    stats: Cell<HelperStats>,
}

impl Probe<'_> {
    /// Waits until the helper has done its first batch of operations (so it is running, not
    /// just spawned), then times `iters` calls of `op` on this thread with the probe's clock.
    pub fn time(&self, iters: u64, op: impl Fn()) -> Duration {
        while self.progress.load(Ordering::Relaxed) == 0 {
            spin_loop();
            // On a busy machine the helper may not have a core yet: let it have ours.
            thread::yield_now();
        }
        let mut stats = self.stats.get();
        let first = self.progress.load(Ordering::Relaxed);
        let mut last = first;
        let start = self.clock.now();
        let mut left = iters;
        while left > 0 {
            let n = left.min(PROBE_CHUNK);
            for _ in 0..n {
                op();
            }
            left -= n;
            let now = self.progress.load(Ordering::Relaxed);
            stats.chunks += 1;
            stats.concurrent_chunks += u64::from(now != last);
            last = now;
        }
        let elapsed = self.clock.now() - start;
        stats.windows += 1;
        stats.measured_ops += iters;
        stats.helper_ops += last - first;
        stats.idle_windows += u64::from(last == first);
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
/// operations before it starts `clock`.
pub fn with_helper<Op, R>(
    clock: Clock,
    op: &Op,
    body: impl FnOnce(&Probe<'_>) -> R,
) -> (R, HelperStats)
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
            clock,
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
        let (elapsed, stats) = with_helper(Clock::Wall, &op, |probe| {
            (0..10).map(|_| probe.time(10_000, op)).sum::<Duration>()
        });
        assert!(elapsed > Duration::ZERO);
        assert_eq!(stats.windows, 10);
        assert_eq!(stats.measured_ops, 100_000);
        assert_eq!(stats.chunks, 10 * 10);
        // The probe waited for the helper's first batch, so it did at least that many.
        assert!(counter.load(Ordering::Relaxed) >= 100_000 + HELPER_BATCH);
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let clock = Clock::ThreadCpu;
        let start = clock.now();
        let mut x = 0u64;
        while clock.now() - start < Duration::from_millis(2) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(x > 0);
    }

    #[test]
    fn padded_is_a_cache_line_pair() {
        assert_eq!(std::mem::align_of::<Padded<AtomicU64>>(), 128);
        assert_eq!(std::mem::size_of::<Padded<AtomicU64>>(), 128);
    }
}
