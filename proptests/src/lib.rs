//! Shared helpers for the property tests in `tests/`.
//!
//! The state machines themselves live in `tests/refs.rs` (the raw counters and the RAII
//! handle) and `tests/registry.rs` (the leak registry). This crate only holds what they
//! share: a way to run a closure that is expected to panic without the panic hook printing
//! a message for every expected panic.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a closure under [`catch_panic`]: the hook stays quiet.
    static EXPECTING_PANIC: Cell<bool> = const { Cell::new(false) };
}

static INSTALL_HOOK: Once = Once::new();

/// Installs, once per process, a panic hook that is silent on a thread inside
/// [`catch_panic`] and otherwise delegates to the hook that was installed before it.
///
/// The hook is global and tests run in parallel, so it is never swapped back and forth:
/// the decision to stay quiet is per thread, and an unexpected panic anywhere else (or an
/// expected one that escapes the closure) is reported exactly as before.
fn install_hook() {
    INSTALL_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !EXPECTING_PANIC.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Clears the thread's flag even if the closure unwinds through us.
struct Expecting {
    was: bool,
}

impl Expecting {
    fn start() -> Self {
        Expecting {
            was: EXPECTING_PANIC.with(|e| e.replace(true)),
        }
    }
}

impl Drop for Expecting {
    fn drop(&mut self) {
        EXPECTING_PANIC.with(|e| e.set(self.was));
    }
}

/// The message of a panic payload (`panic!` with a format string or a literal).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else {
        String::from("<non-string panic payload>")
    }
}

/// Runs `f`, catching a panic: `Ok` with its result, or `Err` with the panic message.
///
/// The panic hook prints nothing for a panic caught here. `f` is treated as unwind safe:
/// callers use it on the operation under test and then check the state it left behind,
/// which is the point of the exercise.
pub fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install_hook();
    let _expecting = Expecting::start();
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(&*payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catches_and_returns_the_message() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        assert_eq!(
            catch_panic(|| -> () { panic!("boom {}", 1) }),
            Err("boom 1".to_owned())
        );
        assert_eq!(
            catch_panic(|| -> () { std::panic::panic_any(3u8) }),
            Err("<non-string panic payload>".to_owned())
        );
        assert!(!EXPECTING_PANIC.with(Cell::get), "flag cleared afterwards");
    }

    #[test]
    fn nested_calls_restore_the_outer_flag() {
        let inner = catch_panic(|| {
            let r = catch_panic(|| -> () { panic!("inner") });
            assert!(
                EXPECTING_PANIC.with(Cell::get),
                "still inside the outer call"
            );
            r
        });
        assert_eq!(inner, Ok(Err("inner".to_owned())));
        assert!(!EXPECTING_PANIC.with(Cell::get));
    }
}
