//! Time as a dependency: a [`Clock`] that components take instead of reading a global.
//!
//! Three clocks:
//! - [`CoarseClock`], the packet path's clock and the default of
//!   [`ConnTable::new`](crate::conntrack::ConnTable::new): a reading is one atomic load of a
//!   time that a shared ticker thread advances one tick (1 ms by default) at a time, like
//!   Linux's jiffies. It costs a load, not a clock read, and is exact only to the tick.
//! - [`MonotonicClock`], the precise real clock (`std::time::Instant`): a clock read per call.
//! - [`ManualClock`], which moves only when told: tests and models drive time with it, so
//!   that expiry is deterministic and a model can explore "the timeout passed here".
//!
//! ```
//! # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
//! use refwatch::time::{Clock, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_secs(120));
//! assert_eq!(clock.now().duration_since(start), Duration::from_secs(120));
//! ```

use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Arc;
use std::fmt;
use std::time::{Duration, Instant as StdInstant};

/// A point on a [`Clock`]'s monotonic time line, in nanoseconds since the clock's origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The instant `nanos` nanoseconds after the clock's origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the clock's origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of time instead of overflowing.
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_nanos(d)))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Duration::from_nanos(self.0))
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A monotonic source of [`Instant`]s. Never goes backwards.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// The real monotonic clock (`std::time::Instant`), measured from the clock's creation.
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: StdInstant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        MonotonicClock {
            origin: StdInstant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Instant {
        Instant(duration_nanos(self.origin.elapsed()))
    }
}

