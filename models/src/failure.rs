//! Which shuttle schedule failed: `REFWATCH-SHUTTLE-FAILURE name=… scheduler=… schedule=N`,
//! printed by a panic hook on the first panic of a run, so that it is printed even when the
//! run then aborts (a panic while unwinding, as after shuttle's deadlock reports).
//!
//! shuttle runs every task of an execution on the test's own thread, so the state is
//! thread-local: tests running in parallel in one binary do not see each other's.
#![cfg(shuttle)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use crate::SHUTTLE_FAILURE_MARKER;

/// The run of one scheduler on this thread.
struct Tracker {
    name: String,
    scheduler: &'static str,
    /// Executions started so far, across the model's schedulers.
    count: Arc<AtomicUsize>,
    /// `count` when this scheduler started.
    start: usize,
    reported: bool,
}

thread_local! {
    static TRACKER: RefCell<Option<Tracker>> = const { RefCell::new(None) };
}

/// Tracks the run of `scheduler` on this thread until [`untrack`]; the hook reports its
/// first panic.
pub fn track(name: &str, scheduler: &'static str, count: &Arc<AtomicUsize>) {
    install_hook();
    let tracker = Tracker {
        name: name.to_string(),
        scheduler,
        count: Arc::clone(count),
        start: count.load(Ordering::Relaxed),
        reported: false,
    };
    TRACKER.with(|t| *t.borrow_mut() = Some(tracker));
}

/// Stops tracking on this thread.
pub fn untrack() {
    TRACKER.with(|t| *t.borrow_mut() = None);
}

/// Installs, once, a hook that reports the tracked run's first panic, then hands the panic
/// to the hook that was there before (libtest's, or shuttle's once it wraps ours).
fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = TRACKER.try_with(|t| {
                if let Ok(mut t) = t.try_borrow_mut() {
                    if let Some(t) = t.as_mut().filter(|t| !t.reported) {
                        t.reported = true;
                        let schedule = t.count.load(Ordering::Relaxed) - t.start;
                        eprintln!(
                            "{SHUTTLE_FAILURE_MARKER} name={} scheduler={} schedule={schedule}",
                            t.name, t.scheduler
                        );
                    }
                }
            });
            previous(info);
        }));
    });
}
