//! The live-object leak registry: objects are registered when their count is initialised and
//! unregistered when destroyed; whatever is left when nothing should be alive has leaked.
//!
//! This is gVisor's replacement for finalizer-based leak checking: deterministic (no garbage
//! collector decides when a leak is seen), aggregated into one [`LeakReport`], and strict —
//! registering an object twice or unregistering one that was never registered panics, which
//! is how a forgotten registration is caught. The counter itself stays 8 bytes: everything
//! the report needs lives in the registry, not in the object.
//!
//! There is one process-wide registry, [`Registry::global`], whose mode comes from the
//! `REFWATCH_LEAK_CHECK` environment variable (`off`, `warn` or `panic`), and any number of
//! instances ([`Registry::new`]) so that tests running in parallel do not see each other's
//! objects.
//!
//! ```
//! # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
//! use refwatch::handle::Counted;
//! use refwatch::leak::{LeakMode, Registry};
//! use refwatch::sync::Arc;
//!
//! struct Socket;
//! let registry = Arc::new(Registry::new(LeakMode::Warn));
//! let a = Counted::<Socket>::builder(Socket).registry(&registry).build();
//! let b = Counted::<Socket>::builder(Socket).registry(&registry).build();
//! drop(a);
//! let report = registry.check(); // also logged through `tracing`
//! assert_eq!(report.total, 1);
//! assert_eq!(report.by_type[std::any::type_name::<Socket>()], 1);
//! drop(b);
//! assert!(registry.check().is_empty());
//! ```
//!
//! # Identity
//! An object is known by its address ([`CheckedObject::id`]), so only heap-pinned objects may
//! be registered, and a registered object must not move until it is unregistered.
//!
//! # Design: cheap enough to leave on
//! Checking is meant to stay on in tests and in production, so making and destroying a
//! [`Counted`](crate::handle::Counted) handle in [`LeakMode::Warn`] costs little more than in
//! [`LeakMode::Off`]:
//! - **Shards, no global lock.** The live set is a power-of-two array of shards
//!   ([`DEFAULT_SHARDS`], or [`Registry::with_shards`]), each on its own cache lines with its
//!   own lock; an object's shard is a multiplicative hash of its id, so threads making
//!   different objects rarely meet. Each shard's lock is a `Mutex` held for a few
//!   instructions (push or pop a slot).
//! - **No box, no hashing for handles.** A handle's record is a pointer to the handle's own
//!   allocation (which is the [`CheckedObject`]) in a slab of its shard; the handle remembers
//!   its slot, so unregistering is an index, and a freed slot is the next one taken. Other
//!   objects ([`Registry::register`]) are boxed into a hash table of their shard, as before.
//! - **No shared counter written for logging.** Whether a handle's type has its reference
//!   events logged is one relaxed load of a flag while no type is
//!   ([`Registry::log_refs_of`]); the set of logged types, behind its `RwLock`, is read only
//!   when some type is. (The boxed paths read the set, as they always did.)
//! - **One reading of the mode**, when the handle is made: the handle unregisters where it
//!   registered, whatever the mode is by then.
//!
//! What a handle pays with checking on, over checking off: its shard's lock and unlock when
//! it is made and again when it is destroyed (four atomic read-modify-writes: std's `Mutex`
//! takes a compare-and-swap to lock and a swap to unlock), and, with a registry of the
//! caller's ([`Builder::registry`](crate::handle::Builder::registry)), the clone of the
//! registry's `Arc` that the handle keeps and its drop (two more); a handle in the
//! process-wide registry keeps a `&'static` instead. In instructions, about 155 more per
//! create+destroy with a `u64` payload (callgrind, `benches/examples/handle_create_destroy.rs`,
//! 2026-12-03: 467 against 314 with the process-wide registry, 474 against 308 with an
//! instance; before this design, 1,014 against 244). Measured in time, `Warn` is 1.50–1.52×
//! `Off` with the process-wide registry (38 against 25 ns) and 1.60× with an instance; the two
//! lock pairs alone are 1.1–1.2× (BENCHMARKS.md, "Issue 11 targets").
//!
//! A report ([`Registry::report`]) locks every shard, in ascending order, before it reads any,
//! so it is one instant of the whole registry however objects come and go meanwhile, and it
//! sorts its messages, so it does not depend on the sharding. Objects made while a report is
//! being made wait for it.

use crate::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use crate::sync::{Arc, RwLock};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::error::Error;
use std::fmt;
use std::ptr::NonNull;
use std::str::FromStr;

/// The environment variable that sets the mode of [`Registry::global`].
pub const ENV_VAR: &str = "REFWATCH_LEAK_CHECK";

/// What leak checking does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LeakMode {
    /// No registration, no report: one relaxed load per object creation.
    #[default]
    Off,
    /// Register live objects; [`Registry::check`] logs leaks as warnings.
    Warn,
    /// As `Warn`, and [`Registry::check`] panics when anything leaked.
    Panic,
}

impl LeakMode {
    /// The mode named by [`ENV_VAR`]: `Off` when unset, an error when set to anything but
    /// `off`, `warn` or `panic` (any case, surrounding spaces ignored).
    pub fn from_env() -> Result<LeakMode, ParseLeakModeError> {
        match std::env::var(ENV_VAR) {
            Ok(value) => value.parse(),
            Err(std::env::VarError::NotPresent) => Ok(LeakMode::Off),
            Err(std::env::VarError::NotUnicode(raw)) => Err(ParseLeakModeError {
                value: raw.to_string_lossy().into_owned(),
            }),
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            LeakMode::Off => 0,
            LeakMode::Warn => 1,
            LeakMode::Panic => 2,
        }
    }