/// A clock that only moves when told to; clones share the same time line.
///
/// Cheap to clone and safe to advance from any thread, including inside loom and shuttle
/// models (its time is an atomic from [`crate::sync`]).
///
/// A read is an acquire load. A thread that has not synchronised with an [`advance`] made
/// in another thread may still read the earlier time, and loom explores that stale read
/// (a real clock read after the advance would not return it). A model about the order of
/// clock reads that wants a clock as fresh as a real one reads with a read-modify-write
/// instead (the conntrack loom models do), at a cost: two such reads conflict, so loom
/// explores both orders of every pair.
///
/// [`advance`]: ManualClock::advance
#[derive(Clone, Debug)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at its origin.
    pub fn new() -> Self {
        ManualClock {
            nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward by `d` (saturating at the end of time).
    pub fn advance(&self, d: Duration) {
        let step = duration_nanos(d);
        let mut cur = self.nanos.load(Ordering::Acquire);
        loop {
            let next = cur.saturating_add(step);
            match self
                .nanos
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Moves the clock to `t`; a `t` in the past leaves the clock where it is (monotonic).
    pub fn set(&self, t: Instant) {
        self.nanos.fetch_max(t.0, Ordering::AcqRel);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(self.nanos.load(Ordering::Acquire))
    }
}

/// A clock whose reading is one atomic load: a time that a shared ticker thread advances by
/// one tick at a time (Linux's jiffies, in a thread). The packet path's clock, and the
/// default of [`ConnTable::new`](crate::conntrack::ConnTable::new).
///
/// ```
/// # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
/// use refwatch::time::{Clock, CoarseClock};
/// use std::time::Duration;
///
/// let clock = CoarseClock::new(); // 1 ms ticks, on the process's shared 1 ms ticker
/// assert_eq!(clock.tick(), Duration::from_millis(1));
/// let (a, b) = (clock.now(), clock.now());
/// assert!(b >= a);
/// assert_eq!(a.as_nanos() % 1_000_000, 0); // every reading is a whole number of ticks
/// assert!(CoarseClock::with_tick(Duration::ZERO).is_err());
/// ```
///
/// # Granularity and what a reading means
///
/// A reading is the number of ticks the ticker has counted, times the tick: always a
/// multiple of [`tick`](CoarseClock::tick) (between [`MIN_TICK`](CoarseClock::MIN_TICK)
/// and [`MAX_TICK`](CoarseClock::MAX_TICK), [`DEFAULT_TICK`](CoarseClock::DEFAULT_TICK) =
/// 1 ms unless chosen). The ticker counts a tick when one is due on its schedule (one every
/// `tick` of real time since it started) and never before, so:
///
/// - **Never ahead.** A reading never exceeds the real time elapsed since the ticker
///   started.
/// - **Never fast.** An interval measured on this clock is shorter than the real interval
///   plus two ticks: one of rounding, one for a tick the ticker counts late and then makes
///   up (it keeps its schedule when it is less than a tick late).
/// - **Staleness.** A reading lags the real time elapsed since the ticker started by less
///   than one tick plus the ticker's wake-up latency, plus the time the ticker has dropped
///   (below). While the ticker keeps up (counts each tick less than a tick after it is due)
///   it drops nothing, and an interval on this clock is longer than the real one minus two
///   ticks.
/// - **Starved ticker: time stalls, and the stall is not made up.** When the ticker runs a
///   tick or more late (the machine is overloaded, the process stopped), the ticks it missed
///   are dropped: the clock stands still for the stall, then counts on from where it was, and
///   stays behind the real time by the stall for good. Catching up — counting the missed
///   ticks at once, as Linux's jiffies do — would make a reading taken during the stall look
///   older than it is once the clock had caught up, and a connection last used during a stall
///   could expire early by up to the stall. Dropped ticks only make intervals that span the
///   stall shorter on this clock: **connections live longer, never shorter,** than their
///   timeout (up to the two ticks of granularity above).
///
/// A conntrack table on this clock decides expiry with coarse time, as Linux's conntrack
/// does with jiffies: the expiry rule is unchanged (expired strictly after the timeout,
/// measured on this clock), so a timeout is honoured to within the granularity (see
/// [`Timeouts`](crate::conntrack::Timeouts)). Readings of clocks on different tickers (other
/// ticks, or a ticker started after the last one stopped) are on different time lines, like
/// two [`MonotonicClock`]s'; compare only readings of one clock and its clones.
///
/// # Monotonic across threads
///
/// Only the ticker thread writes the time, and each write is larger than the one before, so
/// the atomic's modification order is increasing. A reading is a `Relaxed` load: by
/// read-read coherence, a reading that happens after another (in the same thread, or in
/// another thread that synchronised with the first, by a lock for example) reads the same
/// write or a later one, so it is never smaller. No other data is published through the
/// time, so nothing stronger than `Relaxed` is needed, on either side.
///
/// # The ticker thread
///
/// One ticker thread per tick length runs in the process while at least one clock with that
/// tick exists: the first [`with_tick`](CoarseClock::with_tick) (or [`new`](CoarseClock::new))
/// of a tick length starts it, every clock and clone with that tick shares it, and dropping
/// the last of them stops it and joins it before the drop returns — no thread is left behind
/// once the last table is gone ([`tickers_running`](CoarseClock::tickers_running) shows it).
/// Creating, cloning and dropping a clock take a process-wide lock (a table does it once);
/// reading it takes none. A ticker sleeps on a condition variable between ticks and wakes
/// once per tick: at 1 ms, a thousand short wake-ups a second per tick length in use. As
/// with the reaper's thread, a child forked from a process with a running ticker inherits
/// the clocks but not the thread: there, use them for nothing but `exec`.
///
/// Under `--cfg loom` and `--cfg shuttle` there is no ticker thread: neither checker can run a
/// free-running OS thread beside a model, and the models drive time with [`ManualClock`].
/// There, a reading is the real monotonic clock rounded down to the tick (same type, same
/// granularity, monotonic), and `tickers_running` is always zero.
pub struct CoarseClock {
    inner: coarse::Handle,
}

/// Why [`CoarseClock::with_tick`] refused a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickError {
    /// A tick of zero: the clock would never advance.
    Zero,
    /// A tick outside [`CoarseClock::MIN_TICK`] ..= [`CoarseClock::MAX_TICK`].
    OutOfRange(Duration),
    /// The ticker thread could not be started (the operating system's error).
    Spawn(std::io::ErrorKind),
}

impl fmt::Display for TickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TickError::Zero => f.write_str("the coarse clock's tick must not be zero"),
            TickError::OutOfRange(d) => write!(
                f,
                "the coarse clock's tick {d:?} is outside {:?} ..= {:?}",
                CoarseClock::MIN_TICK,
                CoarseClock::MAX_TICK
            ),
            TickError::Spawn(kind) => {
                write!(f, "the coarse clock's ticker thread did not start: {kind}")
            }
        }
    }
}

impl std::error::Error for TickError {}

