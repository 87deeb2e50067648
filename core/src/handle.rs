//! A safe RAII layer over a [`RefCounter`]: [`Counted`] (clone increments, drop decrements)
//! and [`WeakCounted`] (upgrades through `try_inc_ref`).
//!
//! The object's life is the counter's; the allocation's life is an `Arc`'s, held by every
//! handle, strong or weak — so the counter a weak handle calls `try_inc_ref` on is always
//! valid memory, even after the object died (as with `Arc`'s weak count). The object is
//! dropped, and its destructor callback run, exactly once, when the count is claimed dead.
//!
//! ```
//! # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
//! use refwatch::handle::Counted;
//! use refwatch::refs::StickyRefs;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! let closed = Arc::new(AtomicUsize::new(0));
//! let c = closed.clone();
//! let file = Counted::<String, StickyRefs<String>>::builder("/etc/hosts".to_string())
//!     .on_destroy(move |path| { assert_eq!(path, "/etc/hosts"); c.fetch_add(1, Ordering::Relaxed); })
//!     .build();
//! let weak = Counted::downgrade(&file);
//! let again = weak.upgrade().expect("alive");
//! assert_eq!(*again, "/etc/hosts");
//! drop((file, again));
//! assert_eq!(closed.load(Ordering::Relaxed), 1);
//! assert!(weak.upgrade().is_none());
//! ```

use crate::leak::{self, CheckedObject, RefEvent, Registry};
use crate::refs::{RefCounter, Refs};
use crate::sync::atomic::{AtomicU32, Ordering};
use crate::sync::{Arc, Reading, UnsafeCell};
use std::any::type_name;
use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;

type OnDestroy<T> = Box<dyn FnOnce(T) + Send>;

struct Payload<T> {
    value: T,
    on_destroy: Option<OnDestroy<T>>,
}

type PayloadCell<T> = UnsafeCell<ManuallyDrop<Payload<T>>>;

/// The allocation shared by every handle of one object.
struct Inner<T, C> {
    refs: C,
    /// Written once, by `destroy`; read through `Counted::deref` only while a reference is
    /// held. Every `Counted` holds a [`Reading`] of it for as long as it lives.
    payload: PayloadCell<T>,
    /// Where the object registered, if leak checking was on when it was made. Decided by one
    /// reading of the mode: the seed re-reads it at unregistration, so a mode change in
    /// between loses or double-removes the entry (mutant `registry_mode_reread`).
    registry: Option<HandleRegistry>,
    /// The slot of this object's record in `registry` ([`UNREGISTERED`] when it has none):
    /// written once by `build`, right after registering and before the handle leaves the
    /// building thread; set back to `UNREGISTERED` by `destroy` once the record has left.
    slot: AtomicU32,
    /// Whether every reference event is logged.
    log: bool,
}

/// The registry a handle registered with, kept so that it unregisters there.
///
/// The process-wide registry lives as long as the process, so a handle keeps a plain reference
/// to it: making and destroying a handle in the default registry takes no count on it. Any
/// other registry is kept alive by a clone of its `Arc` (one atomic add when the handle is
/// made, one subtract when its allocation is freed).
enum HandleRegistry {
    Global(&'static Registry),
    Shared(Arc<Registry>),
}

impl Deref for HandleRegistry {
    type Target = Registry;

    #[inline]
    fn deref(&self) -> &Registry {
        match self {
            HandleRegistry::Global(registry) => registry,
            HandleRegistry::Shared(registry) => registry,
        }
    }
}

/// [`Inner::slot`] of an object with no record in its registry.
const UNREGISTERED: u32 = u32::MAX;

// SAFETY: `Inner` is shared between threads by `Arc`. The payload is read (`&T`) only by
// holders of a reference and written only by `destroy`, which runs once, after every reference
// is gone (the counter's claim, checked by the loom models `handle_*`), so the `UnsafeCell`
// never sees a write racing a read. Sharing `&T` across threads needs `T: Sync`, moving the
// value into the destroying thread needs `T: Send`; the callback is `Send` and only called there.
unsafe impl<T: Send + Sync, C: RefCounter> Send for Inner<T, C> {}
// SAFETY: as for `Send` above.
unsafe impl<T: Send + Sync, C: RefCounter> Sync for Inner<T, C> {}

impl<T, C: RefCounter> Inner<T, C> {
    fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// Ends the object's life. Runs once: only the caller that won the counter's claim gets here.
    fn destroy(&self) {
        if let Some(registry) = &self.registry {
            self.unregister(registry);
        }
        // SAFETY: the counter's claim succeeded exactly once (that is the invariant the loom
        // models check), and it succeeds only when no reference is held, so no `&T` handed out
        // by `Counted::deref` is alive (under loom, no handle's `Reading` is) and no other call
        // can reach the payload again: this is the only access and the last one. The
        // allocation is freed only when the last `Arc` goes, and `Drop for Inner` does not
        // touch the payload.
        let payload = self
            .payload
            .with_mut(|p| unsafe { ManuallyDrop::take(&mut *p) });
        match payload.on_destroy {
            Some(callback) => callback(payload.value),
            None => drop(payload.value),
        }
    }

