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

use crate::sync::atomic::{AtomicU8, Ordering};
use crate::sync::{Arc, Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::error::Error;
use std::fmt;
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

/// The live-object registry.
///
/// Protected by `live`: the set of registered objects. Protected by `logged`: the types whose
/// reference events are logged. The two locks are never held together.
pub struct Registry {
    mode: AtomicU8,
    live: Mutex<HashMap<usize, Box<dyn CheckedObject>>>,
    logged: RwLock<HashSet<&'static str>>,
}

crate::sync::lazy_static! {
    static ref GLOBAL: Arc<Registry> = Arc::new(Registry::from_env());
}

impl Registry {
    /// A registry in `mode`.
    pub fn new(mode: LeakMode) -> Self {
        Registry {
            mode: AtomicU8::new(mode.to_u8()),
            live: Mutex::new(HashMap::new()),
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

    /// The current mode.
    pub fn mode(&self) -> LeakMode {
        LeakMode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// Sets the mode. Objects registered before checking was turned off are still unregistered
    /// when destroyed (the RAII handle remembers where it registered).
    pub fn set_mode(&self, mode: LeakMode) {
        self.mode.store(mode.to_u8(), Ordering::Relaxed);
    }

    /// Whether objects should be registered now.
    pub fn enabled(&self) -> bool {
        self.mode() != LeakMode::Off
    }

    /// Adds `obj` to the live set; returns `false` (and does nothing) when checking is off.
    ///
    /// # Panics
    /// When an object with the same id is already registered.
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
    /// # Panics
    /// When an object with the same id is already registered.
    pub fn register_always(&self, obj: impl CheckedObject + 'static) {
        let (id, ty) = (obj.id(), obj.ref_type());
        let log = self.logs_refs_of(ty);
        {
            let mut live = self.live.lock();
            if live.contains_key(&id) {
                drop(live);
                panic!("leak registry: {ty} at {id:#x} registered twice");
            }
            live.insert(id, Box::new(obj));
        }
        if log {
            log_event(ty, id, RefEvent::Registered, 1);
        }
    }

    /// Removes the object `id` from the live set (whatever the mode: an object registered
    /// before checking was turned off must still leave).
    ///
    /// # Panics
    /// When no such object is registered: it was never registered, or was destroyed twice.
    pub fn unregister(&self, id: usize, ty: &'static str) {
        let removed = self.live.lock().remove(&id);
        match removed {
            Some(obj) => {
                if self.logs_refs_of(ty) {
                    log_event(ty, id, RefEvent::Unregistered, 0);
                }
                drop(obj);
            }
            None => panic!("leak registry: {ty} at {id:#x} unregistered but not registered"),
        }
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: usize) -> bool {
        self.live.lock().contains_key(&id)
    }

    /// Number of registered objects.
    pub fn live_count(&self) -> usize {
        self.live.lock().len()
    }

    /// The report of everything registered, without logging or panicking.
    pub fn report(&self) -> LeakReport {
        let live = self.live.lock();
        let mut report = LeakReport {
            total: live.len(),
            ..LeakReport::default()
        };
        for obj in live.values() {
            *report.by_type.entry(obj.ref_type()).or_insert(0) += 1;
            report.messages.push(obj.leak_message());
        }
        drop(live);
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
    }

    /// Whether reference events of type `ty` are logged.
    pub fn logs_refs_of(&self, ty: &'static str) -> bool {
        let logged = self.logged.read();
        !logged.is_empty() && logged.contains(ty)
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

/// Logs one reference event of object `id` with the count after it and a backtrace.
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
        struct Alias(usize);
        impl CheckedObject for Alias {
            fn id(&self) -> usize {
                self.0
            }
            fn ref_type(&self) -> &'static str {
                "Alias"
            }
        }
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
}
