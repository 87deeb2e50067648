//! loom models of TryIncRef speculation, for both counters.
//!
//! Each scenario is generic over the counter and instantiated for `Refs` (`*_refs`) and
//! `StickyRefs` (`*_sticky`). All run with no preemption bound: every interleaving is explored.
//! (The seed's leak needs 3 preemptions to show; a bound of 2 would miss it.)
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p refwatch-models --release --test loom_refs`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use refwatch::handle::Counted;
use refwatch::leak::{LeakMode, Registry};
use refwatch::refs::{RefCounter, Refs, StickyRefs};
use refwatch::sync::atomic::{AtomicUsize, Ordering};
use refwatch::sync::Track;
use refwatch_models::loom_model;
use refwatch_models::probe::Probe;

type R = Refs<Probe<()>>;
type S = StickyRefs<Probe<()>>;

/// (a) One `try_inc_ref` races the last `dec_ref`: the destructor runs exactly once, and a
/// try that returns true never holds a destroyed object — checked when it returns and again
/// just before its own `dec_ref`.
fn try_inc_races_last_dec<C: RefCounter + 'static>(name: &str) {
    loom_model(name, None, || {
        let obj = Arc::new(Probe::<C>::new());
        let tryer = {
            let obj = obj.clone();
            thread::spawn(move || {
                if obj.try_inc() {
                    assert_eq!(
                        obj.destructions(),
                        0,
                        "try_inc_ref returned true on a destroyed object"
                    );
                    thread::yield_now();
                    assert_eq!(
                        obj.destructions(),
                        0,
                        "destroyed while a try_inc_ref reference was held"
                    );
                    obj.dec();
                }
            })
        };
        obj.dec(); // the last real reference
        tryer.join().unwrap();
        assert_eq!(
            obj.destructions(),
            1,
            "the destructor must run exactly once"
        );
        assert!(!obj.try_inc(), "a try after the end must fail");
        assert_eq!(obj.destructions(), 1);
    });
}

#[test]
fn try_inc_races_last_dec_refs() {
    try_inc_races_last_dec::<R>("try_inc_races_last_dec_refs");
}

#[test]
fn try_inc_races_last_dec_sticky() {
    try_inc_races_last_dec::<S>("try_inc_races_last_dec_sticky");
}

/// (b) Two `try_inc_ref`s race one `dec_ref`: the case that catches the seed's leak. The
/// destructor must still run exactly once, and a try after the end must fail.
fn two_try_inc_race_last_dec<C: RefCounter + 'static>(name: &str) {
    loom_model(name, None, || {
        let obj = Arc::new(Probe::<C>::new());
        let tryers: Vec<_> = (0..2)
            .map(|_| {
                let obj = obj.clone();
                thread::spawn(move || {
                    if obj.try_inc() {
                        assert_eq!(
                            obj.destructions(),
                            0,
                            "try_inc_ref returned true on a destroyed object"
                        );
                        obj.dec();
                    }
                })
            })
            .collect();
        obj.dec();
        for t in tryers {
            t.join().unwrap();
        }
        assert_eq!(
            obj.destructions(),
            1,
            "the destructor must run exactly once (0 = the seed's leak)"
        );
        assert!(!obj.try_inc(), "a try after the end must fail");
    });
}

#[test]
fn two_try_inc_race_last_dec_refs() {
    two_try_inc_race_last_dec::<R>("two_try_inc_race_last_dec_refs");
}

#[test]
fn two_try_inc_race_last_dec_sticky() {
    two_try_inc_race_last_dec::<S>("two_try_inc_race_last_dec_sticky");
}

/// (c) Data written before each `dec_ref` is visible to the destructor: a holder and a
/// reviver each write their own cell before letting go; the destructor reads both cells
/// (loom fails the model on a read that is not ordered after the write).
fn dec_publishes_writes_to_destructor<C: RefCounter + 'static>(name: &str) {
    loom_model(name, None, || {
        let obj = Arc::new(Probe::<C>::new());
        obj.inc(); // the holder's reference
        let holder = {
            let obj = obj.clone();
            thread::spawn(move || {
                obj.write_cell(0, 1);
                obj.dec();
            })
        };
        let reviver = {
            let obj = obj.clone();
            thread::spawn(move || {
                if obj.try_inc() {
                    obj.write_cell(1, 2);
                    obj.dec();
                    true
                } else {
                    false
                }
            })
        };
        obj.dec();
        holder.join().unwrap();
        let revived = reviver.join().unwrap();
        assert_eq!(obj.destructions(), 1);
        assert_eq!(obj.seen(0), 1, "the destructor missed the holder's write");
        if revived {
            assert_eq!(obj.seen(1), 2, "the destructor missed the reviver's write");
        }
    });
}

#[test]
fn dec_publishes_writes_to_destructor_refs() {
    dec_publishes_writes_to_destructor::<R>("dec_publishes_writes_to_destructor_refs");
}

#[test]
fn dec_publishes_writes_to_destructor_sticky() {
    dec_publishes_writes_to_destructor::<S>("dec_publishes_writes_to_destructor_sticky");
}

/// The RAII layer: a weak upgrade races the drop of the last strong handle. The value
/// (a loom `Track`, so loom fails the model if it is never dropped) is read through the
/// upgraded handle and dropped exactly once; this exercises `Counted`'s `unsafe` payload
/// access and the allocation-outlives-object rule of `WeakCounted`.
fn handle_upgrade_races_last_drop<C: RefCounter + 'static>(name: &str) {
    loom_model(name, None, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let registry = Arc::new(Registry::new(LeakMode::Off));
        let strong: Counted<Track<u64>, C> = Counted::builder(Track::new(42))
            .registry(&registry)
            .on_destroy(move |_| {
                d.fetch_add(1, Ordering::SeqCst);
            })
            .build();
        let weak = Counted::downgrade(&strong);
        let upgrader = thread::spawn(move || {
            if let Some(h) = weak.upgrade() {
                assert_eq!(*h.get_ref(), 42, "read a destroyed value");
                let second = h.clone();
                drop(h);
                assert_eq!(*second.get_ref(), 42);
            }
            weak
        });
        drop(strong);
        let weak = upgrader.join().unwrap();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "value destroyed exactly once"
        );
        assert!(weak.upgrade().is_none());
    });
}

#[test]
fn handle_upgrade_races_last_drop_refs() {
    handle_upgrade_races_last_drop::<Refs<Track<u64>>>("handle_upgrade_races_last_drop_refs");
}

#[test]
fn handle_upgrade_races_last_drop_sticky() {
    handle_upgrade_races_last_drop::<StickyRefs<Track<u64>>>(
        "handle_upgrade_races_last_drop_sticky",
    );
}

/// (d) The registry stays consistent under concurrent create/destroy while another thread
/// turns checking off: every handle registered is unregistered when destroyed (it remembers
/// where it registered; the seed re-reads the mode), and the registry ends empty.
#[test]
fn registry_consistent_under_concurrent_create_destroy() {
    loom_model(
        "registry_consistent_under_concurrent_create_destroy",
        None,
        || {
            let registry = Arc::new(Registry::new(LeakMode::Warn));
            let workers: Vec<_> = (0..2)
                .map(|i| {
                    let registry = registry.clone();
                    thread::spawn(move || {
                        let h: Counted<u64> = Counted::builder(i).registry(&registry).build();
                        let c = h.clone();
                        drop(h);
                        assert_eq!(*c, i);
                        drop(c);
                    })
                })
                .collect();
            registry.set_mode(LeakMode::Off);
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(
                registry.live_count(),
                0,
                "a destroyed handle stayed registered"
            );
            registry.set_mode(LeakMode::Warn);
            assert!(registry.check().is_empty());
        },
    );
}
