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
//! - [`interleaved`]: variants compared in short alternating slots, for ratios a busy machine
//!   disturbs less than criterion's one-after-another runs.
//! - [`Cycle`] and [`chase`]: the operations those slots repeat.

use std::cell::Cell;
use std::fmt;
use std::hint::spin_loop;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
pub(crate) const HELPER_BATCH: u64 = 64;

/// Measured operations per chunk. Each chunk is timed on its own (two clock reads, well under
/// 1% of a chunk) and kept only if the helper ran beside it.
pub const CHUNK: u64 = 4096;

/// After this many discarded chunks in a row the helper is taken to be unable to get a core,
/// and chunks are kept anyway (counted in [`HelperStats::forced_chunks`]), so a benchmark
/// always ends.
const MAX_DISCARDS_IN_A_ROW: u64 = 20_000;

pub mod chase;
pub mod interleaved;

/// A slice walked round and round, one item per operation, so that a benchmark's operations
/// spread over a working set (a set of flows, of files) instead of hitting one item.
///
/// The position is kept between calls, in an atomic only so that a `Sync` closure can own the
/// cycle: give each thread a cycle of its own (over its own items), as the threads of a real
/// workload each have their own connections or files.
#[derive(Debug)]
pub struct Cycle<'a, T> {
    items: &'a [T],
    at: AtomicUsize,
}

impl<'a, T> Cycle<'a, T> {
    /// A cycle over `items`, starting at the first.
    ///
    /// # Panics
    /// When `items` is empty.
    pub fn new(items: &'a [T]) -> Self {
        assert!(!items.is_empty(), "a cycle over no items");
        Cycle {
            items,
            at: AtomicUsize::new(0),
        }
    }

    /// Calls `op` on the next `n` items, wrapping around.
    #[inline]
    pub fn run(&self, n: u64, mut op: impl FnMut(&'a T)) {
        let mut i = self.at.load(Ordering::Relaxed);
        for _ in 0..n {
            op(&self.items[i]);
            i += 1;
            if i == self.items.len() {
                i = 0;
            }
        }
        self.at.store(i, Ordering::Relaxed);
    }
}

/// What the helper thread did while the measured thread was timing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HelperStats {
    /// The two CPUs the measured thread and the helper were pinned to, if they were.
    pub pinned: Option<(usize, usize)>,
    /// Timed windows (one per `iter_custom` call, warm-up included).
    pub windows: u64,
    /// Chunks of 4096 operations timed.
    pub chunks: u64,
    /// Chunks kept because the helper did between half and twice as many operations during
    /// them: the two threads ran at the same time, for (nearly) the whole chunk. Only these
    /// make up the reported time.
    pub kept_chunks: u64,
    /// Chunks kept without the helper, after too many discards in a row.
    pub forced_chunks: u64,
    /// Operations the helper did during the kept chunks (to a granularity of 64).
    pub helper_ops_in_kept: u64,
}

impl HelperStats {
    /// The fraction of timed chunks during which the helper ran beside the measured thread.
    pub fn concurrency(&self) -> f64 {
        ratio(self.kept_chunks - self.forced_chunks, self.chunks)
    }

    /// Helper operations per measured operation in the kept chunks: about 1 when the two
    /// threads ran side by side for the whole of every kept chunk.
    pub fn overlap(&self) -> f64 {
        ratio(self.helper_ops_in_kept, self.kept_chunks * CHUNK)
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
        match self.pinned {
            Some((a, b)) => write!(f, "pinned to CPUs {a} and {b}; ")?,
            None => f.write_str("not pinned; ")?,
        }
        write!(
            f,
            "helper ran beside {} of {} chunks ({:.1}%), doing {:.2} ops per measured op in the kept ones; \
             {} chunks kept without it; {} timed windows",
            self.kept_chunks - self.forced_chunks,
            self.chunks,
            100.0 * self.concurrency(),
            self.overlap(),
            self.forced_chunks,
            self.windows,
        )
    }
}

/// The measured thread's view of a running helper: times chunks and keeps the contended ones.
#[derive(Debug)]
pub struct Probe<'a> {
    clock: Clock,
    /// Whether to keep only chunks the helper ran beside (it can only with two CPUs).
    condition: bool,
    progress: &'a Padded<AtomicU64>,
    stats: Cell<HelperStats>,
}

