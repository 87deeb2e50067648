//! loom models of the counters' misuse checks: a `dec_ref` without a reference panics and
//! leaves the object as it was, even for the other threads that look at it meanwhile.
//!
//! A file of its own because these models catch the counter's own panic: the panic hook
//! installed here keeps the expected misuse message out of the log (it is the model's
//! premise, not its failure) and would hide that message from any other model in the same
//! test binary.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p refwatch-models --release --test loom_refs_misuse`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use refwatch::refs::{RefCounter, Refs, StickyRefs};
use refwatch_models::loom_model;
use refwatch_models::probe::Probe;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// The message of the counters' `dec_ref` misuse panic.
const MISUSE: &str = "dec_ref on an object with no references";

/// The message of the counters' overflow panic. The models here catch it where a try on a
/// destroyed object could raise it (a false overflow, the symptom of bug 3) and fail by their
/// own assertion, which repeats the message.
const OVERFLOW: &str = "reference count overflow";

/// The text of a panic's payload.
fn payload_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default()
}

/// Keeps the panics these models catch and judge themselves (the misuse panics they provoke,
/// an overflow panic of a try) out of the log, so that the first panic in the log is the
/// model's own assertion (which may quote them); every other panic is printed as usual.
fn quiet_misuse_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = payload_text(info.payload());
            let in_this_file = info.location().is_some_and(|at| at.file() == file!());
            if in_this_file || !(message.contains(MISUSE) || message.contains(OVERFLOW)) {
                previous(info);
            }
        }));
    });
}

/// A misuse `dec_ref` on a destroyed object races another thread that looks at the object and
/// then misuses it too (bug 3 of issue 10): a misuse subtracts one, sees no reference, and
/// adds it back. Meanwhile the other thread must see the object destroyed — its try fails
/// without panicking, `is_destroyed` holds, no reference is counted — and its own misuse
/// must be reported. With a one-bit dead marker the subtraction borrowed across it: for that
/// moment the word read alive with 2^32 - 1 references (`Refs`) or 2^63 - 1 (`StickyRefs`),
/// a try panicked with a false overflow, and a second misuse passed unreported and left the
/// dead bit cleared for good (mutants `refs_dead_marker_one_bit`,
/// `sticky_dead_marker_one_bit`). Unbounded.
fn misuse_dec_on_a_dead_object_keeps_it_dead<C: RefCounter + 'static>(name: &str) {
    quiet_misuse_panics();
    loom_model(name, None, || {
        let obj = Arc::new(Probe::<C>::new());
        obj.dec();
        assert_eq!(obj.destructions(), 1);
        let observer = {
            let obj = obj.clone();
            thread::spawn(move || {
                let revived = panic::catch_unwind(AssertUnwindSafe(|| obj.try_inc()));
                match revived {
                    Ok(false) => {}
                    Ok(true) => panic!("a try on a destroyed object succeeded"),
                    Err(payload) => panic!(
                        "a try on a destroyed object must fail, and not panic: it panicked with {:?}",
                        payload_text(&*payload)
                    ),
                }
                assert!(obj.refs().is_destroyed(), "a destroyed object reads alive");
                assert_eq!(
                    obj.refs().read_refs(),
                    0,
                    "a destroyed object has references"
                );
                let misuse = panic::catch_unwind(AssertUnwindSafe(|| obj.dec()));
                assert!(misuse.is_err(), "a second misuse dec_ref went unreported");
            })
        };
        let misuse = panic::catch_unwind(AssertUnwindSafe(|| obj.dec()));
        let message = misuse.expect_err("a dec_ref on a destroyed object must panic");
        let message = payload_text(&*message);
        assert!(message.contains(MISUSE), "{message}");
        observer.join().unwrap();
        assert!(obj.refs().is_destroyed());
        assert_eq!(obj.destructions(), 1, "destroyed once");
    });
}

#[test]
fn misuse_dec_on_a_dead_object_keeps_it_dead_refs() {
    misuse_dec_on_a_dead_object_keeps_it_dead::<Refs<Probe<()>>>(
        "misuse_dec_on_a_dead_object_keeps_it_dead_refs",
    );
}

#[test]
fn misuse_dec_on_a_dead_object_keeps_it_dead_sticky() {
    misuse_dec_on_a_dead_object_keeps_it_dead::<StickyRefs<Probe<()>>>(
        "misuse_dec_on_a_dead_object_keeps_it_dead_sticky",
    );
}
