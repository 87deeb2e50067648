//! The reaper: a thread that calls [`ConnTable::reap_unused`] at the interval it returns, and
//! [`ConnTrack`], a table that owns its reaper.

use super::hash::KeyedHash;
use super::table::{Config, ConfigError, ConnTable};
use crate::sync::{thread, Arc, Condvar, Mutex};
use crate::time::{Clock, CoarseClock};
use std::fmt;
use std::hash::BuildHasher;
use std::ops::Deref;
use std::panic::{self, AssertUnwindSafe};

/// Protected by [`Shared::state`].
#[derive(Debug, Default)]
struct ReaperState {
    /// Set once, by `Drop`: the thread exits at its next check.
    stop: bool,
    /// Passes asked for ([`Reaper::kick`], [`Reaper::reap_now`]), a ticket counter.
    requested: u64,
    /// Every request up to this ticket was served by a pass that started after it.
    served: u64,
    /// Passes completed.
    passes: u64,
    /// Set once, when a pass panicked: the thread is gone and no pass will run again.
    panicked: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<ReaperState>,
    /// Wakes the reaper (stop, kick) and the callers of `wait_for_passes`.
    wake: Condvar,
}

/// A thread that reaps a table incrementally; stopped and joined when dropped.
///
/// The thread runs one [`reap_unused`](ConnTable::reap_unused) pass, then waits for the
/// interval that pass returned, or until it is kicked or stopped, whichever comes first. It
/// holds the table through an `Arc`, so the table outlives it; dropping the `Reaper` wakes
/// it and joins it, so it never outlives its `Reaper`.
///
/// If a pass panics (the table's [`Clock`] panicked, say), the thread ends: the panic is
/// reported as usual, and every caller waiting in [`reap_now`](Reaper::reap_now) or
/// [`wait_for_passes`](Reaper::wait_for_passes), or calling them later, gets
/// [`ReaperPanicked`] instead of waiting forever. The table stays consistent (it reads its
/// clock before it changes anything) and usable; its packet paths and lookups still remove
/// the expired connections they meet.
///
/// Lock: the state mutex is never held while reaping, and no bucket lock is held while
/// taking it.
pub struct Reaper {
    shared: Arc<Shared>,
    handle: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for Reaper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reaper")
            .field("passes", &self.passes())
            .finish_non_exhaustive()
    }
}

impl Reaper {
    /// Starts reaping `table`.
    pub fn spawn<C, S>(table: Arc<ConnTable<C, S>>) -> Reaper
    where
        C: Clock + 'static,
        S: BuildHasher + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let handle = thread::spawn(move || run(&table, &theirs));
        Reaper {
            shared,
            handle: Some(handle),
        }
    }

    /// Asks for a pass now instead of at the end of the current interval; returns at once.
    pub fn kick(&self) {
        self.request();
    }

    fn request(&self) -> u64 {
        let mut state = self.shared.state.lock();
        state.requested += 1;
        self.shared.wake.notify_all();
        state.requested
    }

    /// Asks for a pass and blocks until a pass that started after the request has finished.
    /// Fails if the reaper thread panicked before such a pass finished.
    pub fn reap_now(&self) -> Result<(), ReaperPanicked> {
        let ticket = self.request();
        let mut state = self.shared.state.lock();
        while state.served < ticket && !state.stop && !state.panicked {
            state = self.shared.wake.wait(state);
        }
        if state.served < ticket && state.panicked {
            return Err(ReaperPanicked);
        }
        Ok(())
    }

    /// Passes completed so far.
    pub fn passes(&self) -> u64 {
        self.shared.state.lock().passes
    }

    /// Whether the reaper thread panicked (and so will run no more passes).
    pub fn panicked(&self) -> bool {
        self.shared.state.lock().panicked
    }

    /// Blocks until at least `n` passes have completed; returns the count. Fails if the
    /// reaper thread panicked before that.
    pub fn wait_for_passes(&self, n: u64) -> Result<u64, ReaperPanicked> {
        let mut state = self.shared.state.lock();
        while state.passes < n && !state.stop && !state.panicked {
            state = self.shared.wake.wait(state);
        }
        if state.passes < n && state.panicked {
            return Err(ReaperPanicked);
        }
        Ok(state.passes)
    }
}

