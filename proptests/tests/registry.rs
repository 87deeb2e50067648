//! A state machine of the leak [`Registry`] against a model map (id -> type) and mode.
//!
//! Transitions: register and unregister of a few ids (so double registrations and absent
//! unregistrations are frequent), mode changes among off, warn and panic, and the leak check.
//! A double registration and an absent unregistration must panic with a message naming the
//! type and leave the registry as it was; registering while off does nothing; the object
//! handed to `register` is kept exactly as long as it is registered; `report()` and
//! `check()` match the model.
#![cfg(not(any(loom, shuttle)))]

use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::Config;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use refwatch::leak::{CheckedObject, LeakMode, LeakReport, Registry};
use refwatch_proptests::catch_panic;
use std::collections::btree_map::{BTreeMap, Entry};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// 256 cases of up to 50 transitions.
fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Few ids, so that collisions are common.
const IDS: usize = 6;
/// The types objects claim to be.
const TYPES: [&str; 3] = ["Socket", "Inode", "Dentry"];

/// An id as an address-like number (the registry treats it as opaque).
fn id_of(slot: usize) -> usize {
    0x1000 + 0x40 * slot
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegOp {
    Register { slot: usize, ty: usize },
    Unregister { slot: usize, ty: usize },
    SetMode(LeakMode),
    Check,
}

/// What the last transition must have done.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Start,
    /// `register` returned this.
    Registered(bool),
    Unregistered,
    ModeSet,
    /// `check` returned the model's report.
    Checked,
    /// A panic whose message contains every one of these.
    Panicked(Vec<String>),
}

#[derive(Clone, Debug)]
struct RegistryModel {
    mode: LeakMode,
    /// Registered ids and their types.
    live: BTreeMap<usize, &'static str>,
    outcome: Outcome,
}

impl RegistryModel {
    fn report(&self) -> LeakReport {
        let mut by_type = BTreeMap::new();
        for ty in self.live.values() {
            *by_type.entry(*ty).or_insert(0) += 1;
        }
        let mut messages: Vec<String> = self
            .live
            .iter()
            .map(|(&id, ty)| leak_message(ty, id))
            .collect();
        messages.sort();
        LeakReport {
            total: self.live.len(),
            by_type,
            messages,
        }
    }
}

fn leak_message(ty: &str, id: usize) -> String {
    format!("{ty} object {id:#x} still registered")
}

struct RegistryMachine;

fn mode_strategy() -> impl Strategy<Value = LeakMode> {
    prop_oneof![
        Just(LeakMode::Off),
        Just(LeakMode::Warn),
        Just(LeakMode::Panic)
    ]
}

impl ReferenceStateMachine for RegistryMachine {
    type State = RegistryModel;
    type Transition = RegOp;

    fn init_state() -> BoxedStrategy<RegistryModel> {
        mode_strategy()
            .prop_map(|mode| RegistryModel {
                mode,
                live: BTreeMap::new(),
                outcome: Outcome::Start,
            })
            .boxed()
    }

    fn transitions(m: &RegistryModel) -> BoxedStrategy<RegOp> {
        let ty = 0..TYPES.len();
        let mut arms: Vec<(u32, BoxedStrategy<RegOp>)> = vec![
            (
                5,
                (0..IDS, ty.clone())
                    .prop_map(|(slot, ty)| RegOp::Register { slot, ty })
                    .boxed(),
            ),
            (
                2,
                (0..IDS, ty.clone())
                    .prop_map(|(slot, ty)| RegOp::Unregister { slot, ty })
                    .boxed(),
            ),
            (1, mode_strategy().prop_map(RegOp::SetMode).boxed()),
            (1, Just(RegOp::Check).boxed()),
        ];
        if !m.live.is_empty() {
            // Mostly unregister what is there, under its own type.
            let live: Vec<(usize, usize)> = m
                .live
                .iter()
                .map(|(&id, ty)| {
                    let slot = (id - id_of(0)) / 0x40;
                    (slot, TYPES.iter().position(|t| t == ty).unwrap())
                })
                .collect();
            arms.push((
                3,
                proptest::sample::select(live)
                    .prop_map(|(slot, ty)| RegOp::Unregister { slot, ty })
                    .boxed(),
            ));
        }
        Union::new_weighted(arms).boxed()
    }