impl CoarseClock {
    /// The tick of [`new`](CoarseClock::new): 1 ms (Linux's jiffy at `HZ=1000`).
    pub const DEFAULT_TICK: Duration = Duration::from_millis(1);
    /// The shortest tick accepted, 100 µs: shorter ones would keep a core busy waking up.
    pub const MIN_TICK: Duration = Duration::from_micros(100);
    /// The longest tick accepted, 1 s: longer ones would blur timeouts of a few seconds.
    pub const MAX_TICK: Duration = Duration::from_secs(1);

    /// A clock with 1 ms ticks, on the process's shared 1 ms ticker (started if it is not
    /// running).
    ///
    /// # Panics
    ///
    /// If the ticker thread has to be started and the operating system refuses (as
    /// `std::thread::spawn` does); [`with_tick`](CoarseClock::with_tick) returns that as an
    /// error instead.
    pub fn new() -> Self {
        match CoarseClock::with_tick(CoarseClock::DEFAULT_TICK) {
            Ok(clock) => clock,
            Err(e) => panic!("refwatch::time::CoarseClock::new: {e}"),
        }
    }

    /// A clock with ticks of `tick`, on the process's shared ticker for that tick (started if
    /// it is not running). Fails on a zero tick, a tick outside
    /// [`MIN_TICK`](CoarseClock::MIN_TICK) ..= [`MAX_TICK`](CoarseClock::MAX_TICK), or when
    /// the ticker thread cannot be started.
    pub fn with_tick(tick: Duration) -> Result<Self, TickError> {
        if tick.is_zero() {
            return Err(TickError::Zero);
        }
        if !(CoarseClock::MIN_TICK..=CoarseClock::MAX_TICK).contains(&tick) {
            return Err(TickError::OutOfRange(tick));
        }
        Ok(CoarseClock {
            inner: coarse::Handle::new(tick)?,
        })
    }

    /// The clock's granularity: every reading is a multiple of it.
    pub fn tick(&self) -> Duration {
        self.inner.tick()
    }

    /// How many ticker threads with ticks of `tick` are running in the process: 1 while any
    /// clock with that tick exists, 0 once the last one has been dropped (its drop joins the
    /// thread). For a moment it can read 2, when a clock is created while the last clock of
    /// the previous ticker is being dropped. Always 0 under the model checkers.
    pub fn tickers_running(tick: Duration) -> usize {
        coarse::running(tick)
    }
}

impl Default for CoarseClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for CoarseClock {
    /// Another handle on the same ticker (same time line); the ticker runs until the last
    /// handle is dropped.
    fn clone(&self) -> Self {
        CoarseClock {
            inner: self.inner.clone(),
        }
    }
}

impl fmt::Debug for CoarseClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoarseClock")
            .field("tick", &self.tick())
            .field("now", &self.now())
            .finish()
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant(self.inner.now())
    }
}

/// The coarse clock's ticker threads and their registry (std only).
#[cfg(not(any(loom, shuttle)))]
mod coarse {
    use super::{duration_nanos, TickError};
    use crate::sync::atomic::{AtomicU64, Ordering};
    use crate::sync::{lazy_static, thread, Arc, Condvar, Mutex};
    use std::time::{Duration, Instant as StdInstant};

    /// What a ticker thread and the clocks on it share.
    #[derive(Debug)]
    struct Ticks {
        /// The time, in nanoseconds: ticks counted × tick. Written only by the ticker thread,
        /// each write larger than the one before (see `CoarseClock`'s ordering argument).
        now: AtomicU64,
        tick: Duration,
        /// Set once, by the drop of the last clock on this ticker. Protected by its mutex,
        /// which the ticker holds except while it waits.
        stop: Mutex<bool>,
        /// Wakes the ticker early to stop.
        wake: Condvar,
    }

    /// One running ticker. Protected by `TICKERS`.
    #[derive(Debug)]
    struct Entry {
        ticks: Arc<Ticks>,
        /// Clocks (handles) on this ticker. The entry is removed, and the ticker stopped,
        /// when it reaches zero.
        users: usize,
        thread: Option<thread::JoinHandle<()>>,
    }

    lazy_static! {
        /// The running tickers, at most one per tick length. Lock order: `TICKERS`, then
        /// `RUNNING`; a ticker's `stop` lock may be taken under `TICKERS`; the ticker thread
        /// takes `RUNNING` (only when it ends) and never `TICKERS`. No thread is joined
        /// while `TICKERS` is held.
        static ref TICKERS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    }

