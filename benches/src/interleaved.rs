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

/// One contender: `run(n)` does its operation `n` times (a loop the compiler can see through,
/// so that the comparison pays one indirect call per 4096 operations, not per operation).
pub struct Variant<'a> {
    /// The name shown in the report, as in the criterion group.
    pub name: &'a str,
    /// Does the operation `n` times.
    pub run: &'a (dyn Fn(u64) + Sync),
}

impl fmt::Debug for Variant<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Variant").field("name", &self.name).finish()
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

/// The result of [`compare`].
#[derive(Clone, Debug)]
pub struct Comparison {
    /// What was compared (the criterion group's name).
    pub title: String,
    /// The clock the slots were timed with.
    pub clock: Clock,
    /// Whether a helper thread hammered the same object during every slot.
    pub contended: bool,
    /// The variants' names, in the order given.
    pub names: Vec<String>,
    /// `ns[v][r]`: nanoseconds per operation of variant `v` in round `r`.
    pub ns: Vec<Vec<f64>>,
    /// What the helper did during each variant's slots (contended comparisons only).
    pub helper: Vec<HelperStats>,
}

impl Comparison {
    fn index(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{}: no variant named {name}", self.title))
    }

    /// Nanoseconds per operation of `name` over the rounds.
    pub fn time(&self, name: &str) -> Summary {
        Summary::of(&self.ns[self.index(name)])
    }

    /// `a`'s time over `b`'s, round by round.
    pub fn ratio(&self, a: &str, b: &str) -> Summary {
        let (a, b) = (&self.ns[self.index(a)], &self.ns[self.index(b)]);
        let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
        Summary::of(&ratios)
    }

    /// A markdown table: each variant's time and its ratio to each of `baselines`.
    pub fn table(&self, baselines: &[&str]) -> String {
        let mut out = String::new();
        let rounds = self.ns.first().map_or(0, Vec::len);
        let pinned = self.helper.first().and_then(|h| h.pinned);
        let _ = write!(
            out,
            "interleaved {}: {rounds} rounds, {}",
            self.title, self.clock
        );
        if self.contended {
            match pinned {
                Some((a, b)) => {
                    let _ = write!(out, ", measured thread on CPU {a}, helper on CPU {b}");
                }
                None => out.push_str(", not pinned (every chunk kept)"),
            }
        }
        out.push_str("\n\n| variant | ns/op median [IQR] |");
        for b in baselines {
            let _ = write!(out, " / {b} median [IQR] |");
        }
        if self.contended {
            out.push_str(" chunks run beside the helper |");
        }
        out.push_str("\n|---|---|");
        for _ in baselines {
            out.push_str("---|");
        }
        if self.contended {
            out.push_str("---|");
        }
        out.push('\n');
        for (v, name) in self.names.iter().enumerate() {
            let t = self.time(name);
            let _ = write!(
                out,
                "| {name} | {:.2} [{:.2}, {:.2}] |",
                t.median, t.q1, t.q3
            );
            for b in baselines {
                let r = self.ratio(name, b);
                let _ = write!(out, " {:.2} [{:.2}, {:.2}] |", r.median, r.q1, r.q3);
            }
            if self.contended {
                let h = &self.helper[v];
                let _ = write!(
                    out,
                    " {:.1}% (helper {:.2} ops/op in kept; {} forced) |",
                    100.0 * h.concurrency(),
                    h.overlap(),
                    h.forced_chunks
                );
            }
            out.push('\n');
        }
        out
    }
}

/// Runs every variant for at least `ops_per_slot` operations in turn, for `rounds` rounds
/// (after one warm-up round that is not recorded), rotating which variant goes first.
///
/// With `contended`, a helper thread, pinned to another CPU where possible, runs the same
/// variant as the measured thread on the same object throughout each slot, and only the chunks
/// during which it ran beside the measured thread count (see [`crate::Probe::time`]).
pub fn compare(
    title: &str,
    clock: Clock,
    variants: &[Variant<'_>],
    rounds: usize,
    ops_per_slot: u64,
    contended: bool,
) -> Comparison {
    let mut result = Comparison {
        title: title.to_string(),
        clock,
        contended,
        names: variants.iter().map(|v| v.name.to_string()).collect(),
        ns: vec![Vec::with_capacity(rounds); variants.len()],
        helper: vec![HelperStats::default(); if contended { variants.len() } else { 0 }],
    };
    if contended {
        compare_contended(&mut result, variants, rounds, ops_per_slot);
    } else {
        for round in 0..=rounds {
            for k in 0..variants.len() {
                let v = (round + k) % variants.len();
                let mut stats = HelperStats::default();
                let run = variants[v].run;
                let (time, ops) = time_chunks(clock, None, &mut stats, ops_per_slot, || run(CHUNK));
                if round > 0 {
                    result.ns[v].push(time.as_nanos() as f64 / ops as f64);
                }
            }
        }
    }
    result
}

/// The helper is told to stop with this variant index.
const STOP: usize = usize::MAX;

fn compare_contended(
    result: &mut Comparison,
    variants: &[Variant<'_>],
    rounds: usize,
    ops_per_slot: u64,
) {
    let current = Padded(AtomicUsize::new(0));
    let acked = Padded(AtomicUsize::new(STOP));
    let progress = Padded(AtomicU64::new(0));
    let pinning = pin_pair();
    let pinned = pinning.as_ref().map(|&(_, pair)| pair);
    for h in &mut result.helper {
        h.pinned = pinned;
    }
    thread::scope(|s| {
        let helper = s.spawn(|| {
            if let Some((_, b)) = pinned {
                pin_to(b);
            }
            let (mut done, mut last) = (0u64, STOP);
            loop {
                let v = current.load(Ordering::Acquire);
                if v == STOP {
                    break;
                }
                (variants[v].run)(HELPER_BATCH);
                done += HELPER_BATCH;
                progress.store(done, Ordering::Relaxed);
                if v != last {
                    // A whole batch of `v` is done: every batch from now on is `v`'s too.
                    acked.store(v, Ordering::Release);
                    last = v;
                }
            }
        });
        for round in 0..=rounds {
            for k in 0..variants.len() {
                let v = (round + k) % variants.len();
                current.store(v, Ordering::Release);
                while acked.load(Ordering::Acquire) != v {
                    spin_loop();
                    thread::yield_now();
                }
                let mut stats = result.helper[v];
                let run = variants[v].run;
                let (time, ops) = time_chunks(
                    result.clock,
                    pinned.map(|_| &progress),
                    &mut stats,
                    ops_per_slot,
                    || run(CHUNK),
                );
                if round > 0 {
                    result.ns[v].push(time.as_nanos() as f64 / ops as f64);
                    stats.windows += 1;
                    result.helper[v] = stats;
                }
            }
        }
        current.store(STOP, Ordering::Release);
        helper.join().expect("benchmark helper thread panicked");
    });
    if let Some((original, _)) = &pinning {
        unpin(original);
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
        let variants = [
            Variant {
                name: "add",
                run: &add,
            },
            Variant {
                name: "nothing",
                run: &nothing,
            },
        ];
        for contended in [false, true] {
            let c = compare("test", Clock::Wall, &variants, 3, 1, contended);
            assert_eq!(c.ns.len(), 2);
            assert!(c.ns.iter().all(|r| r.len() == 3));
            assert!(c.ratio("add", "nothing").median > 0.0);
            let table = c.table(&["nothing"]);
            assert!(table.contains("| add |"), "{table}");
            assert_eq!(c.helper.len(), if contended { 2 } else { 0 });
        }
    }
}