impl Probe<'_> {
    /// The time `iters` calls of `op` take on this thread while the helper runs beside it.
    ///
    /// Waits until the helper has done its first batch of operations (so it is running, not
    /// just spawned). Then runs `op` in chunks of 4096 calls, timing each with the probe's
    /// clock, and keeps a chunk only if the helper did between half and twice as many
    /// operations meanwhile. On a busy machine the two threads are often not on a CPU at the
    /// same time: a chunk during which the helper was descheduled measures the uncontended
    /// cost (the helper did too few operations), and one during which this thread was
    /// descheduled lets the helper run alone (it did far too many). Returns the kept chunks'
    /// time scaled to `iters` calls (at least one chunk runs, whatever `iters`).
    pub fn time(&self, iters: u64, op: impl Fn()) -> Duration {
        while self.progress.load(Ordering::Relaxed) == 0 {
            spin_loop();
            // On a busy machine the helper may not have a core yet: let it have ours.
            thread::yield_now();
        }
        let mut stats = self.stats.get();
        let (kept_time, kept_ops) = time_chunks(
            self.clock,
            self.condition.then_some(self.progress),
            &mut stats,
            iters.max(1),
            || {
                for _ in 0..CHUNK {
                    op();
                }
            },
        );
        stats.windows += 1;
        self.stats.set(stats);
        scale(kept_time, kept_ops, iters)
    }

    /// What has been recorded so far.
    pub fn stats(&self) -> HelperStats {
        self.stats.get()
    }
}

/// Runs `chunk` (which does [`CHUNK`] operations) until `target` operations have been kept,
/// and returns the kept chunks' time and operation count.
///
/// With `helper` (its progress counter), a chunk is kept only if the helper did between half
/// and twice as many operations meanwhile (see [`Probe::time`]), or after
/// `MAX_DISCARDS_IN_A_ROW` discards; without, every chunk is kept.
pub(crate) fn time_chunks(
    clock: Clock,
    helper: Option<&Padded<AtomicU64>>,
    stats: &mut HelperStats,
    target: u64,
    chunk: impl Fn(),
) -> (Duration, u64) {
    let (mut kept_ops, mut kept_time, mut discards) = (0u64, Duration::ZERO, 0u64);
    let progress = || helper.map_or(0, |p| p.load(Ordering::Relaxed));
    while kept_ops < target {
        let helper_before = progress();
        let start = clock.now();
        chunk();
        let elapsed = clock.now() - start;
        let helper_ops = progress() - helper_before;
        stats.chunks += 1;
        let beside = CHUNK <= 2 * helper_ops && helper_ops <= 2 * CHUNK;
        if beside || helper.is_none() || discards >= MAX_DISCARDS_IN_A_ROW {
            kept_ops += CHUNK;
            kept_time += elapsed;
            stats.kept_chunks += 1;
            stats.forced_chunks += u64::from(!beside);
            stats.helper_ops_in_kept += helper_ops;
            discards = 0;
        } else {
            discards += 1;
        }
    }
    (kept_time, kept_ops)
}

