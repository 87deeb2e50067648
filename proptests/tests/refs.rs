//! State machines of the reference counters and of the RAII handle against reference models.
//!
//! - `*_counter_matches_model`: the raw [`RefCounter`] (`inc_ref`, `dec_ref`, `try_inc_ref`)
//!   against a model of (real count, destroyed, destructor runs), misuse included: an
//!   `inc_ref` or `dec_ref` on a dead object must panic, name the type, and leave the object
//!   dead (count 0, destructor not run again, every later `try_inc_ref` failing).
//! - `*_handle_matches_model`: [`Counted`] / [`WeakCounted`] over a few objects (clone, drop,
//!   downgrade, upgrade, weak clone and drop, leak checking switched on and off) against a
//!   model of each object's count and life, with the leak registry holding exactly the live
//!   objects that were made while checking was on.
//!
//! Both machines run for both counters, [`Refs`] and [`StickyRefs`].
#![cfg(not(any(loom, shuttle)))]

use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::Config;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use refwatch::handle::{Counted, WeakCounted};
use refwatch::leak::{LeakMode, Registry};
use refwatch::refs::{RefCounter, Refs, StickyRefs};
use refwatch::sync::Arc;
use refwatch_proptests::catch_panic;
use std::any::type_name;
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

/// 256 cases of up to 50 transitions: a few seconds for the whole crate in debug.
fn config() -> Config {
    Config {
        cases: 256,
        // A failure prints its shrunk transitions; no regression files in the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

// =============================================================================================
// The raw counters
// =============================================================================================

/// The object the raw counters count: its name must appear in every panic message.
struct Probe;

type RefsCounter = Refs<Probe>;
type StickyCounter = StickyRefs<Probe>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CounterOp {
    Inc,
    Dec,
    TryInc,
}

/// What the last transition must have done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// No transition yet.
    Start,
    /// An `inc_ref`, or a `dec_ref` that left the object alive.
    Done,
    /// A `dec_ref` that ended the object's life: the destructor ran during it.
    Destroyed,
    /// A `try_inc_ref` that returned this.
    Tried(bool),
    /// A panic whose message names the type and this operation.
    Panicked(&'static str),
}

#[derive(Clone, Debug)]
struct CounterModel {
    /// Real references held.
    count: u64,
    /// Whether the object's life has ended.
    destroyed: bool,
    /// How many times the destructor has run (0 or 1).
    destroy_runs: u32,
    /// What the transition just applied must have done.
    outcome: Outcome,
}

struct CounterMachine;

impl ReferenceStateMachine for CounterMachine {
    type State = CounterModel;
    type Transition = CounterOp;

    fn init_state() -> BoxedStrategy<CounterModel> {
        Just(CounterModel {
            count: 1,
            destroyed: false,
            destroy_runs: 0,
            outcome: Outcome::Start,
        })
        .boxed()
    }

    fn transitions(_: &CounterModel) -> BoxedStrategy<CounterOp> {
        // As many decrements as increments: a random walk from one reference that usually
        // ends the object's life within a sequence and then goes on misusing the corpse.
        prop_oneof![
            1 => Just(CounterOp::Inc),
            1 => Just(CounterOp::TryInc),
            2 => Just(CounterOp::Dec),
        ]
        .boxed()
    }

    fn apply(mut m: CounterModel, op: &CounterOp) -> CounterModel {
        m.outcome = match (op, m.destroyed) {
            // Dead: inc and dec panic and change nothing; a try fails.
            (CounterOp::Inc, true) => Outcome::Panicked("inc_ref"),
            (CounterOp::Dec, true) => Outcome::Panicked("dec_ref"),
            (CounterOp::TryInc, true) => Outcome::Tried(false),
            (CounterOp::Inc, false) => {
                m.count += 1;
                Outcome::Done
            }
            (CounterOp::TryInc, false) => {
                m.count += 1;
                Outcome::Tried(true)
            }
            (CounterOp::Dec, false) => {
                m.count -= 1;
                if m.count == 0 {
                    m.destroyed = true;
                    m.destroy_runs += 1;
                    Outcome::Destroyed
                } else {
                    Outcome::Done
                }
            }
        };
        m
    }
}

struct CounterSut<C> {
    counter: C,
    /// Destructor runs, whichever call ran it.
    runs: Cell<u32>,
}

struct CounterTest<C>(PhantomData<C>);

impl<C: RefCounter + 'static> CounterTest<C> {
    /// Runs `op`; returns what it did, with a panic turned into `Panicked(op)` after checking
    /// that its message names the type and the operation.
    fn run(sut: &CounterSut<C>, op: CounterOp) -> Outcome {
        let destroy = || sut.runs.set(sut.runs.get() + 1);
        let runs_before = sut.runs.get();
        let (name, result) = match op {
            CounterOp::Inc => ("inc_ref", catch_panic(|| sut.counter.inc_ref())),
            CounterOp::Dec => ("dec_ref", catch_panic(|| sut.counter.dec_ref(destroy))),
            CounterOp::TryInc => match catch_panic(|| sut.counter.try_inc_ref(destroy)) {
                Ok(took) => {
                    assert_eq!(
                        sut.runs.get(),
                        runs_before,
                        "a try_inc_ref with nothing in flight never destroys"
                    );
                    return Outcome::Tried(took);
                }
                Err(msg) => ("try_inc_ref", Err(msg)),
            },
        };
        match result {
            Ok(()) => match sut.runs.get() - runs_before {
                0 => Outcome::Done,
                1 if op == CounterOp::Dec => Outcome::Destroyed,
                n => panic!("{op:?} ran the destructor {n} times"),
            },
            Err(msg) => {
                assert!(
                    msg.contains(type_name::<Probe>()) && msg.contains(name),
                    "{op:?} panicked with {msg:?}, which does not name {} and {name}",
                    type_name::<Probe>()
                );
                assert_eq!(
                    sut.runs.get(),
                    runs_before,
                    "a panicking {name} ran the destructor"
                );
                Outcome::Panicked(name)
            }
        }
    }
}

impl<C: RefCounter + 'static> StateMachineTest for CounterTest<C> {
    type SystemUnderTest = CounterSut<C>;
    type Reference = CounterMachine;

    fn init_test(_: &CounterModel) -> CounterSut<C> {
        CounterSut {
            counter: C::new(),
            runs: Cell::new(0),
        }
    }

    fn apply(sut: CounterSut<C>, model: &CounterModel, op: CounterOp) -> CounterSut<C> {
        let outcome = Self::run(&sut, op);
        assert_eq!(outcome, model.outcome, "{op:?}: counter vs model");
        sut
    }

    fn check_invariants(sut: &CounterSut<C>, model: &CounterModel) {
        let runs = sut.runs.get();
        assert!(runs <= 1, "destructor ran {runs} times");
        assert_eq!(runs, model.destroy_runs, "destructor runs");
        assert_eq!(runs == 1, sut.counter.is_destroyed(), "ran iff destroyed");
        assert_eq!(sut.counter.is_destroyed(), model.destroyed, "is_destroyed");
        assert_eq!(sut.counter.read_refs(), model.count, "read_refs");
    }

    fn teardown(sut: CounterSut<C>, model: CounterModel) {
        // Whatever the sequence left, dropping the references held ends the life exactly
        // once, and the dead object stays dead.
        for left in (0..model.count).rev() {
            let expect = if left == 0 {
                Outcome::Destroyed
            } else {
                Outcome::Done
            };
            assert_eq!(Self::run(&sut, CounterOp::Dec), expect, "teardown dec_ref");
        }
        assert_eq!(sut.runs.get(), 1, "teardown: destroyed exactly once");
        assert_eq!(Self::run(&sut, CounterOp::TryInc), Outcome::Tried(false));
        assert_eq!(sut.counter.read_refs(), 0);
        assert!(sut.counter.is_destroyed());
    }
}

