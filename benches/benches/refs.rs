//! refwatch's reference counters against the designs they replace, side by side.
//!
//! Every group holds both counters and their `std::sync::Arc` baseline, so that criterion
//! measures them in the same run, under the same machine load, and BENCHMARKS.md can report
//! ratios rather than absolute times:
//!
//! - `inc_dec`: `inc_ref` + `dec_ref` against `Arc` clone + drop; the interleaved pass adds a
//!   bare `AtomicU64` counted with `Arc`'s checks (`lock inc`/`lock dec`) and with the
//!   counters' checks (`lock xadd` twice), to show what the checks cost in instructions.
//! - `try_inc_dec_uncontended`: `try_inc_ref` + `dec_ref` against `Weak::upgrade` + drop
//!   (a load and a compare-and-swap loop), with `Arc` clone + drop for reference.
//! - `try_inc_dec_contended_2t`: the same four, while a second thread does the same
//!   operation on the same object in a loop (see `refwatch_benches::with_helper`).
//! - `handle_create_destroy`: a `Counted` handle built and dropped in `LeakMode::Off` and in
//!   `LeakMode::Warn`, for both counters: `*_leak_*` with a registry instance of its own (the
//!   handle keeps a clone of its `Arc`), `*_global_*` with the process-wide registry that
//!   `Counted::new` uses (the default; the bench sets its mode before each batch).
//!
//! Every benchmarked object holds one reference for the whole run, so no operation here ever
//! destroys it (`unexpected_destroy` panics if one does).
//!
//! After the criterion groups, the same variants run again *interleaved* (see
//! `refwatch_benches::interleaved`): short slots in turn, round after round, reporting the
//! median of the per-round ratios, which a busy machine disturbs far less than criterion's
//! one-benchmark-after-another ratios. `REFWATCH_BENCH_ROUNDS` sets the rounds (default 30;
//! 0 skips them); they only run under `cargo bench`, not `cargo test --benches`.
//!
//! Times are the measured thread's CPU time by default (the machines are shared: see
//! `refwatch_benches::Clock`); `REFWATCH_BENCH_CLOCK=wall` switches to wall-clock time.
//!
//! Run: `cargo bench -p refwatch-benches --bench refs -- --warm-up-time 1 --measurement-time 3`.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use refwatch::handle::Counted;
use refwatch::leak::{LeakMode, Registry};
use refwatch::refs::{RefCounter, Refs, StickyRefs, MAX_REFS};
use refwatch_benches::interleaved::{compare, repeat, rounds_from_env, Variant};
use refwatch_benches::{unexpected_destroy, with_helper, Clock, Padded};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// criterion's measurement through [`Clock`]: thread CPU time or wall time, in nanoseconds.
struct BenchClock(Clock);

