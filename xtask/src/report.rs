//! The report: one table of models and one of mutants (or the same as JSON), failure
//! details, and a one-line summary.
//!
//! Every row carries the [`Reason`] of its verdict; a mutant's kill also carries its depth
//! (see [`crate::depth`]).

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::checker::Checker;
use crate::models::{Bound, ModelResult};
use crate::mutants::{MutantResult, Verdict};
use crate::verdict::Reason;

/// Everything one `verify` run found.
#[derive(Debug)]
pub struct Report {
    pub models: Vec<ModelResult>,
    pub mutants: Vec<MutantResult>,
    /// A full, unfiltered run: every model must be failed by some mutant, and by one whose
    /// kill needs a race.
    pub require_mutants: bool,
}

impl Report {
    /// Every model passed, every mutant row holds (killed, or a control that ended as
    /// expected), and (on a full run) every model has a kill that needs a race.
    pub fn all_good(&self) -> bool {
        self.models.iter().all(ModelResult::passed)
            && self.mutants.iter().all(|m| m.verdict().good())
            && self.unguarded().is_empty()
            && self.race_free().is_empty()
    }

    /// Models (`file::name`) that no mutant is counted as killed by: a model that catches
    /// nothing proves nothing. Empty unless `require_mutants`.
    pub fn unguarded(&self) -> Vec<String> {
        if !self.require_mutants {
            return Vec::new();
        }
        self.models
            .iter()
            .map(ModelResult::id)
            .filter(|id| !self.kills_of(id).any(|_| true))
            .collect()
    }

    /// Models that some mutant is counted as killed by, but none by a kill that needs a race
    /// (depth >= 1; for shuttle, one that the one-thread-at-a-time run does not kill): such a
    /// model shows that it catches bugs, not that it catches races. Empty unless
    /// `require_mutants`.
    pub fn race_free(&self) -> Vec<String> {
        if !self.require_mutants {
            return Vec::new();
        }
        self.models
            .iter()
            .map(ModelResult::id)
            .filter(|id| {
                let mut kills = self.kills_of(id).peekable();
                kills.peek().is_some()
                    && !kills.any(|m| m.depth.as_ref().and_then(|d| d.needs_race()) == Some(true))
            })
            .collect()
    }

