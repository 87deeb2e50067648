//! Reference counters with a speculative `try_inc_ref`: [`Refs`] (gVisor's layout, with its
//! leak closed) and [`StickyRefs`] (one `fetch_add` per try, a sticky dead flag).
//!
//! Both are one 8-byte atomic word and implement [`RefCounter`], the raw trait that intrusive
//! structures (dentries, connections) embed. The destructor belongs to the object: every
//! operation that can end the object's life takes it, because with speculation it is not
//! only the last `dec_ref` that can bring the count to zero. Objects that carry their own
//! destructor implement [`RefCounted`] and get `inc_ref`/`dec_ref`/`try_inc_ref` for free;
//! the safe RAII layer is in [`crate::handle`].
//!
//! ```
//! # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
//! use refwatch::refs::{RefCounter, Refs};
//! use std::cell::Cell;
//!
//! struct Inode;
//! let refs = Refs::<Inode>::new();      // one reference
//! let destroyed = Cell::new(0);
//! assert!(refs.try_inc_ref(|| destroyed.set(destroyed.get() + 1))); // two
//! refs.dec_ref(|| destroyed.set(destroyed.get() + 1));              // one
//! refs.dec_ref(|| destroyed.set(destroyed.get() + 1));              // zero: destroyed
//! assert_eq!(destroyed.get(), 1);
//! assert!(refs.is_destroyed());
//! assert!(!refs.try_inc_ref(|| unreachable!()), "a dead object cannot be revived");
//! ```
//!
//! # Memory that outlives the object
//!
//! `try_inc_ref` reads the counter of an object that may already be dead, so the memory of
//! the counter must stay valid for as long as anyone can still call it: the RAII weak handle
//! keeps the allocation (not the object) alive, as `Arc`'s weak count does; intrusive users
//! rely on a lock of their own (a bucket lock, the tree lock) that stops the object being
//! freed while it can be found.
//!
//! # Memory ordering
//!
//! Every decrement is a `Release`; the compare-and-swap that claims destruction is an
//! `Acquire`. Because every write to the word is a read-modify-write, each decrement heads a
//! release sequence that runs through every later update, so the destructor sees everything
//! written by every holder before it let go.
//!
//! A successful `try_inc_ref` acquires too, with the last update it makes to the word (the
//! conversion of [`Refs`], the single add of [`StickyRefs`]): it synchronises with every
//! decrement that came before that update, so a reviver — a try that succeeds after the last
//! holder let go — sees everything the last holder wrote before its decrement. (For `Refs`
//! the speculative add alone would not do: a try can speculate while the last holder still
//! holds, and convert after it let go. The loom model `reviver_sees_last_holders_writes_refs`
//! checks exactly that interleaving; the mutant `refs_try_inc_convert_relaxed` fails it.) A
//! try that succeeds while other holders still hold learns nothing about what they write
//! later, as with `Weak::upgrade`. `inc_ref` is `Relaxed`: a caller that already holds a
//! reference has nothing new to learn (as with `Arc::clone`).
//!
//! # Misuse
//!
//! A `dec_ref` without a reference (on a dead or dying object) panics and leaves the count as
//! it was; so does an `inc_ref`. Both first update the word and then take the update back, so
//! for a moment the word is off by one. The dead marker is therefore two bits wide
//! ([`Refs`]'s and [`StickyRefs`]'s claim stores the top two bits, every check tests only the
//! top one): a misuse decrement on a dead word borrows into the second bit, never the first,
//! so a concurrent `try_inc_ref` still sees the object dead (the loom models
//! `misuse_dec_on_a_dead_object_keeps_it_dead_*`).

use crate::sync::atomic::{AtomicU64, Ordering};
use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;

/// A reference count that can be taken speculatively.
///
/// Implementors keep one invariant: the destructor passed to [`dec_ref`](Self::dec_ref) or
/// [`try_inc_ref`](Self::try_inc_ref) runs exactly once over the counter's life, and only
/// after every reference has been dropped. Callers must pass the same destructor everywhere
/// (or use [`RefCounted`], which does).
pub trait RefCounter: Send + Sync {
    /// A counter holding one reference.
    fn new() -> Self
    where
        Self: Sized;