    /// Takes this object's record out of `registry`, where `build` put it.
    fn unregister(&self, registry: &Registry) {
        let slot = self.slot.load(Ordering::Relaxed);
        registry.unregister_handle(self.id(), slot, type_name::<T>(), self.log);
        self.slot.store(UNREGISTERED, Ordering::Relaxed);
    }

    fn log(&self, event: RefEvent) {
        if self.log {
            leak::log_event(type_name::<T>(), self.id(), event, self.refs.read_refs());
        }
    }
}

/// The registry keeps a pointer to the allocation itself (no box, no `Arc` clone), so a
/// leak report can read its count.
impl<T: Send + Sync, C: RefCounter> CheckedObject for Inner<T, C> {
    fn id(&self) -> usize {
        Inner::id(self)
    }
    fn ref_type(&self) -> &'static str {
        type_name::<T>()
    }
    fn leak_message(&self) -> String {
        format!(
            "[{} {:#x}] reference count of {} instead of 0",
            type_name::<T>(),
            Inner::id(self),
            self.refs.read_refs()
        )
    }
}

impl<T, C> Drop for Inner<T, C> {
    /// The allocation is being freed. Its record left when the object was destroyed; if it is
    /// still there (the object's destruction did not unregister it, or a panic unwound past
    /// the last `dec_ref`), the record is replaced now by a copy that does not point here, so
    /// that no record outlives its object and the object is still reported as leaked. Does
    /// not touch the payload.
    fn drop(&mut self) {
        let slot = self.slot.load(Ordering::Relaxed);
        if slot != UNREGISTERED {
            if let Some(registry) = &self.registry {
                registry.orphan_handle(self as *const Self as usize, slot, type_name::<T>());
            }
        }
    }
}

/// A counted reference to a `T`: clone increments, drop decrements, and the last drop
/// destroys the object.
///
/// `C` is the counter ([`Refs`] by default, or [`StickyRefs`](crate::refs::StickyRefs)).
pub struct Counted<T, C: RefCounter = Refs<T>> {
    inner: Arc<Inner<T, C>>,
    /// The shared access to the payload that this handle's reference allows, from the
    /// moment the reference is taken until just before it is dropped. A `&T` from `deref`
    /// borrows the handle, so it lives no longer than this: under loom, the destructor's
    /// write while any handle lives fails the model, so loom checks every use of the value
    /// and not only the moment of `deref`. Zero-sized outside loom.
    reading: Reading<ManuallyDrop<Payload<T>>>,
}

impl<T, C: RefCounter> Counted<T, C> {
    /// A handle on `inner`, whose reference the caller has just taken.
    fn from_reference(inner: Arc<Inner<T, C>>) -> Self {
        let reading = inner.payload.reading();
        Counted { inner, reading }
    }
}

/// A handle that keeps the allocation but not the object; [`upgrade`](WeakCounted::upgrade)
/// succeeds while the object lives.
pub struct WeakCounted<T, C: RefCounter = Refs<T>> {
    inner: Arc<Inner<T, C>>,
}

/// Options for a new [`Counted`]: destructor callback and leak registry.
pub struct Builder<'r, T, C> {
    value: T,
    on_destroy: Option<OnDestroy<T>>,
    /// `None`: the global registry.
    registry: Option<&'r Arc<Registry>>,
    _counter: std::marker::PhantomData<fn() -> C>,
}

impl<'r, T: Send + Sync + 'static, C: RefCounter + 'static> Builder<'r, T, C> {
    /// Runs `f` with the object when its life ends, exactly once, instead of dropping it.
    pub fn on_destroy(mut self, f: impl FnOnce(T) + Send + 'static) -> Self {
        self.on_destroy = Some(Box::new(f));
        self
    }