    fn kills_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a MutantResult> + 'a {
        self.mutants
            .iter()
            .filter(move |m| m.model == id && m.verdict() == Verdict::Killed)
    }

    /// The models table, then the mutants table (each only if something ran).
    pub fn table(&self) -> String {
        let mut out = String::new();
        if !self.models.is_empty() {
            let mut rows = vec![row(&[
                "checker",
                "model",
                "passed",
                "reason",
                "seconds",
                "bound",
                "interleavings",
            ])];
            rows.extend(self.models.iter().map(|m| {
                vec![
                    m.checker.to_string(),
                    m.name.clone(),
                    yes_no(m.passed()).to_string(),
                    m.reason.label().to_string(),
                    format!("{:.2}", m.seconds),
                    bound_label(m),
                    m.iterations
                        .map_or_else(|| "unknown".to_string(), |n| n.to_string()),
                ]
            }));
            out += &render(&rows);
        }
        if !self.mutants.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            let mut rows = vec![row(&[
                "mutant", "model", "killed", "reason", "at", "depth", "schedule", "seconds",
            ])];
            rows.extend(self.mutants.iter().map(|m| {
                vec![
                    m.name.clone(),
                    m.model.clone(),
                    m.verdict().label().to_string(),
                    m.reason.label().to_string(),
                    m.reason
                        .site()
                        .map_or_else(|| "-".to_string(), |s| short_location(&s.location)),
                    m.depth
                        .as_ref()
                        .map_or_else(|| "-".to_string(), |d| d.label()),
                    m.schedule
                        .as_ref()
                        .map_or_else(|| "-".to_string(), |s| s.label()),
                    format!("{:.1}", m.seconds),
                ]
            }));
            out += &render(&rows);
        }
        out
    }

    /// The end of each model's output that did not pass, and each mutant row that does not
    /// hold, with its reason in full.
    pub fn failures(&self) -> String {
        let mut out = String::new();
        for m in self.models.iter().filter(|m| !m.passed()) {
            let _ = writeln!(
                out,
                "\n--- {} model {} did not pass: {}",
                m.checker,
                m.id(),
                m.reason
            );
            if !m.tail.is_empty() {
                let _ = writeln!(out, "last {} lines of its output:", m.tail.len());
                for line in &m.tail {
                    let _ = writeln!(out, "{line}");
                }
            }
            if let Some(log) = &m.log {
                let _ = writeln!(out, "full output: {}", log.display());
            }
            if m.reason == Reason::Ignored {
                let _ = writeln!(
                    out,
                    "an #[ignore]d model checks nothing: remove the attribute or the model"
                );
            } else {
                let _ = writeln!(out, "rerun: {}", m.checker.rerun_command(&m.file, &m.name));
            }
        }
        for m in self.mutants.iter().filter(|m| !m.verdict().good()) {
            let _ = writeln!(
                out,
                "\n--- mutant {} on {}: {} ({})",
                m.name,
                m.model,
                m.verdict().label(),
                m.reason
            );
            if let Some(why) = m.why_not() {
                let _ = writeln!(out, "{why}");
            }
            if let Some(log) = &m.log {
                let _ = writeln!(out, "full output: {}", log.display());
            }
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }

    /// What a full run requires of the models beyond passing, or nothing.
    pub fn requirements(&self) -> String {
        let mut out = String::new();
        let unguarded = self.unguarded();
        if !unguarded.is_empty() {
            let _ = writeln!(
                out,
                "models that no mutant is counted as killing (each needs a models/mutants/*.patch \
                 naming it that it kills): {}",
                unguarded.join(", ")
            );
        }
        let race_free = self.race_free();
        if !race_free.is_empty() {
            let _ = writeln!(
                out,
                "models whose every kill needs no race (depth 0, or killed one thread at a time; \
                 each needs a mutant it kills only with a preemption): {}",
                race_free.join(", ")
            );
        }
        out
    }

    /// `verify: 24 models passed, 0 failed; 28 mutants killed (9 need a race), 1 not killed,
    /// 0 not counted, 0 errors`.
    pub fn summary(&self) -> String {
        let passed = self.models.iter().filter(|m| m.passed()).count();
        let count = |v: Verdict| self.mutants.iter().filter(|m| m.verdict() == v).count();
        let racy = self
            .mutants
            .iter()
            .filter(|m| m.verdict() == Verdict::Killed)
            .filter(|m| m.depth.as_ref().and_then(|d| d.needs_race()) == Some(true))
            .count();
        let controls = count(Verdict::AsExpected) + count(Verdict::Unexpected);
        let controls = if controls > 0 {
            format!(
                ", {} of {controls} controls as expected",
                count(Verdict::AsExpected)
            )
        } else {
            String::new()
        };
        format!(
            "verify: {passed} models passed, {} failed; {} mutants killed ({racy} need a race), \
             {} not killed, {} not counted, {} errors{controls}",
            self.models.len() - passed,
            count(Verdict::Killed),
            count(Verdict::NotKilled),
            count(Verdict::NotCounted),
            count(Verdict::Error),
        )
    }

    /// `verify: 29 passed, 0 failed`: every model that passed and mutant row that holds,
    /// against every other row. The plain closing line that CI reads.
    pub fn tally(&self) -> String {
        let passed = self.models.iter().filter(|m| m.passed()).count()
            + self.mutants.iter().filter(|m| m.verdict().good()).count();
        let total = self.models.len() + self.mutants.len();
        format!("verify: {passed} passed, {} failed", total - passed)
    }

    /// `{"models":[…],"mutants":[…],"models_without_mutant":[…],"models_without_race_kill":[…]}`.
    pub fn to_json(&self) -> Value {
        let models: Vec<Value> = self.models.iter().map(model_json).collect();
        let mutants: Vec<Value> = self.mutants.iter().map(mutant_json).collect();
        json!({
            "models": models,
            "mutants": mutants,
            "models_without_mutant": self.unguarded(),
            "models_without_race_kill": self.race_free(),
            "all_good": self.all_good(),
        })
    }
}