    /// Adds a reference.
    ///
    /// # Panics
    /// When the caller holds no reference (the count was zero or the object is dead), or the
    /// count would pass [`MAX_REFS`]. The panic message names the object's type.
    fn inc_ref(&self);

    /// Drops a reference; runs `destroy` if this call ended the object's life.
    ///
    /// # Panics
    /// When the count is already zero or the object is dead (a missing `inc_ref` or an
    /// extra `dec_ref`). The count is left as it was.
    fn dec_ref(&self, destroy: impl FnOnce());

    /// Drops a reference only if it is not the last one; returns whether it did.
    ///
    /// Linux's `lockref_put_not_zero` / `refcount_dec_not_one`: the fast path of a `DecRef`
    /// whose destruction needs a lock. A caller that gets `true` has dropped its reference
    /// and must not touch the count again for it; a caller that gets `false` still holds its
    /// reference and drops it with [`dec_ref`](Self::dec_ref) under whatever lock destruction
    /// needs. This never takes the count to zero and never runs a destructor, so the
    /// transition to zero happens only where the caller's lock is held.
    ///
    /// Refuses (returns `false`, changing nothing) when one real reference or none is left,
    /// or the object is dead; the caller's `dec_ref` then does the work or reports the misuse.
    /// A compare-and-swap loop: it retries only when another thread changed the count.
    #[must_use = "false means the reference is still held and must be dropped with dec_ref"]
    fn dec_ref_unless_last(&self) -> bool;

    /// Adds a reference if the object is alive; returns whether it did.
    ///
    /// Never loops. A `false` may end the object's life (the back-out of a failed try can be
    /// what brings the count to zero), in which case this call runs `destroy`. The counter's
    /// memory must be valid (see the module docs), but the object may be dead.
    #[must_use = "a true result is a reference that must be dropped with dec_ref"]
    fn try_inc_ref(&self, destroy: impl FnOnce()) -> bool;

    /// The number of references held, racy without external synchronisation (diagnostics).
    fn read_refs(&self) -> u64;

    /// Whether destruction has been claimed. Once true, it stays true.
    fn is_destroyed(&self) -> bool;
}

/// The largest number of references either counter holds; one more `inc_ref` panics.
pub const MAX_REFS: u64 = i32::MAX as u64;

// The panics live out of line and take the word by value, so the hot paths stay two locked
// instructions with nothing spilled for a message they almost never format.

#[cold]
#[inline(never)]
#[track_caller]
fn overflow<T: ?Sized>() -> ! {
    panic!(
        "{}: reference count overflow (more than {MAX_REFS} references)",
        type_name::<T>()
    )
}

#[cold]
#[inline(never)]
#[track_caller]
fn inc_without_reference<T: ?Sized>(old: u64) -> ! {
    panic!(
        "{}: inc_ref on an object with no references (count {old:#x}): use try_inc_ref to revive",
        type_name::<T>()
    )
}

#[cold]
#[inline(never)]
#[track_caller]
fn dec_without_reference<T: ?Sized>(old: u64) -> ! {
    panic!(
        "{}: dec_ref on an object with no references (count {old:#x}): extra dec_ref or missing inc_ref",
        type_name::<T>()
    )
}

// ---------------------------------------------------------------------------------------------
// Refs
// ---------------------------------------------------------------------------------------------

/// Low half of the word: real references.
const REAL_MASK: u64 = 0xffff_ffff;
/// One speculative reference: the high half of the word counts tries in flight.
const SPECULATIVE: u64 = 1 << 32;
/// The bit that says the object is destroyed; every check tests this one.
const REFS_DEAD: u64 = 1 << 63;
/// The word a claim stores: the dead bit and the bit below it. Its real half is zero, so
/// every later try fails; a misuse `dec_ref` on it borrows into bit 62 and never clears the
/// dead bit, even while it is taking its decrement back (see the module docs).
const REFS_DEAD_MARKER: u64 = 0b11 << 62;
/// The speculative half of a word, without the dead marker.
const SPECULATIVE_MASK: u64 = !REAL_MASK & !REFS_DEAD_MARKER;