    fn apply(mut m: RegistryModel, op: &RegOp) -> RegistryModel {
        m.outcome = match *op {
            RegOp::Register { slot, ty } => {
                let (id, ty) = (id_of(slot), TYPES[ty]);
                if m.mode == LeakMode::Off {
                    Outcome::Registered(false)
                } else if let Entry::Vacant(vacant) = m.live.entry(id) {
                    vacant.insert(ty);
                    Outcome::Registered(true)
                } else {
                    Outcome::Panicked(vec![ty.to_owned(), "registered twice".to_owned()])
                }
            }
            RegOp::Unregister { slot, ty } => {
                let (id, ty) = (id_of(slot), TYPES[ty]);
                // Whatever the mode: an object registered before checking was turned off
                // must still be able to leave.
                if m.live.remove(&id).is_some() {
                    Outcome::Unregistered
                } else {
                    Outcome::Panicked(vec![ty.to_owned(), "not registered".to_owned()])
                }
            }
            RegOp::SetMode(mode) => {
                m.mode = mode;
                Outcome::ModeSet
            }
            RegOp::Check => {
                if m.mode == LeakMode::Panic && !m.live.is_empty() {
                    let report = m.report();
                    let mut expect = vec![format!("{} leaked objects", report.total)];
                    expect.extend(report.messages);
                    Outcome::Panicked(expect)
                } else {
                    Outcome::Checked
                }
            }
        };
        m
    }
}

/// A registered object: counts its live instances, so the test sees what the registry keeps.
struct Object {
    id: usize,
    ty: &'static str,
    instances: Arc<AtomicUsize>,
}

impl Object {
    fn new(id: usize, ty: &'static str, instances: &Arc<AtomicUsize>) -> Self {
        instances.fetch_add(1, Ordering::SeqCst);
        Object {
            id,
            ty,
            instances: Arc::clone(instances),
        }
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        self.instances.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CheckedObject for Object {
    fn id(&self) -> usize {
        self.id
    }
    fn ref_type(&self) -> &'static str {
        self.ty
    }
    fn leak_message(&self) -> String {
        leak_message(self.ty, self.id)
    }
}

struct RegistrySut {
    registry: Registry,
    /// Live `Object`s: after each step, exactly those the registry holds.
    instances: Arc<AtomicUsize>,
}

struct RegistryTest;

impl StateMachineTest for RegistryTest {
    type SystemUnderTest = RegistrySut;
    type Reference = RegistryMachine;

    fn init_test(model: &RegistryModel) -> RegistrySut {
        RegistrySut {
            registry: Registry::new(model.mode),
            instances: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn apply(sut: RegistrySut, model: &RegistryModel, op: RegOp) -> RegistrySut {
        let registry = &sut.registry;
        let result = match op {
            RegOp::Register { slot, ty } => {
                let object = Object::new(id_of(slot), TYPES[ty], &sut.instances);
                catch_panic(|| Outcome::Registered(registry.register(object)))
            }
            RegOp::Unregister { slot, ty } => catch_panic(|| {
                registry.unregister(id_of(slot), TYPES[ty]);
                Outcome::Unregistered
            }),
            RegOp::SetMode(mode) => {
                registry.set_mode(mode);
                Ok(Outcome::ModeSet)
            }
            RegOp::Check => catch_panic(|| {
                let report = registry.check();
                assert_eq!(report, model.report(), "check() vs model");
                Outcome::Checked
            }),
        };
        match (result, &model.outcome) {
            (Err(msg), Outcome::Panicked(expect)) => {
                for part in expect {
                    assert!(
                        msg.contains(part.as_str()),
                        "{op:?} panicked with {msg:?}, which lacks {part:?}"
                    );
                }
            }
            (Err(msg), expect) => panic!("{op:?} panicked with {msg:?}; expected {expect:?}"),
            (Ok(got), expect) => assert_eq!(&got, expect, "{op:?}"),
        }
        sut
    }

    fn check_invariants(sut: &RegistrySut, model: &RegistryModel) {
        let r = &sut.registry;
        assert_eq!(r.mode(), model.mode, "mode");
        assert_eq!(r.enabled(), model.mode != LeakMode::Off, "enabled");
        assert_eq!(r.live_count(), model.live.len(), "live_count");
        for slot in 0..IDS {
            let id = id_of(slot);
            assert_eq!(
                r.contains(id),
                model.live.contains_key(&id),
                "contains({id:#x})"
            );
        }
        assert_eq!(r.report(), model.report(), "report()");
        assert_eq!(
            sut.instances.load(Ordering::SeqCst),
            model.live.len(),
            "objects kept alive: exactly the registered ones"
        );
    }

    fn teardown(sut: RegistrySut, model: RegistryModel) {
        // Every registered object leaves, whatever the mode, and is then released.
        let RegistrySut {
            registry,
            instances,
        } = sut;
        for (&id, ty) in &model.live {
            registry.unregister(id, ty);
        }
        assert_eq!(registry.live_count(), 0);
        assert!(registry.report().is_empty());
        assert_eq!(
            instances.load(Ordering::SeqCst),
            0,
            "released on unregister"
        );
    }
}

prop_state_machine! {
    #![proptest_config(config())]

    #[test]
    fn registry_matches_model(sequential 1..50 => RegistryTest);
}
