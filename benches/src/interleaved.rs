//! Interleaved, paired comparisons: the check on criterion's ratios for a busy machine.
//!
//! criterion measures one benchmark after another, each for seconds. On a shared machine the
//! conditions change between two of them (other processes come and go, the hypervisor moves
//! the virtual CPUs), so two benchmarks of the same instructions can differ by more than the
//! effect being measured. [`compare`] instead runs every variant for a short slot in turn,
//! round after round (rotating which goes first), and reports each variant's time per
//! operation and, for each pair, the median over rounds of the ratio *within* a round: a slow
//! stretch of the machine slows both sides of a ratio alike.

use crate::{
    pin_pair, pin_to, time_chunks, unpin, Clock, HelperStats, Padded, CHUNK, HELPER_BATCH,
};
use std::fmt::{self, Write as _};
use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;

/// The environment variable that sets the rounds of an interleaved pass.
pub const ROUNDS_ENV: &str = "REFWATCH_BENCH_ROUNDS";

/// The rounds the interleaved pass should run: [`ROUNDS_ENV`], 30 by default; `None` when it
/// is 0 or when the bench was not started by `cargo bench` (which passes `--bench`):
/// `cargo test --benches` runs every bench binary, and must stay quick.
///
/// # Panics
/// On a value of [`ROUNDS_ENV`] that is not a number: a typo must not skip the pass.
pub fn rounds_from_env() -> Option<usize> {
    if !std::env::args().any(|a| a == "--bench") {
        return None;
    }
    let rounds = match std::env::var(ROUNDS_ENV) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{ROUNDS_ENV}={v:?}: expected a number")),
        Err(_) => 30,
    };
    (rounds > 0).then_some(rounds)
}

/// Something to run for a slot: does its operation `n` times (a loop the compiler can see
/// through, so that the comparison pays one indirect call per 4096 operations, not per
/// operation).
pub type Run<'a> = &'a (dyn Fn(u64) + Sync);

/// `n` calls of `op`: a slot run for a variant that repeats one operation (`op` is a closure
/// of its own type, so the loop is monomorphic and inlines it).
pub fn repeat(op: impl Fn() + Sync) -> impl Fn(u64) + Sync {
    move |n| (0..n).for_each(|_| op())
}

/// One contender.
pub struct Variant<'a> {
    /// The name shown in the report, as in the criterion group.
    pub name: &'a str,
    /// What the measured thread runs.
    pub run: Run<'a>,
    /// What a helper thread, pinned to another CPU where possible, runs throughout this
    /// variant's slots; `None` runs the measured thread alone. Pass `run` itself to contend
    /// on the same object, or an operation on other objects to measure how the variant scales
    /// to two threads (see [`Comparison::throughput_ratio`]).
    pub beside: Option<Run<'a>>,
}

impl<'a> Variant<'a> {
    /// The measured thread alone.
    pub fn alone(name: &'a str, run: Run<'a>) -> Self {
        Variant {
            name,
            run,
            beside: None,
        }
    }

    /// The measured thread doing `run` while a helper thread does `helper`.
    pub fn beside(name: &'a str, run: Run<'a>, helper: Run<'a>) -> Self {
        Variant {
            name,
            run,
            beside: Some(helper),
        }
    }
}

impl fmt::Debug for Variant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Variant")
            .field("name", &self.name)
            .field("beside", &self.beside.is_some())
            .finish()
    }
}

/// Median and quartiles of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// First quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q3: f64,
}

impl Summary {
    /// The summary of `values` (linear interpolation between order statistics).
    ///
    /// # Panics
    /// When `values` is empty.
    pub fn of(values: &[f64]) -> Summary {
        assert!(!values.is_empty(), "summary of no values");
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let pos = q * (sorted.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        };
        Summary {
            q1: at(0.25),
            median: at(0.5),
            q3: at(0.75),
        }
    }
}

/// `median [q1, q3]`, two decimals: the form of every cell of the reports.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2} [{:.2}, {:.2}]", self.median, self.q1, self.q3)
    }
}

