//! shuttle runs of the TryIncRef scenarios at a scale loom cannot explore exhaustively: four
//! or more threads and hundreds of operations per execution, under PCT and random schedules.
//!
//! Run: `RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle cargo test -p refwatch-models --release --test shuttle_refs`
#![cfg(shuttle)]

use refwatch::handle::Counted;
use refwatch::leak::{LeakMode, Registry};
use refwatch::refs::{RefCounter, Refs, StickyRefs};
use refwatch::sync::atomic::{AtomicUsize, Ordering};
use refwatch::sync::{thread, Arc};
use refwatch_models::probe::{expect_alive, Canary, Probe};
use refwatch_models::shuttle_pct;

const THREADS: usize = 4;
const ROUNDS: usize = 50;
/// Schedules per scheduler (PCT, then random).
const SCHEDULES: usize = 500;
/// PCT bug depth: the number of priority changes per execution.
const DEPTH: usize = 3;

/// Four holders each try, revive and drop references in a loop, and let go of their own
/// reference at different points: no try ever holds a destroyed object, the destructor runs
/// exactly once, and a try after the end fails.
fn many_holders_try_and_drop<C: RefCounter + 'static>(name: &str) {
    shuttle_pct(name, SCHEDULES, DEPTH, || {
        let obj = Arc::new(Probe::<C>::new());
        for _ in 1..THREADS {
            obj.inc();
        }
        let threads: Vec<_> = (0..THREADS)
            .map(|i| {
                let obj = obj.clone();
                thread::spawn(move || {
                    let mut held = true;
                    for round in 0..ROUNDS {
                        if held && round == i * ROUNDS / THREADS {
                            obj.dec();
                            held = false;
                        }
                        if obj.try_inc() {
                            assert_eq!(
                                obj.destructions(),
                                0,
                                "try_inc_ref returned true on a destroyed object"
                            );
                            if round % 2 == 0 {
                                obj.inc();
                                assert_eq!(obj.destructions(), 0, "destroyed while referenced");
                                obj.dec();
                            }
                            // Checked before the `dec_ref`: were the object destroyed under
                            // this reference, the `dec_ref` would fail in the counter's own
                            // misuse check first.
                            assert_eq!(obj.destructions(), 0, "destroyed while referenced");
                            obj.dec();
                        }
                    }
                    if held {
                        obj.dec();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            obj.destructions(),
            1,
            "the destructor must run exactly once"
        );
        assert!(!obj.try_inc(), "a try after the end must fail");
    });
}

#[test]
fn many_holders_try_and_drop_refs() {
    many_holders_try_and_drop::<Refs<Probe<()>>>("many_holders_try_and_drop_refs");
}

#[test]
fn many_holders_try_and_drop_sticky() {
    many_holders_try_and_drop::<StickyRefs<Probe<()>>>("many_holders_try_and_drop_sticky");
}

/// The RAII layer at scale: four threads clone, drop and upgrade handles to one object while
/// each lets go of its strong handle at a different point; every handle sees the value alive
/// (a [`Canary`]: checking the value itself could not fail, its bits stay after the
/// destructor moves it out), the value is dropped exactly once and the registry ends empty.
fn handles_upgrade_and_drop<C: RefCounter + 'static>(name: &str) {
    shuttle_pct(name, SCHEDULES, DEPTH, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let registry = Arc::new(Registry::new(LeakMode::Warn));
        let d = drops.clone();
        let (canary, witness) = Canary::new();
        let first: Counted<Canary, C> = Counted::builder(canary)
            .registry(&registry)
            .on_destroy(move |canary| {
                assert!(canary.is_alive(), "destroyed twice");
                drop(canary);
                d.fetch_add(1, Ordering::SeqCst);
            })
            .build();
        let threads: Vec<_> = (0..THREADS)
            .map(|i| {
                let mut strong = Some(first.clone());
                let weak = Counted::downgrade(&first);
                thread::spawn(move || {
                    for round in 0..ROUNDS {
                        if round == i * ROUNDS / THREADS {
                            strong = None;
                        }
                        if let Some(h) = weak.upgrade() {
                            let h = expect_alive(h, "upgraded to a destroyed value");
                            let again = h.clone();
                            drop(h);
                            drop(expect_alive(again, "a clone outlived the value"));
                        }
                    }
                    drop(strong);
                })
            })
            .collect();
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "value dropped exactly once"
        );
        assert!(witness.dropped());
        assert!(registry.check().is_empty(), "registry must end empty");
    });
}

#[test]
fn handles_upgrade_and_drop_refs() {
    handles_upgrade_and_drop::<Refs<Canary>>("handles_upgrade_and_drop_refs");
}

#[test]
fn handles_upgrade_and_drop_sticky() {
    handles_upgrade_and_drop::<StickyRefs<Canary>>("handles_upgrade_and_drop_sticky");
}

/// The registry at scale: four threads create and destroy handles while a fifth turns
/// checking off and on; every object registered is unregistered, and the registry ends empty.
#[test]
fn registry_many_threads_with_mode_changes() {
    shuttle_pct(
        "registry_many_threads_with_mode_changes",
        SCHEDULES,
        DEPTH,
        || {
            let registry = Arc::new(Registry::new(LeakMode::Warn));
            let workers: Vec<_> = (0..THREADS)
                .map(|i| {
                    let registry = registry.clone();
                    thread::spawn(move || {
                        for round in 0..ROUNDS {
                            let (canary, witness) = Canary::new();
                            let h: Counted<Canary> =
                                Counted::builder(canary).registry(&registry).build();
                            if round % 3 == i % 3 {
                                let c = h.clone();
                                drop(h);
                                drop(expect_alive(c, "a clone outlived the value"));
                            } else {
                                drop(h);
                            }
                            assert!(witness.dropped(), "the last drop destroys");
                        }
                    })
                })
                .collect();
            let toggler = {
                let registry = registry.clone();
                thread::spawn(move || {
                    for round in 0..10 {
                        registry.set_mode(if round % 2 == 0 {
                            LeakMode::Off
                        } else {
                            LeakMode::Warn
                        });
                        thread::yield_now();
                    }
                })
            };
            for w in workers {
                w.join().unwrap();
            }
            toggler.join().unwrap();
            assert_eq!(
                registry.live_count(),
                0,
                "a destroyed handle stayed registered"
            );
        },
    );
}