prop_state_machine! {
    #![proptest_config(config())]

    #[test]
    fn refs_counter_matches_model(sequential 1..50 => CounterTest<RefsCounter>);

    #[test]
    fn sticky_counter_matches_model(sequential 1..50 => CounterTest<StickyCounter>);
}

// =============================================================================================
// The RAII handle
// =============================================================================================

/// The counted value: knows which object it is and counts its own drops.
struct Value {
    object: usize,
    drops: std::sync::Arc<AtomicUsize>,
}

impl Drop for Value {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

type RefsOfValue = Refs<Value>;
type StickyOfValue = StickyRefs<Value>;

#[derive(Clone, Debug)]
enum HandleOp {
    /// A new object with one strong handle; `callback`: built with `on_destroy`.
    Create { callback: bool },
    /// Clone strong handle `i`.
    Clone(usize),
    /// Drop strong handle `i`.
    Drop(usize),
    /// Downgrade strong handle `i`.
    Downgrade(usize),
    /// Upgrade weak handle `i`.
    Upgrade(usize),
    /// Clone weak handle `i`.
    CloneWeak(usize),
    /// Drop weak handle `i`.
    DropWeak(usize),
    /// Switch the registry between `Warn` and `Off`.
    SetChecking(bool),
}

#[derive(Clone, Debug)]
struct ObjectModel {
    count: u64,
    destroyed: bool,
    /// Built with an `on_destroy` callback.
    callback: bool,
    /// Registered at creation (checking was on).
    registered: bool,
}

#[derive(Clone, Debug)]
struct HandleModel {
    objects: Vec<ObjectModel>,
    /// The object of each strong handle, in pool order.
    strong: Vec<usize>,
    /// The object of each weak handle, in pool order.
    weak: Vec<usize>,
    /// Whether the registry is in `Warn` (else `Off`).
    checking: bool,
    /// The result the last `Upgrade` must have had.
    upgraded: Option<bool>,
}

impl HandleModel {
    fn live_registered(&self) -> impl Iterator<Item = &ObjectModel> {
        self.objects.iter().filter(|o| o.registered && !o.destroyed)
    }
}

struct HandleMachine;

impl ReferenceStateMachine for HandleMachine {
    type State = HandleModel;
    type Transition = HandleOp;

