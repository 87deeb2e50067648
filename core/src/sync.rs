//! The one place that names the synchronisation primitives refwatch is built on.
//!
//! Every atomic, lock, `Arc`, thread, `UnsafeCell` and lazily initialised static used by the
//! library comes from this module. It re-exports [loom]'s types under `--cfg loom`,
//! [shuttle]'s under `--cfg shuttle`, and `std`'s otherwise, with the same names and the
//! same signatures on every backend, so the code that ships is the code that the models check.
//!
//! Two deliberate differences from `std`:
//! - [`Mutex::lock`], [`RwLock::read`] and [`RwLock::write`] never return a poison error: a
//!   panic while a guard is held does not make later callers panic too (tokio's shim does the
//!   same). Every refwatch structure keeps its invariant before it can panic.
//! - [`UnsafeCell`] has loom's closure API (`with`, `with_mut`), so that loom can see every
//!   access and report the ones that race.
//!
//! [loom]: https://docs.rs/loom
//! [shuttle]: https://docs.rs/shuttle

#[cfg(all(loom, shuttle))]
compile_error!("refwatch: `--cfg loom` and `--cfg shuttle` are mutually exclusive");

pub(crate) use self::backend::lazy_static;
pub use self::backend::{atomic, thread, Arc, Track};

/// Whether this build's primitives are a model checker's (`--cfg loom` or `--cfg shuttle`).
/// Such primitives work only inside a model, so code that also runs in ordinary tests — the
/// doctests, for one — checks it and steps aside:
///
/// ```
/// if refwatch::sync::MODEL_CHECKED {
///     return; // outside a model, loom's and shuttle's primitives panic
/// }
/// let counter = refwatch::sync::atomic::AtomicUsize::new(1);
/// assert_eq!(counter.load(refwatch::sync::atomic::Ordering::Relaxed), 1);
/// ```
pub const MODEL_CHECKED: bool = cfg!(any(loom, shuttle));

mod sharded;
pub use sharded::{ShardedReadGuard, ShardedRwLock, ShardedWriteGuard};
use std::marker::PhantomData;

/// Mutual exclusion without poisoning.
#[derive(Debug, Default)]
pub struct Mutex<T: ?Sized>(backend::Mutex<T>);

/// The guard of a locked [`Mutex`].
pub type MutexGuard<'a, T> = backend::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`.
    pub fn new(value: T) -> Self {
        Mutex(backend::Mutex::new(value))
    }

    /// Consumes the mutex and returns its value.
    pub fn into_inner(self) -> T {
        self.0.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, blocking until it is free. Never returns a poison error.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the mutex if it is free.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(backend::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(backend::TryLockError::WouldBlock) => None,
        }
    }
}

/// A condition variable for [`Mutex`], without poisoning.
///
/// Under loom and shuttle, [`wait_timeout`](Condvar::wait_timeout) never times out (neither
/// checker models time): it returns only when notified, so code that waits with a timeout must
/// also be woken by a notification to make progress under a model.
#[derive(Debug, Default)]
pub struct Condvar(backend::Condvar);

impl Condvar {
    /// A new condition variable.
    pub fn new() -> Self {
        Condvar(backend::Condvar::new())
    }

    /// Releases `guard`, blocks until notified (or spuriously woken), and locks again.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    /// Like [`wait`](Condvar::wait), but also returns after about `timeout` (never under the
    /// model checkers). Returns the guard and whether the wait timed out.
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: std::time::Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        let (guard, result) = self
            .0
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|e| e.into_inner());
        (guard, result.timed_out())
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.0.notify_one()
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.0.notify_all()
    }
}

/// A reader-writer lock without poisoning.
#[derive(Debug, Default)]
pub struct RwLock<T: ?Sized>(backend::RwLock<T>);

/// Shared guard of an [`RwLock`].
pub type RwLockReadGuard<'a, T> = backend::RwLockReadGuard<'a, T>;
/// Exclusive guard of an [`RwLock`].
pub type RwLockWriteGuard<'a, T> = backend::RwLockWriteGuard<'a, T>;