    #[inline]
    fn from_u8(v: u8) -> LeakMode {
        match v {
            1 => LeakMode::Warn,
            2 => LeakMode::Panic,
            _ => LeakMode::Off,
        }
    }
}

impl FromStr for LeakMode {
    type Err = ParseLeakModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(LeakMode::Off),
            "warn" => Ok(LeakMode::Warn),
            "panic" => Ok(LeakMode::Panic),
            _ => Err(ParseLeakModeError {
                value: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for LeakMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeakMode::Off => "off",
            LeakMode::Warn => "warn",
            LeakMode::Panic => "panic",
        })
    }
}

/// A leak mode that is not `off`, `warn` or `panic`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseLeakModeError {
    value: String,
}

impl ParseLeakModeError {
    /// The rejected value.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for ParseLeakModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid leak-check mode {:?} (from {ENV_VAR} or LeakMode::from_str): expected off, warn or panic",
            self.value
        )
    }
}

impl Error for ParseLeakModeError {}

/// A reference-counted object the registry can describe.
pub trait CheckedObject: Send + Sync {
    /// Stable identity: the object's address. It must not change while registered.
    fn id(&self) -> usize;

    /// The object's type, as shown in reports.
    fn ref_type(&self) -> &'static str;

    /// One line for the leak report, read when the report is made.
    fn leak_message(&self) -> String {
        format!("[{} {:#x}] leaked", self.ref_type(), self.id())
    }
}

impl<T: CheckedObject + ?Sized> CheckedObject for Arc<T> {
    fn id(&self) -> usize {
        (**self).id()
    }
    fn ref_type(&self) -> &'static str {
        (**self).ref_type()
    }
    fn leak_message(&self) -> String {
        (**self).leak_message()
    }
}

/// A reference event, for per-type logging (see [`Registry::log_refs_of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefEvent {
    /// The object was registered.
    Registered,
    /// The object was unregistered (destroyed).
    Unregistered,
    /// `inc_ref` (or a handle clone).
    IncRef,
    /// `dec_ref` (or a handle drop).
    DecRef,
    /// A successful `try_inc_ref` (or weak upgrade).
    TryIncRef,
}

impl fmt::Display for RefEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefEvent::Registered => "registered",
            RefEvent::Unregistered => "unregistered",
            RefEvent::IncRef => "IncRef",
            RefEvent::DecRef => "DecRef",
            RefEvent::TryIncRef => "TryIncRef",
        })
    }
}

/// What [`Registry::check`] found: every object still registered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeakReport {
    /// Number of leaked objects.
    pub total: usize,
    /// Leaked objects per type.
    pub by_type: BTreeMap<&'static str, usize>,
    /// One message per leaked object, sorted.
    pub messages: Vec<String>,
}

impl LeakReport {
    /// Whether nothing leaked.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl fmt::Display for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("leak check: no leaked objects");
        }
        write!(f, "leak check: {} leaked objects (", self.total)?;
        for (i, (ty, n)) in self.by_type.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n} {ty}")?;
        }
        f.write_str(")")?;
        for m in &self.messages {
            write!(f, "\n  {m}")?;
        }
        Ok(())
    }
}

/// The number of shards of [`Registry::new`]: enough that threads creating and destroying
/// objects at once rarely meet on one lock.
///
/// One under the model checkers: an object's shard is a hash of its address, and addresses
/// change from one of loom's executions to the next, which must repeat exactly (shuttle's
/// replays too). A model that crosses shards makes its registry with
/// [`Registry::with_shards`] and registers objects with chosen ids.
pub const DEFAULT_SHARDS: usize = if cfg!(any(loom, shuttle)) { 1 } else { 32 };

/// No slot: the end of a shard's free list.
const NO_SLOT: u32 = u32::MAX;

/// A value alone on its cache lines (two 64-byte lines: adjacent-line prefetchers pair them),
/// so that two shards' locks never share a line.
#[repr(align(128))]
struct CachePadded<T>(T);

/// One folded 64×64→128-bit multiply of an id (an address): every bit of the id reaches the
/// high and the low half. The shard is taken from bits 32 and up, a shard's hash table from
/// the low bits, so the two choices are independent.
#[inline]
fn mix(id: usize) -> u64 {
    let product = u128::from(id as u64) * 0x9E37_79B9_7F4A_7C15_u128;
    (product as u64) ^ ((product >> 64) as u64)
}

/// The hasher of a shard's table of [`Registry::register`]ed objects: ids are addresses,
/// chosen by the allocator, not by whoever could flood the table, so [`mix`] is enough.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix((self.0 as usize) ^ usize::from(b));
        }
    }
    fn write_usize(&mut self, id: usize) {
        self.0 = mix(id);
    }
}

type IdMap<V> = HashMap<usize, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The lock of one shard: the shim's `Mutex` (so loom and shuttle check the lock that
/// ships) behind the two calls the registry makes. A spin lock whose unlock is a plain store
/// would save one atomic read-modify-write per lock and unlock; it was tried and taken out,
/// because loom 0.7 cannot check an atomic written both by stores and by read-modify-writes
/// (loom#254), and a lock that differs under loom is not the lock the models check.
type ShardLock<T> = shard_lock::ShardLock<T>;
/// A held [`ShardLock`].
type ShardGuard<'a, T> = shard_lock::ShardGuard<'a, T>;

mod shard_lock {
    use crate::sync::{Mutex, MutexGuard};