    fn init_state() -> BoxedStrategy<HandleModel> {
        any::<bool>()
            .prop_map(|callback| HandleModel {
                objects: vec![ObjectModel {
                    count: 1,
                    destroyed: false,
                    callback,
                    registered: true,
                }],
                strong: vec![0],
                weak: Vec::new(),
                checking: true,
                upgraded: None,
            })
            .boxed()
    }

    fn transitions(m: &HandleModel) -> BoxedStrategy<HandleOp> {
        let mut arms: Vec<(u32, BoxedStrategy<HandleOp>)> = vec![
            (
                1,
                any::<bool>()
                    .prop_map(|callback| HandleOp::Create { callback })
                    .boxed(),
            ),
            (1, any::<bool>().prop_map(HandleOp::SetChecking).boxed()),
        ];
        if !m.strong.is_empty() {
            let n = m.strong.len();
            arms.push((3, (0..n).prop_map(HandleOp::Clone).boxed()));
            arms.push((4, (0..n).prop_map(HandleOp::Drop).boxed()));
            arms.push((2, (0..n).prop_map(HandleOp::Downgrade).boxed()));
        }
        if !m.weak.is_empty() {
            let n = m.weak.len();
            arms.push((3, (0..n).prop_map(HandleOp::Upgrade).boxed()));
            arms.push((1, (0..n).prop_map(HandleOp::CloneWeak).boxed()));
            arms.push((1, (0..n).prop_map(HandleOp::DropWeak).boxed()));
        }
        Union::new_weighted(arms).boxed()
    }

    fn preconditions(m: &HandleModel, op: &HandleOp) -> bool {
        // Shrinking deletes transitions, so an index may no longer be in range.
        match *op {
            HandleOp::Create { .. } | HandleOp::SetChecking(_) => true,
            HandleOp::Clone(i) | HandleOp::Drop(i) | HandleOp::Downgrade(i) => i < m.strong.len(),
            HandleOp::Upgrade(i) | HandleOp::CloneWeak(i) | HandleOp::DropWeak(i) => {
                i < m.weak.len()
            }
        }
    }

