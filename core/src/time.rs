//! Time as a dependency: a [`Clock`] that components take instead of reading a global.
//!
//! Production code uses [`MonotonicClock`]; tests and models use [`ManualClock`] and move time
//! by hand, so that expiry is deterministic and a model can explore "the timeout passed here".
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