impl Measurement for BenchClock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.0.now()
    }
    fn end(&self, start: Duration) -> Duration {
        self.0.now() - start
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Durations in nanoseconds, shown exactly as criterion shows wall time.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

type Group<'a> = BenchmarkGroup<'a, BenchClock>;

fn config() -> Criterion<BenchClock> {
    let clock = Clock::from_env();
    eprintln!("refwatch benches: timing with {clock}");
    Criterion::default().with_measurement(BenchClock(clock))
}

/// The type the counters count (it only names the object in panic messages).
struct Object;

/// The payload of the `Arc` baselines and of the handles.
type Payload = u64;

// ---------------------------------------------------------------------------------------------
// The operations, one round trip each
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn inc_dec<C: RefCounter>(counter: &C) {
    let counter = black_box(counter);
    counter.inc_ref();
    counter.dec_ref(unexpected_destroy);
}

#[inline(always)]
fn try_inc_dec<C: RefCounter>(counter: &C) {
    let counter = black_box(counter);
    if counter.try_inc_ref(unexpected_destroy) {
        counter.dec_ref(unexpected_destroy);
    } else {
        unexpected_destroy();
    }
}

#[inline(always)]
fn arc_clone_drop(arc: &Arc<Payload>) {
    drop(black_box(Arc::clone(black_box(arc))));
}

/// A bare word counted with `Arc`'s checks: only the sign of the old count on the way up and
/// "was it 1" on the way down, which the flags of `lock inc` and `lock dec` answer, so the
/// compiler need not fetch the old value. (Reference for the `inc_dec` table.)
#[inline(always)]
fn word_inc_dec_arc_checks(word: &AtomicU64) {
    let word = black_box(word);
    if (word.fetch_add(1, Ordering::Relaxed) as i64) < 0 {
        unexpected_destroy();
    }
    if word.fetch_sub(1, Ordering::Release) == 1 {
        unexpected_destroy();
    }
}

/// The same word counted with the counters' checks: the old count's 32-bit real half must be
/// in `1..MAX_REFS` on both ways (no increment or decrement without a reference, no overflow),
/// which needs the old value itself: `lock xadd`. (Reference for the `inc_dec` table.)
#[inline(always)]
fn word_inc_dec_refs_checks(word: &AtomicU64) {
    let word = black_box(word);
    let in_range = |old: u64| (old & 0xffff_ffff).wrapping_sub(1) < MAX_REFS - 1;
    if !in_range(word.fetch_add(1, Ordering::Relaxed)) {
        unexpected_destroy();
    }
    let old = word.fetch_sub(1, Ordering::Release);
    if !in_range(old) || old == 1 {
        unexpected_destroy();
    }
}

/// A handle counted by `C`, built and dropped: with `registry`, or (`None`) with the
/// process-wide registry, as `Counted::new` does.
#[inline(always)]
fn create_destroy_one<C: RefCounter + 'static>(registry: Option<&refwatch::sync::Arc<Registry>>) {
    let handle = match registry {
        Some(registry) => Counted::<Payload, C>::builder(black_box(7))
            .registry(registry)
            .build(),
        None => Counted::<Payload, C>::new(black_box(7)),
    };
    drop(black_box(handle));
}

#[inline(always)]
fn weak_upgrade_drop(weak: &Weak<Payload>) {
    drop(black_box(black_box(weak).upgrade()));
}

// ---------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------

fn bench_inc_dec(c: &mut Criterion<BenchClock>) {
    let refs = Padded(Refs::<Object>::new());
    let sticky = Padded(StickyRefs::<Object>::new());
    let arc = Arc::new(Payload::default());

    let mut group = c.benchmark_group("inc_dec");
    group.bench_function("Refs", |b| b.iter(|| inc_dec(&*refs)));
    group.bench_function("StickyRefs", |b| b.iter(|| inc_dec(&*sticky)));
    group.bench_function("Arc_clone_drop", |b| b.iter(|| arc_clone_drop(&arc)));
    group.finish();

    assert_eq!(refs.read_refs(), 1);
    assert_eq!(sticky.read_refs(), 1);
    assert_eq!(Arc::strong_count(&arc), 1);
}

fn bench_try_inc_dec_uncontended(c: &mut Criterion<BenchClock>) {
    let refs = Padded(Refs::<Object>::new());
    let sticky = Padded(StickyRefs::<Object>::new());
    let arc = Arc::new(Payload::default());
    let weak = Arc::downgrade(&arc);

    let mut group = c.benchmark_group("try_inc_dec_uncontended");
    group.bench_function("Refs", |b| b.iter(|| try_inc_dec(&*refs)));
    group.bench_function("StickyRefs", |b| b.iter(|| try_inc_dec(&*sticky)));
    group.bench_function("Weak_upgrade_drop", |b| b.iter(|| weak_upgrade_drop(&weak)));
    group.bench_function("Arc_clone_drop", |b| b.iter(|| arc_clone_drop(&arc)));
    group.finish();

    assert_eq!(refs.read_refs(), 1);
    assert_eq!(sticky.read_refs(), 1);
    assert_eq!(Arc::strong_count(&arc), 1);
}

/// Benchmarks `op` on this thread while a helper thread, spawned once for this benchmark,
/// does `op` on the same object in a loop; prints how much the two overlapped.
fn contended<Op: Fn() + Sync>(group: &mut Group<'_>, clock: Clock, name: &str, op: Op) {
    let ((), stats) = with_helper(clock, &op, |probe| {
        group.bench_function(name, |b| b.iter_custom(|iters| probe.time(iters, &op)));
    });
    if stats.windows > 0 {
        eprintln!("try_inc_dec_contended_2t/{name}: {stats}");
    }
}