    fn apply(mut m: HandleModel, op: &HandleOp) -> HandleModel {
        m.upgraded = None;
        match *op {
            HandleOp::Create { callback } => {
                m.objects.push(ObjectModel {
                    count: 1,
                    destroyed: false,
                    callback,
                    registered: m.checking,
                });
                m.strong.push(m.objects.len() - 1);
            }
            HandleOp::Clone(i) => {
                let o = m.strong[i];
                m.objects[o].count += 1;
                m.strong.push(o);
            }
            HandleOp::Drop(i) => {
                let o = m.strong.remove(i);
                let object = &mut m.objects[o];
                object.count -= 1;
                if object.count == 0 {
                    object.destroyed = true;
                }
            }
            HandleOp::Downgrade(i) => m.weak.push(m.strong[i]),
            HandleOp::Upgrade(i) => {
                let o = m.weak[i];
                let alive = !m.objects[o].destroyed;
                if alive {
                    m.objects[o].count += 1;
                    m.strong.push(o);
                }
                m.upgraded = Some(alive);
            }
            HandleOp::CloneWeak(i) => m.weak.push(m.weak[i]),
            HandleOp::DropWeak(i) => {
                m.weak.remove(i);
            }
            HandleOp::SetChecking(on) => m.checking = on,
        }
        m
    }
}

struct HandleSut<C: RefCounter> {
    registry: Arc<Registry>,
    strong: Vec<Counted<Value, C>>,
    weak: Vec<WeakCounted<Value, C>>,
    /// Per object: drops of its value.
    drops: Vec<std::sync::Arc<AtomicUsize>>,
    /// Per object: runs of its `on_destroy` callback.
    callbacks: Vec<std::sync::Arc<AtomicUsize>>,
}

impl<C: RefCounter> Drop for HandleSut<C> {
    fn drop(&mut self) {
        // A failed check unwinds through here. With a broken counter, dropping the handles
        // could panic again (an extra `dec_ref`) and abort the run before proptest can shrink
        // and report the case: leak them instead.
        if std::thread::panicking() {
            std::mem::forget(std::mem::take(&mut self.strong));
            std::mem::forget(std::mem::take(&mut self.weak));
        }
    }
}

struct HandleTest<C>(PhantomData<C>);

impl<C: RefCounter + 'static> HandleTest<C> {
    fn create(sut: &mut HandleSut<C>, callback: bool) {
        let object = sut.drops.len();
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let runs = std::sync::Arc::new(AtomicUsize::new(0));
        let value = Value {
            object,
            drops: drops.clone(),
        };
        let mut builder = Counted::<Value, C>::builder(value).registry(&sut.registry);
        if callback {
            let runs = runs.clone();
            builder = builder.on_destroy(move |value| {
                assert_eq!(value.object, object, "on_destroy got another object");
                runs.fetch_add(1, Ordering::SeqCst);
            });
        }
        sut.strong.push(builder.build());
        sut.drops.push(drops);
        sut.callbacks.push(runs);
    }

    /// The reference counts in the registry's report, one per registered object, sorted.
    fn reported_counts(registry: &Registry) -> Vec<u64> {
        let report = registry.report();
        let mut counts: Vec<u64> = report
            .messages
            .iter()
            .map(|m| {
                let (_, tail) = m
                    .split_once("reference count of ")
                    .unwrap_or_else(|| panic!("unexpected leak message {m:?}"));
                let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().unwrap()
            })
            .collect();
        counts.sort_unstable();
        counts
    }
}

