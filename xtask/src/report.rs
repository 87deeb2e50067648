//! The report: one table of models and mutants (or the same as JSON), failure details, and a
//! one-line summary.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::checker::Checker;
use crate::models::{Bound, ModelResult};
use crate::mutants::{MutantResult, Outcome};

/// Everything one `verify` run found.
#[derive(Debug)]
pub struct Report {
    pub models: Vec<ModelResult>,
    pub mutants: Vec<MutantResult>,
    /// Whether every model must be killed-on by some mutant (a full, unfiltered run).
    pub require_mutants: bool,
}

impl Report {
    /// Every model passed, every mutant was killed, and (on a full run) every model killed
    /// at least one mutant.
    pub fn all_good(&self) -> bool {
        self.models.iter().all(|m| m.passed)
            && self.mutants.iter().all(|m| m.outcome == Outcome::Killed)
            && self.unguarded().is_empty()
    }

    /// Models (`file::name`) that no mutant was killed by: a model that catches nothing proves
    /// nothing. Empty unless `require_mutants`.
    pub fn unguarded(&self) -> Vec<String> {
        if !self.require_mutants {
            return Vec::new();
        }
        self.models
            .iter()
            .map(|m| format!("{}::{}", m.file, m.name))
            .filter(|model| {
                !self
                    .mutants
                    .iter()
                    .any(|r| &r.model == model && r.outcome == Outcome::Killed)
            })
            .collect()
    }