fn bench_try_inc_dec_contended(c: &mut Criterion<BenchClock>) {
    let refs = Padded(Refs::<Object>::new());
    let sticky = Padded(StickyRefs::<Object>::new());
    let arc = Arc::new(Payload::default());
    let weak = Arc::downgrade(&arc);

    let clock = Clock::from_env();
    let mut group = c.benchmark_group("try_inc_dec_contended_2t");
    contended(&mut group, clock, "Refs", || try_inc_dec(&*refs));
    contended(&mut group, clock, "StickyRefs", || try_inc_dec(&*sticky));
    contended(&mut group, clock, "Weak_upgrade_drop", || {
        weak_upgrade_drop(&weak)
    });
    contended(&mut group, clock, "Arc_clone_drop", || arc_clone_drop(&arc));
    group.finish();

    assert_eq!(refs.read_refs(), 1);
    assert_eq!(sticky.read_refs(), 1);
    assert_eq!(Arc::strong_count(&arc), 1);
}

/// `C`'s create+destroy in `mode`: with a registry instance (`*_leak_*`), or with the
/// process-wide registry (`global`: `*_global_*`, its mode set before the measurement).
fn create_destroy<C: RefCounter + 'static>(
    group: &mut Group<'_>,
    counter: &str,
    mode: LeakMode,
    global: bool,
) {
    let registry = if global {
        Registry::global()
    } else {
        refwatch::sync::Arc::new(Registry::new(mode))
    };
    let name = if global { "global" } else { "leak" };
    group.bench_function(format!("{counter}_{name}_{mode}"), |b| {
        registry.set_mode(mode);
        let instance = (!global).then_some(&registry);
        b.iter(|| create_destroy_one::<C>(instance))
    });
    assert_eq!(registry.live_count(), 0, "every handle left the registry");
}

