//! loom models of TryIncRef speculation, for both counters.
//!
//! Each scenario is generic over the counter and instantiated for `Refs` (`*_refs`) and
//! `StickyRefs` (`*_sticky`). All but two run with no preemption bound: every interleaving is
//! explored. (The seed's leak needs 3 preemptions to show; a bound of 2 would miss it.) The
//! four-thread `three_tries_race_last_dec_*` are bounded; they say why.
//! No model calls `yield_now`: loom switches threads there for free, so a kill through it
//! would read as needing no preemption.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p refwatch-models --release --test loom_refs`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use refwatch::handle::Counted;
use refwatch::leak::{LeakMode, Registry};
use refwatch::refs::{RefCounter, Refs, StickyRefs};
use refwatch::sync::atomic::{AtomicUsize, Ordering};
use refwatch_models::loom_model;
use refwatch_models::probe::{expect_alive, Canary, Probe};
use std::mem::ManuallyDrop;

type R = Refs<Probe<()>>;
type S = StickyRefs<Probe<()>>;

/// (a) One `try_inc_ref` races the last `dec_ref`: the destructor runs exactly once, and a
/// try that returns true never holds a destroyed object. A holder writes its cell of the
/// probe while it holds, and the destructor reads every cell: a destruction that is not
/// ordered after the holder's write is a data race, which loom reports whichever ran first
/// (the model's own check of the destruction count cannot see it reliably: with the object
/// destroyed under it, nothing orders the holder's read of the count after the
/// destruction).
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
                    // No `yield_now` here: a yield is a free switch for loom, and the
                    // model's kills must need real preemptions (their depth is reported).
                    obj.write_cell(1, 1);
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
/// destructor must still run exactly once, and a try after the end must fail; a successful
/// try writes its cell while it holds, as in (a).
fn two_try_inc_race_last_dec<C: RefCounter + 'static>(name: &str) {
    tries_race_last_dec::<C>(name, 2, None);
}

