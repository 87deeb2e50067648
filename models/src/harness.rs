//! The knobs that only `cargo xtask verify` turns: environment variables that change how a
//! model explores, each named in the `REFWATCH-MODEL` line the model prints, so that a run
//! with one of them set can never pass for a full run.
//!
//! - [`PREEMPTION_BOUND_VAR`] (`REFWATCH_PREEMPTION_BOUND=N`): a loom model runs with at most
//!   `N` preemptions (the smaller of `N` and its own bound). Verify sets it to find the
//!   smallest bound at which a mutant fails a model (its preemption depth).
//! - [`SHUTTLE_SEQUENTIAL_VAR`] (`REFWATCH_SHUTTLE_SEQUENTIAL=1`): a shuttle model runs one
//!   thread at a time: a running thread keeps running until it blocks, yields or ends, and
//!   only then another is picked (at random, seeded). Verify uses it to see whether a mutant's
//!   kill needs a race at all.
//! - [`SHUTTLE_REPLAY_VAR`] (`REFWATCH_SHUTTLE_REPLAY=<file>`): a shuttle model replays the
//!   schedule in the file (as printed by shuttle after `failing schedule:`) once, instead of
//!   exploring. Verify uses it to check that a shuttle kill replays.
//!
//! loom's own `LOOM_MAX_PERMUTATIONS`, `LOOM_MAX_DURATION` and `LOOM_CHECKPOINT_FILE` cut
//! exploration short as well; a model that ran under one of them says so with `cut=` in its
//! line (see [`loom_cuts`]). `LOOM_MAX_PREEMPTIONS` is ignored: each model sets its bound.

use std::fmt;

/// Harness-only: caps a loom model's preemption bound.
pub const PREEMPTION_BOUND_VAR: &str = "REFWATCH_PREEMPTION_BOUND";
/// Harness-only: runs a shuttle model one thread at a time.
pub const SHUTTLE_SEQUENTIAL_VAR: &str = "REFWATCH_SHUTTLE_SEQUENTIAL";
/// Harness-only: replays one shuttle schedule from a file.
pub const SHUTTLE_REPLAY_VAR: &str = "REFWATCH_SHUTTLE_REPLAY";
/// The loom variables that shorten exploration (without failing the model).
pub const LOOM_CUT_VARS: [&str; 3] = [
    "LOOM_MAX_PERMUTATIONS",
    "LOOM_MAX_DURATION",
    "LOOM_CHECKPOINT_FILE",
];

/// A harness variable holds something it cannot mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadVar {
    pub var: &'static str,
    pub value: String,
}

impl fmt::Display for BadVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?} is not a whole number", self.var, self.value)
    }
}

/// The preemption bound a loom model runs with: its own (`None`: exhaustive), capped by the
/// harness's `override_bound` (the value of [`PREEMPTION_BOUND_VAR`], if set).
pub fn effective_bound(
    model: Option<usize>,
    override_bound: Option<&str>,
) -> Result<Option<usize>, BadVar> {
    let Some(value) = override_bound else {
        return Ok(model);
    };
    let cap: usize = value.trim().parse().map_err(|_| BadVar {
        var: PREEMPTION_BOUND_VAR,
        value: value.to_string(),
    })?;
    Ok(Some(model.map_or(cap, |own| own.min(cap))))
}

/// The [`LOOM_CUT_VARS`] that `get` finds set, joined by commas, or `None`.
pub fn loom_cuts(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set: Vec<&str> = LOOM_CUT_VARS
        .into_iter()
        .filter(|var| get(var).is_some())
        .collect();
    (!set.is_empty()).then(|| set.join(","))
}

/// Prints `error` and exits with status 2: a harness error, never to be read as a model's
/// assertion (a panic here would point into `models/src/`, which verify counts as the model
/// failing).
pub fn exit_bad(error: impl fmt::Display) -> ! {
    eprintln!("refwatch-models: harness error: {error}");
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_override_caps_the_model_bound() {
        assert_eq!(effective_bound(None, None), Ok(None));
        assert_eq!(effective_bound(Some(3), None), Ok(Some(3)));
        assert_eq!(effective_bound(None, Some("2")), Ok(Some(2)));
        assert_eq!(effective_bound(Some(3), Some("0")), Ok(Some(0)));
        assert_eq!(effective_bound(Some(3), Some("5")), Ok(Some(3)));
        assert!(effective_bound(None, Some("two")).is_err());
        assert!(effective_bound(None, Some("-1")).is_err());
    }

    #[test]
    fn cuts_name_every_set_variable() {
        assert_eq!(loom_cuts(|_| None), None);
        let get = |v: &str| (v != "LOOM_MAX_DURATION").then(|| "1".to_string());
        assert_eq!(
            loom_cuts(get).as_deref(),
            Some("LOOM_MAX_PERMUTATIONS,LOOM_CHECKPOINT_FILE")
        );
    }
}