/// gVisor's `Refs`: 32 speculative references over 32 real ones in one 64-bit word, with a
/// `try_inc_ref` that takes no compare-and-swap loop — and without gVisor's leak.
///
/// `T` only names the object in panic messages and leak reports; `size_of::<Refs<T>>()` is 8.
///
/// # How `try_inc_ref` works
/// It adds a speculative reference (high half). If the real half was zero, the object is
/// dying or dead: it takes the speculative reference back and fails. Otherwise it turns the
/// speculative reference into a real one (`+1 - 2^32` in one add) and succeeds. A decrement
/// that brings the *real* half to zero while a speculative reference is in flight does not
/// destroy: that try saw the object alive and will convert.
///
/// # The seed's leak, and the fix
/// In gVisor only `DecRef` destroys, and only when *its* decrement reaches zero. Two tries
/// racing the last `dec_ref` leave the word at zero with nobody destroying:
///
/// 1. A speculates while one real reference is left (`1:1`), and will succeed.
/// 2. D drops the last real reference (`1:0`); it sees A's speculative bit, so it leaves.
/// 3. B speculates (`2:0`), sees no real reference, and will fail.
/// 4. A converts (`1:1`); later A drops its reference (`1:0`) and sees B's bit, so it leaves.
/// 5. B backs out (`0:0`). The object is unreachable, and its destructor never ran.
///
/// The `seed_try_inc_leak` mutant restores that algorithm, and the loom model
/// `two_try_inc_race_last_dec` finds it (it needs a preemption bound of 3, so it runs
/// unbounded). refwatch closes the hole with one rule: *whoever brings the whole word to zero
/// — a decrement or a failed try's back-out — claims destruction with one compare-and-swap
/// from zero to a dead marker* whose real half is zero. Only one claim can succeed, so the
/// destructor runs exactly once; a try that comes later sees a real half of zero and fails
/// (its back-out leaves the marker, not zero, so it never claims again). The success path is
/// unchanged: one speculative add, one conversion add, no loop.
///
/// # Overflow
/// The real half never carries into the speculative half: an `inc_ref` or `try_inc_ref`
/// that would pass [`MAX_REFS`] (2^31 - 1) takes its reference back and panics.
pub struct Refs<T: ?Sized> {
    word: AtomicU64,
    _object: PhantomData<fn(&T)>,
}

impl<T: ?Sized> Refs<T> {
    /// A counter holding one reference.
    pub fn new() -> Self {
        Refs {
            word: AtomicU64::new(1),
            _object: PhantomData,
        }
    }

    /// Brings the word from zero to the dead marker; runs `destroy` if this call won.
    ///
    /// Preconditions: the caller's own update just left the word at zero.
    fn claim(&self, destroy: impl FnOnce()) {
        // Acquire: reading the zero reads the end of every decrement's release sequence,
        // so the destructor happens after every holder's last access.
        if self
            .word
            .compare_exchange(0, REFS_DEAD_MARKER, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            destroy();
        }
    }
}

impl<T: ?Sized> Refs<T> {
    /// The misuse paths of `inc_ref`, out of line: `old` is the word before our increment.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn inc_ref_failed(&self, old: u64) -> ! {
        // On a dead word, take the increment back (the marker keeps the word from ever
        // reaching zero again, so no second claim is possible) lest a later try see a real
        // reference and revive it. The dead bit is tested first: while a misuse `dec_ref`
        // is taking its decrement back, a dead word's real half reads as all ones.
        if old & REFS_DEAD != 0 {
            self.word.fetch_sub(1, Ordering::Relaxed);
            inc_without_reference::<T>(old);
        }
        if old & REAL_MASK != 0 {
            // Take the increment back before the real half can carry into the speculative
            // half; it cannot reach zero, the real half is huge.
            self.word.fetch_sub(1, Ordering::Relaxed);
            overflow::<T>();
        }
        // No reference was held and the object is dying: taking the increment back could
        // leave the word at zero with the claim already lost to us, so the object is leaked
        // (the leak registry will say so) rather than risk destroying it twice.
        inc_without_reference::<T>(old);
    }
}

impl<T: ?Sized> Default for Refs<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: ?Sized> fmt::Debug for Refs<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.word.load(Ordering::Relaxed);
        f.debug_struct("Refs")
            .field("type", &type_name::<T>())
            .field("real", &(word & REAL_MASK))
            .field("speculative", &((word & SPECULATIVE_MASK) >> 32))
            .field("destroyed", &(word & REFS_DEAD != 0))
            .finish()
    }
}