    /// The models table, then the mutants table (each only if something ran).
    pub fn table(&self) -> String {
        let mut out = String::new();
        if !self.models.is_empty() {
            let mut rows = vec![row(&[
                "checker",
                "model",
                "passed",
                "seconds",
                "bound",
                "interleavings",
            ])];
            rows.extend(self.models.iter().map(|m| {
                vec![
                    m.checker.to_string(),
                    m.name.clone(),
                    passed_label(m).to_string(),
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
            let mut rows = vec![row(&["mutant", "model", "killed", "seconds"])];
            rows.extend(self.mutants.iter().map(|m| {
                let killed = match m.outcome {
                    Outcome::Killed => "yes",
                    Outcome::Survived => "no",
                    Outcome::TimedOut => "no (timeout)",
                    Outcome::Error(_) => "error",
                };
                vec![
                    m.name.clone(),
                    m.model.clone(),
                    killed.to_string(),
                    format!("{:.1}", m.seconds),
                ]
            }));
            out += &render(&rows);
        }
        out
    }

    /// The end of each failed model's output and each mutant's error, or nothing.
    pub fn failures(&self) -> String {
        let mut out = String::new();
        for m in self.models.iter().filter(|m| !m.passed) {
            let how = if m.timed_out { "timed out" } else { "failed" };
            let _ = writeln!(
                out,
                "\n--- {} model {}::{} {how}; last {} lines of its output:",
                m.checker,
                m.file,
                m.name,
                m.tail.len()
            );
            for line in &m.tail {
                let _ = writeln!(out, "{line}");
            }
            let _ = writeln!(out, "full output: {}", m.log.display());
            let _ = writeln!(out, "rerun: {}", m.checker.rerun_command(&m.file, &m.name));
        }
        for m in &self.mutants {
            match &m.outcome {
                Outcome::Error(e) => {
                    let _ = writeln!(out, "\n--- mutant {} is an error:\n{e}", m.name);
                }
                Outcome::Survived | Outcome::TimedOut => {
                    let how = if m.outcome == Outcome::TimedOut {
                        "ran out of time on it (see --timeout)"
                    } else {
                        "passed on it"
                    };
                    let _ = writeln!(out, "\n--- mutant {} survived: {} {how}", m.name, m.model);
                    if let Some(log) = &m.log {
                        let _ = writeln!(out, "full output: {}", log.display());
                    }
                }
                Outcome::Killed => {}
            }
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }

    /// `verify: 14 models passed, 0 failed; 9 mutants killed, 0 survived, 0 errors`.
    pub fn summary(&self) -> String {
        let passed = self.models.iter().filter(|m| m.passed).count();
        let count = |f: fn(&Outcome) -> bool| self.mutants.iter().filter(|m| f(&m.outcome)).count();
        let killed = count(|o| *o == Outcome::Killed);
        let survived = count(|o| matches!(o, Outcome::Survived | Outcome::TimedOut));
        let timed_out = count(|o| *o == Outcome::TimedOut);
        let errors = count(|o| matches!(o, Outcome::Error(_)));
        let timed_out = if timed_out > 0 {
            format!(" ({timed_out} timed out)")
        } else {
            String::new()
        };
        format!(
            "verify: {passed} models passed, {} failed; {killed} mutants killed, {survived} survived{timed_out}, {errors} errors",
            self.models.len() - passed
        )
    }

    /// `verify: 29 passed, 0 failed`: every model that passed and mutant that was killed,
    /// against every model that failed and mutant that survived or errored. The plain closing
    /// line that CI reads.
    pub fn tally(&self) -> String {
        let passed = self.models.iter().filter(|m| m.passed).count()
            + self
                .mutants
                .iter()
                .filter(|m| m.outcome == Outcome::Killed)
                .count();
        let total = self.models.len() + self.mutants.len();
        format!("verify: {passed} passed, {} failed", total - passed)
    }

    /// `{"models":[{"name","checker","passed","seconds","preemption_bound","iterations"}],
    /// "mutants":[{"name","model","killed"}]}`, plus a few fields that explain failures.
    pub fn to_json(&self) -> Value {
        let models: Vec<Value> = self.models.iter().map(model_json).collect();
        let mutants: Vec<Value> = self.mutants.iter().map(mutant_json).collect();
        json!({ "models": models, "mutants": mutants, "models_without_mutant": self.unguarded() })
    }
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
        "passed": m.passed,
        "seconds": (m.seconds * 1000.0).round() / 1000.0,
        "preemption_bound": preemption_bound,
        "iterations": m.iterations,
    });
    if !m.passed {
        v["timed_out"] = m.timed_out.into();
        v["output"] = m.tail.clone().into();
    }
    v
}

fn mutant_json(m: &MutantResult) -> Value {
    let mut v = json!({
        "name": m.name,
        "model": m.model,
        "killed": m.outcome == Outcome::Killed,
        "outcome": m.outcome.label(),
        "seconds": (m.seconds * 10.0).round() / 10.0,
    });
    if let Outcome::Error(e) = &m.outcome {
        v["error"] = e.clone().into();
    }
    v
}

fn passed_label(m: &ModelResult) -> &'static str {
    match (m.passed, m.timed_out) {
        (true, _) => "yes",
        (false, true) => "timeout",
        (false, false) => "no",
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

    fn model(checker: Checker, passed: bool, bound: Option<Bound>) -> ModelResult {
        ModelResult {
            checker,
            file: format!("{checker}_refs"),
            name: "two_try_inc_race_last_dec_refs".into(),
            passed,
            timed_out: false,
            seconds: 0.8149,
            bound,
            iterations: bound.map(|_| 5402),
            tail: if passed { vec![] } else { vec!["boom".into()] },
            report_lines: usize::from(bound.is_some()),
            log: "target/verify-logs/x.log".into(),
        }
    }

    fn report() -> Report {
        Report {
            models: vec![
                model(Checker::Loom, true, Some(Bound::Exhaustive)),
                model(Checker::Loom, true, Some(Bound::Preemptions(3))),
                model(Checker::Shuttle, false, None),
            ],
            mutants: vec![MutantResult {
                name: "seed_try_inc_leak".into(),
                model: "loom_refs::two_try_inc_race_last_dec_refs".into(),
                outcome: Outcome::Killed,
                seconds: 12.34,
                log: None,
            }],
            require_mutants: false,
        }
    }

    #[test]
    fn a_full_run_fails_on_a_model_that_no_mutant_fails() {
        let mut report = report();
        report.models.retain(|m| m.passed);
        assert!(report.all_good(), "filtered runs do not require mutants");
        report.require_mutants = true;
        // Both passing models are loom_refs::two_try_inc_race_last_dec_refs, which the mutant
        // kills; a model of another name is unguarded.
        assert!(report.all_good());
        report.models[1].name = "lonely_model".into();
        assert_eq!(report.unguarded(), ["loom_refs::lonely_model"]);
        assert!(!report.all_good());
        assert_eq!(
            report.to_json()["models_without_mutant"][0],
            "loom_refs::lonely_model"
        );
        report.mutants[0].outcome = Outcome::Survived;
        assert_eq!(
            report.unguarded().len(),
            2,
            "a surviving mutant guards nothing"
        );
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
                "0.81",
                "none",
                "5402"
            ]
        );
        assert!(lines[2].contains(" 3 "));
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            [
                "shuttle",
                "two_try_inc_race_last_dec_refs",
                "no",
                "0.81",
                "-",
                "unknown"
            ]
        );
        assert!(lines[6].starts_with("seed_try_inc_leak"));
        assert!(report.failures().contains("boom"));
        assert_eq!(
            report.summary(),
            "verify: 2 models passed, 1 failed; 1 mutants killed, 0 survived, 0 errors"
        );
        assert_eq!(report.tally(), "verify: 3 passed, 1 failed");
        assert!(!report.all_good());
    }

    #[test]
    fn json_fields() {
        let v = report().to_json();
        assert_eq!(v["models"][0]["preemption_bound"], Value::Null);
        assert_eq!(v["models"][1]["preemption_bound"], 3);
        assert_eq!(v["models"][0]["iterations"], 5402);
        assert_eq!(v["models"][2]["iterations"], Value::Null);
        assert_eq!(v["models"][2]["passed"], false);
        assert_eq!(v["models"][0]["seconds"], 0.815);
        assert_eq!(v["mutants"][0]["killed"], true);
        assert_eq!(
            v["mutants"][0]["model"],
            "loom_refs::two_try_inc_race_last_dec_refs"
        );
    }
}