    pub(super) struct ShardLock<T>(Mutex<T>);

    pub(super) struct ShardGuard<'a, T>(MutexGuard<'a, T>);

    impl<T> ShardLock<T> {
        pub(super) fn new(value: T) -> Self {
            ShardLock(Mutex::new(value))
        }

        pub(super) fn lock(&self) -> ShardGuard<'_, T> {
            ShardGuard(self.0.lock())
        }

        pub(super) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            self.lock().with(f)
        }
    }

    impl<T> ShardGuard<'_, T> {
        pub(super) fn with<R>(&mut self, f: impl FnOnce(&mut T) -> R) -> R {
            f(&mut self.0)
        }
    }
}

/// The record of a handle whose allocation was freed while it was still registered (see
/// [`Registry::orphan_handle`]).
struct Orphan {
    id: usize,
    ty: &'static str,
}

impl CheckedObject for Orphan {
    fn id(&self) -> usize {
        self.id
    }
    fn ref_type(&self) -> &'static str {
        self.ty
    }
    fn leak_message(&self) -> String {
        format!(
            "[{} {:#x}] freed while still registered (never unregistered)",
            self.ty, self.id
        )
    }
}

/// A slot of a shard's slab: the record of a registered [`Counted`](crate::handle::Counted)
/// handle while `obj` is `Some` — a pointer to the handle's own allocation, which is the
/// [`CheckedObject`] (no box, no count) — and free while it is `None`.
///
/// Two plain fields rather than an enum of a free and a live slot: filling a slot is then two
/// stores of values already in registers. An enum value was built on the stack and copied into
/// the slab, and the copy's 16-byte load had to wait for a failed store-to-load forwarding
/// from the two 8-byte stores that had just built it: most of `register_handle`'s time
/// (`perf annotate`, 59% of its samples on that copy).
#[derive(Clone, Copy)]
struct Slot {
    /// The registered handle; `None`: the slot is free.
    obj: Option<NonNull<dyn CheckedObject>>,
    /// Live: the handle's id. Free: the next free slot (or [`NO_SLOT`]).
    word: usize,
}

/// One shard of a [`Registry`]: the objects whose id [`mix`]es to it.
///
/// Invariants: `handles` is the number of live slots (`obj` is `Some`); the free slots form
/// one list from `free`; a live slot's object is alive (see [`Registry::register_handle`]).
struct Shard {
    /// Handle records; a handle remembers its slot, so unregistering is an index.
    slots: Vec<Slot>,
    /// The first free slot, or [`NO_SLOT`].
    free: u32,
    /// `Live` slots.
    handles: usize,
    /// Objects registered through [`Registry::register`] / [`Registry::register_always`].
    objects: IdMap<Box<dyn CheckedObject>>,
}

// SAFETY: the raw pointers in `slots` point to `CheckedObject`s, which are `Send + Sync`; they
// are dereferenced only as `&dyn CheckedObject`, under the shard's lock, while their slot is
// live, and a live slot's object is alive (the contract of `Registry::register_handle`).
// So moving the shard, or sharing it under its lock, between threads only shares `&` access to
// `Sync` objects.
unsafe impl Send for Shard {}

impl Shard {
    fn new() -> Self {
        Shard {
            slots: Vec::new(),
            free: NO_SLOT,
            handles: 0,
            objects: IdMap::default(),
        }
    }

    fn len(&self) -> usize {
        self.handles + self.objects.len()
    }

    /// Records the handle `obj`, whose id is `id`, in a free slot (the last freed first) and
    /// returns the slot.
    #[inline]
    fn insert_handle(&mut self, id: usize, obj: NonNull<dyn CheckedObject>) -> u32 {
        let slot = if self.free != NO_SLOT {
            let slot = self.free;
            let entry = &mut self.slots[slot as usize];
            assert!(
                entry.obj.is_none(),
                "leak registry: the free list holds a live slot"
            );
            // Free slots keep their next one in `word`, and slot numbers are `u32`s.
            self.free = entry.word as u32;
            entry.obj = Some(obj);
            entry.word = id;
            slot
        } else {
            self.grow(id, obj)
        };
        self.handles += 1;
        slot
    }

    /// Records the handle in a new slot at the end of the slab (no slot is free).
    #[cold]
    fn grow(&mut self, id: usize, obj: NonNull<dyn CheckedObject>) -> u32 {
        let slot = u32::try_from(self.slots.len())
            .ok()
            .filter(|&s| s != NO_SLOT)
            .expect("leak registry: more than 2^32 - 2 live handles in one shard");
        self.slots.push(Slot {
            obj: Some(obj),
            word: id,
        });
        slot
    }

    /// Frees `slot` if it holds the handle `id`; whether it did.
    #[inline]
    fn remove_handle(&mut self, id: usize, slot: u32) -> bool {
        match self.slots.get_mut(slot as usize) {
            Some(entry) if entry.obj.is_some() && entry.word == id => {
                entry.obj = None;
                entry.word = self.free as usize;
                self.free = slot;
                self.handles -= 1;
                true
            }
            _ => false,
        }
    }

    /// The slot of the handle `id`, by a walk of the slab (the public, by-id calls only).
    fn find_handle(&self, id: usize) -> Option<u32> {
        self.slots
            .iter()
            .position(|s| s.obj.is_some() && s.word == id)
            .map(|slot| slot as u32)
    }

