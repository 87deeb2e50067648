//! The models: discovering them in `models/tests/`, running each one, and reading the
//! `REFWATCH-MODEL` line it prints when it passes.

use std::fs;
use std::path::{Path, PathBuf};

use std::collections::BTreeSet;
use std::time::Duration;

use crate::checker::{Build, Checker, Purpose, MODELS_DIR};
use crate::cli::Options;
use crate::exec::{self, Logged};
use crate::verdict::{classify, Exit, Reason};
use crate::Result;

/// The marker that starts the line a passing model prints (see `models/src/lib.rs`).
const LINE_MARKER: &str = "REFWATCH-MODEL ";

/// How much of the schedule space a model covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Every interleaving (`bound=none`); for shuttle, no preemption bound applies.
    Exhaustive,
    /// Interleavings with at most this many preemptions.
    Preemptions(u32),
}

/// One `REFWATCH-MODEL checker=… name=… bound=… iterations=… seconds=…` line.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelLine {
    pub checker: String,
    pub name: String,
    pub bound: Bound,
    pub iterations: u64,
    pub seconds: f64,
}

/// Parses a `REFWATCH-MODEL` line. The marker may follow other text on the same line (libtest
/// prints `test name ... ` before the model's own output). Unknown keys are ignored.
pub fn parse_model_line(line: &str) -> Option<ModelLine> {
    let start = line.find(LINE_MARKER)?;
    let (mut checker, mut name, mut bound, mut iterations, mut seconds) =
        (None, None, None, None, None);
    for field in line[start + LINE_MARKER.len()..].split_whitespace() {
        let (key, value) = field.split_once('=')?;
        match key {
            "checker" => checker = Some(value.to_string()),
            "name" => name = Some(value.to_string()),
            "bound" if value == "none" => bound = Some(Bound::Exhaustive),
            "bound" => bound = Some(Bound::Preemptions(value.parse().ok()?)),
            "iterations" => iterations = Some(value.parse().ok()?),
            "seconds" => seconds = Some(value.parse().ok()?),
            _ => {}
        }
    }
    Some(ModelLine {
        checker: checker?,
        name: name?,
        bound: bound?,
        iterations: iterations?,
        seconds: seconds?,
    })
}

/// The verdict on one model, unmutated: its baseline.
#[derive(Debug)]
pub struct ModelResult {
    pub checker: Checker,
    /// Test file (`loom_refs`).
    pub file: String,
    /// Test name (`two_try_inc_race_last_dec_refs`).
    pub name: String,
    /// Why it passed or failed; only [`Reason::Passed`] is a pass.
    pub reason: Reason,
    /// Wall-clock time of the model's run.
    pub seconds: f64,
    /// From the `REFWATCH-MODEL` line; `None` when it is missing.
    pub bound: Option<Bound>,
    /// Interleavings (loom) or schedules (shuttle) explored; `None` when the line is missing.
    pub iterations: Option<u64>,
    /// The end of the model's output, kept when it did not pass.
    pub tail: Vec<String>,
    /// Its whole output (`None` when it did not run, being `#[ignore]`d).
    pub log: Option<PathBuf>,
}

impl ModelResult {
    /// `file::name`, as mutants name it.
    pub fn id(&self) -> String {
        format!("{}::{}", self.file, self.name)
    }

    pub fn passed(&self) -> bool {
        self.reason.is_pass()
    }

    fn from_run(
        checker: Checker,
        file: &str,
        name: &str,
        run: Logged,
        limit: Duration,
        root: &Path,
    ) -> Result<ModelResult> {
        let output = run.lines()?;
        let reason = classify(&output.join("\n"), Exit::of(run.status, limit), &[root]);
        let lines: Vec<ModelLine> = output.iter().filter_map(|l| parse_model_line(l)).collect();
        let passed = reason.is_pass();
        Ok(ModelResult {
            checker,
            file: file.to_string(),
            name: name.to_string(),
            seconds: run.elapsed.as_secs_f64(),
            bound: weakest_bound(&lines),
            iterations: (!lines.is_empty()).then(|| lines.iter().map(|l| l.iterations).sum()),
            tail: if passed {
                Vec::new()
            } else {
                exec::tail(&output)
            },
            reason,
            log: Some(run.log),
        })
    }

    fn ignored(checker: Checker, file: &str, name: &str) -> ModelResult {
        ModelResult {
            checker,
            file: file.to_string(),
            name: name.to_string(),
            reason: Reason::Ignored,
            seconds: 0.0,
            bound: None,
            iterations: None,
            tail: Vec::new(),
            log: None,
        }
    }
}

/// The weakest guarantee among a model's lines (there should be exactly one).
fn weakest_bound(lines: &[ModelLine]) -> Option<Bound> {
    lines.iter().map(|l| l.bound).reduce(|a, b| match (a, b) {
        (Bound::Preemptions(x), Bound::Preemptions(y)) => Bound::Preemptions(x.min(y)),
        (Bound::Preemptions(x), _) | (_, Bound::Preemptions(x)) => Bound::Preemptions(x),
        _ => Bound::Exhaustive,
    })
}