/// The result of [`compare`].
#[derive(Clone, Debug)]
pub struct Comparison {
    /// What was compared (the criterion group's name).
    pub title: String,
    /// The clock the slots were timed with.
    pub clock: Clock,
    /// The variants' names, in the order given.
    pub names: Vec<String>,
    /// `ns[v][r]`: the measured thread's nanoseconds per operation, variant `v`, round `r`.
    pub ns: Vec<Vec<f64>>,
    /// `ns_all[v][r]`: nanoseconds per operation of both threads together (the kept chunks'
    /// time over the measured thread's and the helper's operations in them): the inverse of
    /// the variant's throughput. Equal to `ns` for variants run alone.
    pub ns_all: Vec<Vec<f64>>,
    /// What the helper did during each variant's slots; `None` for variants run alone.
    pub helper: Vec<Option<HelperStats>>,
}

impl Comparison {
    fn new(title: &str, clock: Clock, variants: &[Variant<'_>], rounds: usize) -> Self {
        Comparison {
            title: title.to_string(),
            clock,
            names: variants.iter().map(|v| v.name.to_string()).collect(),
            ns: vec![Vec::with_capacity(rounds); variants.len()],
            ns_all: vec![Vec::with_capacity(rounds); variants.len()],
            helper: variants
                .iter()
                .map(|v| v.beside.map(|_| HelperStats::default()))
                .collect(),
        }
    }

    fn index(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{}: no variant named {name}", self.title))
    }

    /// Nanoseconds per operation of `name`'s measured thread over the rounds.
    pub fn time(&self, name: &str) -> Summary {
        Summary::of(&self.ns[self.index(name)])
    }

    /// `a`'s time over `b`'s, round by round.
    pub fn ratio(&self, a: &str, b: &str) -> Summary {
        per_round(&self.ns[self.index(a)], &self.ns[self.index(b)])
    }

    /// `a`'s throughput (both threads' operations, for a variant with a helper) over `b`'s,
    /// round by round: a variant measured `beside` a helper on other objects against the same
    /// operation `alone` gives the two-thread scaling. It counts the helper's operations only
    /// where it is pinned ([`HelperStats::pinned`]); unpinned, it is the measured thread's.
    pub fn throughput_ratio(&self, a: &str, b: &str) -> Summary {
        per_round(&self.ns_all[self.index(b)], &self.ns_all[self.index(a)])
    }

    /// One line for a target: `title: label median [IQR] (target …)`.
    pub fn target_line(&self, label: &str, value: Summary, target: &str) -> String {
        format!(
            "{}: {label} = {value} (median [IQR] of {} per-round ratios; target {target})",
            self.title,
            self.ns.first().map_or(0, Vec::len)
        )
    }

    fn any_helper(&self) -> bool {
        self.helper.iter().any(Option::is_some)
    }

    fn header(&self) -> String {
        let rounds = self.ns.first().map_or(0, Vec::len);
        let mut out = format!(
            "interleaved {}: {rounds} rounds, {}",
            self.title, self.clock
        );
        if self.any_helper() {
            match self.helper.iter().flatten().next().and_then(|h| h.pinned) {
                Some((a, b)) => {
                    let _ = write!(out, ", measured thread on CPU {a}, helper on CPU {b}");
                }
                None => out.push_str(", not pinned (every chunk kept)"),
            }
            if self.clock.effective() == Clock::ThreadCpu {
                out.push_str(
                    " (CPU time: time blocked on a lock is not counted; \
                     REFWATCH_BENCH_CLOCK=wall counts it)",
                );
            }
        }
        out
    }

    /// A markdown table: each variant's time and its ratio to each of `baselines`.
    pub fn table(&self, baselines: &[&str]) -> String {
        let mut out = self.header();
        out.push_str("\n\n| variant | ns/op median [IQR] |");
        for b in baselines {
            let _ = write!(out, " / {b} median [IQR] |");
        }
        if self.any_helper() {
            out.push_str(" chunks run beside the helper |");
        }
        out.push_str("\n|---|---|");
        out.push_str(&"---|".repeat(baselines.len() + usize::from(self.any_helper())));
        out.push('\n');
        for (v, name) in self.names.iter().enumerate() {
            let _ = write!(out, "| {name} | {} |", self.time(name));
            for b in baselines {
                let _ = write!(out, " {} |", self.ratio(name, b));
            }
            match (self.any_helper(), &self.helper[v]) {
                (true, Some(h)) => {
                    let _ = write!(
                        out,
                        " {:.1}% (helper {:.2} ops/op in kept; {} forced) |",
                        100.0 * h.concurrency(),
                        h.overlap(),
                        h.forced_chunks
                    );
                }
                (true, None) => out.push_str(" alone |"),
                (false, _) => {}
            }
            out.push('\n');
        }
        out
    }
}

/// The summary of `a[r] / b[r]` over the rounds `r`.
fn per_round(a: &[f64], b: &[f64]) -> Summary {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    Summary::of(&ratios)
}

/// Runs every variant for at least `ops_per_slot` operations in turn, for `rounds` rounds
/// (after one warm-up round that is not recorded), rotating which variant goes first.
///
/// A variant with a helper ([`Variant::beside`]) runs with one helper thread, pinned to
/// another CPU where possible, doing the helper's operation throughout its slots, and only
/// the chunks during which the helper ran beside the measured thread count (see
/// [`crate::Probe::time`]). The helper thread is spawned once for the comparison and parked
/// during the slots of variants run alone.
pub fn compare(
    title: &str,
    clock: Clock,
    variants: &[Variant<'_>],
    rounds: usize,
    ops_per_slot: u64,
) -> Comparison {
    let mut result = Comparison::new(title, clock, variants, rounds);
    if variants.iter().any(|v| v.beside.is_some()) {
        with_slot_helper(variants, |helper| {
            run_rounds(&mut result, variants, rounds, ops_per_slot, Some(helper));
        });
    } else {
        run_rounds(&mut result, variants, rounds, ops_per_slot, None);
    }
    result
}

fn run_rounds(
    result: &mut Comparison,
    variants: &[Variant<'_>],
    rounds: usize,
    ops_per_slot: u64,
    helper: Option<&SlotHelper<'_>>,
) {
    for round in 0..=rounds {
        for k in 0..variants.len() {
            let v = (round + k) % variants.len();
            let progress = helper.and_then(|h| h.switch(variants[v].beside.map(|_| v)));
            let mut stats = result.helper[v].unwrap_or_default();
            stats.pinned = helper.and_then(|h| h.pinned);
            let helper_ops_before = stats.helper_ops_in_kept;
            let run = variants[v].run;
            let (time, ops) = time_chunks(result.clock, progress, &mut stats, ops_per_slot, || {
                run(CHUNK)
            });
            if round > 0 {
                let ns = time.as_nanos() as f64;
                let all_ops = ops + (stats.helper_ops_in_kept - helper_ops_before);
                result.ns[v].push(ns / ops as f64);
                result.ns_all[v].push(ns / all_ops as f64);
                if let Some(h) = &mut result.helper[v] {
                    stats.windows += 1;
                    *h = stats;
                }
            }
        }
    }
    if let Some(h) = helper {
        h.switch(None);
    }
}

/// The helper is told to stop with this variant index.
const STOP: usize = usize::MAX;
/// The helper is told to park (a variant runs alone) with this one.
const IDLE: usize = usize::MAX - 1;

/// The measured thread's handle on the comparison's helper thread.
struct SlotHelper<'a> {
    current: &'a Padded<AtomicUsize>,
    acked: &'a Padded<AtomicUsize>,
    progress: &'a Padded<AtomicU64>,
    pinned: Option<(usize, usize)>,
    thread: thread::Thread,
}

impl SlotHelper<'_> {
    /// Has the helper run variant `v`'s helper operation (`Some`) or park (`None`), and waits
    /// until it does; returns its progress counter if it runs and is pinned (the chunks are
    /// conditioned on it only then: unpinned, it may share this thread's CPU).
    fn switch(&self, v: Option<usize>) -> Option<&Padded<AtomicU64>> {
        let want = v.unwrap_or(IDLE);
        self.current.store(want, Ordering::Release);
        self.thread.unpark();
        while self.acked.load(Ordering::Acquire) != want {
            spin_loop();
            thread::yield_now();
        }
        v.and(self.pinned).map(|_| self.progress)
    }
}

/// Runs `body` with a helper thread that does, batch after batch, the helper operation of the
/// variant it is switched to ([`SlotHelper::switch`]), pinned to the second CPU of a pair;
/// stops it and restores this thread's affinity afterwards.
fn with_slot_helper(variants: &[Variant<'_>], body: impl FnOnce(&SlotHelper<'_>)) {
    let current = Padded(AtomicUsize::new(IDLE));
    let acked = Padded(AtomicUsize::new(STOP));
    let progress = Padded(AtomicU64::new(0));
    let pinning = pin_pair();
    let pinned = pinning.as_ref().map(|&(_, pair)| pair);
    thread::scope(|s| {
        let helper = s.spawn(|| {
            if let Some((_, b)) = pinned {
                pin_to(b);
            }
            helper_loop(variants, &current, &acked, &progress);
        });
        body(&SlotHelper {
            current: &current,
            acked: &acked,
            progress: &progress,
            pinned,
            thread: helper.thread().clone(),
        });
        current.store(STOP, Ordering::Release);
        helper.thread().unpark();
        helper.join().expect("benchmark helper thread panicked");
    });
    if let Some((original, _)) = &pinning {
        unpin(original);
    }
}

fn helper_loop(
    variants: &[Variant<'_>],
    current: &AtomicUsize,
    acked: &AtomicUsize,
    progress: &AtomicU64,
) {
    let (mut done, mut last) = (0u64, STOP);
    loop {
        let v = current.load(Ordering::Acquire);
        if v == STOP {
            break;
        }
        if v == IDLE {
            acked.store(IDLE, Ordering::Release);
            last = IDLE;
            // An unpark between the load and here makes this return at once.
            thread::park();
            continue;
        }
        let op = variants[v].beside.expect("switched to a variant run alone");
        op(HELPER_BATCH);
        done += HELPER_BATCH;
        progress.store(done, Ordering::Relaxed);
        if v != last {
            // A whole batch of `v` is done: every batch from now on is `v`'s too.
            acked.store(v, Ordering::Release);
            last = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, 5.0]);
        assert_eq!((s.q1, s.median, s.q3), (2.0, 3.0, 4.0));
        let s = Summary::of(&[1.0, 2.0]);
        assert_eq!(s.median, 1.5);
    }

    #[test]
    fn both_modes_time_every_variant_every_round() {
        let counter = AtomicU64::new(0);
        let add = |n: u64| {
            for _ in 0..n {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        };
        let nothing = |n: u64| {
            for _ in 0..n {
                std::hint::black_box(());
            }
        };
        let alone = [
            Variant::alone("add", &add),
            Variant::alone("nothing", &nothing),
        ];
        let contended = [
            Variant::beside("add", &add, &add),
            Variant::beside("nothing", &nothing, &nothing),
        ];
        let mixed = [
            Variant::alone("add", &add),
            Variant::beside("add_2t", &add, &add),
        ];
        for variants in [&alone[..], &contended, &mixed] {
            let c = compare("test", Clock::Wall, variants, 3, 1);
            let helped = variants.iter().filter(|v| v.beside.is_some()).count();
            assert_eq!(c.ns.len(), 2);
            assert!(c.ns.iter().all(|r| r.len() == 3));
            assert!(c.ns_all.iter().all(|r| r.len() == 3));
            assert!(
                c.throughput_ratio(variants[1].name, variants[0].name)
                    .median
                    > 0.0
            );
            assert!(c.ratio(variants[0].name, variants[1].name).median > 0.0);
            let table = c.table(&[variants[1].name]);
            assert!(
                table.contains(&format!("| {} |", variants[0].name)),
                "{table}"
            );
            let pinned = c.helper.iter().flatten().next().and_then(|h| h.pinned);
            if helped > 0 && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
                assert!(pinned.is_some(), "{table}");
            }
            assert_eq!(c.helper.iter().flatten().count(), helped);
        }
    }
}