    /// Every registered object of this shard.
    fn for_each(&self, mut f: impl FnMut(&dyn CheckedObject)) {
        for slot in &self.slots {
            if let Some(obj) = slot.obj {
                // SAFETY: the slot is live and the caller holds this shard's lock (it
                // has `&self` through the guard), so the object is alive: a live slot is
                // freed only under this lock, and `register_handle`'s caller keeps the
                // object alive and in place until its record has left.
                f(unsafe { obj.as_ref() });
            }
        }
        for obj in self.objects.values() {
            f(&**obj);
        }
    }
}

/// The live-object registry.
///
/// The live set is split into a power-of-two number of shards, each its own lock, chosen by a
/// hash of the object's id: objects on different shards register and unregister without
/// meeting. A [`Counted`](crate::handle::Counted) handle registers itself, not a box: its
/// shard keeps a pointer to the handle's allocation in a slab, and the handle remembers the
/// slot, so unregistering is an index (no hashing, no allocation, no reference count).
/// Other objects ([`register`](Registry::register)) are boxed in a hash table of their shard.
///
/// Protected by each shard's lock: that shard's records. Protected by `logged`: the types
/// whose reference events are logged; `logging` says whether that set is non-empty, so that
/// making an object reads the lock only when some type is logged.
///
/// Lock order: shard locks in ascending index (only [`report`](Registry::report) and
/// [`live_count`](Registry::live_count) take more than one: they take them all, so they see
/// one instant of the whole registry); `logged` is never held with a shard lock.
pub struct Registry {
    mode: AtomicU8,
    /// Whether `logged` is non-empty; written under `logged`'s write lock.
    logging: AtomicBool,
    shards: Box<[CachePadded<ShardLock<Shard>>]>,
    /// `shards.len() - 1`.
    mask: usize,
    logged: RwLock<HashSet<&'static str>>,
}

crate::sync::lazy_static! {
    static ref GLOBAL: Arc<Registry> = Arc::new(Registry::from_env());
}

impl Registry {
    /// A registry in `mode`, with [`DEFAULT_SHARDS`] shards.
    pub fn new(mode: LeakMode) -> Self {
        Registry::with_shards(mode, DEFAULT_SHARDS)
    }

    /// A registry in `mode` with `shards` shards, rounded up to a power of two (at least one).
    /// More shards let more threads register at once; each costs 128 bytes.
    pub fn with_shards(mode: LeakMode, shards: usize) -> Self {
        let shards = shards.max(1).next_power_of_two();
        Registry {
            mode: AtomicU8::new(mode.to_u8()),
            logging: AtomicBool::new(false),
            shards: (0..shards)
                .map(|_| CachePadded(ShardLock::new(Shard::new())))
                .collect(),
            mask: shards - 1,
            logged: RwLock::new(HashSet::new()),
        }
    }

    /// The process-wide registry. Its mode is read from [`ENV_VAR`] on first use; an invalid
    /// value is logged as an error and leaves checking off — call [`LeakMode::from_env`] at
    /// start-up to turn it into an error of your own.
    pub fn global() -> Arc<Registry> {
        Arc::clone(global_ref())
    }

    fn from_env() -> Registry {
        let mode = LeakMode::from_env().unwrap_or_else(|err| {
            tracing::error!(target: "refwatch::leak", "{err}; leak checking stays off");
            LeakMode::Off
        });
        Registry::new(mode)
    }

    /// The number of shards (a power of two).
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard that the object `id` registers in: a hash of the id, so the same id always
    /// lands in the same shard. For tests and models that need objects on chosen shards.
    #[inline]
    pub fn shard_of(&self, id: usize) -> usize {
        (mix(id) >> 32) as usize & self.mask
    }

    #[inline]
    fn shard(&self, id: usize) -> &ShardLock<Shard> {
        &self.shards[self.shard_of(id)].0
    }

