//! A counted object for the models: it counts its destructions, carries a payload whose
//! loss (`Track`) fails a loom model, and has per-holder cells whose writes the destructor
//! reads, so a missing release/acquire shows up as a data race.

use refwatch::refs::RefCounter;
use refwatch::sync::atomic::{AtomicUsize, Ordering};
use refwatch::sync::{Mutex, Track, UnsafeCell};

/// Number of per-holder cells a [`Probe`] carries.
pub const CELLS: usize = 2;

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
            cells: [UnsafeCell::new(0), UnsafeCell::new(0)],
            seen: [AtomicUsize::new(0), AtomicUsize::new(0)],
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