    lazy_static! {
        /// The tick (in nanoseconds) of every ticker thread not yet ended: pushed before the
        /// thread is spawned, removed by the thread as it ends. What `tickers_running` counts.
        static ref RUNNING: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    }

    /// A clock's share of a ticker.
    #[derive(Debug)]
    pub(super) struct Handle {
        ticks: Arc<Ticks>,
    }

    impl Handle {
        pub(super) fn new(tick: Duration) -> Result<Handle, TickError> {
            let mut tickers = TICKERS.lock();
            if let Some(e) = tickers.iter_mut().find(|e| e.ticks.tick == tick) {
                e.users += 1;
                return Ok(Handle {
                    ticks: Arc::clone(&e.ticks),
                });
            }
            let ticks = Arc::new(Ticks {
                now: AtomicU64::new(0),
                tick,
                stop: Mutex::new(false),
                wake: Condvar::new(),
            });
            let theirs = Arc::clone(&ticks);
            let nanos = duration_nanos(tick);
            RUNNING.lock().push(nanos);
            let spawned = thread::Builder::new()
                .name(format!("refwatch-tick-{tick:?}"))
                .spawn(move || {
                    let _ended = Ended(nanos);
                    run(&theirs);
                });
            match spawned {
                Ok(thread) => {
                    tickers.push(Entry {
                        ticks: Arc::clone(&ticks),
                        users: 1,
                        thread: Some(thread),
                    });
                    Ok(Handle { ticks })
                }
                Err(e) => {
                    drop(Ended(nanos));
                    Err(TickError::Spawn(e.kind()))
                }
            }
        }

        #[inline]
        pub(super) fn now(&self) -> u64 {
            self.ticks.now.load(Ordering::Relaxed)
        }

        pub(super) fn tick(&self) -> Duration {
            self.ticks.tick
        }

        /// The registry entry of this handle's ticker; it exists while any handle does.
        ///
        /// Preconditions: `TICKERS` is locked (`tickers` is its contents).
        fn entry<'a>(&self, tickers: &'a mut [Entry]) -> (usize, &'a mut Entry) {
            tickers
                .iter_mut()
                .enumerate()
                .find(|(_, e)| Arc::ptr_eq(&e.ticks, &self.ticks))
                .expect("refwatch::time::CoarseClock: a live clock's ticker is registered")
        }
    }

    impl Clone for Handle {
        fn clone(&self) -> Handle {
            let mut tickers = TICKERS.lock();
            self.entry(&mut tickers).1.users += 1;
            Handle {
                ticks: Arc::clone(&self.ticks),
            }
        }
    }

    impl Drop for Handle {
        fn drop(&mut self) {
            let thread = {
                let mut tickers = TICKERS.lock();
                let (i, entry) = self.entry(&mut tickers);
                entry.users -= 1;
                if entry.users > 0 {
                    return;
                }
                let entry = tickers.swap_remove(i);
                *entry.ticks.stop.lock() = true;
                entry.ticks.wake.notify_all();
                entry.thread
            };
            if let Some(thread) = thread {
                // The ticker cannot panic short of a broken `std::time::Instant`; a panic
                // there was reported by the thread, and a drop must not panic again.
                let _ = thread.join();
            }
        }
    }

    /// Removes one `RUNNING` record of its tick when dropped: as the ticker thread ends, even
    /// by a panic.
    struct Ended(u64);

    impl Drop for Ended {
        fn drop(&mut self) {
            let mut running = RUNNING.lock();
            if let Some(i) = running.iter().position(|&t| t == self.0) {
                running.swap_remove(i);
            }
        }
    }

    pub(super) fn running(tick: Duration) -> usize {
        let nanos = duration_nanos(tick);
        RUNNING.lock().iter().filter(|&&t| t == nanos).count()
    }

    /// The ticker thread's body: counts one tick each time one is due, until stopped.
    ///
    /// Tick `k` is due at `due`, `k` ticks after the start while the ticker keeps up. The
    /// ticker counts a tick only when the real clock has reached its due time (so the time
    /// is never ahead of the real one). After counting, it reads the real clock again: if
    /// that is less than a tick past the due time, the next tick is due one tick later (the
    /// schedule holds, no drift); otherwise the ticks missed are dropped and the next is due
    /// one tick from now. Either way the next due time is after the moment the count was
    /// published and at least a tick after the previous due time, which is what bounds an
    /// interval on the clock by the real interval plus two ticks.
    fn run(ticks: &Ticks) {
        let tick = ticks.tick;
        let step = duration_nanos(tick);
        let mut time = 0u64;
        let mut due = StdInstant::now() + tick;
        let mut stop = ticks.stop.lock();
        while !*stop {
            let now = StdInstant::now();
            if now < due {
                // Spurious and early wake-ups just go round again.
                stop = ticks.wake.wait_timeout(stop, due - now).0;
                continue;
            }
            time = time.saturating_add(step);
            ticks.now.store(time, Ordering::Relaxed);
            due = next_due(due, StdInstant::now(), tick);
        }
    }

    /// When the tick after the one due at `due` is due, the count having been published
    /// before `after`: a tick later on the schedule if the ticker is less than a tick late,
    /// else a tick from `after` (the ticks missed are dropped, not made up).
    pub(super) fn next_due(due: StdInstant, after: StdInstant, tick: Duration) -> StdInstant {
        if after < due + tick {
            due + tick
        } else {
            after + tick
        }
    }
}