    /// Registers with `registry` (when its mode is not off) instead of the global registry.
    pub fn registry<'a>(self, registry: &'a Arc<Registry>) -> Builder<'a, T, C> {
        Builder {
            value: self.value,
            on_destroy: self.on_destroy,
            registry: Some(registry),
            _counter: std::marker::PhantomData,
        }
    }

    /// The handle, holding the object's one reference.
    #[inline]
    pub fn build(self) -> Counted<T, C> {
        // One reading of the mode decides both registration and unregistration; with checking
        // off, the handle does not even keep the registry.
        let registry = match self.registry {
            None => {
                let global: &'static Registry = leak::global_ref();
                global.enabled().then_some(HandleRegistry::Global(global))
            }
            Some(registry) => registry
                .enabled()
                .then(|| HandleRegistry::Shared(Arc::clone(registry))),
        };
        let log = registry
            .as_ref()
            .is_some_and(|r| r.logs_refs_of(type_name::<T>()));
        // Written in place (see `sync::arc_new_with`): this allocation is most of a handle's cost.
        let inner = crate::sync::arc_new_with(|| Inner {
            refs: C::new(),
            payload: UnsafeCell::new(ManuallyDrop::new(Payload {
                value: self.value,
                on_destroy: self.on_destroy,
            })),
            registry,
            slot: AtomicU32::new(UNREGISTERED),
            log,
        });
        if let Some(registry) = &inner.registry {
            // One reading of the mode decides both registration and unregistration.
            register(&inner, registry);
        }
        Counted::from_reference(inner)
    }
}

/// Puts a record of `inner`, a new object that no other thread can see yet, in `registry`.
fn register<T: Send + Sync + 'static, C: RefCounter + 'static>(
    inner: &Arc<Inner<T, C>>,
    registry: &Registry,
) {
    let obj: &(dyn CheckedObject + 'static) = &**inner;
    // SAFETY: the record points into the `Arc`'s allocation, which does not move and is freed
    // only when the last `Arc` goes. The record leaves before that: in `destroy` (which runs
    // while its caller holds an `Arc`), or else in `Drop for Inner`, which runs before the
    // allocation is freed (and replaces the record by one that does not point here). A report
    // reads the record only under its shard's lock, which the removal takes too. (The loom
    // model `handles_share_one_shard` makes reports while another thread's handle is
    // destroyed; the unit test `a_handle_freed_while_registered_is_still_reported_and_points_nowhere`
    // covers the replacement.)
    let slot = unsafe {
        registry.register_handle(inner.id(), NonNull::from(obj), type_name::<T>(), inner.log)
    };
    inner.slot.store(slot, Ordering::Relaxed);
}

impl<T: Send + Sync + 'static, C: RefCounter + 'static> Counted<T, C> {
    /// A handle to `value`, registered with the global registry when leak checking is on.
    pub fn new(value: T) -> Self {
        Self::builder(value).build()
    }

    /// Options for a new handle.
    pub fn builder(value: T) -> Builder<'static, T, C> {
        Builder {
            value,
            on_destroy: None,
            registry: None,
            _counter: std::marker::PhantomData,
        }
    }

    /// A weak handle to the same object.
    pub fn downgrade(this: &Self) -> WeakCounted<T, C> {
        WeakCounted {
            inner: Arc::clone(&this.inner),
        }
    }

    /// The number of references (racy: for diagnostics).
    pub fn ref_count(this: &Self) -> u64 {
        this.inner.refs.read_refs()
    }

    /// Whether both handles point at the same object.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }
}

impl<T, C: RefCounter> Deref for Counted<T, C> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this handle holds a reference, so the count is positive and `destroy`, the
        // only writer, cannot run before this handle is dropped, which the borrow of `self`
        // prevents for the lifetime of the returned `&T`. The pointer escapes `with`, so
        // loom's view of the access is `self.reading`, which lives as long as the handle
        // (the loom model `handle_reference_is_tracked_until_dropped_*` checks it).
        self.inner.payload.with(|p| unsafe { &(&*p).value })
    }
}

impl<T, C: RefCounter> Clone for Counted<T, C> {
    fn clone(&self) -> Self {
        self.inner.refs.inc_ref();
        self.inner.log(RefEvent::IncRef);
        Counted::from_reference(Arc::clone(&self.inner))
    }
}

impl<T, C: RefCounter> Drop for Counted<T, C> {
    #[inline]
    fn drop(&mut self) {
        // The access ends before the reference does: the `dec_ref` may destroy.
        self.reading.end();
        let inner = &*self.inner;
        inner.refs.dec_ref(|| inner.destroy());
        inner.log(RefEvent::DecRef);
    }
}

impl<T: fmt::Debug, C: RefCounter> fmt::Debug for Counted<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counted")
            .field("value", &**self)
            .field("refs", &self.inner.refs.read_refs())
            .finish()
    }
}

impl<T, C: RefCounter> WeakCounted<T, C> {
    /// A counted handle if the object is still alive.
    ///
    /// Never loops; a failed upgrade can be the call that ends the object's life (with
    /// [`Refs`]), in which case it destroys it.
    pub fn upgrade(&self) -> Option<Counted<T, C>> {
        let inner = &*self.inner;
        if inner.refs.try_inc_ref(|| inner.destroy()) {
            inner.log(RefEvent::TryIncRef);
            Some(Counted::from_reference(Arc::clone(&self.inner)))
        } else {
            None
        }
    }