impl<T> RwLock<T> {
    /// A new unlocked lock holding `value`.
    pub fn new(value: T) -> Self {
        RwLock(backend::RwLock::new(value))
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access. Never returns a poison error.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Exclusive access. Never returns a poison error.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// An `Arc<T>` made from a `Box<T>`, for unsized `T` such as a trait object.
///
/// `std`'s `Arc` coerces `Arc<S>` to `Arc<dyn Trait>`, loom's cannot (it has no
/// `CoerceUnsized`), but a `Box` coerces on every backend: box the value as the trait object,
/// then call this.
///
/// ```
/// # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
/// use refwatch::sync::{arc_from_box, Arc};
/// let shown: Arc<dyn std::fmt::Display + Send + Sync> = arc_from_box(Box::new(7));
/// assert_eq!(shown.to_string(), "7");
/// ```
pub fn arc_from_box<T: ?Sized>(value: Box<T>) -> Arc<T> {
    backend::arc_from_box(value)
}

/// `Arc::new(make())`, but on std the value is written straight into the new allocation.
///
/// `Arc::new` builds its whole allocation (counts and value) on the stack and then copies it
/// to the heap with wide moves; when the value was just written with narrower stores, each
/// wide load of the copy waits for a failed store-to-load forwarding. For `Counted`'s
/// allocation that was about 7 ns of a 31 ns create+destroy (`perf annotate` of
/// `benches/examples/handle_create_destroy.rs`: the samples sat on the copy's two stores).
/// Allocating first and writing the value in place has nothing to forward. loom's and
/// shuttle's `Arc`s have no uninitialised constructor, so under the checkers this is
/// `Arc::new`: the difference is where the bytes are first written, not what any thread can
/// observe.
///
/// The value is made by `make`, called after the allocation, so that its fields are written
/// straight to the heap (a value passed in would be built on the stack before the allocation
/// and copied after it, which is the stall this avoids).
#[inline(always)]
pub(crate) fn arc_new_with<T>(make: impl FnOnce() -> T) -> Arc<T> {
    backend::arc_new_with(make)
}

/// Hints that the caller is spinning. Under the model checkers this yields to the scheduler,
/// so that a spin-wait cannot starve the thread it waits for.
pub fn spin_loop() {
    backend::spin_loop()
}

/// Interior mutability whose every access the model checkers can see.
///
/// The API is loom's: access goes through [`with`](UnsafeCell::with) and
/// [`with_mut`](UnsafeCell::with_mut), and the raw pointer must not escape the closure. A
/// shared access that outlives a closure — a `&T` handed out for as long as some handle
/// lives — is announced with [`reading`](UnsafeCell::reading), whose [`Reading`] lasts as
/// long as the access does, so that loom sees the whole use and not only its first moment.
///
/// Like `core::cell::UnsafeCell`, it is `Send` but never `Sync`, on every backend: a type that
/// shares one across threads says why that is sound with an `unsafe impl Sync`.
#[derive(Debug)]
pub struct UnsafeCell<T: ?Sized> {
    _not_sync: PhantomData<core::cell::Cell<()>>,
    cell: backend::UnsafeCell<T>,
}

impl<T> UnsafeCell<T> {
    /// A new cell holding `value`.
    pub fn new(value: T) -> Self {
        UnsafeCell {
            _not_sync: PhantomData,
            cell: backend::UnsafeCell::new(value),
        }
    }

    /// Consumes the cell and returns its value.
    pub fn into_inner(self) -> T {
        self.cell.into_inner()
    }
}

impl<T: ?Sized> UnsafeCell<T> {
    /// Runs `f` with a shared pointer to the value. Under loom, a concurrent `with_mut` that
    /// is not ordered with this call fails the model.
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.cell.with(f)
    }

    /// Runs `f` with an exclusive pointer to the value. Under loom, any concurrent access
    /// that is not ordered with this call fails the model.
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.cell.with_mut(f)
    }

    /// Starts a shared access that lasts until the returned [`Reading`] is dropped or
    /// [ended](Reading::end). Under loom, a [`with_mut`](UnsafeCell::with_mut) while any
    /// `Reading` of the cell lives, or one that is not ordered after its end, fails the
    /// model; on the other backends a `Reading` is an empty token.
    ///
    /// Use it when references obtained through [`with`](UnsafeCell::with) outlive the
    /// closure: hold a `Reading` for at least as long as those references live.
    pub fn reading(&self) -> Reading<T> {
        Reading(self.cell.reading())
    }
}

/// A shared access to an [`UnsafeCell`] that lasts until this is dropped or
/// [ended](Reading::end) (see [`UnsafeCell::reading`]). Zero-sized outside loom.
pub struct Reading<T: ?Sized>(backend::Reading<T>);

impl<T: ?Sized> std::fmt::Debug for Reading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reading")
    }
}

impl<T: ?Sized> Reading<T> {
    /// Ends the access now (dropping the `Reading` does the same). Idempotent.
    pub fn end(&mut self) {
        self.0.end()
    }
}

#[cfg(loom)]
mod backend {
    pub use loom::alloc::Track;
    pub use loom::sync::{
        atomic, Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    };
    pub use loom::thread;
    pub use std::sync::TryLockError;

    pub fn spin_loop() {
        loom::thread::yield_now();
    }

    pub fn arc_from_box<T: ?Sized>(value: Box<T>) -> Arc<T> {
        Arc::from_std(std::sync::Arc::from(value))
    }

    #[inline(always)]
    pub fn arc_new_with<T>(make: impl FnOnce() -> T) -> Arc<T> {
        Arc::new(make())
    }

    #[derive(Debug)]
    pub struct UnsafeCell<T: ?Sized>(loom::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub fn new(value: T) -> Self {
            UnsafeCell(loom::cell::UnsafeCell::new(value))
        }
        pub fn into_inner(self) -> T {
            self.0.into_inner()
        }
    }