/// `time` for `ops` operations, scaled to `iters` operations.
fn scale(time: Duration, ops: u64, iters: u64) -> Duration {
    let nanos = time.as_nanos() * u128::from(iters) / u128::from(ops.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Pins the calling thread to the first of two CPUs it may run on, and returns its previous
/// affinity (to restore with [`unpin`]) and the pair; `None` where it cannot.
pub(crate) fn pin_pair() -> Option<(affinity::Mask, (usize, usize))> {
    let original = affinity::get()?;
    match affinity::cpus(&original)[..] {
        [a, b, ..] if affinity::set(&affinity::single(a)) => Some((original, (a, b))),
        _ => None,
    }
}

/// Pins the calling thread to `cpu` (best effort).
pub(crate) fn pin_to(cpu: usize) {
    affinity::set(&affinity::single(cpu));
}

/// Restores the affinity [`pin_pair`] returned.
pub(crate) fn unpin(original: &affinity::Mask) {
    affinity::set(original);
}

/// Runs `body` on this thread while a helper thread calls `op` in a loop; stops and joins the
/// helper when `body` returns, and returns `body`'s result with the overlap statistics.
///
/// Where it can (Linux, two CPUs allowed), it pins this thread and the helper to two different
/// CPUs for the duration, so that the scheduler cannot time-slice them on one CPU, and restores
/// this thread's affinity afterwards. Time `body`'s operations through [`Probe::time`].
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
    let pinning = pin_pair();
    let pinned = pinning.as_ref().map(|&(_, pair)| pair);
    thread::scope(|s| {
        let helper = s.spawn(|| {
            if let Some((_, b)) = pinned {
                pin_to(b);
            }
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
            condition: pinned.is_some(),
            progress: &progress,
            stats: Cell::new(HelperStats {
                pinned,
                ..HelperStats::default()
            }),
        };
        let result = body(&probe);
        stop.store(true, Ordering::Relaxed);
        helper.join().expect("benchmark helper thread panicked");
        if let Some((original, _)) = &pinning {
            unpin(original);
        }
        (result, probe.stats())
    })
}

/// CPU affinity of the calling thread.
#[cfg(target_os = "linux")]
mod affinity {
    /// glibc's `cpu_set_t`: 1024 CPUs.
    pub type Mask = [u64; 16];

    extern "C" {
        // `pid_t` is `int`; 0 names the calling thread.
        fn sched_getaffinity(pid: i32, size: usize, mask: *mut u64) -> i32;
        fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    }

    /// The CPUs this thread may run on.
    pub fn get() -> Option<Mask> {
        let mut mask: Mask = [0; 16];
        // SAFETY: `mask` is a writable buffer of exactly the size passed, and the call keeps no
        // pointer to it.
        let rc = unsafe { sched_getaffinity(0, size_of::<Mask>(), mask.as_mut_ptr()) };
        (rc == 0).then_some(mask)
    }

    /// Restricts this thread to `mask`; returns whether it could.
    pub fn set(mask: &Mask) -> bool {
        // SAFETY: `mask` is a readable buffer of exactly the size passed, and the call keeps no
        // pointer to it.
        unsafe { sched_setaffinity(0, size_of::<Mask>(), mask.as_ptr()) == 0 }
    }

    /// The CPUs in `mask`, in order.
    pub fn cpus(mask: &Mask) -> Vec<usize> {
        (0..64 * mask.len())
            .filter(|&cpu| mask[cpu / 64] & (1 << (cpu % 64)) != 0)
            .collect()
    }

    /// The mask of `cpu` alone.
    pub fn single(cpu: usize) -> Mask {
        let mut mask: Mask = [0; 16];
        mask[cpu / 64] |= 1 << (cpu % 64);
        mask
    }
}

/// No affinity control here: benchmarks run unpinned and unconditioned.
#[cfg(not(target_os = "linux"))]
mod affinity {
    pub type Mask = ();
    pub fn get() -> Option<Mask> {
        None
    }
    pub fn set(_: &Mask) -> bool {
        false
    }
    pub fn cpus(_: &Mask) -> Vec<usize> {
        Vec::new()
    }
    pub fn single(_: usize) -> Mask {}
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
        // 10_000 operations take three chunks of 4096 in every window.
        assert!(stats.kept_chunks >= 30);
        assert!(stats.chunks >= stats.kept_chunks);
        // The probe waited for the helper's first batch, so it did at least that many.
        assert!(counter.load(Ordering::Relaxed) >= stats.chunks * CHUNK + HELPER_BATCH);
        if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
            assert!(stats.pinned.is_some(), "{stats}");
        }
    }

    #[test]
    fn affinity_is_restored() {
        let before = affinity::get();
        let op = || {};
        with_helper(Clock::Wall, &op, |probe| probe.time(1, op));
        assert_eq!(affinity::get(), before);
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
    fn cycle_wraps_and_resumes() {
        let items = [1, 2, 3];
        let cycle = Cycle::new(&items);
        let mut seen = Vec::new();
        cycle.run(4, |&x| seen.push(x));
        cycle.run(3, |&x| seen.push(x));
        assert_eq!(seen, [1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn padded_is_a_cache_line_pair() {
        assert_eq!(std::mem::align_of::<Padded<AtomicU64>>(), 128);
        assert_eq!(std::mem::size_of::<Padded<AtomicU64>>(), 128);
    }
}