fn reason_json(r: &Reason) -> Value {
    json!({
        "label": r.label(),
        "kill": r.is_kill(),
        "detail": r.detail(),
        "location": r.site().map(|s| s.location.clone()),
    })
}

fn model_json(m: &ModelResult) -> Value {
    let preemption_bound = match (m.checker, m.bound) {
        (Checker::Loom, Some(Bound::Preemptions(n))) => Some(n),
        _ => None,
    };
    let mut v = json!({
        "name": m.name,
        "checker": m.checker.name(),
        "file": m.file,
        "passed": m.passed(),
        "reason": m.reason.label(),
        "reason_detail": reason_json(&m.reason),
        "seconds": (m.seconds * 1000.0).round() / 1000.0,
        "preemption_bound": preemption_bound,
        "iterations": m.iterations,
    });
    if !m.passed() {
        v["output"] = m.tail.clone().into();
    }
    v
}

fn mutant_json(m: &MutantResult) -> Value {
    json!({
        "name": m.name,
        "model": m.model,
        "killed": m.verdict() == Verdict::Killed,
        "verdict": m.verdict().label(),
        "reason": m.reason.label(),
        "reason_detail": reason_json(&m.reason),
        "baseline": m.baseline.as_ref().map(Reason::label),
        "why_not": m.why_not(),
        "expect": m.expect,
        "depth": m.depth.as_ref().map(|d| d.to_json()),
        "schedule": m.schedule.as_ref().map(|s| s.to_json()),
        "seconds": (m.seconds * 10.0).round() / 10.0,
        "log": m.log.as_ref().map(|l| l.display().to_string()),
    })
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// A panic location without the registry's prefix: `loom-0.7.3/src/rt/execution.rs:215:13`.
fn short_location(location: &str) -> String {
    match location.find("/src/index.crates.io-") {
        Some(i) => {
            let rest = &location[i + "/src/".len()..];
            rest.split_once('/').map_or(rest, |(_, r)| r).to_string()
        }
        None => location.to_string(),
    }
}

/// `none` (exhaustive) or the preemption bound for loom; `-` for shuttle, which has none;
/// `?` when the model printed no `REFWATCH-MODEL` line.
fn bound_label(m: &ModelResult) -> String {
    match (m.checker, m.bound) {
        (Checker::Shuttle, _) => "-".into(),
        (Checker::Loom, Some(Bound::Exhaustive)) => "none".into(),
        (Checker::Loom, Some(Bound::Preemptions(n))) => n.to_string(),
        (Checker::Loom, None) => "?".into(),
    }
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns, two spaces apart.
fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (cell, width) in r.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depth::Depth;
    use crate::verdict::Site;

    fn model(checker: Checker, name: &str, reason: Reason, bound: Option<Bound>) -> ModelResult {
        let passed = reason.is_pass();
        ModelResult {
            checker,
            file: format!("{checker}_refs"),
            name: name.into(),
            reason,
            seconds: 0.8149,
            bound,
            iterations: bound.map(|_| 5402),
            tail: if passed { vec![] } else { vec!["boom".into()] },
            log: Some("target/verify-logs/x.log".into()),
        }
    }

    fn assertion() -> Reason {
        Reason::Assertion(Site {
            location: "models/tests/loom_refs.rs:96:13".into(),
            message: "the destructor must run exactly once".into(),
        })
    }

    fn production() -> Reason {
        Reason::ProductionPanic(Site {
            location: "core/src/refs.rs:262:13".into(),
            message: "dec_ref on an object with no references".into(),
        })
    }

    fn mutant(name: &str, model: &str, reason: Reason, depth: Option<Depth>) -> MutantResult {
        MutantResult {
            name: name.into(),
            model: model.into(),
            reason,
            baseline: Some(Reason::Passed),
            depth,
            schedule: None,
            expect: None,
            seconds: 12.34,
            log: None,
        }
    }

    const TWO_TRY: &str = "loom_refs::two_try_inc_race_last_dec_refs";

    fn report() -> Report {
        Report {
            models: vec![
                model(
                    Checker::Loom,
                    "two_try_inc_race_last_dec_refs",
                    Reason::Passed,
                    Some(Bound::Exhaustive),
                ),
                model(
                    Checker::Loom,
                    "bounded",
                    Reason::Passed,
                    Some(Bound::Preemptions(3)),
                ),
                model(
                    Checker::Shuttle,
                    "two_try_inc_race_last_dec_refs",
                    production(),
                    None,
                ),
            ],
            mutants: vec![mutant(
                "seed_try_inc_leak",
                TWO_TRY,
                assertion(),
                Some(Depth::Preemptions(3)),
            )],
            require_mutants: false,
        }
    }

    #[test]
    fn a_full_run_fails_on_a_model_that_no_mutant_kills() {
        let mut report = report();
        report.models.truncate(1);
        assert!(report.all_good());
        report.require_mutants = true;
        assert!(report.all_good());
        report.models[0].name = "lonely_model".into();
        assert_eq!(report.unguarded(), ["loom_refs::lonely_model"]);
        assert!(!report.all_good());
        assert_eq!(
            report.to_json()["models_without_mutant"][0],
            "loom_refs::lonely_model"
        );
    }

    #[test]
    fn a_production_panic_guards_nothing_and_fails_verify() {
        let mut report = report();
        report.models.truncate(1);
        report.require_mutants = true;
        report.mutants[0].reason = production();
        report.mutants[0].depth = None;
        assert_eq!(report.mutants[0].verdict(), Verdict::NotKilled);
        assert_eq!(report.unguarded(), [TWO_TRY]);
        assert!(!report.all_good());
        let v = report.to_json();
        assert_eq!(v["mutants"][0]["killed"], false);
        assert_eq!(v["mutants"][0]["reason"], "production panic");
    }

    #[test]
    fn a_kill_on_a_model_that_failed_unmutated_is_not_counted() {
        let mut report = report();
        report.mutants[0].baseline = Some(production());
        assert_eq!(report.mutants[0].verdict(), Verdict::NotCounted);
        assert!(report.mutants[0]
            .why_not()
            .unwrap()
            .contains("did not pass unmutated: production panic"));
        report.mutants[0].baseline = None;
        assert_eq!(report.mutants[0].verdict(), Verdict::NotCounted);
        report.models.truncate(1);
        assert!(!report.all_good());
    }

    #[test]
    fn every_model_needs_a_kill_that_needs_a_race() {
        let mut report = report();
        report.models.truncate(1);
        report.require_mutants = true;
        assert!(report.race_free().is_empty());
        report.mutants[0].depth = Some(Depth::Preemptions(0));
        assert_eq!(report.race_free(), [TWO_TRY]);
        assert!(report.unguarded().is_empty(), "listed once, as race-free");
        assert!(!report.all_good());
        assert!(report.requirements().contains("needs no race"));
        // Another mutant with a depth-1 kill guards it.
        report.mutants.push(mutant(
            "other",
            TWO_TRY,
            assertion(),
            Some(Depth::Preemptions(1)),
        ));
        assert!(report.all_good());
        // An unknown depth proves no race.
        report.mutants[1].depth = Some(Depth::Unknown("timed out".into()));
        assert!(!report.all_good());
        // Nor does a shuttle kill that one thread at a time also finds.
        report.mutants[1].depth = Some(Depth::Sequential);
        assert!(!report.all_good());
        report.mutants[1].depth = Some(Depth::NeedsPreemption);
        assert!(report.all_good());
        assert_eq!(report.to_json()["models_without_race_kill"], json!([]));
    }

    #[test]
    fn control_mutants() {
        let mut m = mutant("control", TWO_TRY, production(), None);
        m.expect = Some("production panic".into());
        assert_eq!(m.verdict(), Verdict::AsExpected);
        assert!(m.verdict().good());
        m.reason = assertion();
        assert_eq!(m.verdict(), Verdict::Unexpected);
        assert!(m
            .why_not()
            .unwrap()
            .contains("must end with `production panic`"));
        m.reason = production();
        m.baseline = Some(Reason::Ignored);
        assert_eq!(m.verdict(), Verdict::Unexpected);
    }

    #[test]
    fn table_and_summary() {
        let report = report();
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "checker",
                "model",
                "passed",
                "reason",
                "seconds",
                "bound",
                "interleavings"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "loom",
                "two_try_inc_race_last_dec_refs",
                "yes",
                "passed",
                "0.81",
                "none",
                "5402"
            ]
        );
        assert!(lines[2].contains(" 3 "));
        assert!(lines[3].contains("production panic"));
        assert!(lines[3].ends_with("unknown"));
        assert_eq!(
            lines[5].split_whitespace().collect::<Vec<_>>(),
            ["mutant", "model", "killed", "reason", "at", "depth", "schedule", "seconds"]
        );
        assert_eq!(
            lines[6].split_whitespace().collect::<Vec<_>>(),
            [
                "seed_try_inc_leak",
                TWO_TRY,
                "yes",
                "assertion",
                "models/tests/loom_refs.rs:96:13",
                "3",
                "-",
                "12.3"
            ]
        );
        assert!(report.failures().contains("boom"));
        assert!(report
            .failures()
            .contains("production panic (core/src/refs.rs:262:13"));
        assert_eq!(
            report.summary(),
            "verify: 2 models passed, 1 failed; 1 mutants killed (1 need a race), 0 not killed, 0 not counted, 0 errors"
        );
        assert_eq!(report.tally(), "verify: 3 passed, 1 failed");
        assert!(!report.all_good());
    }

    #[test]
    fn depth_zero_reads_no_race() {
        let mut report = report();
        report.mutants[0].depth = Some(Depth::Preemptions(0));
        assert!(report.table().contains("0 (no race)"));
    }

    #[test]
    fn json_fields() {
        let v = report().to_json();
        assert_eq!(v["models"][0]["preemption_bound"], Value::Null);
        assert_eq!(v["models"][1]["preemption_bound"], 3);
        assert_eq!(v["models"][0]["iterations"], 5402);
        assert_eq!(v["models"][0]["reason"], "passed");
        assert_eq!(v["models"][2]["reason"], "production panic");
        assert_eq!(
            v["models"][2]["reason_detail"]["location"],
            "core/src/refs.rs:262:13"
        );
        assert_eq!(v["models"][2]["passed"], false);
        assert_eq!(v["models"][0]["seconds"], 0.815);
        let m = &v["mutants"][0];
        assert_eq!(m["killed"], true);
        assert_eq!(m["reason"], "assertion");
        assert_eq!(m["reason_detail"]["kill"], true);
        assert_eq!(m["depth"]["value"], 3);
        assert_eq!(m["depth"]["label"], "3");
        assert_eq!(m["depth"]["needs_race"], true);
        assert_eq!(m["baseline"], "passed");
        assert_eq!(m["model"], TWO_TRY);
    }

    #[test]
    fn registry_locations_are_shortened() {
        assert_eq!(
            short_location("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/loom-0.7.3/src/rt/execution.rs:215:13"),
            "loom-0.7.3/src/rt/execution.rs:215:13"
        );
        assert_eq!(
            short_location("core/src/refs.rs:1:1"),
            "core/src/refs.rs:1:1"
        );
    }
}