/// The coarse clock under the model checkers: no ticker thread (see `CoarseClock`).
#[cfg(any(loom, shuttle))]
mod coarse {
    use super::{duration_nanos, TickError};
    use std::time::{Duration, Instant as StdInstant};

    #[derive(Clone, Debug)]
    pub(super) struct Handle {
        origin: StdInstant,
        tick: Duration,
    }

    impl Handle {
        pub(super) fn new(tick: Duration) -> Result<Handle, TickError> {
            Ok(Handle {
                origin: StdInstant::now(),
                tick,
            })
        }

        pub(super) fn now(&self) -> u64 {
            let step = duration_nanos(self.tick);
            let elapsed = duration_nanos(self.origin.elapsed());
            elapsed - elapsed % step
        }

        pub(super) fn tick(&self) -> Duration {
            self.tick
        }
    }

    pub(super) fn running(_tick: Duration) -> usize {
        0
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_never_backwards() {
        let clock = ManualClock::new();
        let shared = clock.clone();
        assert_eq!(clock.now(), Instant::from_nanos(0));
        shared.advance(Duration::from_millis(5));
        assert_eq!(clock.now(), Instant::from_nanos(5_000_000));
        clock.set(Instant::from_nanos(1));
        assert_eq!(
            clock.now(),
            Instant::from_nanos(5_000_000),
            "set backwards is ignored"
        );
        clock.advance(Duration::MAX);
        assert_eq!(
            clock.now(),
            Instant::from_nanos(u64::MAX),
            "advance saturates"
        );
    }

    #[test]
    fn monotonic_clock_never_goes_backwards() {
        let clock = MonotonicClock::new();
        let mut last = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }

    /// Waits (yielding) until `cond` holds, for at most a generous 30 s; whether it held.
    fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = StdInstant::now() + Duration::from_secs(30);
        while StdInstant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::yield_now();
        }
        cond()
    }

    #[test]
    fn coarse_clock_readings_never_go_back_across_threads() {
        let clock = CoarseClock::new();
        let tick = clock.tick().as_nanos() as u64;
        let start = clock.now();
        // Readings taken under one lock are ordered by it: each must be at least the one
        // before, whichever thread took it.
        let last = std::sync::Mutex::new(start);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let mut mine = clock.now();
                    let advanced = eventually(|| {
                        let mut last = last.lock().unwrap();
                        let now = clock.now();
                        assert!(now >= *last, "{now} read after {}", *last);
                        assert!(now >= mine, "{now} read after {mine} in one thread");
                        (*last, mine) = (now, now);
                        now.as_nanos() >= start.as_nanos() + 5 * tick
                    });
                    assert!(advanced, "the clock did not advance 5 ticks in 30 s");
                });
            }
        });
    }

    #[test]
    fn coarse_clock_advances_and_never_runs_faster_than_real_time() {
        let clock = CoarseClock::new();
        let tick = clock.tick();
        let real_start = StdInstant::now();
        let start = clock.now();
        assert!(eventually(|| clock.now() > start), "no tick in 30 s");
        let end = clock.now();
        let real = real_start.elapsed();
        assert!(end > start);
        assert!(
            end.duration_since(start) < real + 2 * tick,
            "{:?} on the clock in {real:?} of real time",
            end.duration_since(start)
        );
    }

    #[test]
    fn coarse_clock_readings_are_whole_ticks() {
        let tick = Duration::from_micros(700); // used by no other test
        let clock = CoarseClock::with_tick(tick).unwrap();
        assert_eq!(clock.tick(), tick);
        let step = 700_000;
        let first = clock.now();
        let mut seen = vec![first];
        assert!(eventually(|| {
            let now = clock.now();
            if now != *seen.last().unwrap() {
                seen.push(now);
            }
            seen.len() > 5
        }));
        for pair in seen.windows(2) {
            assert!(pair[1] > pair[0]);
            assert_eq!(
                pair[0].as_nanos() % step,
                0,
                "{} is not whole ticks",
                pair[0]
            );
            assert_eq!((pair[1].as_nanos() - pair[0].as_nanos()) % step, 0);
        }
    }

    #[test]
    fn coarse_ticker_is_shared_and_stops_with_its_last_clock() {
        let tick = Duration::from_micros(1234); // used by no other test
        assert_eq!(CoarseClock::tickers_running(tick), 0);
        let a = CoarseClock::with_tick(tick).unwrap();
        assert_eq!(CoarseClock::tickers_running(tick), 1);
        let b = a.clone();
        let c = CoarseClock::with_tick(tick).unwrap();
        assert_eq!(CoarseClock::tickers_running(tick), 1, "one ticker per tick");
        let before = a.now();
        assert!(eventually(|| c.now() > before), "c is on a's time line");
        drop(a);
        drop(c);
        assert_eq!(CoarseClock::tickers_running(tick), 1, "b still uses it");
        let at = b.now();
        assert!(eventually(|| b.now() > at), "still ticking for b");
        drop(b);
        assert_eq!(
            CoarseClock::tickers_running(tick),
            0,
            "joined by the last drop"
        );

        // A table on the clock: the ticker goes with the table (and a new one starts).
        let table = crate::conntrack::ConnTable::with_clock(
            crate::conntrack::Config::with_buckets(16),
            CoarseClock::with_tick(tick).unwrap(),
        )
        .unwrap();
        assert_eq!(CoarseClock::tickers_running(tick), 1);
        let t0 = table.clock().now();
        assert!(eventually(|| table.clock().now() > t0));
        drop(table);
        assert_eq!(CoarseClock::tickers_running(tick), 0);
    }

    #[test]
    fn coarse_clock_refuses_a_zero_or_unreasonable_tick() {
        assert_eq!(
            CoarseClock::with_tick(Duration::ZERO).unwrap_err(),
            TickError::Zero
        );
        for bad in [
            Duration::from_nanos(1),
            Duration::from_micros(99),
            Duration::from_millis(1001),
        ] {
            assert_eq!(
                CoarseClock::with_tick(bad).unwrap_err(),
                TickError::OutOfRange(bad)
            );
        }
        assert!(TickError::Zero.to_string().contains("zero"));
        for ok in [CoarseClock::MIN_TICK, CoarseClock::MAX_TICK] {
            assert_eq!(CoarseClock::with_tick(ok).unwrap().tick(), ok);
        }
    }

    #[test]
    fn coarse_ticker_keeps_its_schedule_unless_a_tick_late() {
        let tick = Duration::from_millis(1);
        let due = StdInstant::now();
        // Late by less than a tick: the next tick is due on the schedule (no drift).
        let late = due + Duration::from_micros(900);
        assert_eq!(coarse::next_due(due, late, tick), due + tick);
        // A tick or more late: the missed ticks are dropped; the next is a tick from now.
        let stalled = due + Duration::from_millis(50);
        assert_eq!(coarse::next_due(due, stalled, tick), stalled + tick);
        assert_eq!(coarse::next_due(due, due + tick, tick), due + 2 * tick);
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_nanos(10);
        assert_eq!(t.duration_since(Instant::from_nanos(20)), Duration::ZERO);
        assert_eq!(
            t.saturating_add(Duration::MAX),
            Instant::from_nanos(u64::MAX)
        );
    }
}