/// The test files of `checker` in `<workspace>/models/tests/`, sorted: `loom_*.rs` files and
/// `loom_*/main.rs` directories, named as cargo names the test targets.
pub fn test_files(workspace: &Path, checker: Checker) -> Result<Vec<String>> {
    let dir = workspace.join(MODELS_DIR).join("tests");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("reading {}: {e}", dir.display()).into()),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let target = if path.is_dir() && path.join("main.rs").is_file() {
            path.file_name()
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem()
        } else {
            None
        };
        if let Some(target) = target.and_then(|t| t.to_str()) {
            if target.starts_with(checker.file_prefix()) {
                files.push(target.to_string());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Builds and runs, each on its own in `target/<checker>`, every model of `checker` in the
/// workspace at `root` that `options` selects or that a selected mutant names (`named`,
/// `file::test`). A selected model that is `#[ignore]`d is a row with [`Reason::Ignored`].
pub fn run_all(
    root: &Path,
    checker: Checker,
    options: &Options,
    named: &BTreeSet<String>,
) -> Result<Vec<ModelResult>> {
    let files = test_files(root, checker)?;
    if files.is_empty() {
        eprintln!(
            "verify: {checker}: no models/tests/{}*.rs",
            checker.file_prefix()
        );
        return Ok(Vec::new());
    }
    let wanted = |file: &str, name: &str| {
        let id = format!("{file}::{name}");
        named.contains(&id) || (!options.only_mutants && options.selects(&[name, &id]))
    };
    eprintln!("verify: {checker}: building {}", files.join(", "));
    let target_dir = root.join("target").join(checker.name());
    let build = Build::compile(checker, root, &target_dir, &files, Purpose::Baseline)?;

    let mut results = Vec::new();
    for file in &files {
        let list = build.list(file)?;
        for name in list.ignored.iter().filter(|n| wanted(file, n)) {
            eprintln!(
                "verify: {checker} {file}::{name} ... IGNORED (an #[ignore]d model checks nothing)"
            );
            results.push(ModelResult::ignored(checker, file, name));
        }
        for name in list.run.iter().filter(|n| wanted(file, n)) {
            eprint!("verify: {checker} {file}::{name} ... ");
            let log = log_path(root, checker, file, name);
            let run = build.run(file, name, options.timeout, &log, &[])?;
            let result = ModelResult::from_run(checker, file, name, run, options.timeout, root)?;
            eprintln!("{} ({:.2} s)", result.reason, result.seconds);
            results.push(result);
        }
    }
    results.sort_by_key(ModelResult::id);
    Ok(results)
}

/// `target/verify-logs/<checker>/<file>--<test>.log`.
fn log_path(root: &Path, checker: Checker, file: &str, test: &str) -> PathBuf {
    let test = test.replace("::", "--");
    root.join("target")
        .join("verify-logs")
        .join(checker.name())
        .join(format!("{file}--{test}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_line_exhaustive() {
        let line = "REFWATCH-MODEL checker=loom name=two_try_inc_race_last_dec_refs bound=none iterations=5402 seconds=0.81";
        assert_eq!(
            parse_model_line(line),
            Some(ModelLine {
                checker: "loom".into(),
                name: "two_try_inc_race_last_dec_refs".into(),
                bound: Bound::Exhaustive,
                iterations: 5402,
                seconds: 0.81,
            })
        );
    }

    #[test]
    fn model_line_bounded_after_libtest_prefix() {
        let line = "test three_try ... REFWATCH-MODEL checker=loom name=three_try bound=4 iterations=10 seconds=15.000";
        let parsed = parse_model_line(line).unwrap();
        assert_eq!(parsed.bound, Bound::Preemptions(4));
        assert_eq!(parsed.iterations, 10);
    }

    #[test]
    fn model_line_rejects_garbage() {
        assert_eq!(parse_model_line("test foo ... ok"), None);
        assert_eq!(
            parse_model_line("REFWATCH-MODEL checker=loom name=x bound=none seconds=1"),
            None,
            "iterations missing"
        );
        assert_eq!(
            parse_model_line(
                "REFWATCH-MODEL checker=loom name=x bound=three iterations=1 seconds=1"
            ),
            None
        );
    }

    #[test]
    fn weakest_of_several_lines() {
        let line = |bound| ModelLine {
            checker: "loom".into(),
            name: "x".into(),
            bound,
            iterations: 1,
            seconds: 0.0,
        };
        assert_eq!(weakest_bound(&[]), None);
        assert_eq!(
            weakest_bound(&[line(Bound::Exhaustive)]),
            Some(Bound::Exhaustive)
        );
        assert_eq!(
            weakest_bound(&[line(Bound::Exhaustive), line(Bound::Preemptions(3))]),
            Some(Bound::Preemptions(3))
        );
    }
}
