//! How much concurrency a kill needs.
//!
//! - loom: the smallest preemption bound at which the model fails on the mutant. The mutant's
//!   test binary (already built) runs again with `REFWATCH_PREEMPTION_BOUND=k` for k = 0, 1,
//!   2, … (see `models/src/harness.rs`), stopping at the first run that is itself a kill (an
//!   assertion or a checker violation; any other failure does not stop the search). A model
//!   with its own bound `b` is known to fail at `b` (that was the kill), so the search stops
//!   there; an exhaustive model is searched up to [`MAX_SEARCH`], past which the depth reads
//!   `>=7`. Depth 0 means the bug shows without any preemption: no race is needed.
//! - shuttle: the model runs again on the mutant one thread at a time
//!   (`REFWATCH_SHUTTLE_SEQUENTIAL=1`: a thread runs until it blocks, yields or ends; as many
//!   schedules as the model's own run). If that kills too, the kill needs no race (`0 (no
//!   race)`); if it does not, the kill needs a preemption (`>=1`). The schedule that failed
//!   (which scheduler, which schedule of its run) is read from the model's
//!   `REFWATCH-SHUTTLE-FAILURE` line, and the schedule shuttle printed is replayed once
//!   (`REFWATCH_SHUTTLE_REPLAY=<file>`): it replays if the replay fails the same way.
//!
//! Each such run must show that the harness variable took effect (the model prints
//! `REFWATCH-OVERRIDE` for a loom bound, and `scheduler=sequential` or `mode=sequential` for
//! shuttle); a model that ignores it gets an unknown depth, never a made-up one.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::checker::Build;
use crate::models::Bound;
use crate::verdict::{classify, Exit, Reason};
use crate::Result;

/// The largest loom bound the search tries on an exhaustive model.
pub const MAX_SEARCH: u32 = 6;

/// The harness variables (see `models/src/harness.rs`).
const BOUND_VAR: &str = "REFWATCH_PREEMPTION_BOUND";
const SEQUENTIAL_VAR: &str = "REFWATCH_SHUTTLE_SEQUENTIAL";
const REPLAY_VAR: &str = "REFWATCH_SHUTTLE_REPLAY";
/// Printed by `loom_model` when it runs under [`BOUND_VAR`].
const OVERRIDE_MARKER: &str = "REFWATCH-OVERRIDE ";
/// Printed by `shuttle_pct` when a schedule fails.
const SHUTTLE_FAILURE_MARKER: &str = "REFWATCH-SHUTTLE-FAILURE ";

/// The preemption depth of a kill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Depth {
    /// loom: the smallest preemption bound at which the model fails (0: no race needed).
    Preemptions(u32),
    /// loom: no bound up to this one minus one failed, though the model's own run did.
    AtLeast(u32),
    /// shuttle: one thread at a time kills too: no race needed.
    Sequential,
    /// shuttle: one thread at a time does not kill: the kill needs a preemption.
    NeedsPreemption,
    /// The search could not tell.
    Unknown(String),
}

impl Depth {
    /// Whether the kill needs a race (a preemption); `None` when unknown.
    pub fn needs_race(&self) -> Option<bool> {
        match self {
            Depth::Preemptions(0) | Depth::Sequential => Some(false),
            Depth::Preemptions(_) | Depth::AtLeast(_) | Depth::NeedsPreemption => Some(true),
            Depth::Unknown(_) => None,
        }
    }

    /// `0 (no race)`, `3`, `>=7`, `>=1` or `?`.
    pub fn label(&self) -> String {
        match self {
            Depth::Preemptions(0) | Depth::Sequential => "0 (no race)".into(),
            Depth::Preemptions(k) => k.to_string(),
            Depth::AtLeast(k) => format!(">={k}"),
            Depth::NeedsPreemption => ">=1".into(),
            Depth::Unknown(_) => "?".into(),
        }
    }

    /// The exact depth, when there is one.
    pub fn value(&self) -> Option<u32> {
        match self {
            Depth::Preemptions(k) => Some(*k),
            Depth::Sequential => Some(0),
            _ => None,
        }
    }

    pub fn to_json(&self) -> Value {
        let why = match self {
            Depth::Unknown(why) => Some(why.clone()),
            _ => None,
        };
        json!({
            "value": self.value(),
            "label": self.label(),
            "needs_race": self.needs_race(),
            "unknown_because": why,
        })
    }
}

/// Where a shuttle kill was found, and whether it replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// `pct` or `random`.
    pub scheduler: String,
    /// Which schedule of that scheduler's run failed, from 1.
    pub number: u64,
    /// `Some(true)` if replaying the printed schedule failed the same way; `None` when no
    /// schedule was printed (or the replay could not tell: it timed out).
    pub replays: Option<bool>,
}

impl Schedule {
    /// `pct #37, replays`.
    pub fn label(&self) -> String {
        let replays = match self.replays {
            Some(true) => "replays",
            Some(false) => "does not replay",
            None => "replay not tried",
        };
        format!("{} #{}, {replays}", self.scheduler, self.number)
    }