    /// Every shard locked, in ascending order: one instant of the whole registry.
    fn lock_all(&self) -> Vec<ShardGuard<'_, Shard>> {
        self.shards.iter().map(|s| s.0.lock()).collect()
    }

    /// The current mode.
    #[inline]
    pub fn mode(&self) -> LeakMode {
        LeakMode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// Sets the mode. Objects registered before checking was turned off are still unregistered
    /// when destroyed (the RAII handle remembers where it registered).
    pub fn set_mode(&self, mode: LeakMode) {
        self.mode.store(mode.to_u8(), Ordering::Relaxed);
    }

    /// Whether objects should be registered now.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.mode() != LeakMode::Off
    }

    /// Adds `obj` to the live set; returns `false` (and does nothing) when checking is off.
    ///
    /// # Panics
    /// When an object with the same id is already registered this way.
    pub fn register(&self, obj: impl CheckedObject + 'static) -> bool {
        if !self.enabled() {
            return false;
        }
        self.register_always(obj);
        true
    }

    /// Adds `obj` to the live set whatever the mode.
    ///
    /// For callers that read the mode once ([`enabled`](Self::enabled)) and must act on that
    /// one reading: checking the mode again here could disagree with the first reading if
    /// another thread changed it in between, and the object would later be unregistered
    /// without having been registered (the model `registry_consistent_under_concurrent_create_destroy`
    /// found exactly that in the RAII handle).
    ///
    /// `obj` is boxed (one allocation); [`Counted`](crate::handle::Counted) handles register
    /// without one.
    ///
    /// # Panics
    /// When an object with the same id is already registered this way (a `Counted` handle's
    /// id is its own allocation, which nothing else can register). The registry is left as it
    /// was.
    pub fn register_always(&self, obj: impl CheckedObject + 'static) {
        let (id, ty) = (obj.id(), obj.ref_type());
        // The set itself, not the flag first: see `logged_slow`.
        let log = self.logged_slow(ty);
        let twice = self.shard(id).with(|shard| {
            if shard.objects.contains_key(&id) {
                return Some(obj);
            }
            shard.objects.insert(id, Box::new(obj));
            None
        });
        if let Some(obj) = twice {
            drop(obj); // outside the lock: its destructor may be anything
            panic!("leak registry: {ty} at {id:#x} registered twice");
        }
        if log {
            log_event(ty, id, RefEvent::Registered, 1);
        }
    }

    /// Adds the handle `obj`, whose [`id`](CheckedObject::id) is `id`, to the live set without
    /// a copy or a box, and returns its slot for [`unregister_handle`](Self::unregister_handle).
    /// Logs the event when `log`.
    ///
    /// # Safety
    /// `obj` must stay alive and in place until its record has left the registry:
    /// [`unregister_handle`](Self::unregister_handle) (or [`unregister`](Self::unregister),
    /// or [`orphan_handle`](Self::orphan_handle)) must have returned before it is dropped,
    /// freed or moved. A report reads it, under its shard's lock, as long as it is registered.
    #[inline]
    pub(crate) unsafe fn register_handle(
        &self,
        id: usize,
        obj: NonNull<dyn CheckedObject>,
        ty: &'static str,
        log: bool,
    ) -> u32 {
        let slot = self.shard(id).with(|shard| shard.insert_handle(id, obj));
        if log {
            log_event(ty, id, RefEvent::Registered, 1);
        }
        slot
    }

    /// Removes the handle `id` registered in `slot` by
    /// [`register_handle`](Self::register_handle). Logs the event when `log`.
    ///
    /// # Panics
    /// When `slot` does not hold the handle `id`: it was already unregistered (by id, through
    /// [`unregister`](Self::unregister)), or never registered. The registry is left as it was.
    #[inline]
    pub(crate) fn unregister_handle(&self, id: usize, slot: u32, ty: &'static str, log: bool) {
        let removed = self.shard(id).with(|shard| shard.remove_handle(id, slot));
        if !removed {
            not_registered(ty, id);
        }
        if log {
            log_event(ty, id, RefEvent::Unregistered, 0);
        }
    }

    /// For a handle `id` of type `ty` whose allocation is being freed while its record is
    /// still in `slot`: replaces the record, which points to the allocation, by an owned one
    /// that says so, so that the handle is still reported as leaked (it never left the
    /// registry) but nothing points to freed memory. Does nothing if `slot` does not hold
    /// `id`; never panics.
    #[cold]
    pub(crate) fn orphan_handle(&self, id: usize, slot: u32, ty: &'static str) {
        let orphan = Box::new(Orphan { id, ty });
        self.shard(id).with(|shard| {
            if shard.remove_handle(id, slot) {
                shard.objects.insert(id, orphan);
            }
        });
    }

    /// Removes the object `id` from the live set (whatever the mode: an object registered
    /// before checking was turned off must still leave).
    ///
    /// # Panics
    /// When no such object is registered: it was never registered, or was destroyed twice.
    /// The registry is left as it was.
    pub fn unregister(&self, id: usize, ty: &'static str) {
        let removed = self
            .shard(id)
            .with(|shard| match shard.objects.remove(&id) {
                Some(obj) => Some(Some(obj)),
                // A handle's record, by id: a walk of the shard's slab.
                None => shard
                    .find_handle(id)
                    .map(|slot| shard.remove_handle(id, slot))
                    .map(|_| None),
            });
        match removed {
            Some(obj) => {
                // The set itself, not the flag first: see `logged_slow`.
                if self.logged_slow(ty) {
                    log_event(ty, id, RefEvent::Unregistered, 0);
                }
                drop(obj);
            }
            None => not_registered(ty, id),
        }
    }

    /// Whether `id` is registered (for a handle, a walk of its shard's slab).
    pub fn contains(&self, id: usize) -> bool {
        self.shard(id)
            .with(|shard| shard.objects.contains_key(&id) || shard.find_handle(id).is_some())
    }

    /// Number of registered objects, at one instant (every shard locked at once).
    pub fn live_count(&self) -> usize {
        self.lock_all()
            .iter_mut()
            .map(|guard| guard.with(|shard| shard.len()))
            .sum()
    }

    /// The report of everything registered, without logging or panicking.
    ///
    /// It is one instant of the whole registry: every shard is locked (in ascending order)
    /// before any is read, so an object unregistered on one shard and another registered on
    /// a second shard afterwards are never both in the report. The messages are sorted, so
    /// the report does not depend on the sharding.
    pub fn report(&self) -> LeakReport {
        let mut shards = self.lock_all();
        let mut report = LeakReport::default();
        for guard in &mut shards {
            guard.with(|shard| {
                report.total += shard.len();
                shard.for_each(|obj| {
                    *report.by_type.entry(obj.ref_type()).or_insert(0) += 1;
                    report.messages.push(obj.leak_message());
                });
            });
        }
        drop(shards);
        report.messages.sort();
        report
    }

    /// The leak check: call it when nothing should be alive. Returns the report and logs
    /// each leak as a warning through `tracing`; in [`LeakMode::Panic`], panics with the
    /// report when anything leaked. Objects registered before checking was turned off are still
    /// reported (and still unregistered when destroyed); with checking never on, the report
    /// is empty.
    pub fn check(&self) -> LeakReport {
        let mode = self.mode();
        let report = self.report();
        if report.is_empty() {
            return report;
        }
        tracing::warn!(target: "refwatch::leak", total = report.total, "leak checking detected {} leaked objects", report.total);
        for m in &report.messages {
            tracing::warn!(target: "refwatch::leak", "{m}");
        }
        if mode == LeakMode::Panic {
            panic!("{report}");
        }
        report
    }

    /// Turns logging of every reference event (with a backtrace) on or off for objects of
    /// type `ty` created from now on. Costly: for debugging only.
    pub fn log_refs_of(&self, ty: &'static str, on: bool) {
        let mut logged = self.logged.write();
        if on {
            logged.insert(ty);
        } else {
            logged.remove(ty);
        }
        self.logging.store(!logged.is_empty(), Ordering::Relaxed);
    }

    /// Whether reference events of type `ty` are logged. One relaxed load when no type is.
    #[inline]
    pub fn logs_refs_of(&self, ty: &'static str) -> bool {
        self.logging.load(Ordering::Relaxed) && self.logged_slow(ty)
    }

    /// Whether `ty` is in the set of logged types, read under its lock. The boxed paths
    /// ([`register_always`](Self::register_always), [`unregister`](Self::unregister)) call this
    /// directly, as they always did, and only handles check the flag first: under loom an
    /// atomic load is one more branch than an uncontended read lock, and the kernfs models,
    /// which register every dentry and inode through those paths, ran past loom's branch
    /// limit with the flag.
    fn logged_slow(&self, ty: &'static str) -> bool {
        self.logged.read().contains(ty)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(LeakMode::Off)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("mode", &self.mode())
            .field("live", &self.live_count())
            .finish()
    }
}