impl<T: ?Sized> RefCounter for Refs<T> {
    fn new() -> Self {
        Refs::new()
    }

    fn inc_ref(&self) {
        let old = self.word.fetch_add(1, Ordering::Relaxed);
        // One compare for both misuses: a real half of zero wraps to the top.
        if (old & REAL_MASK).wrapping_sub(1) >= MAX_REFS - 1 {
            self.inc_ref_failed(old);
        }
    }

    fn dec_ref(&self, destroy: impl FnOnce()) {
        // Release: everything this holder wrote happens before the destructor.
        let old = self.word.fetch_sub(1, Ordering::Release);
        // One compare for both misuses: no real reference (the subtraction borrowed from the
        // speculative half), or a dead word (whose real half reads as all ones while another
        // misuse is taking its decrement back).
        if (old & (REFS_DEAD | REAL_MASK)).wrapping_sub(1) >= REAL_MASK {
            // Undo it, then report. The borrow never reached the dead bit (see the marker).
            self.word.fetch_add(1, Ordering::Relaxed);
            dec_without_reference::<T>(old);
        }
        if old == 1 {
            self.claim(destroy);
        }
    }

    fn dec_ref_unless_last(&self) -> bool {
        let mut old = self.word.load(Ordering::Relaxed);
        loop {
            // The dead bit first: a dead word's real half may read as anything while a
            // misuse is taking its decrement back. Speculative references do not count: a
            // try in flight may still fail, and then the real half is all there is.
            if old & REFS_DEAD != 0 || old & REAL_MASK <= 1 {
                return false;
            }
            // One compare-and-swap, not a load and a subtraction: between the two, another
            // holder could drop its reference, and both would take the count to zero with
            // nobody destroying (mutant `refs_dec_unless_last_check_then_sub`). Release, as
            // `dec_ref`: the claim that reads zero later acquires this write too.
            match self
                .word
                .compare_exchange(old, old - 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => old = now,
            }
        }
    }

    fn try_inc_ref(&self, destroy: impl FnOnce()) -> bool {
        // Relaxed: a try that fails touches nothing of the object's (its claim acquires), and
        // one that succeeds acquires with its conversion below.
        let old = self.word.fetch_add(SPECULATIVE, Ordering::Relaxed);
        if old & REAL_MASK == 0 || old & REFS_DEAD != 0 {
            // Dying or dead. Back out; if that leaves the word at zero, this call is the last
            // one out and must claim destruction (the fix of the seed's leak).
            let before = self.word.fetch_sub(SPECULATIVE, Ordering::Relaxed);
            if before == SPECULATIVE {
                self.claim(destroy);
            }
            return false;
        }
        // Alive when we speculated, and our speculative reference has kept the word from
        // reaching zero since: turn it into a real one. Acquire: the last holder may have let
        // go after we speculated (the real half may be zero now); this update reads the end
        // of its decrement's release sequence, so a reviver sees what it wrote.
        let old = self
            .word
            .fetch_add(1u64.wrapping_sub(SPECULATIVE), Ordering::Acquire);
        if old & REAL_MASK >= MAX_REFS {
            self.word.fetch_sub(1, Ordering::Relaxed);
            overflow::<T>();
        }
        true
    }

    fn read_refs(&self) -> u64 {
        let word = self.word.load(Ordering::Relaxed);
        if word & REFS_DEAD != 0 {
            0
        } else {
            word & REAL_MASK
        }
    }

    fn is_destroyed(&self) -> bool {
        self.word.load(Ordering::Acquire) & REFS_DEAD != 0
    }
}

// ---------------------------------------------------------------------------------------------
// StickyRefs
// ---------------------------------------------------------------------------------------------

/// The sticky "destroyed" flag: the top bit of the word; every check tests this one.
const STICKY_DEAD: u64 = 1 << 63;
/// The word a claim stores: the flag and the bit below it, so that a misuse `dec_ref` on a
/// dead word borrows into bit 62 and never clears the flag (see the module docs).
const STICKY_DEAD_MARKER: u64 = 0b11 << 62;

