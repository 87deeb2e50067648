//! Runners shared by refwatch's loom and shuttle models.
//!
//! Each model is one `#[test]` in `tests/` that calls `loom_model` (under `--cfg loom`) or
//! `shuttle_pct` (under `--cfg shuttle`). On success the runner prints one line that
//! `cargo xtask verify` reads:
//!
//! ```text
//! REFWATCH-MODEL checker=loom name=two_try_inc_race_last_dec_refs bound=none iterations=5402 seconds=0.81
//! ```
//!
//! `bound=none` means the model explored every interleaving (no preemption bound). A model
//! that fails panics, so the test fails and no line is printed. Each mutant in `mutants/`
//! names the model that must fail on it (see `mutants/README.md`).
//!
//! A run that explored less than the model's full space says so in the same line: `cut=`
//! (loom's `LOOM_MAX_PERMUTATIONS` and the like were set) or `mode=` (a shuttle run made by
//! verify's harness, see [`harness`]). Verify never counts such a line as a model passing.
#![cfg_attr(not(any(loom, shuttle)), allow(unused_imports))]

mod failure;
pub mod harness;
pub mod probe;
pub mod sequential;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The line that tells `cargo xtask verify` a model passed; `extra` fields (`key=value`,
/// without spaces) are appended.
pub fn report(
    checker: &str,
    name: &str,
    bound: Option<usize>,
    iterations: usize,
    seconds: f64,
    extra: &[String],
) {
    let bound = bound.map_or_else(|| "none".to_string(), |b| b.to_string());
    let mut line = format!(
        "REFWATCH-MODEL checker={checker} name={name} bound={bound} iterations={iterations} seconds={seconds:.3}"
    );
    for field in extra {
        line.push(' ');
        line.push_str(field);
    }
    println!("{line}");
}

/// The longest execution (in atomic and lock steps) a loom model may take; see `loom_model`.
pub const MAX_BRANCHES: usize = 10_000;

/// Runs `f` under loom with the given preemption bound (`None`: exhaustive) and reports it.
///
/// The harness variable `REFWATCH_PREEMPTION_BOUND=N` caps the bound at `N` (see
/// [`harness`]); the line reports the bound the run used.
#[cfg(loom)]
pub fn loom_model<F>(name: &str, preemption_bound: Option<usize>, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let override_bound = std::env::var(harness::PREEMPTION_BOUND_VAR).ok();
    let bound = harness::effective_bound(preemption_bound, override_bound.as_deref())
        .unwrap_or_else(|e| harness::exit_bad(e));
    let cut = harness::loom_cuts(|var| std::env::var(var).ok());
    if override_bound.is_some() {
        // Tells verify's depth search that the bound took effect, even if the model fails.
        let shown = bound.map_or_else(|| "none".to_string(), |b| b.to_string());
        println!("REFWATCH-OVERRIDE name={name} bound={shown}");
    }

    let iterations = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&iterations);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = bound;
    // loom's default (1,000) counts every atomic and lock step of one execution; a kernfs
    // model of three actors renaming and walking a four-level tree takes about that many.
    // The limit guards against spin loops, which none of our code has: a higher one changes
    // no verdict, only how long an execution may be.
    // `LOOM_MAX_BRANCHES`, when set, still wins (verify refuses to run with it set).
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        builder.max_branches = MAX_BRANCHES;
    }
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let extra: Vec<String> = cut.into_iter().map(|c| format!("cut={c}")).collect();
    report(
        "loom",
        name,
        bound,
        iterations.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
        &extra,
    );
}

/// The seed of every shuttle run unless `REFWATCH_SHUTTLE_SEED` says otherwise: a fixed seed
/// makes each run (and so each mutant's verdict) reproducible; set the variable to explore
/// other schedules.
pub const DEFAULT_SHUTTLE_SEED: u64 = 0x5eed_2026_0b0b_cafe;

/// The marker of the line a shuttle model prints when one of its schedules fails:
/// `REFWATCH-SHUTTLE-FAILURE name=… scheduler=pct|random|sequential|replay schedule=N`, `N`
/// counting from 1 within that scheduler's run. Printed on the first panic, before shuttle
/// prints the failing schedule.
pub const SHUTTLE_FAILURE_MARKER: &str = "REFWATCH-SHUTTLE-FAILURE";

/// Runs `f` under shuttle's PCT scheduler for `iterations` schedules of bug depth `depth`,
/// then under its random scheduler for as many again, both seeded (see
/// [`DEFAULT_SHUTTLE_SEED`]), and reports the total.
///
/// Harness variables (see [`harness`]) replace the two runs by one run of `2 × iterations`
/// schedules, one thread at a time, or by the replay of one schedule; the line then says
/// `mode=sequential` or `mode=replay`.
#[cfg(shuttle)]
pub fn shuttle_pct<F>(name: &str, iterations: usize, depth: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    use shuttle::scheduler::{PctScheduler, RandomScheduler, ReplayScheduler};
    use shuttle::{Config, Runner};

    let seed = match std::env::var("REFWATCH_SHUTTLE_SEED") {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            harness::exit_bad(format_args!("REFWATCH_SHUTTLE_SEED={v:?} is not a u64"))
        }),
        Err(_) => DEFAULT_SHUTTLE_SEED,
    };
    let sequential = std::env::var_os(harness::SHUTTLE_SEQUENTIAL_VAR).is_some();
    let replay = std::env::var_os(harness::SHUTTLE_REPLAY_VAR);
    eprintln!("{name}: shuttle seed {seed}");
    // Tells verify that the harness mode took effect, even if the run then aborts.
    if replay.is_some() {
        println!("REFWATCH-OVERRIDE name={name} mode=replay");
    } else if sequential {
        println!("REFWATCH-OVERRIDE name={name} mode=sequential");
    }
    let f = Arc::new(f);
    let count = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let body = || {
        let (f, count) = (Arc::clone(&f), Arc::clone(&count));
        move || {
            count.fetch_add(1, Ordering::Relaxed);
            f()
        }
    };
    // Runs one scheduler, its first failing schedule reported by the panic hook.
    let run = |scheduler: &'static str, go: Box<dyn FnOnce() + '_>| {
        failure::track(name, scheduler, &count);
        go();
        failure::untrack();
    };
    let mode = if let Some(path) = replay {
        let scheduler = ReplayScheduler::new_from_file(&path).unwrap_or_else(|e| {
            harness::exit_bad(format_args!("reading {}: {e}", path.to_string_lossy()))
        });
        run(
            "replay",
            Box::new(|| {
                Runner::new(scheduler, Config::new()).run(body());
            }),
        );
        Some("replay")
    } else if sequential {
        run(
            "sequential",
            Box::new(|| {
                let random = RandomScheduler::new_from_seed(seed, 2 * iterations);
                Runner::new(sequential::OneAtATime::new(random), Config::new()).run(body());
            }),
        );
        Some("sequential")
    } else {
        run(
            "pct",
            Box::new(|| {
                let pct = PctScheduler::new_from_seed(seed, depth, iterations);
                Runner::new(pct, Config::new()).run(body());
            }),
        );
        run(
            "random",
            Box::new(|| {
                let random = RandomScheduler::new_from_seed(seed, iterations);
                Runner::new(random, Config::new()).run(body());
            }),
        );
        None
    };
    let extra: Vec<String> = mode.into_iter().map(|m| format!("mode={m}")).collect();
    report(
        "shuttle",
        name,
        None,
        count.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
        &extra,
    );
}