impl<C: RefCounter + 'static> StateMachineTest for HandleTest<C> {
    type SystemUnderTest = HandleSut<C>;
    type Reference = HandleMachine;

    fn init_test(model: &HandleModel) -> HandleSut<C> {
        let mut sut = HandleSut {
            registry: Arc::new(Registry::new(LeakMode::Warn)),
            strong: Vec::new(),
            weak: Vec::new(),
            drops: Vec::new(),
            callbacks: Vec::new(),
        };
        Self::create(&mut sut, model.objects[0].callback);
        sut
    }

    fn apply(mut sut: HandleSut<C>, model: &HandleModel, op: HandleOp) -> HandleSut<C> {
        match op {
            HandleOp::Create { callback } => Self::create(&mut sut, callback),
            HandleOp::Clone(i) => {
                let h = sut.strong[i].clone();
                assert!(Counted::ptr_eq(&h, &sut.strong[i]));
                sut.strong.push(h);
            }
            HandleOp::Drop(i) => drop(sut.strong.remove(i)),
            HandleOp::Downgrade(i) => {
                let w = Counted::downgrade(&sut.strong[i]);
                sut.weak.push(w);
            }
            HandleOp::Upgrade(i) => {
                let got = sut.weak[i].upgrade();
                assert_eq!(
                    Some(got.is_some()),
                    model.upgraded,
                    "upgrade succeeds iff the object is alive"
                );
                if let Some(h) = got {
                    sut.strong.push(h);
                }
            }
            HandleOp::CloneWeak(i) => {
                let w = sut.weak[i].clone();
                sut.weak.push(w);
            }
            HandleOp::DropWeak(i) => drop(sut.weak.remove(i)),
            HandleOp::SetChecking(on) => {
                sut.registry
                    .set_mode(if on { LeakMode::Warn } else { LeakMode::Off })
            }
        }
        sut
    }

    fn check_invariants(sut: &HandleSut<C>, model: &HandleModel) {
        assert_eq!(sut.drops.len(), model.objects.len());
        for (o, object) in model.objects.iter().enumerate() {
            let dropped = sut.drops[o].load(Ordering::SeqCst);
            let called = sut.callbacks[o].load(Ordering::SeqCst);
            assert!(dropped <= 1, "object {o}: value dropped {dropped} times");
            assert_eq!(
                dropped == 1,
                object.destroyed,
                "object {o}: value dropped {dropped} times, destroyed in the model: {}",
                object.destroyed
            );
            let expect_called = usize::from(object.callback && object.destroyed);
            assert_eq!(called, expect_called, "object {o}: on_destroy runs");
        }
        assert_eq!(sut.strong.len(), model.strong.len());
        for (h, &o) in sut.strong.iter().zip(&model.strong) {
            assert_eq!(h.object, o, "a strong handle reads its own object");
            assert_eq!(
                Counted::ref_count(h),
                model.objects[o].count,
                "object {o}: ref_count"
            );
        }
        assert_eq!(sut.weak.len(), model.weak.len());
        for (w, &o) in sut.weak.iter().zip(&model.weak) {
            assert_eq!(
                w.is_destroyed(),
                model.objects[o].destroyed,
                "object {o}: weak is_destroyed"
            );
        }

        // The registry holds exactly the live objects made while checking was on.
        let expect_live = model.live_registered().count();
        assert_eq!(
            sut.registry.live_count(),
            expect_live,
            "registry live_count"
        );
        let report = sut.registry.report();
        assert_eq!(report.total, expect_live, "leak report total");
        assert_eq!(
            report.by_type.get(type_name::<Value>()).copied(),
            (expect_live > 0).then_some(expect_live),
            "leak report by_type: {:?}",
            report.by_type
        );
        assert_eq!(report.by_type.len(), usize::from(expect_live > 0));
        let mut expect_counts: Vec<u64> = model.live_registered().map(|o| o.count).collect();
        expect_counts.sort_unstable();
        assert_eq!(
            Self::reported_counts(&sut.registry),
            expect_counts,
            "reference counts in the leak report"
        );
    }

    fn teardown(mut sut: HandleSut<C>, model: HandleModel) {
        // Dropping every handle destroys every object exactly once and empties the registry,
        // whatever its mode now.
        while let Some(h) = sut.strong.pop() {
            drop(h);
        }
        for (o, drops) in sut.drops.iter().enumerate() {
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "object {o}: teardown drops"
            );
            let expect_called = usize::from(model.objects[o].callback);
            assert_eq!(sut.callbacks[o].load(Ordering::SeqCst), expect_called);
        }
        for w in &sut.weak {
            assert!(w.is_destroyed());
            assert!(w.upgrade().is_none(), "upgrade after the end");
        }
        sut.weak.clear();
        assert_eq!(sut.registry.live_count(), 0, "teardown: registry empty");
        assert!(sut.registry.check().is_empty());
        for (o, drops) in sut.drops.iter().enumerate() {
            assert_eq!(drops.load(Ordering::SeqCst), 1, "object {o}: dropped again");
        }
    }
}

prop_state_machine! {
    #![proptest_config(config())]

    #[test]
    fn refs_handle_matches_model(sequential 1..50 => HandleTest<RefsOfValue>);

    #[test]
    fn sticky_handle_matches_model(sequential 1..50 => HandleTest<StickyOfValue>);
}