/// A counter whose `try_inc_ref` is one `fetch_add`: the top bit is a sticky dead flag.
///
/// The low 63 bits count references. `try_inc_ref` adds one and succeeds unless the flag
/// was set (its add to a dead word is harmless: nothing reads a dead word's count, and it
/// would take 2^62 failed tries to wrap). The decrement that reaches zero does not destroy
/// at once: it claims death with one compare-and-swap from zero to the flag, and loses it
/// to any increment that came in between — that increment revived the object, and whoever
/// brings it to zero next claims again. Linux's `rcuref` has this shape (a relaxed add to
/// get, a release subtract to put, a slow path that claims death).
///
/// Compared with [`Refs`]: one atomic per successful try instead of two, and a try never
/// destroys (it never decrements). The `sticky_store_dead` mutant (destruction claimed by a
/// plain store instead of a compare-and-swap) destroys the object under a revived reference,
/// which the loom model `try_inc_races_last_dec` catches.
pub struct StickyRefs<T: ?Sized> {
    word: AtomicU64,
    _object: PhantomData<fn(&T)>,
}

impl<T: ?Sized> StickyRefs<T> {
    /// A counter holding one reference.
    pub fn new() -> Self {
        StickyRefs {
            word: AtomicU64::new(1),
            _object: PhantomData,
        }
    }
}

impl<T: ?Sized> StickyRefs<T> {
    /// The misuse paths of `inc_ref`, out of line: `old` is the word before our increment.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn inc_ref_failed(&self, old: u64) -> ! {
        if old != 0 && old & STICKY_DEAD == 0 {
            self.word.fetch_sub(1, Ordering::Relaxed);
            overflow::<T>();
        }
        // As for `Refs`: on a dying word the object is leaked rather than risk destroying it
        // twice; on a dead word the add is harmless (nothing reads a dead word's count).
        inc_without_reference::<T>(old);
    }
}

impl<T: ?Sized> Default for StickyRefs<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: ?Sized> fmt::Debug for StickyRefs<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.word.load(Ordering::Relaxed);
        f.debug_struct("StickyRefs")
            .field("type", &type_name::<T>())
            .field("refs", &(word & !STICKY_DEAD_MARKER))
            .field("destroyed", &(word & STICKY_DEAD != 0))
            .finish()
    }
}

impl<T: ?Sized> RefCounter for StickyRefs<T> {
    fn new() -> Self {
        StickyRefs::new()
    }

    fn inc_ref(&self) {
        let old = self.word.fetch_add(1, Ordering::Relaxed);
        // One compare for every misuse: zero wraps to the top, and so does the dead flag.
        if old.wrapping_sub(1) >= MAX_REFS - 1 {
            self.inc_ref_failed(old);
        }
    }

    fn dec_ref(&self, destroy: impl FnOnce()) {
        let old = self.word.fetch_sub(1, Ordering::Release);
        if old == 0 || old & STICKY_DEAD != 0 {
            self.word.fetch_add(1, Ordering::Relaxed);
            dec_without_reference::<T>(old);
        }
        if old == 1
            && self
                .word
                .compare_exchange(0, STICKY_DEAD_MARKER, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            destroy();
        }
    }

    fn dec_ref_unless_last(&self) -> bool {
        let mut old = self.word.load(Ordering::Relaxed);
        loop {
            // Zero and one refuse, and so does the dead flag (the word is then huge).
            if old & STICKY_DEAD != 0 || old <= 1 {
                return false;
            }
            // As `Refs`: one compare-and-swap (see there), with release ordering.
            match self
                .word
                .compare_exchange(old, old - 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => old = now,
            }
        }
    }

    fn try_inc_ref(&self, _destroy: impl FnOnce()) -> bool {
        // Acquire: a reviver sees what the last holder wrote before its decrement.
        let old = self.word.fetch_add(1, Ordering::Acquire);
        if old & STICKY_DEAD != 0 {
            return false;
        }
        if old >= MAX_REFS {
            self.word.fetch_sub(1, Ordering::Relaxed);
            overflow::<T>();
        }
        // `old == 0` is a revival: the decrement that reached zero has not claimed death yet,
        // and its compare-and-swap will now fail.
        true
    }

    fn read_refs(&self) -> u64 {
        let word = self.word.load(Ordering::Relaxed);
        if word & STICKY_DEAD != 0 {
            0
        } else {
            word
        }
    }

    fn is_destroyed(&self) -> bool {
        self.word.load(Ordering::Acquire) & STICKY_DEAD != 0
    }
}