/// The process-wide registry, without cloning it.
pub(crate) fn global_ref() -> &'static Arc<Registry> {
    &GLOBAL
}

/// The panic of an unregistration that finds nothing to remove.
#[cold]
#[track_caller]
fn not_registered(ty: &'static str, id: usize) -> ! {
    panic!("leak registry: {ty} at {id:#x} unregistered but not registered");
}

/// Logs one reference event of object `id` with the count after it and a backtrace.
#[cold]
pub fn log_event(ty: &'static str, id: usize, event: RefEvent, refs: u64) {
    let backtrace = std::backtrace::Backtrace::force_capture();
    tracing::info!(target: "refwatch::refs", "[{ty} {id:#x}] {event} to {refs}:\n{backtrace}");
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    struct Obj(Box<u8>, &'static str);
    impl CheckedObject for Obj {
        fn id(&self) -> usize {
            &*self.0 as *const u8 as usize
        }
        fn ref_type(&self) -> &'static str {
            self.1
        }
    }

    /// An object known only by the id it is given (to register one id twice).
    struct Alias(usize);
    impl CheckedObject for Alias {
        fn id(&self) -> usize {
            self.0
        }
        fn ref_type(&self) -> &'static str {
            "Alias"
        }
    }

    #[test]
    fn mode_parses_known_values_and_rejects_the_rest() {
        assert_eq!("off".parse(), Ok(LeakMode::Off));
        assert_eq!(" Warn ".parse(), Ok(LeakMode::Warn));
        assert_eq!("PANIC".parse(), Ok(LeakMode::Panic));
        let err = "loud".parse::<LeakMode>().unwrap_err();
        assert_eq!(err.value(), "loud");
        assert!(err.to_string().contains("expected off, warn or panic"));
        assert!("".parse::<LeakMode>().is_err());
    }

    #[test]
    fn off_registers_nothing() {
        let r = Registry::new(LeakMode::Off);
        assert!(!r.register(Obj(Box::new(0), "A")));
        assert_eq!(r.live_count(), 0);
        assert!(r.check().is_empty());
    }

    #[test]
    fn report_counts_by_type_and_lists_each_object() {
        let r = Registry::new(LeakMode::Warn);
        let a1 = Obj(Box::new(0), "A");
        let id = a1.id();
        assert!(r.register(a1));
        assert!(r.register(Obj(Box::new(0), "A")));
        assert!(r.register(Obj(Box::new(0), "B")));
        let report = r.check();
        assert_eq!(report.total, 3);
        assert_eq!(report.by_type.get("A"), Some(&2));
        assert_eq!(report.by_type.get("B"), Some(&1));
        assert_eq!(report.messages.len(), 3);
        assert!(report.to_string().contains("3 leaked objects"));
        r.unregister(id, "A");
        assert_eq!(r.report().total, 2);
        assert!(!r.contains(id));
    }

    #[test]
    fn double_register_and_absent_unregister_panic() {
        let r = Registry::new(LeakMode::Warn);
        let b = Box::new(7u8);
        let addr = &*b as *const u8 as usize;
        assert!(r.register(Alias(addr)));
        let err = catch_unwind(AssertUnwindSafe(|| r.register(Alias(addr)))).unwrap_err();
        assert!(err
            .downcast_ref::<String>()
            .unwrap()
            .contains("registered twice"));
        assert_eq!(r.live_count(), 1, "the panic leaves the registry as it was");
        r.unregister(addr, "Alias");
        let err = catch_unwind(AssertUnwindSafe(|| r.unregister(addr, "Alias"))).unwrap_err();
        assert!(err
            .downcast_ref::<String>()
            .unwrap()
            .contains("not registered"));
    }

    #[test]
    fn panic_mode_check_panics_with_the_report() {
        let r = Registry::new(LeakMode::Panic);
        r.register(Obj(Box::new(0), "Leaky"));
        let err = catch_unwind(AssertUnwindSafe(|| r.check())).unwrap_err();
        assert!(err.downcast_ref::<String>().unwrap().contains("1 Leaky"));
    }

    #[test]
    fn ref_logging_is_per_type() {
        let r = Registry::new(LeakMode::Warn);
        assert!(!r.logs_refs_of("A"));
        r.log_refs_of("A", true);
        assert!(r.logs_refs_of("A"));
        assert!(!r.logs_refs_of("B"));
        r.log_refs_of("A", false);
        assert!(!r.logs_refs_of("A"));
    }

    /// Objects per shard: the shards' own counts, read directly.
    fn per_shard(r: &Registry) -> Vec<usize> {
        r.shards
            .iter()
            .map(|s| s.0.with(|shard| shard.len()))
            .collect()
    }

    #[test]
    fn objects_and_handles_spread_over_every_shard() {
        use crate::handle::Counted;
        let r = Arc::new(Registry::with_shards(LeakMode::Warn, 8));
        assert_eq!(r.shards(), 8);
        let objects: Vec<usize> = (0..800)
            .map(|_| {
                let o = Obj(Box::new(0), "A");
                let id = o.id();
                r.register(o);
                id
            })
            .collect();
        let counts = per_shard(&r);
        assert_eq!(counts.iter().sum::<usize>(), 800);
        // 100 a shard on average; a hash that ignored the id's low or high bits would
        // leave shards empty.
        assert!(
            counts.iter().all(|&n| (40..=200).contains(&n)),
            "{counts:?}"
        );
        for id in &objects {
            assert!(r.contains(*id));
            assert_eq!(
                r.shard_of(*id),
                r.shard_of(*id),
                "the same id, the same shard"
            );
        }
        let handles: Vec<Counted<u64>> = (0..800)
            .map(|i| Counted::builder(i).registry(&r).build())
            .collect();
        assert_eq!(per_shard(&r).iter().sum::<usize>(), 1600);
        let handle_counts: Vec<usize> = r
            .shards
            .iter()
            .map(|s| s.0.with(|shard| shard.handles))
            .collect();
        assert!(
            handle_counts.iter().all(|&n| (40..=200).contains(&n)),
            "{handle_counts:?}"
        );
        drop(handles);
        for id in objects {
            r.unregister(id, "A");
        }
        assert_eq!(per_shard(&r), vec![0; 8]);
    }

    #[test]
    fn shard_counts_round_up_to_a_power_of_two() {
        assert_eq!(Registry::with_shards(LeakMode::Off, 0).shards(), 1);
        assert_eq!(Registry::with_shards(LeakMode::Off, 3).shards(), 4);
        assert_eq!(Registry::new(LeakMode::Off).shards(), DEFAULT_SHARDS);
        let one = Registry::with_shards(LeakMode::Off, 1);
        assert!((1..100).all(|i| one.shard_of(i * 16) == 0));
    }

    #[test]
    fn a_freed_slot_is_taken_by_the_next_handle() {
        use crate::handle::Counted;
        let r = Arc::new(Registry::with_shards(LeakMode::Warn, 1));
        let slab = |r: &Registry| r.shards[0].0.with(|s| (s.slots.len(), s.handles));
        for i in 0..100 {
            drop(Counted::<u64>::builder(i).registry(&r).build());
        }
        assert_eq!(slab(&r), (1, 0), "one slot, reused a hundred times");
        let a = Counted::<u64>::builder(1).registry(&r).build();
        let b = Counted::<u64>::builder(2).registry(&r).build();
        let c = Counted::<u64>::builder(3).registry(&r).build();
        assert_eq!(slab(&r), (3, 3));
        drop(b);
        assert_eq!(slab(&r), (3, 2));
        let d = Counted::<u64>::builder(4).registry(&r).build();
        assert_eq!(
            slab(&r),
            (3, 3),
            "the freed middle slot is reused, the slab does not grow"
        );
        let report = r.report();
        assert_eq!(report.total, 3);
        assert_eq!(report.by_type.get("u64"), Some(&3));
        drop((a, c, d));
        assert_eq!(slab(&r), (3, 0));
        assert!(r.check().is_empty());
    }

    #[test]
    fn the_report_does_not_depend_on_the_sharding() {
        use crate::handle::Counted;
        struct Fixed(usize, &'static str);
        impl CheckedObject for Fixed {
            fn id(&self) -> usize {
                self.0
            }
            fn ref_type(&self) -> &'static str {
                self.1
            }
        }
        let types = ["Dentry", "Inode", "Socket"];
        let reports: Vec<LeakReport> = [1, 2, 8, 64]
            .into_iter()
            .map(|shards| {
                let r = Registry::with_shards(LeakMode::Warn, shards);
                // Registered in a different order each time.
                let mut ids: Vec<usize> = (1..=500).map(|i| i * 16).collect();
                ids.rotate_left(shards * 7);
                for id in ids {
                    r.register(Fixed(id, types[id / 16 % 3]));
                }
                r.report()
            })
            .collect();
        for report in &reports {
            assert_eq!(report, &reports[0]);
        }
        let report = &reports[0];
        assert_eq!(report.total, 500);
        assert_eq!(report.by_type.values().sum::<usize>(), 500);
        assert_eq!(report.by_type["Inode"], 167);
        assert!(report.messages.windows(2).all(|w| w[0] < w[1]), "sorted");
        // Handles too, across shards: the same totals, sorted, one line each.
        let r = Arc::new(Registry::with_shards(LeakMode::Warn, 16));
        let handles: Vec<Counted<u32>> = (0..300)
            .map(|i| Counted::builder(i).registry(&r).build())
            .collect();
        let report = r.report();
        assert_eq!(report.total, 300);
        assert_eq!(report.by_type.get("u32"), Some(&300));
        assert!(
            report.messages.windows(2).all(|w| w[0] < w[1]),
            "sorted and distinct"
        );
        assert!(report
            .messages
            .iter()
            .all(|m| m.ends_with("reference count of 1 instead of 0")));
        assert_eq!(r.live_count(), 300);
        drop(handles);
        assert!(r.check().is_empty());
    }

    #[test]
    fn a_failed_registration_or_unregistration_leaves_the_registry_as_it_was() {
        use crate::handle::Counted;
        let r = Arc::new(Registry::with_shards(LeakMode::Warn, 4));
        let objects: Vec<Obj> = (0..20).map(|_| Obj(Box::new(0), "A")).collect();
        let ids: Vec<usize> = objects.iter().map(|o| o.id()).collect();
        for id in &ids {
            r.register(Alias(*id));
        }
        let handles: Vec<Counted<u8>> = (0..20)
            .map(|i| Counted::builder(i).registry(&r).build())
            .collect();
        let before = r.report();
        let slabs = |r: &Registry| -> Vec<(usize, u32, usize)> {
            r.shards
                .iter()
                .map(|s| s.0.with(|s| (s.slots.len(), s.free, s.handles)))
                .collect()
        };
        let slabs_before = slabs(&r);
        let message = |err: Box<dyn std::any::Any + Send>| {
            err.downcast_ref::<String>().cloned().unwrap_or_default()
        };
        for id in &ids {
            let err = catch_unwind(AssertUnwindSafe(|| r.register(Alias(*id)))).unwrap_err();
            assert!(message(err).contains("registered twice"));
        }
        let absent = Obj(Box::new(0), "A");
        let err = catch_unwind(AssertUnwindSafe(|| r.unregister(absent.id(), "A"))).unwrap_err();
        assert!(message(err).contains("unregistered but not registered"));
        // A handle's slot that holds another handle, and a slot past the slab's end.
        for (id, slot) in [(absent.id(), 0), (ids[0], 1_000)] {
            let err = catch_unwind(AssertUnwindSafe(|| {
                r.unregister_handle(id, slot, "u8", false)
            }))
            .unwrap_err();
            assert!(message(err).contains("unregistered but not registered"));
        }
        assert_eq!(r.report(), before, "the panics left the registry as it was");
        assert_eq!(slabs(&r), slabs_before);
        drop(handles);
        for id in ids {
            r.unregister(id, "Alias");
        }
        assert!(r.check().is_empty());
        drop(objects);
    }

    #[test]
    fn a_handle_is_found_by_its_id() {
        use crate::handle::Counted;
        let r = Arc::new(Registry::with_shards(LeakMode::Warn, 4));
        let h = Counted::<u16>::builder(5).registry(&r).build();
        let report = r.report();
        // "[u16 0x…] reference count of 1 instead of 0": the id is the handle's address.
        let hex = report.messages[0]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.strip_prefix("0x"))
            .and_then(|s| s.strip_suffix(']'))
            .unwrap();
        let id = usize::from_str_radix(hex, 16).unwrap();
        assert!(r.contains(id));
        assert!(!r.contains(id + 16));
        r.orphan_handle(id, 7, "u16"); // not its slot: nothing happens
        assert!(r.contains(id));
        assert_eq!(r.report(), report);
        drop(h);
        assert!(!r.contains(id));
        assert_eq!(r.live_count(), 0);
    }

    #[test]
    fn logging_is_checked_with_one_load_while_no_type_is_logged() {
        let r = Registry::new(LeakMode::Warn);
        assert!(!r.logging.load(Ordering::Relaxed));
        r.log_refs_of("A", true);
        r.log_refs_of("B", true);
        assert!(r.logging.load(Ordering::Relaxed));
        r.log_refs_of("A", false);
        assert!(r.logging.load(Ordering::Relaxed), "B is still logged");
        assert!(r.logs_refs_of("B") && !r.logs_refs_of("A"));
        r.log_refs_of("B", false);
        assert!(!r.logging.load(Ordering::Relaxed), "no type is logged");
        assert!(!r.logs_refs_of("B"));
    }

    #[test]
    fn a_handle_freed_while_registered_is_still_reported_and_points_nowhere() {
        struct Probe(u64);
        impl CheckedObject for Probe {
            fn id(&self) -> usize {
                self as *const Self as usize
            }
            fn ref_type(&self) -> &'static str {
                "Probe"
            }
        }
        let r = Registry::with_shards(LeakMode::Warn, 2);
        let probe = Box::new(Probe(1));
        let id = probe.id();
        let obj: &(dyn CheckedObject + 'static) = &*probe;
        // SAFETY: the record leaves (by `orphan_handle`) before `probe` is dropped.
        let slot = unsafe { r.register_handle(id, NonNull::from(obj), "Probe", false) };
        assert!(r.report().messages[0].contains("leaked"));
        r.orphan_handle(id, slot, "Probe");
        assert_eq!(probe.0, 1);
        drop(probe);
        let report = r.report();
        assert_eq!(report.total, 1, "still registered: it never left");
        assert!(
            report.messages[0].contains("freed while still registered"),
            "{report}"
        );
        let err = catch_unwind(AssertUnwindSafe(|| {
            r.unregister_handle(id, slot, "Probe", false)
        }));
        assert!(err.is_err(), "the slot no longer holds it");
        r.unregister(id, "Probe");
        assert!(r.check().is_empty());
    }
}
