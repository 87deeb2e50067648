//! Output captured from real runs of the models and mutants (trimmed to the lines that
//! matter), shared by the tests of the classifier, the depth search and the report.

/// loom deadlock (mutant conntrack_lock_pair_unordered): the deadlock, then loom's
/// bookkeeping panics while unwinding, then the abort.
pub const LOOM_DEADLOCK: &str = "\
running 1 test
test insert_races_insert_of_the_reverse_flow ... 
thread 'insert_races_insert_of_the_reverse_flow' (30469) panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/loom-0.7.3/src/rt/execution.rs:215:13:
deadlock; threads = [(Id(0), Blocked(Location(None))), (Id(1), Blocked(Location(None)))]
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

thread 'insert_races_insert_of_the_reverse_flow' (30469) panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/loom-0.7.3/src/rt/thread.rs:276:39:
called `Option::unwrap()` on a `None` value
stack backtrace:
  39:     0x559c7838991b - loom_conntrack::insert_races_insert_of_the_reverse_flow::{{closure}}::{{closure}}::h72b5a3595bea2375
                               at /work/wt/target/mutants/work/models/tests/loom_conntrack.rs:179:70

thread 'insert_races_insert_of_the_reverse_flow' (30469) panicked at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:233:5:
panic in a destructor during cleanup
thread caused non-unwinding panic. aborting.
";

/// shuttle deadlock (mutant conntrack_lock_pair_unordered).
pub const SHUTTLE_DEADLOCK: &str = "\
test syn_flood_under_contention_respects_max_and_spares_established ... syn_flood: shuttle seed 6840158756811819774
failing schedule:
\"
9103ba06d0f7cde5c491979e3c00404444444444444444444444444444444444444444444444
4444444444444400
\"
pass that string to `shuttle::replay` to replay the failure
Test deadlocked, and SHUTTLE_CAPTURE_BACKTRACE is not set.
Task failed, serializing schedule
test panicked in task '<unknown>'

thread 'syn_flood_under_contention_respects_max_and_spares_established' (31719) panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/shuttle-engine-0.1.8/src/runtime/execution.rs:217:50:
deadlock! blocked tasks: [main-thread (task main-thread(0)), <unknown> (task main-thread(1))]
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
FAILED
";

/// shuttle's self-deadlock on a RwLock (mutant kernfs_parent_decref_under_child_locks).
pub const SHUTTLE_RWLOCK_SELF_DEADLOCK: &str = "\
pass that string to `shuttle::replay` to replay the failure
thread 'random_walkers_on_a_deep_tree' (2912) panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/shuttle-std-0.1.5/src/sync/rwlock.rs:206:9:
deadlock! task main-thread(0) tried to acquire a RwLock it already holds
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
Task failed, serializing schedule
thread 'random_walkers_on_a_deep_tree' (2912) panicked at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:233:5:
panic in a destructor during cleanup
thread caused non-unwinding panic. aborting.
";

/// A model's assertion (mutant conntrack_lookup_returns_expired).
pub const LOOM_ASSERTION: &str = "\
test same_flow_racing_over_an_expired_conn_yields_one_fresh_conn ... 
thread 'same_flow_racing_over_an_expired_conn_yields_one_fresh_conn' (31996) panicked at models/tests/loom_conntrack.rs:151:13:
the expired connection came back
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
FAILED
";

/// A multi-line `assert_eq!` in a model (mutant kernfs_dentry_stays_in_parent_at_zero).
pub const LOOM_ASSERT_EQ: &str = "\
thread 'last_close_races_walk_and_rename' (1513) panicked at models/tests/loom_kernfs.rs:105:5:
assertion `left == right` failed: only the root is left in the tree
  left: Err(\"\\\"d\\\" does not point back at its parent\")
 right: Ok(1)
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
";

/// refwatch's own misuse check fires inside a shuttle model (mutant
/// kernfs_dentry_stays_in_parent_at_zero on shuttle_kernfs).
pub const SHUTTLE_PRODUCTION_PANIC: &str = "\
pass that string to `shuttle::replay` to replay the failure
thread 'random_walkers_on_a_deep_tree' (1359) panicked at core/src/refs.rs:252:18:
refwatch::kernfs::dentry::Dentry: inc_ref on an object with no references (count 0x8000000000000000): use try_inc_ref to revive
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
failing schedule:
";

/// A deliberately wrong mutant (models/mutants/control_dec_ref_always_panics.patch):
/// `Refs::dec_ref` panics unconditionally. Under loom the production panic is followed
/// by loom's own panics while unwinding and an abort; none of that is a kill.
pub const LOOM_CONTROL: &str = "\
running 1 test
test try_inc_races_last_dec_refs ... 
thread 'try_inc_races_last_dec_refs' (1067) panicked at core/src/refs.rs:257:9:
control mutant: Refs::dec_ref always panics
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

thread 'try_inc_races_last_dec_refs' (1067) panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/loom-0.7.3/src/rt/scheduler.rs:128:13:
cannot access Loom execution state from outside a Loom model. are you accessing a Loom synchronization primitive from outside a Loom test (a call to `model` or `check`)?
stack backtrace:

thread 'try_inc_races_last_dec_refs' (1067) panicked at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs:233:5:
panic in a destructor during cleanup
thread caused non-unwinding panic. aborting.
";

/// The same control under shuttle, where a task panics.
pub const SHUTTLE_CONTROL: &str = "\
test many_holders_try_and_drop_refs ... many_holders_try_and_drop_refs: shuttle seed 6840158756811819774
Task failed, serializing schedule
test panicked in task 'task-1'
failing schedule:
\"
\"
pass that string to `shuttle::replay` to replay the failure
thread 'many_holders_try_and_drop_refs' (1860) panicked at core/src/refs.rs:257:9:
control mutant: Refs::dec_ref always panics
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
test panicked in task 'task-1'
REFWATCH-SHUTTLE-FAILURE name=many_holders_try_and_drop_refs scheduler=pct schedule=1
FAILED
";

/// A production panic in a spawned thread, then the model's `join().unwrap()` panics in
/// the model: the model did not catch anything, it only passed the panic on.
pub const PRODUCTION_PANIC_THEN_MODEL_UNWRAP: &str = "\
thread 'x' (4242) panicked at core/src/refs.rs:257:9:
control mutant: Refs::dec_ref always panics
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

thread 'x' (4242) panicked at models/tests/loom_refs.rs:50:22:
called `Result::unwrap()` on an `Err` value: Any { .. }
FAILED
";

pub const LOOM_CAUSALITY: &str = "\
thread 'dec_publishes_writes_to_destructor_refs' (77) panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/loom-0.7.3/src/rt/location.rs:115:5:
Causality violation: Concurrent read and write accesses.
";

pub const LOOM_LEAK: &str = "\
thread 'two_try_inc_race_last_dec_refs' (88) panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/loom-0.7.3/src/rt/alloc.rs:91:17:
Allocation leaked.
  Index: 0
";

pub const LOOM_BRANCHES: &str = "\
thread 'big_model' (99) panicked at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/loom-0.7.3/src/rt/path.rs:111:9:
Model exceeded maximum number of branches. This is often caused by an algorithm requiring the processor to make progress, e.g. spin locks.
";

pub const PASSED: &str = "\
running 1 test
test two_try_inc_race_last_dec_refs ... REFWATCH-MODEL checker=loom name=two_try_inc_race_last_dec_refs bound=none iterations=12399 seconds=1.100
ok
";