// ---------------------------------------------------------------------------------------------
// RefCounted
// ---------------------------------------------------------------------------------------------

/// An object that embeds a [`RefCounter`] and owns its destructor.
///
/// Implement `refs` and `destroy`; the provided methods pass `destroy` to every counter
/// operation, so the object is destroyed exactly once whichever call ends its life.
///
/// ```
/// # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
/// use refwatch::refs::{RefCounted, Refs};
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// struct Dentry { refs: Refs<Dentry>, gone: AtomicBool }
/// impl RefCounted for Dentry {
///     type Counter = Refs<Dentry>;
///     fn refs(&self) -> &Refs<Dentry> { &self.refs }
///     fn destroy(&self) { self.gone.store(true, Ordering::Relaxed) }
/// }
///
/// let d = Dentry { refs: Refs::new(), gone: AtomicBool::new(false) };
/// d.inc_ref();
/// d.dec_ref();
/// assert!(!d.gone.load(Ordering::Relaxed));
/// d.dec_ref();
/// assert!(d.gone.load(Ordering::Relaxed));
/// assert!(!d.try_inc_ref());
/// ```
pub trait RefCounted {
    /// The embedded counter.
    type Counter: RefCounter;

    /// The embedded counter.
    fn refs(&self) -> &Self::Counter;

    /// Ends the object's life. Called exactly once, after the last reference is gone; the
    /// memory must stay valid afterwards for as long as a `try_inc_ref` can reach it.
    fn destroy(&self);

    /// See [`RefCounter::inc_ref`].
    fn inc_ref(&self) {
        self.refs().inc_ref();
    }

    /// See [`RefCounter::dec_ref`].
    fn dec_ref(&self) {
        self.refs().dec_ref(|| self.destroy());
    }

    /// See [`RefCounter::try_inc_ref`].
    #[must_use = "a true result is a reference that must be dropped with dec_ref"]
    fn try_inc_ref(&self) -> bool {
        self.refs().try_inc_ref(|| self.destroy())
    }