    /// Whether the object has been destroyed.
    pub fn is_destroyed(&self) -> bool {
        self.inner.refs.is_destroyed()
    }
}

impl<T, C: RefCounter> Clone for WeakCounted<T, C> {
    fn clone(&self) -> Self {
        WeakCounted {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T, C: RefCounter> fmt::Debug for WeakCounted<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakCounted")
            .field("type", &type_name::<T>())
            .field("destroyed", &self.is_destroyed())
            .finish()
    }
}

impl<T, C> fmt::Debug for Builder<'_, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("type", &type_name::<T>())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use crate::leak::LeakMode;
    use crate::refs::StickyRefs;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct DropCount(Arc<AtomicUsize>);
    impl Drop for DropCount {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn drops_once<C: RefCounter + 'static>() {
        let drops = Arc::new(AtomicUsize::new(0));
        let registry = Arc::new(Registry::new(LeakMode::Off));
        let a: Counted<DropCount, C> = Counted::builder(DropCount(drops.clone()))
            .registry(&registry)
            .build();
        let b = a.clone();
        let w = Counted::downgrade(&a);
        assert_eq!(Counted::ref_count(&a), 2);
        let c = w.upgrade().unwrap();
        assert!(Counted::ptr_eq(&a, &c));
        drop((a, b));
        assert_eq!(drops.load(Ordering::Relaxed), 0);
        drop(c);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        assert!(w.upgrade().is_none());
        assert!(w.is_destroyed());
        drop(w);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_handle_is_one_pointer() {
        // The `Reading` a handle keeps for loom is zero-sized outside it.
        assert_eq!(
            std::mem::size_of::<Counted<u64>>(),
            std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::size_of::<Counted<u64, StickyRefs<u64>>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn refs_handle_drops_value_once() {
        drops_once::<Refs<DropCount>>();
    }

    #[test]
    fn sticky_handle_drops_value_once() {
        drops_once::<StickyRefs<DropCount>>();
    }

    #[test]
    fn handles_register_when_checking_is_on_and_leave_when_destroyed() {
        let registry = Arc::new(Registry::new(LeakMode::Warn));
        let a: Counted<u32> = Counted::builder(1).registry(&registry).build();
        let b = a.clone();
        assert_eq!(registry.live_count(), 1);
        let report = registry.report();
        assert!(
            report.messages[0].contains("reference count of 2"),
            "{report}"
        );
        drop(a);
        drop(b);
        assert!(registry.check().is_empty());
    }

    #[test]
    fn handle_made_while_on_leaves_after_checking_is_turned_off() {
        let registry = Arc::new(Registry::new(LeakMode::Warn));
        let a: Counted<u32> = Counted::builder(1).registry(&registry).build();
        registry.set_mode(LeakMode::Off);
        drop(a); // must not panic with "unregistered but not registered"
        assert_eq!(registry.live_count(), 0);
        registry.set_mode(LeakMode::Warn);
        let b: Counted<u32> = Counted::builder(2).registry(&registry).build();
        std::mem::forget(b.clone());
        drop(b);
        assert_eq!(registry.check().total, 1, "a forgotten clone is reported");
    }

    #[test]
    fn opted_in_types_log_every_reference_event_with_a_backtrace() {
        use std::io::Write;
        use std::sync::Mutex as StdMutex;

        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<StdMutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        struct Logged;
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let registry = Arc::new(Registry::new(LeakMode::Warn));
            registry.log_refs_of(type_name::<Logged>(), true);
            let a: Counted<Logged> = Counted::builder(Logged).registry(&registry).build();
            let w = Counted::downgrade(&a);
            let b = w.upgrade().unwrap();
            let c = b.clone();
            drop((a, b, c));
            // Another type is not logged.
            drop(Counted::<u8>::builder(1).registry(&registry).build());
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        for event in [
            "registered",
            "TryIncRef to 2",
            "IncRef to 3",
            "DecRef to",
            "unregistered",
        ] {
            assert!(out.contains(event), "missing {event:?} in:\n{out}");
        }
        assert!(out.contains("Logged"));
        assert!(!out.contains("[u8 "), "u8 did not opt in:\n{out}");
        assert!(
            out.contains("opted_in_types_log_every_reference_event"),
            "each event carries a backtrace naming its caller"
        );
    }

    #[test]
    fn on_destroy_gets_the_value() {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let h: Counted<usize> = Counted::builder(41)
            .on_destroy(move |v| {
                s.store(v + 1, Ordering::Relaxed);
            })
            .build();
        assert_eq!(*h, 41);
        drop(h);
        assert_eq!(seen.load(Ordering::Relaxed), 42);
    }
}
