//! Runners shared by refwatch's loom and shuttle models.
//!
//! Each model is one `#[test]` in `tests/` that calls [`loom_model`] (under `--cfg loom`) or
//! [`shuttle_pct`] (under `--cfg shuttle`). On success the runner prints one line that
//! `cargo xtask verify` reads:
//!
//! ```text
//! REFWATCH-MODEL checker=loom name=two_try_inc_race_last_dec_refs bound=none iterations=5402 seconds=0.81
//! ```
//!
//! `bound=none` means the model explored every interleaving (no preemption bound). A model
//! that fails panics, so the test fails and no line is printed. Each mutant in `mutants/`
//! names the model that must fail on it (see `mutants/README.md`).
#![cfg_attr(not(any(loom, shuttle)), allow(unused_imports))]

pub mod probe;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The line that tells `cargo xtask verify` a model passed.
pub fn report(checker: &str, name: &str, bound: Option<usize>, iterations: usize, seconds: f64) {
    let bound = bound.map_or_else(|| "none".to_string(), |b| b.to_string());
    println!(
        "REFWATCH-MODEL checker={checker} name={name} bound={bound} iterations={iterations} seconds={seconds:.3}"
    );
}

/// Runs `f` under loom with the given preemption bound (`None`: exhaustive) and reports it.
#[cfg(loom)]
pub fn loom_model<F>(name: &str, preemption_bound: Option<usize>, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let iterations = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&iterations);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = preemption_bound;
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    report(
        "loom",
        name,
        preemption_bound,
        iterations.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
    );
}

/// The seed of every shuttle run unless `REFWATCH_SHUTTLE_SEED` says otherwise: a fixed seed
/// makes each run (and so each mutant's verdict) reproducible; set the variable to explore
/// other schedules.
pub const DEFAULT_SHUTTLE_SEED: u64 = 0x5eed_2026_0b0b_cafe;

/// Runs `f` under shuttle's PCT scheduler for `iterations` schedules of bug depth `depth`,
/// then under its random scheduler for as many again, both seeded (see
/// [`DEFAULT_SHUTTLE_SEED`]), and reports the total.
#[cfg(shuttle)]
pub fn shuttle_pct<F>(name: &str, iterations: usize, depth: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    use shuttle::scheduler::{PctScheduler, RandomScheduler};
    use shuttle::{Config, Runner};

    let seed = match std::env::var("REFWATCH_SHUTTLE_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("REFWATCH_SHUTTLE_SEED={v:?} is not a u64")),
        Err(_) => DEFAULT_SHUTTLE_SEED,
    };
    eprintln!("{name}: shuttle seed {seed}");
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
    Runner::new(
        PctScheduler::new_from_seed(seed, depth, iterations),
        Config::new(),
    )
    .run(body());
    Runner::new(
        RandomScheduler::new_from_seed(seed, iterations),
        Config::new(),
    )
    .run(body());
    report(
        "shuttle",
        name,
        None,
        count.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
    );
}