/// The reaper thread panicked during a pass (the panic itself was reported when it
/// happened): no pass will run again. See [`Reaper`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaperPanicked;

impl fmt::Display for ReaperPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the conntrack reaper thread panicked: no pass will run")
    }
}

impl std::error::Error for ReaperPanicked {}

/// The reaper thread's body. A panic in a pass must not end the thread silently: the callers
/// of `reap_now` and `wait_for_passes` wait for the state to change, so the thread marks
/// itself dead, under the state lock, and wakes them all before it ends. The panic is caught
/// (not left to unwind the thread) so that the thread ends the same way under every backend,
/// the model checkers included; the panic hook has already reported it.
fn run<C: Clock, S: BuildHasher>(table: &ConnTable<C, S>, shared: &Shared) {
    // Unwind safety: the table reads its clock before it changes anything, wherever it reads
    // it, so a panic leaves it consistent (and its locks do not poison: see `crate::sync`);
    // nothing of the pass is used after a panic but the shared state, whose lock is not held
    // during a pass.
    if panic::catch_unwind(AssertUnwindSafe(|| serve(table, shared))).is_err() {
        let mut state = shared.state.lock();
        state.panicked = true;
        shared.wake.notify_all();
    }
}

fn serve<C: Clock, S: BuildHasher>(table: &ConnTable<C, S>, shared: &Shared) {
    let mut start = 0;
    let mut interval = table.config().reaper.min_interval;
    loop {
        // Every request made so far is served by the pass about to start.
        let serving = shared.state.lock().requested;
        (start, interval) = table.reap_unused(start, interval);
        let mut state = shared.state.lock();
        state.passes += 1;
        state.served = serving;
        shared.wake.notify_all();
        // Wait out the interval unless a pass was asked for or we are stopped. Spurious
        // wake-ups only make a pass come early; under the model checkers the wait returns
        // only when notified.
        if !state.stop && state.requested == state.served {
            state = shared.wake.wait_timeout(state, interval).0;
        }
        if state.stop {
            return;
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(handle) = self.handle.take() {
            // A panic in the reaper was already reported by the thread; do not panic in drop.
            let _ = handle.join();
        }
    }
}

/// A [`ConnTable`] with its own [`Reaper`]: what a packet path normally uses.
///
/// Dereferences to the table. Dropping it stops and joins the reaper thread first.
///
/// ```
/// # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
/// use refwatch::conntrack::{Config, ConnTrack, Packet};
///
/// let ct = ConnTrack::new(Config::with_buckets(256)).unwrap();
/// let pkt = Packet::udp("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap()).unwrap();
/// assert!(ct.track(&pkt).unwrap().created);
/// drop(ct); // the reaper thread is joined here
/// ```
pub struct ConnTrack<C = CoarseClock, S = KeyedHash> {
    // Field order matters only for readability: `Drop for Reaper` joins the thread, which
    // holds its own `Arc` of the table.
    reaper: Reaper,
    table: Arc<ConnTable<C, S>>,
}

impl<C, S> fmt::Debug for ConnTrack<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTrack")
            .field("table", &self.table)
            .field("reaper", &self.reaper)
            .finish()
    }
}

impl ConnTrack {
    /// A table on the coarse clock with a random hash key ([`ConnTable::new`]), and its
    /// reaper.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        Ok(ConnTrack::from_table(ConnTable::new(config)?))
    }
}

impl<C, S> ConnTrack<C, S>
where
    C: Clock + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Starts a reaper for `table`.
    pub fn from_table(table: ConnTable<C, S>) -> Self {
        let table = Arc::new(table);
        let reaper = Reaper::spawn(Arc::clone(&table));
        ConnTrack { reaper, table }
    }

    /// The reaper.
    pub fn reaper(&self) -> &Reaper {
        &self.reaper
    }

    /// A shared handle on the table (it may outlive `self`; the reaper will not).
    pub fn table(&self) -> &Arc<ConnTable<C, S>> {
        &self.table
    }
}

impl<C, S> Deref for ConnTrack<C, S> {
    type Target = ConnTable<C, S>;
    fn deref(&self) -> &ConnTable<C, S> {
        &self.table
    }
}