    /// See [`RefCounter::dec_ref_unless_last`].
    #[must_use = "false means the reference is still held and must be dropped with dec_ref"]
    fn dec_ref_unless_last(&self) -> bool {
        self.refs().dec_ref_unless_last()
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    struct Probe;

    fn panic_message(f: impl FnOnce()) -> String {
        let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    #[test]
    fn both_counters_are_eight_bytes() {
        assert_eq!(std::mem::size_of::<Refs<Probe>>(), 8);
        assert_eq!(std::mem::size_of::<StickyRefs<Probe>>(), 8);
        assert_eq!(std::mem::size_of::<Refs<dyn Send>>(), 8);
    }

    fn lifecycle<C: RefCounter>() {
        let c = C::new();
        let runs = Cell::new(0);
        let destroy = || runs.set(runs.get() + 1);
        assert_eq!(c.read_refs(), 1);
        c.inc_ref();
        assert!(c.try_inc_ref(destroy));
        assert_eq!(c.read_refs(), 3);
        c.dec_ref(destroy);
        c.dec_ref(destroy);
        assert_eq!(runs.get(), 0);
        assert!(!c.is_destroyed());
        c.dec_ref(destroy);
        assert_eq!(runs.get(), 1);
        assert!(c.is_destroyed());
        assert_eq!(c.read_refs(), 0);
        assert!(!c.try_inc_ref(destroy));
        assert!(!c.try_inc_ref(destroy));
        assert_eq!(runs.get(), 1, "a try on a dead object never destroys again");
        assert!(c.is_destroyed());
    }

    /// The fast path of a locked `DecRef`: it drops any reference but the last, and leaves
    /// the last one (and misuse) to `dec_ref`.
    fn dec_unless_last<C: RefCounter>() {
        let c = C::new();
        let runs = Cell::new(0);
        let destroy = || runs.set(runs.get() + 1);
        assert!(!c.dec_ref_unless_last(), "the only reference is the last");
        assert_eq!(c.read_refs(), 1, "a refusal changes nothing");
        c.inc_ref();
        c.inc_ref();
        assert!(c.dec_ref_unless_last());
        assert_eq!(c.read_refs(), 2);
        assert!(c.dec_ref_unless_last());
        assert_eq!(c.read_refs(), 1);
        assert!(!c.dec_ref_unless_last());
        assert_eq!(runs.get(), 0, "never destroys");
        c.dec_ref(destroy);
        assert_eq!(runs.get(), 1);
        assert!(!c.dec_ref_unless_last(), "a dead object refuses");
        assert!(c.is_destroyed());
        assert_eq!(runs.get(), 1);
    }

    #[test]
    fn refs_dec_unless_last_never_takes_the_last_reference() {
        dec_unless_last::<Refs<Probe>>();
        // A try in flight does not make the last real reference any less the last: if the
        // try fails, nothing else holds the object.
        let c = Refs::<Probe>::new();
        c.word.fetch_add(SPECULATIVE, Ordering::Relaxed);
        assert!(!c.dec_ref_unless_last());
        assert_eq!(c.word.load(Ordering::Relaxed), SPECULATIVE + 1);
    }

    #[test]
    fn sticky_dec_unless_last_never_takes_the_last_reference() {
        dec_unless_last::<StickyRefs<Probe>>();
    }

    #[test]
    fn refs_lifecycle() {
        lifecycle::<Refs<Probe>>();
    }

    #[test]
    fn sticky_lifecycle() {
        lifecycle::<StickyRefs<Probe>>();
    }

    fn misuse_panics_name_the_type<C: RefCounter>() {
        let c = C::new();
        c.dec_ref(|| {});
        let msg = panic_message(|| c.dec_ref(|| panic!("must not destroy twice")));
        assert!(msg.contains("Probe") && msg.contains("dec_ref"), "{msg}");
        assert!(
            c.is_destroyed(),
            "a failed dec_ref leaves the count as it was"
        );
        let msg = panic_message(|| c.inc_ref());
        assert!(msg.contains("Probe") && msg.contains("inc_ref"), "{msg}");
    }

    #[test]
    fn refs_misuse_panics_name_the_type() {
        misuse_panics_name_the_type::<Refs<Probe>>();
    }

    #[test]
    fn sticky_misuse_panics_name_the_type() {
        misuse_panics_name_the_type::<StickyRefs<Probe>>();
    }

    #[test]
    fn refs_overflow_panics_instead_of_carrying() {
        let c = Refs::<Probe>::new();
        c.word.store(MAX_REFS, Ordering::Relaxed);
        let msg = panic_message(|| c.inc_ref());
        assert!(msg.contains("overflow") && msg.contains("Probe"), "{msg}");
        assert_eq!(
            c.word.load(Ordering::Relaxed),
            MAX_REFS,
            "no carry, count restored"
        );
        let msg = panic_message(|| assert!(c.try_inc_ref(|| {})));
        assert!(msg.contains("overflow"), "{msg}");
        assert_eq!(
            c.word.load(Ordering::Relaxed),
            MAX_REFS,
            "speculative half untouched"
        );
        // Still usable below the limit.
        c.dec_ref(|| unreachable!());
        c.inc_ref();
        assert_eq!(c.read_refs(), MAX_REFS);
    }

    #[test]
    fn sticky_overflow_panics() {
        let c = StickyRefs::<Probe>::new();
        c.word.store(MAX_REFS, Ordering::Relaxed);
        let msg = panic_message(|| c.inc_ref());
        assert!(msg.contains("overflow"), "{msg}");
        let msg = panic_message(|| assert!(c.try_inc_ref(|| {})));
        assert!(msg.contains("overflow"), "{msg}");
        assert_eq!(c.read_refs(), MAX_REFS);
    }

    #[test]
    fn refs_failed_try_that_reaches_zero_destroys() {
        // The interleaving of the seed's leak, replayed by hand on one thread: D leaves the
        // word at 1:0 because A is in flight; B's failed try is the last one out.
        let c = Refs::<Probe>::new();
        let runs = Cell::new(0);
        let destroy = || runs.set(runs.get() + 1);
        c.word.fetch_add(SPECULATIVE, Ordering::Relaxed); // A speculates (sees 1 real)
        c.dec_ref(destroy); // D: 1:0, A in flight, no claim
        assert_eq!(runs.get(), 0);
        c.word
            .fetch_add(1u64.wrapping_sub(SPECULATIVE), Ordering::Relaxed); // A converts
        c.word.fetch_add(SPECULATIVE, Ordering::Relaxed); // B speculates: 1:1
        c.dec_ref(destroy); // A lets go: 1:0, B in flight
        assert_eq!(runs.get(), 0);
        // B's back-out (the tail of try_inc_ref) must claim.
        let before = c.word.fetch_sub(SPECULATIVE, Ordering::Relaxed);
        assert_eq!(before, SPECULATIVE);
        c.claim(destroy);
        assert_eq!(runs.get(), 1);
        assert!(c.is_destroyed());
    }

    #[test]
    fn sticky_revival_between_zero_and_claim_wins() {
        let c = StickyRefs::<Probe>::new();
        // A decrement that has reached zero but not yet claimed: word 0.
        c.word.store(0, Ordering::Relaxed);
        assert!(
            c.try_inc_ref(|| {}),
            "revives a count at zero that nobody claimed"
        );
        assert!(
            c.word
                .compare_exchange(0, STICKY_DEAD_MARKER, Ordering::Acquire, Ordering::Relaxed)
                .is_err(),
            "the late claim loses to the revival"
        );
        let runs = Cell::new(0);
        c.dec_ref(|| runs.set(runs.get() + 1));
        assert_eq!(runs.get(), 1);
    }

    #[test]
    fn refcounted_provided_methods_use_the_objects_destructor() {
        struct Obj {
            refs: StickyRefs<Obj>,
            runs: Cell<u32>,
        }
        impl RefCounted for Obj {
            type Counter = StickyRefs<Obj>;
            fn refs(&self) -> &StickyRefs<Obj> {
                &self.refs
            }
            fn destroy(&self) {
                self.runs.set(self.runs.get() + 1);
            }
        }
        let o = Obj {
            refs: StickyRefs::new(),
            runs: Cell::new(0),
        };
        assert!(o.try_inc_ref());
        o.dec_ref();
        o.dec_ref();
        assert_eq!(o.runs.get(), 1);
        assert!(!o.try_inc_ref());
    }

    /// A dead counter, seen from another thread: destroyed, no references, a try fails and
    /// every misuse is reported.
    fn reads_dead_to_everyone(c: &impl RefCounter) {
        assert!(c.is_destroyed());
        assert_eq!(c.read_refs(), 0);
        assert!(
            !c.try_inc_ref(|| unreachable!()),
            "a dead object was revived"
        );
        let msg = panic_message(|| c.dec_ref(|| unreachable!()));
        assert!(
            msg.contains("dec_ref on an object with no references"),
            "{msg}"
        );
        let msg = panic_message(|| c.inc_ref());
        assert!(
            msg.contains("inc_ref on an object with no references"),
            "{msg}"
        );
    }

    /// The window of a misuse `dec_ref` on a dead word, replayed by hand: its decrement is
    /// in, its undo not yet. The word must still read dead to everyone (bug 3 of issue 10:
    /// with a one-bit marker the borrow cleared it, and a try revived the object).
    #[test]
    fn refs_dead_word_stays_dead_while_a_misuse_dec_takes_its_decrement_back() {
        let c = Refs::<Probe>::new();
        let runs = Cell::new(0);
        c.dec_ref(|| runs.set(runs.get() + 1));
        let dead = c.word.load(Ordering::Relaxed);
        c.word.fetch_sub(1, Ordering::Release); // a misuse dec_ref, before its undo
        reads_dead_to_everyone(&c);
        c.word.fetch_add(1, Ordering::Relaxed); // the first misuse's undo
        assert_eq!(c.word.load(Ordering::Relaxed), dead, "every misuse undone");
        assert_eq!(runs.get(), 1);
    }

    #[test]
    fn sticky_dead_word_stays_dead_while_a_misuse_dec_takes_its_decrement_back() {
        let c = StickyRefs::<Probe>::new();
        c.dec_ref(|| {});
        c.word.fetch_sub(1, Ordering::Release); // a misuse dec_ref, before its undo
        reads_dead_to_everyone(&c);
        c.word.fetch_add(1, Ordering::Relaxed);
        assert!(c.is_destroyed());
    }

    #[test]
    fn debug_shows_the_halves() {
        let c = Refs::<Probe>::new();
        let s = format!("{c:?}");
        assert!(s.contains("real: 1") && s.contains("speculative: 0"), "{s}");
    }
}