    pub fn to_json(&self) -> Value {
        json!({ "scheduler": self.scheduler, "number": self.number, "replays": self.replays })
    }
}

/// One run of a mutant's model, with the log of its own.
struct Runner<'a> {
    build: &'a Build,
    file: &'a str,
    test: &'a str,
    limit: Duration,
    /// The kill's log; each extra run's log is named after it.
    log: &'a Path,
}

impl Runner<'_> {
    fn log_for(&self, suffix: &str) -> PathBuf {
        let stem = self.log.file_stem().unwrap_or_default().to_string_lossy();
        self.log.with_file_name(format!("{stem}--{suffix}.log"))
    }

    /// Runs the model with `env`; its reason and output.
    fn run(&self, suffix: &str, env: &[(&str, String)]) -> Result<(Reason, String)> {
        let log = self.log_for(suffix);
        let run = self
            .build
            .run(self.file, self.test, self.limit, &log, env)?;
        let output = run.lines()?.join("\n");
        let reason = classify(
            &output,
            Exit::of(run.status, self.limit),
            &[&self.build.workspace],
        );
        Ok((reason, output))
    }
}

/// The loom depth of a kill of `file::test`, whose unmutated model ran with `bound`.
pub fn loom(
    build: &Build,
    file: &str,
    test: &str,
    bound: Bound,
    limit: Duration,
    log: &Path,
) -> Result<Depth> {
    let runner = Runner {
        build,
        file,
        test,
        limit,
        log,
    };
    let own = match bound {
        Bound::Preemptions(b) => Some(b),
        Bound::Exhaustive => None,
    };
    for k in 0..=MAX_SEARCH {
        if own == Some(k) {
            // The model's own run is the run at bound k, and it killed.
            return Ok(Depth::Preemptions(k));
        }
        let (reason, output) = runner.run(&format!("bound-{k}"), &[(BOUND_VAR, k.to_string())])?;
        if override_field(&output, "bound") != Some(k.to_string()) {
            return Ok(Depth::Unknown(format!(
                "the model did not confirm {BOUND_VAR}={k} (does it run through loom_model?)"
            )));
        }
        if reason.is_kill() {
            return Ok(Depth::Preemptions(k));
        }
        if let Reason::Timeout(_) = reason {
            return Ok(Depth::Unknown(format!("bound {k} timed out")));
        }
    }
    Ok(Depth::AtLeast(MAX_SEARCH + 1))
}

/// The shuttle depth and schedule of a kill of `file::test` whose output was `output`
/// (its log at `log`).
pub fn shuttle(
    build: &Build,
    file: &str,
    test: &str,
    limit: Duration,
    log: &Path,
    kill: &Reason,
    output: &str,
) -> Result<(Depth, Option<Schedule>)> {
    let runner = Runner {
        build,
        file,
        test,
        limit,
        log,
    };
    let schedule = match failure_line(output) {
        None => None,
        Some((scheduler, number)) => {
            let replays = match failing_schedule(output) {
                None => None,
                Some(encoded) => {
                    let path = runner.log_for("schedule").with_extension("txt");
                    fs::write(&path, encoded)?;
                    let value = path.to_string_lossy().into_owned();
                    let (reason, _) = runner.run("replay", &[(REPLAY_VAR, value)])?;
                    match reason {
                        Reason::Timeout(_) => None,
                        _ => Some(same_failure(&reason, kill)),
                    }
                }
            };
            Some(Schedule {
                scheduler,
                number,
                replays,
            })
        }
    };

    let (reason, output) = runner.run("sequential", &[(SEQUENTIAL_VAR, "1".into())])?;
    let depth = if override_field(&output, "mode").as_deref() != Some("sequential") {
        Depth::Unknown(format!(
            "the model did not confirm {SEQUENTIAL_VAR} (does it run through shuttle_pct?)"
        ))
    } else if reason.is_kill() {
        Depth::Sequential
    } else if let Reason::Timeout(_) = reason {
        Depth::Unknown("one thread at a time timed out".into())
    } else {
        Depth::NeedsPreemption
    };
    Ok((depth, schedule))
}

/// Whether `replay` failed as `kill` did: the same reason, at the same place.
fn same_failure(replay: &Reason, kill: &Reason) -> bool {
    let at = |r: &Reason| r.site().map(|s| s.location.clone());
    replay.is_kill() && replay.label() == kill.label() && at(replay) == at(kill)
}

/// A field of the `REFWATCH-OVERRIDE` line a model prints when it starts under a harness
/// variable: `bound` (loom, [`BOUND_VAR`]) or `mode` (shuttle, `sequential` or `replay`).
fn override_field(output: &str, key: &str) -> Option<String> {
    let line = output.lines().find_map(|l| {
        l.find(OVERRIDE_MARKER)
            .map(|i| &l[i + OVERRIDE_MARKER.len()..])
    })?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

/// `(scheduler, schedule number)` from the model's `REFWATCH-SHUTTLE-FAILURE` line.
pub fn failure_line(output: &str) -> Option<(String, u64)> {
    let line = output.lines().find_map(|l| {
        l.find(SHUTTLE_FAILURE_MARKER)
            .map(|i| &l[i + SHUTTLE_FAILURE_MARKER.len()..])
    })?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
    };
    Some((
        field("scheduler")?.to_string(),
        field("schedule")?.parse().ok()?,
    ))
}