    impl<T: ?Sized> UnsafeCell<T> {
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            self.0.with(f)
        }
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            self.0.with_mut(f)
        }
        pub fn reading(&self) -> Reading<T> {
            Reading(Some(self.0.get()))
        }
    }

    /// loom's tracked pointer, kept only for its guard: loom counts the cell as being read
    /// from until it is dropped.
    pub struct Reading<T: ?Sized>(Option<loom::cell::ConstPtr<T>>);

    impl<T: ?Sized> Reading<T> {
        pub fn end(&mut self) {
            self.0 = None;
        }
    }

    // SAFETY: the pointer inside is never dereferenced (nothing reads through a `Reading`);
    // it is only loom's guard, which records the end of the access in loom's execution state
    // when dropped. loom runs every thread of a model on one OS thread, one at a time, and
    // records the access's end against the thread that drops the guard, which is exactly
    // when the access ends, so moving or sharing the guard between model threads is sound.
    unsafe impl<T: ?Sized> Send for Reading<T> {}
    // SAFETY: as for `Send`: a `&Reading` gives access to nothing.
    unsafe impl<T: ?Sized> Sync for Reading<T> {}

    /// `lazy_static!` that loom resets on every iteration of a model.
    macro_rules! lazy_static {
        ($($t:tt)*) => { loom::lazy_static! { $($t)* } };
    }
    pub(crate) use lazy_static;
}

#[cfg(all(shuttle, not(loom)))]
mod backend {
    pub use shuttle::sync::{
        atomic, Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    };
    pub use shuttle::thread;
    pub use std::sync::TryLockError;

    pub use super::std_cell::{Reading, UnsafeCell};
    pub use super::track::Track;

    pub fn spin_loop() {
        shuttle::thread::yield_now();
    }

    pub fn arc_from_box<T: ?Sized>(value: Box<T>) -> Arc<T> {
        Arc::from(value)
    }

    #[inline(always)]
    pub fn arc_new_with<T>(make: impl FnOnce() -> T) -> Arc<T> {
        Arc::new(make())
    }

    /// `lazy_static!` that shuttle resets on every execution.
    macro_rules! lazy_static {
        ($($t:tt)*) => { shuttle::lazy_static! { $($t)* } };
    }
    pub(crate) use lazy_static;
}

#[cfg(not(any(loom, shuttle)))]
mod backend {
    pub use std::sync::TryLockError;
    pub use std::sync::{
        atomic, Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
    };
    pub use std::thread;

    pub use super::std_cell::{Reading, UnsafeCell};
    pub use super::track::Track;

    pub fn spin_loop() {
        std::hint::spin_loop();
    }

    pub fn arc_from_box<T: ?Sized>(value: Box<T>) -> Arc<T> {
        Arc::from(value)
    }

    #[inline(always)]
    pub fn arc_new_with<T>(make: impl FnOnce() -> T) -> Arc<T> {
        let mut arc = Arc::new_uninit();
        Arc::get_mut(&mut arc)
            .expect("a new Arc has no other handle")
            .write(make());
        // SAFETY: the value was written on the line above, and nothing else can reach the
        // allocation (`get_mut` has just checked that this is its only handle), so it is
        // initialised when `assume_init` reads it. Every `Counted` that the unit tests,
        // doctests and proptests make on std comes through here (the drop-counting tests of
        // `handle.rs` would see a value dropped twice or never).
        unsafe { arc.assume_init() }
    }

    /// `lazy_static!` on top of `std::sync::LazyLock`.
    macro_rules! lazy_static {
        ($(#[$attr:meta])* $vis:vis static ref $name:ident : $t:ty = $init:expr;) => {
            $(#[$attr])*
            $vis static $name: ::std::sync::LazyLock<$t> = ::std::sync::LazyLock::new(|| $init);
        };
    }
    pub(crate) use lazy_static;
}

#[cfg(not(loom))]
mod std_cell {
    /// `core::cell::UnsafeCell` behind loom's closure API.
    #[derive(Debug)]
    pub struct UnsafeCell<T: ?Sized>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub fn new(value: T) -> Self {
            UnsafeCell(core::cell::UnsafeCell::new(value))
        }
        pub fn into_inner(self) -> T {
            self.0.into_inner()
        }
    }

    impl<T: ?Sized> UnsafeCell<T> {
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
        pub fn reading(&self) -> Reading<T> {
            Reading(std::marker::PhantomData)
        }
    }

    /// Nothing to track outside loom: an empty token.
    pub struct Reading<T: ?Sized>(std::marker::PhantomData<fn(&T)>);

    impl<T: ?Sized> Reading<T> {
        pub fn end(&mut self) {}
    }
}

#[cfg(not(loom))]
mod track {
    /// Outside loom, a transparent wrapper. Under loom, `loom::alloc::Track` fails the model
    /// when a tracked value is never dropped, which is how a missing `dec_ref` is caught.
    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct Track<T>(T);

    impl<T> Track<T> {
        /// Tracks `value`.
        pub fn new(value: T) -> Self {
            Track(value)
        }
        /// The tracked value.
        pub fn get_ref(&self) -> &T {
            &self.0
        }
        /// The tracked value, mutably.
        pub fn get_mut(&mut self) -> &mut T {
            &mut self.0
        }
        /// Stops tracking and returns the value.
        pub fn into_inner(self) -> T {
            self.0
        }
    }
}
