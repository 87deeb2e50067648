//! A counted object for the models: it counts its destructions, carries a payload whose
//! loss (`Track`) fails a loom model, and has per-holder cells whose writes the destructor
//! reads, so a missing release/acquire shows up as a data race. And [`Canary`], a handle
//! payload that a check can see is dead.

use refwatch::refs::RefCounter;
use refwatch::sync::atomic::{AtomicUsize, Ordering};
use refwatch::sync::{Arc, Mutex, Track, UnsafeCell};

/// Number of per-holder cells a [`Probe`] carries (the main thread and three tryers).
pub const CELLS: usize = 4;

/// An object counted by `C`.
#[derive(Debug)]
pub struct Probe<C> {
    refs: C,
    destroyed: AtomicUsize,
    /// Dropped by the destructor: a model that never destroys leaks it, and loom says so.
    payload: Mutex<Option<Track<u64>>>,
    /// Written by holders before they let go, read by the destructor.
    cells: [UnsafeCell<u64>; CELLS],
    /// What the destructor read from the cells.
    seen: [AtomicUsize; CELLS],
}

// SAFETY: the cells are the only non-`Sync` fields. Each holder writes only its own cell,
// and only while it holds a reference; the destructor reads them once, after the last
// reference is gone. Whether those accesses are ordered is exactly what the loom model
// `dec_publishes_writes_to_destructor_*` checks (and loom fails it when they are not).
unsafe impl<C: Sync> Sync for Probe<C> {}

impl<C: RefCounter> Probe<C> {
    /// A live object with one reference.
    pub fn new() -> Self {
        Probe {
            refs: C::new(),
            destroyed: AtomicUsize::new(0),
            payload: Mutex::new(Some(Track::new(7))),
            cells: std::array::from_fn(|_| UnsafeCell::new(0)),
            seen: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }

    /// The counter.
    pub fn refs(&self) -> &C {
        &self.refs
    }

    fn destroy(&self) {
        self.destroyed.fetch_add(1, Ordering::SeqCst);
        for (cell, slot) in self.cells.iter().zip(&self.seen) {
            // A read not ordered after a holder's write is a race loom reports.
            let v = cell.with(|p| {
                // SAFETY: the destructor runs after every holder's write (that is what the
                // model checks); loom reports it if not.
                unsafe { *p }
            });
            slot.store(v as usize, Ordering::SeqCst);
        }
        let payload = self.payload.lock().take();
        assert!(payload.is_some(), "Probe destroyed twice");
    }

    /// `inc_ref`.
    pub fn inc(&self) {
        self.refs.inc_ref();
    }

    /// `dec_ref`, destroying through [`Probe`]'s destructor.
    pub fn dec(&self) {
        self.refs.dec_ref(|| self.destroy());
    }

    /// `try_inc_ref`, destroying through [`Probe`]'s destructor.
    pub fn try_inc(&self) -> bool {
        self.refs.try_inc_ref(|| self.destroy())
    }

    /// How many times the destructor ran.
    pub fn destructions(&self) -> usize {
        self.destroyed.load(Ordering::SeqCst)
    }

    /// Holder `i` writes `v` into its cell (while it holds a reference).
    pub fn write_cell(&self, i: usize, v: u64) {
        self.cells[i].with_mut(|p| {
            // SAFETY: each holder writes only its own cell, and only while holding a
            // reference; the destructor reads it after the last reference is gone.
            unsafe { *p = v }
        });
    }

    /// What the destructor read from cell `i`.
    pub fn seen(&self, i: usize) -> u64 {
        self.seen[i].load(Ordering::SeqCst) as u64
    }
}

impl<C: RefCounter> Default for Probe<C> {
    fn default() -> Self {
        Self::new()
    }
}

/// A payload that knows whether it has been dropped, for checks made through a handle.
///
/// Checking a handle's value cannot catch a use after destruction: the destructor moves the
/// value out with `ManuallyDrop::take`, and its bits stay where they were. A canary shares a
/// flag with its [`CanaryWitness`] and clears it when dropped; the witness keeps the flag's
/// memory alive, so [`Canary::is_alive`] read through a handle to a destroyed value reads
/// the cleared flag and the model's check fails. Under loom, its `Track` also fails the model
/// if the value is never dropped.
#[derive(Debug)]
pub struct Canary {
    alive: Arc<AtomicUsize>,
    _track: Track<()>,
}

/// The model's side of a [`Canary`]: whether it was dropped, and how many times.
#[derive(Debug, Clone)]
pub struct CanaryWitness(Arc<AtomicUsize>);

const ALIVE: usize = 0x00a1_17e0;
const DROPPED: usize = 0xdead;

impl Canary {
    /// A live canary and its witness.
    pub fn new() -> (Canary, CanaryWitness) {
        let alive = Arc::new(AtomicUsize::new(ALIVE));
        let witness = CanaryWitness(Arc::clone(&alive));
        (
            Canary {
                alive,
                _track: Track::new(()),
            },
            witness,
        )
    }

    /// Whether this value has not been dropped. False through a handle to a destroyed one.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst) == ALIVE
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let was = self.alive.swap(DROPPED, Ordering::SeqCst);
        assert_eq!(was, ALIVE, "Canary dropped twice");
    }
}

impl CanaryWitness {
    /// Whether the canary has been dropped.
    pub fn dropped(&self) -> bool {
        self.0.load(Ordering::SeqCst) == DROPPED
    }
}

/// Returns `handle` if the canary it points at is alive. Otherwise forgets the handle and
/// panics with `what`: dropping a handle to a destroyed value would fail in the counter's own
/// misuse check while this panic unwinds, and a panic during unwinding aborts the process,
/// hiding the model's verdict.
#[track_caller]
pub fn expect_alive<H: std::ops::Deref<Target = Canary>>(handle: H, what: &str) -> H {
    if !handle.is_alive() {
        std::mem::forget(handle);
        panic!("{what}");
    }
    handle
}