/// The last schedule shuttle printed: the lines between `failing schedule:` + `"` and the
/// closing `"`, joined (shuttle wraps the string across lines). shuttle may print the failing
/// execution's schedule twice: from its panic hook, as the task panics, and once the
/// execution has stopped; only the later, complete one replays.
pub fn failing_schedule(output: &str) -> Option<String> {
    let mut last = None;
    let mut lines = output.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "failing schedule:" {
            continue;
        }
        if lines.next().map(str::trim) != Some("\"") {
            continue;
        }
        let mut encoded = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            if line.trim() == "\"" {
                closed = true;
                break;
            }
            encoded.push_str(line.trim());
        }
        if closed && !encoded.is_empty() {
            last = Some(encoded);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHUTTLE_KILL: &str = "\
test handles_upgrade_and_drop_refs ... handles_upgrade_and_drop_refs: shuttle seed 6840158756811819774
failing schedule:
\"
9103ba06d0f7cde5c491979e3c004044444444444444
44444444444400
\"
pass that string to `shuttle::replay` to replay the failure
thread 'handles_upgrade_and_drop_refs' (31719) panicked at models/tests/shuttle_refs.rs:100:21:
upgrade returned a destroyed object
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
REFWATCH-SHUTTLE-FAILURE name=handles_upgrade_and_drop_refs scheduler=random schedule=17
FAILED
";

    #[test]
    fn reads_the_failing_schedule_and_its_number() {
        assert_eq!(
            failing_schedule(SHUTTLE_KILL).as_deref(),
            Some("9103ba06d0f7cde5c491979e3c00404444444444444444444444444400")
        );
        assert_eq!(failure_line(SHUTTLE_KILL), Some(("random".into(), 17)));
        let kill = classify(SHUTTLE_KILL, Exit::Code(101), &[]);
        assert_eq!(kill.label(), "assertion");
        assert!(same_failure(&kill, &kill));
        let elsewhere = classify(
            &SHUTTLE_KILL.replace("shuttle_refs.rs:100:21", "shuttle_refs.rs:120:9"),
            Exit::Code(101),
            &[],
        );
        assert!(!same_failure(&elsewhere, &kill));
        assert_eq!(failing_schedule("no schedule here\n"), None);
        let twice = format!("{SHUTTLE_KILL}failing schedule:\n\"\n9103e7\n00\n\"\n");
        assert_eq!(
            failing_schedule(&twice).as_deref(),
            Some("9103e700"),
            "the last one"
        );
        let empty_last = format!("{SHUTTLE_KILL}failing schedule:\n\"\n\"\n");
        assert!(
            failing_schedule(&empty_last).is_some(),
            "an empty one is no schedule"
        );
        assert_eq!(
            failing_schedule("failing schedule:\n\"\nabc\n"),
            None,
            "unterminated"
        );
        assert_eq!(
            failure_line("REFWATCH-SHUTTLE-FAILURE scheduler=pct\n"),
            None
        );
    }

    #[test]
    fn reads_the_confirmed_bound() {
        let out = "running 1 test\ntest x ... REFWATCH-OVERRIDE name=x bound=2\n";
        assert_eq!(override_field(out, "bound").as_deref(), Some("2"));
        assert_eq!(override_field("REFWATCH-MODEL bound=2\n", "bound"), None);
        let out = "test x ... x: shuttle seed 1\nREFWATCH-OVERRIDE name=x mode=sequential\n";
        assert_eq!(override_field(out, "mode").as_deref(), Some("sequential"));
        assert_eq!(override_field(out, "bound"), None);
    }

    #[test]
    fn depth_labels() {
        assert_eq!(Depth::Preemptions(0).label(), "0 (no race)");
        assert_eq!(Depth::Preemptions(3).label(), "3");
        assert_eq!(Depth::AtLeast(7).label(), ">=7");
        assert_eq!(Depth::Sequential.label(), "0 (no race)");
        assert_eq!(Depth::NeedsPreemption.label(), ">=1");
        assert_eq!(Depth::Preemptions(0).needs_race(), Some(false));
        assert_eq!(Depth::Preemptions(1).needs_race(), Some(true));
        assert_eq!(Depth::AtLeast(7).needs_race(), Some(true));
        assert_eq!(Depth::Unknown("x".into()).needs_race(), None);
        assert_eq!(Depth::Preemptions(3).to_json()["value"], 3);
        assert_eq!(Depth::AtLeast(7).to_json()["value"], Value::Null);
    }

    #[test]
    fn schedule_labels() {
        let s = Schedule {
            scheduler: "pct".into(),
            number: 37,
            replays: Some(true),
        };
        assert_eq!(s.label(), "pct #37, replays");
        assert_eq!(s.to_json()["number"], 37);
    }
}
