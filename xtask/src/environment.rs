//! No silent shortcuts: the environment variables that would make a model explore less (or
//! other schedules than the ones it reports) while still passing.
//!
//! `verify` refuses to start while any of them is set, naming each, rather than quietly
//! ignoring it: whoever set `LOOM_MAX_PERMUTATIONS=1` expected a shorter run, and must learn
//! that verify does not do that. Every child verify starts also has them removed (a second
//! guard, should a variable reach a child some other way), and a model that still ran under
//! one says so in its `REFWATCH-MODEL` line (`cut=…`), which verify never counts as a pass.

use std::process::Command;

/// Variables that shorten or redirect exploration, with what each does.
pub const REFUSED: [(&str, &str); 10] = [
    (
        "LOOM_MAX_PERMUTATIONS",
        "stops loom after that many interleavings",
    ),
    ("LOOM_MAX_DURATION", "stops loom after that many seconds"),
    (
        "LOOM_MAX_BRANCHES",
        "changes loom's limit of branches per execution",
    ),
    (
        "LOOM_MAX_PREEMPTIONS",
        "would bound loom's preemptions (each model sets its own bound)",
    ),
    (
        "LOOM_CHECKPOINT_FILE",
        "resumes loom from a saved point, skipping what came before",
    ),
    (
        "LOOM_CHECKPOINT_INTERVAL",
        "changes when loom checks its permutation and duration limits",
    ),
    (
        "SHUTTLE_RANDOM_SEED",
        "replaces the seed of every shuttle scheduler (REFWATCH_SHUTTLE_SEED is the supported way)",
    ),
    (
        "REFWATCH_PREEMPTION_BOUND",
        "caps every loom model's preemption bound (set by verify itself, per run)",
    ),
    (
        "REFWATCH_SHUTTLE_SEQUENTIAL",
        "runs shuttle models one thread at a time (set by verify itself, per run)",
    ),
    (
        "REFWATCH_SHUTTLE_REPLAY",
        "replays one schedule instead of exploring (set by verify itself, per run)",
    ),
];

/// The refused variables that `get` finds set, as `NAME=value`.
pub fn refused_in(get: impl Fn(&str) -> Option<String>) -> Vec<String> {
    REFUSED
        .iter()
        .filter_map(|(name, _)| get(name).map(|value| format!("{name}={value}")))
        .collect()
}

/// Checks the process environment: `Err` with the message to print when any refused
/// variable is set.
pub fn check() -> Result<(), String> {
    let set = refused_in(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()));
    if set.is_empty() {
        return Ok(());
    }
    let mut msg = String::from(
        "verify refuses to run: these variables would make a model explore less than its \
         report claims (or other schedules than it reports), and verify does not shorten \
         exploration:\n",
    );
    for entry in &set {
        let name = entry.split('=').next().unwrap_or_default();
        let what = REFUSED
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, w)| *w);
        msg.push_str(&format!("  {entry}: {what}\n"));
    }
    msg.push_str("Unset them (e.g. `env -u ");
    msg.push_str(set[0].split('=').next().unwrap_or_default());
    msg.push_str(
        " cargo xtask verify`); to run a model by hand with loom's limits, run its test directly.",
    );
    Err(msg)
}

/// Removes every refused variable from `cmd`'s environment.
pub fn scrub(cmd: &mut Command) -> &mut Command {
    for (name, _) in REFUSED {
        cmd.env_remove(name);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_refused_variables_that_are_set() {
        let get = |name: &str| match name {
            "LOOM_MAX_PERMUTATIONS" => Some("1".to_string()),
            "SHUTTLE_RANDOM_SEED" => Some("7".to_string()),
            _ => None,
        };
        assert_eq!(
            refused_in(get),
            ["LOOM_MAX_PERMUTATIONS=1", "SHUTTLE_RANDOM_SEED=7"]
        );
        assert!(refused_in(|_| None).is_empty());
    }

    #[test]
    fn every_loom_variable_that_cuts_a_model_short_is_refused() {
        // Those that models/src/harness.rs reports as `cut=`, and the harness's own knobs.
        for name in [
            "LOOM_MAX_PERMUTATIONS",
            "LOOM_MAX_DURATION",
            "LOOM_CHECKPOINT_FILE",
            "REFWATCH_PREEMPTION_BOUND",
            "REFWATCH_SHUTTLE_SEQUENTIAL",
            "REFWATCH_SHUTTLE_REPLAY",
        ] {
            assert!(REFUSED.iter().any(|(n, _)| *n == name), "{name}");
        }
    }

    #[test]
    fn scrub_removes_them_from_a_child() {
        let mut cmd = Command::new("env");
        cmd.env("LOOM_MAX_PERMUTATIONS", "1").env("KEEP_ME", "1");
        scrub(&mut cmd);
        let out = cmd.output().expect("env runs");
        let env = String::from_utf8_lossy(&out.stdout);
        assert!(!env.contains("LOOM_MAX_PERMUTATIONS"));
        assert!(env.contains("KEEP_ME=1"));
    }
}