fn bench_handle_create_destroy(c: &mut Criterion<BenchClock>) {
    let mut group = c.benchmark_group("handle_create_destroy");
    for mode in [LeakMode::Off, LeakMode::Warn] {
        for global in [false, true] {
            create_destroy::<Refs<Payload>>(&mut group, "Refs", mode, global);
            create_destroy::<StickyRefs<Payload>>(&mut group, "StickyRefs", mode, global);
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_inc_dec,
        bench_try_inc_dec_uncontended,
        bench_try_inc_dec_contended,
        bench_handle_create_destroy
}

// ---------------------------------------------------------------------------------------------
// Interleaved comparisons
// ---------------------------------------------------------------------------------------------

fn interleaved(rounds: usize) {
    let clock = Clock::from_env();
    let refs = Padded(Refs::<Object>::new());
    let sticky = Padded(StickyRefs::<Object>::new());
    let arc = Arc::new(Payload::default());
    let weak = Arc::downgrade(&arc);

    let (arc_word, refs_word) = (Padded(AtomicU64::new(1)), Padded(AtomicU64::new(1)));
    let refs_inc = repeat(|| inc_dec(&*refs));
    let arc_word_inc = repeat(|| word_inc_dec_arc_checks(&arc_word));
    let refs_word_inc = repeat(|| word_inc_dec_refs_checks(&refs_word));
    let sticky_inc = repeat(|| inc_dec(&*sticky));
    let refs_try = repeat(|| try_inc_dec(&*refs));
    let sticky_try = repeat(|| try_inc_dec(&*sticky));
    let arc_clone = repeat(|| arc_clone_drop(&arc));
    let weak_upgrade = repeat(|| weak_upgrade_drop(&weak));
    let v = Variant::alone;

    let inc = [
        v("Refs", &refs_inc),
        v("StickyRefs", &sticky_inc),
        v("Arc_clone_drop", &arc_clone),
        v("word_Arc_checks", &arc_word_inc),
        v("word_Refs_checks", &refs_word_inc),
    ];
    let tries = [
        v("Refs", &refs_try),
        v("StickyRefs", &sticky_try),
        v("Weak_upgrade_drop", &weak_upgrade),
        v("Arc_clone_drop", &arc_clone),
    ];
    let c = compare("inc_dec", clock, &inc, rounds, 1 << 20);
    println!("{}", c.table(&["Arc_clone_drop"]));
    let baselines = ["Weak_upgrade_drop", "Arc_clone_drop"];
    let c = compare("try_inc_dec_uncontended", clock, &tries, rounds, 1 << 20);
    println!("{}", c.table(&baselines));
    // The helper does the same operation on the same object.
    let contended = tries.map(|t| Variant::beside(t.name, t.run, t.run));
    let c = compare(
        "try_inc_dec_contended_2t",
        clock,
        &contended,
        rounds,
        1 << 16,
    );
    println!("{}", c.table(&baselines));

    let off = refwatch::sync::Arc::new(Registry::new(LeakMode::Off));
    let warn = refwatch::sync::Arc::new(Registry::new(LeakMode::Warn));
    // `registry` `None`: the process-wide registry (`Counted::new`), whose mode each slot sets
    // at its start to `mode`.
    let handles = |registry: Option<&refwatch::sync::Arc<Registry>>, mode: LeakMode, sticky| {
        let registry = registry.cloned();
        let global = Registry::global();
        move |n: u64| {
            if registry.is_none() {
                global.set_mode(mode);
            }
            for _ in 0..n {
                if sticky {
                    create_destroy_one::<StickyRefs<Payload>>(registry.as_ref());
                } else {
                    create_destroy_one::<Refs<Payload>>(registry.as_ref());
                }
            }
        }
    };
    // The floor of any registry that takes a lock when a handle registers and again when it
    // leaves: `Off`'s create+destroy plus two uncontended lock+unlock pairs of a std `Mutex`.
    let two_locks = {
        let registry = off.clone();
        let lock = std::sync::Mutex::new(0_u64);
        move |n: u64| {
            for _ in 0..n {
                *lock.lock().unwrap() += 1;
                create_destroy_one::<Refs<Payload>>(Some(&registry));
                *lock.lock().unwrap() += 1;
            }
        }
    };
    let (off_mode, warn_mode) = (LeakMode::Off, LeakMode::Warn);
    let (refs_off, sticky_off) = (
        handles(Some(&off), off_mode, false),
        handles(Some(&off), off_mode, true),
    );
    let (refs_warn, sticky_warn) = (
        handles(Some(&warn), warn_mode, false),
        handles(Some(&warn), warn_mode, true),
    );
    let (refs_global_off, sticky_global_off) = (
        handles(None, off_mode, false),
        handles(None, off_mode, true),
    );
    let (refs_global_warn, sticky_global_warn) = (
        handles(None, warn_mode, false),
        handles(None, warn_mode, true),
    );
    let create = [
        v("Refs_leak_off", &refs_off),
        v("StickyRefs_leak_off", &sticky_off),
        v("Refs_leak_warn", &refs_warn),
        v("StickyRefs_leak_warn", &sticky_warn),
        v("Refs_global_off", &refs_global_off),
        v("StickyRefs_global_off", &sticky_global_off),
        v("Refs_global_warn", &refs_global_warn),
        v("StickyRefs_global_warn", &sticky_global_warn),
        v("Refs_leak_off_plus_two_locks", &two_locks),
    ];
    let c = compare("handle_create_destroy", clock, &create, rounds, 1 << 16);
    println!("{}", c.table(&["Refs_leak_off", "StickyRefs_leak_off"]));
    // Issue 11's target, each counter against itself (the table's cross ratios are not it):
    // with the process-wide registry (the default) and with an instance of the caller's.
    for (registry, what) in [
        ("global", "the process-wide registry"),
        ("leak", "a registry instance"),
    ] {
        for counter in ["Refs", "StickyRefs"] {
            let (warn, off) = (
                format!("{counter}_{registry}_warn"),
                format!("{counter}_{registry}_off"),
            );
            let ratio = c.ratio(&warn, &off);
            let label = format!("leak check Warn / Off, {counter} create+destroy, {what}");
            println!("{}", c.target_line(&label, ratio, "<= 1.5"));
        }
    }
    let floor = c.ratio("Refs_leak_off_plus_two_locks", "Refs_leak_off");
    println!(
        "handle_create_destroy: Off plus two Mutex lock+unlock pairs / Off, Refs create+destroy \
         = {floor} (the floor of a registry that locks at both ends; no target)"
    );
    println!();
    assert_eq!(warn.live_count(), 0, "every handle left the registry");
    assert_eq!(Registry::global().live_count(), 0);
}

fn main() {
    benches();
    if let Some(rounds) = rounds_from_env() {
        interleaved(rounds);
    }
    Criterion::default().configure_from_args().final_summary();
}