/// `tries` threads each `try_inc_ref` (and, if that succeeds, write their cell and let go)
/// while the main thread drops the last reference; then exactly one destruction, and a try
/// after the end fails. The body of the two- and three-try models.
fn tries_race_last_dec<C: RefCounter + 'static>(name: &str, tries: usize, bound: Option<usize>) {
    loom_model(name, bound, move || {
        let obj = Arc::new(Probe::<C>::new());
        let tryers: Vec<_> = (1..=tries)
            .map(|i| {
                let obj = obj.clone();
                thread::spawn(move || {
                    if obj.try_inc() {
                        assert_eq!(
                            obj.destructions(),
                            0,
                            "try_inc_ref returned true on a destroyed object"
                        );
                        obj.write_cell(i, 1);
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

/// (c') The fast path of a locked `DecRef` (`dec_ref_unless_last`, kernfs's close) races
/// another holder's: two holders each write their cell and drop their reference by the fast
/// path, falling back to `dec_ref` when refused. Whatever the order, exactly one of them
/// reaches zero through `dec_ref`, so the destructor runs exactly once and sees both writes.
/// A fast path that checks and then subtracts lets both take the count to zero with nobody
/// destroying (mutant `refs_dec_unless_last_check_then_sub`); one without release ordering
/// lets the destructor read a cell unordered after its write (`refs_dec_unless_last_relaxed`).
fn fast_decs_race_to_the_last<C: RefCounter + 'static>(name: &str) {
    loom_model(name, None, || {
        let obj = Arc::new(Probe::<C>::new());
        obj.inc(); // the other holder's reference
        let drop_fast = |obj: &Probe<C>| {
            if !obj.refs().dec_ref_unless_last() {
                obj.dec();
            }
        };
        let other = {
            let obj = obj.clone();
            thread::spawn(move || {
                obj.write_cell(1, 2);
                drop_fast(&obj);
            })
        };
        obj.write_cell(0, 1);
        drop_fast(&obj);
        other.join().unwrap();
        assert_eq!(
            obj.destructions(),
            1,
            "the destructor must run exactly once"
        );
        assert_eq!(
            obj.seen(0),
            1,
            "the destructor missed the first holder's write"
        );
        assert_eq!(
            obj.seen(1),
            2,
            "the destructor missed the second holder's write"
        );
    });
}

#[test]
fn fast_decs_race_to_the_last_refs() {
    fast_decs_race_to_the_last::<R>("fast_decs_race_to_the_last_refs");
}

#[test]
fn fast_decs_race_to_the_last_sticky() {
    fast_decs_race_to_the_last::<S>("fast_decs_race_to_the_last_sticky");
}

/// The RAII layer: a weak upgrade races the drop of the last strong handle. The value is a
/// [`Canary`]: a handle that points at a destroyed value sees it dead (checking the value
/// itself could not fail: its bits stay after the destructor moves it out), and loom fails
/// the model if it is never dropped. It is dropped exactly once; this exercises `Counted`'s
/// `unsafe` payload access and the allocation-outlives-object rule of `WeakCounted`.
fn handle_upgrade_races_last_drop<C: RefCounter + 'static>(name: &str) {
    loom_model(name, None, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let registry = Arc::new(Registry::new(LeakMode::Off));
        let (canary, witness) = Canary::new();
        let strong: Counted<Canary, C> = Counted::builder(canary)
            .registry(&registry)
            .on_destroy(move |canary| {
                drop(canary);
                d.fetch_add(1, Ordering::SeqCst);
            })
            .build();
        let weak = Counted::downgrade(&strong);
        let upgrader = thread::spawn(move || {
            if let Some(h) = weak.upgrade() {
                let h = expect_alive(h, "upgraded to a destroyed value");
                let second = h.clone();
                drop(h);
                drop(expect_alive(second, "a clone outlived the value"));
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
        assert!(witness.dropped());
        assert!(weak.upgrade().is_none());
    });
}

#[test]
fn handle_upgrade_races_last_drop_refs() {
    handle_upgrade_races_last_drop::<Refs<Canary>>("handle_upgrade_races_last_drop_refs");
}

#[test]
fn handle_upgrade_races_last_drop_sticky() {
    handle_upgrade_races_last_drop::<StickyRefs<Canary>>("handle_upgrade_races_last_drop_sticky");
}

/// (d) The registry stays consistent while handles are made and destroyed and another thread
/// turns checking off: every handle registered is unregistered when destroyed (it remembers
/// where it registered; the seed re-reads the mode), and the registry ends empty. The main
/// thread makes, clones and drops two handles, one after the other, while a spawned thread
/// turns checking off. Each handle lives and dies before the main thread first blocks, so a
/// change of mode in the middle of a handle's life needs a preemption (mutant
/// `registry_mode_reread` needs one). With two handle-making threads, loom's switch when the
/// main thread blocks in `join` is free, and the mutant was found with no preemption at all.
/// Unbounded.
#[test]
fn registry_consistent_under_concurrent_create_destroy() {
    fn make_clone_and_drop(registry: &Arc<Registry>) {
        let (canary, witness) = Canary::new();
        let h: Counted<Canary> = Counted::builder(canary).registry(registry).build();
        let c = h.clone();
        drop(h);
        drop(expect_alive(c, "a clone outlived the value"));
        assert!(witness.dropped(), "the last drop destroys");
    }
    loom_model(
        "registry_consistent_under_concurrent_create_destroy",
        None,
        || {
            let registry = Arc::new(Registry::new(LeakMode::Warn));
            let toggler = {
                let registry = registry.clone();
                thread::spawn(move || registry.set_mode(LeakMode::Off))
            };
            make_clone_and_drop(&registry);
            make_clone_and_drop(&registry);
            toggler.join().unwrap();
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

/// Three `try_inc_ref`s race the last `dec_ref` (the two-try model with one more tryer): the
/// destructor runs exactly once, no successful try holds a destroyed object (each writes its
/// cell while it holds, as in (a)), and a try after the end fails. Four threads are beyond
/// exhaustive search in the time the suite allows (unbounded, `StickyRefs` alone ran past 5
/// minutes), so the bound is 4, one more than the seed's leak needs (mutant
/// `seed_try_inc_leak`, depth 3): ~6 s for `Refs` and ~3 s for `StickyRefs` on two cores
/// (bound 5: ~34 s and ~19 s; bound 3: under a second).
fn three_tries_race_last_dec<C: RefCounter + 'static>(name: &str) {
    tries_race_last_dec::<C>(name, 3, Some(4));
}

#[test]
fn three_tries_race_last_dec_refs() {
    three_tries_race_last_dec::<R>("three_tries_race_last_dec_refs");
}

#[test]
fn three_tries_race_last_dec_sticky() {
    three_tries_race_last_dec::<S>("three_tries_race_last_dec_sticky");
}

/// A reviver sees what the last holder wrote before it let go (bug 4 of issue 10): the main
/// thread is the last holder; it writes, then drops its reference, while a reviver tries.
/// Whether the reviver revived the object (converted after the last decrement) or took its
/// reference while main still held is not visible from outside, so a second tryer is the
/// witness: if it failed while the reviver succeeded, it speculated while the real half was
/// zero and the reviver's try was in flight, so the reviver's conversion came after main's
/// decrement. Then the reviver must have read main's write. (The write is a relaxed atomic,
/// so loom explores a stale read; a plain cell would be a data race in the other order,
/// where main writes while the reviver holds too, which no counter forbids.)
///
/// `Refs` only: `StickyRefs`' try is one acquiring add, so there is no in-between to miss.
/// Unbounded.
#[test]
fn reviver_sees_last_holders_writes_refs() {
    loom_model("reviver_sees_last_holders_writes_refs", None, || {
        let obj = Arc::new(Probe::<R>::new());
        let written = Arc::new(AtomicUsize::new(0));
        let reviver = {
            let (obj, written) = (obj.clone(), written.clone());
            // Keeps its reference: the main thread drops it after the join.
            thread::spawn(move || obj.try_inc().then(|| written.load(Ordering::Relaxed)))
        };
        let witness = {
            let obj = obj.clone();
            thread::spawn(move || obj.try_inc())
        };
        written.store(1, Ordering::Relaxed);
        obj.dec();
        let seen = reviver.join().unwrap();
        let witnessed = witness.join().unwrap();
        if let (Some(seen), false) = (seen, witnessed) {
            assert_eq!(seen, 1, "a reviver missed the last holder's write");
        }
        for held in [seen.is_some(), witnessed] {
            if held {
                obj.dec();
            }
        }
        assert_eq!(obj.destructions(), 1);
    });
}

/// A handle's reference is checked by loom for as long as the handle lives, not only at the
/// moment of `deref` (bug 5 of issue 10): a thread upgrades, clones and drops the first
/// handle, and hands the clone back to the main thread, which has dropped the strong handle
/// meanwhile. If the object were destroyed while the clone lives (a clone that took no
/// reference: mutant `handle_clone_without_inc_ref`), loom fails the model at the
/// destructor's write, which comes after the clone's `deref` in a causally ordered way and
/// would go unseen if only the `deref` were tracked. The value is a plain `u64`: no check of
/// the model's own could see it destroyed. Unbounded.
fn handle_reference_is_tracked_until_dropped<C: RefCounter + 'static>(name: &str) {
    loom_model(name, None, || {
        let registry = Arc::new(Registry::new(LeakMode::Off));
        let strong: Counted<u64, C> = Counted::builder(7).registry(&registry).build();
        let weak = Counted::downgrade(&strong);
        let user = thread::spawn(move || {
            // The handles are dropped only explicitly: if loom fails the model while one
            // lives, unwinding must not drop it (with the object destroyed under it, its
            // `dec_ref` would panic during unwinding and abort the run).
            let h = ManuallyDrop::new(weak.upgrade()?);
            let clone = ManuallyDrop::new(Counted::clone(&h));
            let value: &u64 = &clone;
            let read = *value;
            drop(ManuallyDrop::into_inner(h));
            assert_eq!(read, *value);
            Some(clone)
        });
        drop(strong);
        let clone = user.join().unwrap();
        if let Some(clone) = clone {
            let clone = ManuallyDrop::into_inner(clone);
            assert_eq!(*clone, 7);
        }
    });
}

#[test]
fn handle_reference_is_tracked_until_dropped_refs() {
    handle_reference_is_tracked_until_dropped::<Refs<u64>>(
        "handle_reference_is_tracked_until_dropped_refs",
    );
}

#[test]
fn handle_reference_is_tracked_until_dropped_sticky() {
    handle_reference_is_tracked_until_dropped::<StickyRefs<u64>>(
        "handle_reference_is_tracked_until_dropped_sticky",
    );
}

/// A made-up object with a chosen id, so that a model can put objects on chosen shards.
struct Placed {
    id: usize,
    ty: &'static str,
}

impl refwatch::leak::CheckedObject for Placed {
    fn id(&self) -> usize {
        self.id
    }
    fn ref_type(&self) -> &'static str {
        self.ty
    }
}

/// The first id (a multiple of 16, like an address) that `registry` puts on `shard`.
fn id_on_shard(registry: &Registry, shard: usize) -> usize {
    (1..)
        .map(|i| i * 16)
        .find(|&id| registry.shard_of(id) == shard)
        .expect("some id lands on every shard")
}

/// (e) A report is one instant of the whole sharded registry, even while objects leave one
/// shard and arrive on another. The registry has two shards; `A` lives on shard 0, and a
/// thread unregisters it, then registers `B` on shard 1. `A` and `B` are never registered at
/// the same instant, so no report may hold both (it may hold neither: between the two
/// calls). A report that reads the shards one after the other, releasing each before the
/// next (mutant `registry_report_shard_by_shard`), sees `A` on shard 0, then, after the thread
/// has run, `B` on shard 1: one preemption. (The objects have chosen ids: a shard is a hash of
/// the id, and heap addresses change between loom's executions, which must repeat exactly.
/// Handles, registered by address, are modelled on one shard in (f).) Unbounded.
#[test]
fn report_sees_one_instant_across_shards() {
    loom_model("report_sees_one_instant_across_shards", None, || {
        let registry = Arc::new(Registry::with_shards(LeakMode::Warn, 2));
        let (a, b) = (id_on_shard(&registry, 0), id_on_shard(&registry, 1));
        registry.register(Placed { id: a, ty: "A" });
        let mover = {
            let registry = registry.clone();
            thread::spawn(move || {
                registry.unregister(a, "A");
                registry.register(Placed { id: b, ty: "B" });
            })
        };
        let report = registry.report();
        let seen = |ty: &str| report.by_type.get(ty).copied().unwrap_or(0);
        assert!(
            seen("A") + seen("B") <= 1,
            "a report holds A and B, never registered at once: {report}"
        );
        assert_eq!(report.total, seen("A") + seen("B"));
        mover.join().unwrap();
        let last = registry.report();
        assert_eq!((last.total, last.by_type.get("B")), (1, Some(&1)), "{last}");
        registry.unregister(b, "B");
        assert!(registry.check().is_empty());
    });
}

/// (f) Handles on one shard: two threads make and destroy a handle each on a registry of one
/// shard at once, so each frees a slot of the shard's slab that the other may take next, and
/// the main thread makes a report while its handle lives, which reads the other thread's
/// handle through its record while that handle may be being destroyed (the pointer a record
/// holds must stay valid until the record leaves); every handle leaves and the registry ends
/// empty. A count of handles updated outside the shard's critical section (mutant
/// `registry_handle_count_outside_the_lock`) loses an unregistration when the two threads
/// unregister at once: one preemption. Bounded at 2 preemptions: unbounded, it took 78 s on
/// two busy cores.
#[test]
fn handles_share_one_shard() {
    fn make(registry: &Arc<Registry>) -> (Counted<Canary>, refwatch_models::probe::CanaryWitness) {
        let (canary, witness) = Canary::new();
        (Counted::builder(canary).registry(registry).build(), witness)
    }
    loom_model("handles_share_one_shard", Some(2), || {
        let registry = Arc::new(Registry::with_shards(LeakMode::Warn, 1));
        let other = {
            let registry = registry.clone();
            thread::spawn(move || {
                let (h, witness) = make(&registry);
                drop(h);
                assert!(witness.dropped(), "the last drop destroys");
            })
        };
        let (h, witness) = make(&registry);
        let report = registry.report();
        assert!(
            (1..=2).contains(&report.total),
            "this handle is registered: {report}"
        );
        drop(h);
        assert!(witness.dropped(), "the last drop destroys");
        other.join().unwrap();
        assert_eq!(
            registry.live_count(),
            0,
            "a destroyed handle stayed registered"
        );
    });
}
