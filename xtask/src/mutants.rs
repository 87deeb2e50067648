//! The mutants: each `models/mutants/*.patch` is applied to a scratch copy of the workspace and
//! counts as killed only if the model it names fails there.
//!
//! The scratch copy lives in `target/mutants/work` and is reused: before each mutant it is
//! resynchronised with the working tree (tracked files plus untracked, not ignored ones),
//! rewriting only the files whose content differs. All mutants of one checker share
//! `target/mutants/target-<checker>`, so a mutant rebuilds only the crates its patch touches.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use std::time::Instant;

use crate::checker::{Build, Checker, Purpose};
use crate::cli::Options;
use crate::depth::{self, Depth, Schedule};
use crate::models::{Bound, ModelResult};
use crate::verdict::{classify, Exit, Reason};
use crate::Result;

/// The `Mutant:` / `Model:` / `Why:` / `Expect:` lines before a patch's diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    /// Every model that must fail on the mutant, in the order written (at least one).
    pub models: Vec<ModelRef>,
    pub why: Option<String>,
    /// A control mutant's `Expect:` line: the reason (a label that is not a kill, such as
    /// `production panic`) its models must fail with. A control mutant checks verify itself:
    /// it is a bug no model is meant to catch, and it must not be counted as killed.
    pub expect: Option<String>,
}

/// One `Model:` line: a test in `models/tests/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRef {
    /// Test file in `models/tests/` (`loom_refs`).
    pub file: String,
    /// Test name in that file (`two_try_inc_race_last_dec_refs`).
    pub test: String,
}

impl ModelRef {
    /// `file::test`, as written in the patch.
    pub fn model(&self) -> String {
        format!("{}::{}", self.file, self.test)
    }

    fn parse(model: &str) -> Result<ModelRef, String> {
        let (file, test) = model
            .split_once("::")
            .filter(|(file, test)| !file.is_empty() && !test.is_empty())
            .ok_or_else(|| format!("`Model: {model}` is not `<test file>::<test name>`"))?;
        if Checker::of_test_file(file).is_none() {
            return Err(format!(
                "`Model: {model}`: the test file must start with `loom_` or `shuttle_`"
            ));
        }
        Ok(ModelRef {
            file: file.to_string(),
            test: test.to_string(),
        })
    }
}

/// The reasons a control mutant may expect: failures that are not kills.
const EXPECTABLE: [&str; 4] = ["production panic", "checker limit", "other panic", "passed"];

/// Parses the header of a mutant patch: everything before its first `diff --git` line.
pub fn parse_header(text: &str) -> Result<Header, String> {
    let (mut name, mut models, mut why, mut expect) = (None, Vec::new(), None, None);
    let mut has_diff = false;
    for line in text.lines() {
        if line.starts_with("diff --git ") {
            has_diff = true;
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            let value = value.trim().to_string();
            match key.trim() {
                "Mutant" => name = Some(value),
                "Model" => models.push(ModelRef::parse(&value)?),
                "Why" => why = Some(value),
                "Expect" => expect = Some(value),
                _ => {}
            }
        }
    }
    let name = name.filter(|n| !n.is_empty()).ok_or("no `Mutant:` line")?;
    if models.is_empty() {
        return Err("no `Model:` line".into());
    }
    if !has_diff {
        return Err("no `diff --git` after the header".into());
    }
    if let Some(e) = &expect {
        if !EXPECTABLE.contains(&e.as_str()) {
            return Err(format!(
                "`Expect: {e}`: a control mutant expects one of {}",
                EXPECTABLE.join(", ")
            ));
        }
    }
    Ok(Header {
        name,
        models,
        why,
        expect,
    })
}

/// What a mutant's row says, from the run's [`Reason`] and the model's baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A kill (an assertion of the model, or a checker's violation) on a model that passed
    /// unmutated in this run: the bug was caught.
    Killed,
    /// Anything else that ran: the model passed, or failed by something that is not a kill
    /// (a production panic, a checker limit, a timeout, a crash, …).
    NotKilled,
    /// A kill on a model that did not pass unmutated in this run (or did not run): it
    /// proves nothing.
    NotCounted,
    /// The patch does not apply, the mutant does not build, or the model does not exist or
    /// is ignored.
    Error,
    /// A control mutant (`Expect:`) that ended as expected: not a kill, for the reason it
    /// names, on a model that passed unmutated.
    AsExpected,
    /// A control mutant that ended otherwise.
    Unexpected,
}

impl Verdict {
    /// The `killed` column.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Killed => "yes",
            Verdict::NotKilled => "no",
            Verdict::NotCounted => "not counted",
            Verdict::Error => "error",
            Verdict::AsExpected => "no (expected)",
            Verdict::Unexpected => "unexpected",
        }
    }

    /// Whether the row holds (verify fails on any row for which this is false).
    pub fn good(self) -> bool {
        matches!(self, Verdict::Killed | Verdict::AsExpected)
    }
}

/// The verdict on one mutant and one of its models.
#[derive(Debug)]
pub struct MutantResult {
    pub name: String,
    /// `file::test`, or `?` when the patch's header did not parse.
    pub model: String,
    /// What the model's run on the mutant did (or why it did not run).
    pub reason: Reason,
    /// The unmutated model's reason in this run; `None` when it did not run.
    pub baseline: Option<Reason>,
    /// For a counted kill: how much concurrency it needs.
    pub depth: Option<Depth>,
    /// For a counted shuttle kill: which schedule failed, and whether it replays.
    pub schedule: Option<Schedule>,
    /// `Expect:` of a control mutant: the label of the reason it must end with.
    pub expect: Option<String>,
    /// The model's run and the depth search, without the build.
    pub seconds: f64,
    /// The output of its model run, when the model ran.
    pub log: Option<PathBuf>,
}

impl MutantResult {
    pub fn verdict(&self) -> Verdict {
        let baseline_passed = self.baseline.as_ref().is_some_and(Reason::is_pass);
        match (&self.reason, &self.expect) {
            (
                Reason::PatchDoesNotApply(_)
                | Reason::BuildFailure(_)
                | Reason::NoSuchModel(_)
                | Reason::Ignored,
                _,
            ) => Verdict::Error,
            (r, Some(expect)) if !r.is_kill() && r.label() == expect && baseline_passed => {
                Verdict::AsExpected
            }
            (_, Some(_)) => Verdict::Unexpected,
            (r, None) if r.is_kill() && baseline_passed => Verdict::Killed,
            (r, None) if r.is_kill() => Verdict::NotCounted,
            (_, None) => Verdict::NotKilled,
        }
    }

    /// Why a kill did not count, or a control mutant did not end as expected.
    pub fn why_not(&self) -> Option<String> {
        match self.verdict() {
            Verdict::NotCounted => Some(match &self.baseline {
                None => "the model did not run unmutated in this verify".into(),
                Some(b) => format!("the model did not pass unmutated: {b}"),
            }),
            Verdict::Unexpected => Some(format!(
                "a control mutant must end with `{}` on a model that passes unmutated; it ended \
                 with: {}{}",
                self.expect.as_deref().unwrap_or_default(),
                self.reason,
                match &self.baseline {
                    Some(b) if !b.is_pass() => format!(" (unmutated: {b})"),
                    None => " (the model did not run unmutated)".into(),
                    Some(_) => String::new(),
                }
            )),
            _ => None,
        }
    }

    fn error(name: &str, model: String, reason: Reason) -> MutantResult {
        MutantResult {
            name: name.to_string(),
            model,
            reason,
            baseline: None,
            depth: None,
            schedule: None,
            expect: None,
            seconds: 0.0,
            log: None,
        }
    }
}

/// One selected patch: its header (or why it did not parse) and the models to run it on.
#[derive(Debug)]
pub struct Planned {
    pub path: PathBuf,
    /// The file's stem, the name when the header did not parse.
    pub stem: String,
    pub header: Result<Header, String>,
    /// The header's models that `--filter` selects (all of them without one).
    pub models: Vec<ModelRef>,
}

/// The patches in `models/mutants/` that `options` selects, in name order.
pub fn plan(root: &Path, options: &Options) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for path in patches(root)? {
        let stem = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let header = fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_header(&text));
        let models = match &header {
            Ok(h) => h
                .models
                .iter()
                .filter(|m| options.selects(&[&h.name, &m.model()]))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        let selected = match &header {
            Ok(_) => !models.is_empty(),
            Err(_) => options.selects(&[&stem]),
        };
        if selected {
            planned.push(Planned {
                path,
                stem,
                header,
                models,
            });
        }
    }
    Ok(planned)
}

/// Every model (`file::test`) the planned mutants name.
pub fn named_models(plan: &[Planned]) -> BTreeSet<String> {
    plan.iter()
        .flat_map(|p| p.models.iter().map(ModelRef::model))
        .collect()
}

/// Applies and checks every planned mutant against the unmutated `baselines` of this run.
pub fn run_all(
    root: &Path,
    options: &Options,
    plan: &[Planned],
    baselines: &[ModelResult],
) -> Result<Vec<MutantResult>> {
    if plan.is_empty() {
        eprintln!("verify: mutants: no models/mutants/*.patch selected");
        return Ok(Vec::new());
    }
    let mut scratch = Scratch::new(root);
    let mut results = Vec::new();
    for planned in plan {
        let header = match &planned.header {
            Ok(header) => header,
            Err(e) => {
                eprintln!(
                    "verify: mutant {}: ERROR: {}: {e}",
                    planned.stem,
                    planned.path.display()
                );
                results.push(MutantResult::error(
                    &planned.stem,
                    "?".into(),
                    Reason::BuildFailure(format!("bad header: {e}")),
                ));
                continue;
            }
        };
        results.extend(scratch.check(
            header,
            &planned.models,
            &planned.path,
            options,
            baselines,
        )?);
    }
    Ok(results)
}

/// `models/mutants/*.patch`, sorted.
fn patches(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("models").join("mutants");
    let mut patches = Vec::new();
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "patch") && path.is_file() {
                    patches.push(path);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", dir.display()).into()),
    }
    patches.sort();
    Ok(patches)
}

/// The reused scratch copy of the workspace, and the target directories its builds share.
#[derive(Debug)]
struct Scratch {
    source: PathBuf,
    /// `target/mutants`: holds `work` and the `target-<checker>` directories.
    base: PathBuf,
    dir: PathBuf,
}

impl Scratch {
    fn new(root: &Path) -> Scratch {
        let base = root.join("target").join("mutants");
        Scratch {
            source: root.to_path_buf(),
            dir: base.join("work"),
            base,
        }
    }

    /// Resyncs the copy, applies `patch`, builds the test files of `models` (once per
    /// checker), runs each model, classifies the run and, for a counted kill, measures its
    /// depth. `Err` only for failures of the harness itself (a missing `git`, an unwritable
    /// disk).
    fn check(
        &mut self,
        header: &Header,
        models: &[ModelRef],
        patch: &Path,
        options: &Options,
        baselines: &[ModelResult],
    ) -> Result<Vec<MutantResult>> {
        let name = header.name.as_str();
        self.clear_logs(name)?;
        self.sync()?;
        if let Err(e) = self.apply(patch)? {
            eprintln!("verify: mutant {name}: ERROR: the patch does not apply");
            let first = e.lines().next().unwrap_or_default().to_string();
            return Ok(models
                .iter()
                .map(|m| {
                    MutantResult::error(name, m.model(), Reason::PatchDoesNotApply(first.clone()))
                })
                .collect());
        }
        let mut results = Vec::new();
        for checker in Checker::ALL {
            let mine: Vec<&ModelRef> = models
                .iter()
                .filter(|m| Checker::of_test_file(&m.file) == Some(checker))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut files: Vec<String> = mine.iter().map(|m| m.file.clone()).collect();
            files.sort();
            files.dedup();
            let target_dir = self.base.join(format!("target-{checker}"));
            let start = Instant::now();
            let build =
                match Build::compile(checker, &self.dir, &target_dir, &files, Purpose::Mutant) {
                    Ok(build) => build,
                    Err(e) => {
                        eprintln!("verify: mutant {name}: ERROR: does not build for {checker}");
                        let e = e.to_string();
                        results.extend(mine.iter().map(|m| {
                            MutantResult::error(name, m.model(), Reason::BuildFailure(e.clone()))
                        }));
                        continue;
                    }
                };
            eprintln!(
                "verify: mutant {name}: built for {checker} ({:.1} s)",
                start.elapsed().as_secs_f64()
            );
            for model in mine {
                results.push(self.run_one(header, model, &build, options, baselines)?);
            }
        }
        // In the order the header names the models.
        results.sort_by_key(|r| models.iter().position(|m| m.model() == r.model));
        Ok(results)
    }

    /// Runs one model on the built mutant, classifies the run and measures a kill's depth.
    fn run_one(
        &self,
        header: &Header,
        model: &ModelRef,
        build: &Build,
        options: &Options,
        baselines: &[ModelResult],
    ) -> Result<MutantResult> {
        let name = header.name.as_str();
        let id = model.model();
        eprint!("verify: mutant {name} ({id}) ... ");
        let baseline = baselines.iter().find(|b| b.id() == id);
        let list = build.list(&model.file)?;
        if !list.contains(&model.test) {
            let reason = if list.is_ignored(&model.test) {
                Reason::Ignored
            } else {
                Reason::NoSuchModel(format!(
                    "no test `{}` in models/tests/{}.rs",
                    model.test, model.file
                ))
            };
            eprintln!("ERROR: {reason}");
            return Ok(MutantResult::error(name, id, reason));
        }
        let log = self.log_path(name, model);
        let start = Instant::now();
        let run = build.run(&model.file, &model.test, options.timeout, &log, &[])?;
        let output = run.lines()?.join("\n");
        let roots = [build.workspace.as_path(), self.source.as_path()];
        let reason = classify(&output, Exit::of(run.status, options.timeout), &roots);
        let mut result = MutantResult {
            name: name.to_string(),
            model: id,
            reason,
            baseline: baseline.map(|b| b.reason.clone()),
            depth: None,
            schedule: None,
            expect: header.expect.clone(),
            seconds: 0.0,
            log: Some(log.clone()),
        };
        if result.verdict() == Verdict::Killed {
            let checker = Checker::of_test_file(&model.file).expect("checked by parse_header");
            match checker {
                Checker::Loom => {
                    let bound = baseline.and_then(|b| b.bound).unwrap_or(Bound::Exhaustive);
                    result.depth = Some(depth::loom(
                        build,
                        &model.file,
                        &model.test,
                        bound,
                        options.timeout,
                        &log,
                    )?);
                }
                Checker::Shuttle => {
                    let (d, schedule) = depth::shuttle(
                        build,
                        &model.file,
                        &model.test,
                        options.timeout,
                        &log,
                        &result.reason,
                        &output,
                    )?;
                    result.depth = Some(d);
                    result.schedule = schedule;
                }
            }
        }
        result.seconds = start.elapsed().as_secs_f64();
        let depth = result
            .depth
            .as_ref()
            .map_or_else(String::new, |d| format!(", depth {}", d.label()));
        eprintln!(
            "{}: {}{depth} ({:.1} s)",
            result.verdict().label(),
            result.reason,
            result.seconds
        );
        Ok(result)
    }

    /// Removes the logs an earlier verify left for mutant `name`, so that none is mistaken
    /// for this run's.
    fn clear_logs(&self, name: &str) -> Result<()> {
        let dir = self.logs_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let prefix = format!("{name}--");
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    fn logs_dir(&self) -> PathBuf {
        self.source
            .join("target")
            .join("verify-logs")
            .join("mutants")
    }

    /// `target/verify-logs/mutants/<name>--<file>--<test>.log`: the output of one model run on
    /// the mutant (the depth search's runs go next to it, with a suffix).
    fn log_path(&self, name: &str, model: &ModelRef) -> PathBuf {
        let test = model.test.replace("::", "--");
        self.logs_dir()
            .join(format!("{name}--{}--{test}.log", model.file))
    }

    /// Makes the scratch directory hold exactly the workspace's files, with their content.
    ///
    /// Cargo decides freshness by modification time, so times matter: a file copied into an
    /// existing scratch directory for the first time keeps its source's time, and a file that
    /// is rewritten (say, one the previous mutant patched) gets the current time, because the
    /// shared target directory last built it with the other content. A scratch directory
    /// created from nothing gets current times throughout, as the target directories may hold
    /// builds of some earlier mutant.
    fn sync(&mut self) -> Result<()> {
        let cold = !self.dir.is_dir();
        let wanted = workspace_files(&self.source)?;

        let mut present = Vec::new();
        if !cold {
            walk(&self.dir, Path::new(""), &mut present)?;
        }
        for rel in present.iter().filter(|rel| !wanted.contains(*rel)) {
            fs::remove_file(self.dir.join(rel))?;
        }

        for rel in &wanted {
            let (src, dst) = (self.source.join(rel), self.dir.join(rel));
            let Ok(content) = fs::read(&src) else {
                // Listed by git but deleted in the working tree: not part of the copy.
                if dst.exists() {
                    fs::remove_file(&dst)?;
                }
                continue;
            };
            let existed = match fs::read(&dst) {
                Ok(old) if old == content => continue,
                Ok(_) => true,
                Err(_) => false,
            };
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent)?;
            }
            if existed || dst.is_symlink() {
                // Not overwritten in place: the old file may be read-only or a symlink.
                fs::remove_file(&dst)?;
            }
            fs::copy(&src, &dst).map_err(|e| format!("copying {}: {e}", src.display()))?;
            let modified = if cold || existed {
                SystemTime::now()
            } else {
                fs::metadata(&src)?.modified()?
            };
            // A read-only handle suffices for the owner, and the copy may be read-only.
            fs::File::open(&dst)?.set_modified(modified)?;
        }
        Ok(())
    }

    /// Applies `patch` to the scratch copy with `git apply` (all or nothing). The outer
    /// `Err` is a harness failure; the inner one is git's complaint about the patch.
    fn apply(&self, patch: &Path) -> Result<Result<(), String>> {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.dir)
            .args(["apply", "--whitespace=nowarn"])
            .arg(patch)
            // The scratch directory lies inside the workspace's repository; without a ceiling,
            // git would apply the patch relative to that repository and skip every path
            // outside `target/mutants/work` — that is, all of them — and still succeed.
            .env("GIT_CEILING_DIRECTORIES", &self.base)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        let out = cmd.output().map_err(|e| format!("running git: {e}"))?;
        Ok(if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
        })
    }
}

/// The workspace's files as git sees them: tracked, plus untracked but not ignored.
fn workspace_files(root: &Path) -> Result<BTreeSet<PathBuf>> {
    let out = Command::new("git")
        .current_dir(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .map_err(|e| format!("running git ls-files: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git ls-files failed in {}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let listing = String::from_utf8(out.stdout).map_err(|_| "git ls-files: non-UTF-8 path")?;
    Ok(listing
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect())
}

/// Every file (not directory) below `dir`, relative to the walk's starting point.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let rel = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "\
Mutant: seed_try_inc_leak
Model: loom_refs::two_try_inc_race_last_dec_refs
Why: the seed's TryIncRef: only DecRef destroys, so two tries racing the last DecRef leak.

diff --git a/core/src/refs.rs b/core/src/refs.rs
--- a/core/src/refs.rs
+++ b/core/src/refs.rs
";

    #[test]
    fn header() {
        let header = parse_header(PATCH).unwrap();
        assert_eq!(header.name, "seed_try_inc_leak");
        assert_eq!(header.models.len(), 1);
        assert_eq!(header.models[0].file, "loom_refs");
        assert_eq!(header.models[0].test, "two_try_inc_race_last_dec_refs");
        assert_eq!(
            header.models[0].model(),
            "loom_refs::two_try_inc_race_last_dec_refs"
        );
        assert!(header
            .why
            .unwrap()
            .starts_with("the seed's TryIncRef: only"));
    }

    #[test]
    fn header_with_module_path_in_test_name() {
        let text = PATCH.replace("::two_try", "::refs::two_try");
        let header = parse_header(&text).unwrap();
        assert_eq!(header.models[0].file, "loom_refs");
        assert_eq!(
            header.models[0].test,
            "refs::two_try_inc_race_last_dec_refs"
        );
    }

    #[test]
    fn header_with_several_models_keeps_them_in_order() {
        let text = PATCH.replace(
            "Model: loom_refs::two_try_inc_race_last_dec_refs\n",
            "Model: loom_refs::two_try_inc_race_last_dec_refs\nModel: shuttle_refs::many_holders\n",
        );
        let header = parse_header(&text).unwrap();
        let models: Vec<_> = header.models.iter().map(ModelRef::model).collect();
        assert_eq!(
            models,
            [
                "loom_refs::two_try_inc_race_last_dec_refs",
                "shuttle_refs::many_holders"
            ]
        );
        assert!(parse_header(&text.replace("shuttle_refs::", "refs::")).is_err());
    }

    #[test]
    fn header_errors() {
        assert!(parse_header(&PATCH.replace("Mutant: seed_try_inc_leak\n", "")).is_err());
        assert!(parse_header(&PATCH.replace("Model:", "Modle:")).is_err());
        assert!(parse_header(&PATCH.replace("loom_refs::", "refs::")).is_err());
        assert!(parse_header(&PATCH.replace("loom_refs::two", "loom_refs_two")).is_err());
        assert!(parse_header(&PATCH.replace("diff --git", "dif --git")).is_err());
    }

    #[test]
    fn control_mutants_expect_a_reason_that_is_not_a_kill() {
        let text = PATCH.replace("Why:", "Expect: production panic\nWhy:");
        assert_eq!(
            parse_header(&text).unwrap().expect.as_deref(),
            Some("production panic")
        );
        assert!(parse_header(&PATCH.replace("Why:", "Expect: assertion\nWhy:")).is_err());
        assert_eq!(parse_header(PATCH).unwrap().expect, None);
    }

    /// The deliberately wrong mutant in models/mutants/ (it panics in production code, not in
    /// any model) is reported as not killed, reason "production panic", on both checkers'
    /// real output; with its `Expect:` line that is the row holding, without it a failure.
    #[test]
    fn the_control_mutant_is_not_killed_but_a_production_panic() {
        use crate::fixtures::{LOOM_CONTROL, SHUTTLE_CONTROL};

        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/mutants/control_dec_ref_always_panics.patch");
        let text = fs::read_to_string(&path).expect("the control patch is in models/mutants/");
        let header = parse_header(&text).unwrap();
        assert_eq!(header.expect.as_deref(), Some("production panic"));
        assert!(text.contains("+++ b/core/src/refs.rs") && text.contains("+        panic!("));
        let logs = [
            (LOOM_CONTROL, Exit::Signal(6)),
            (SHUTTLE_CONTROL, Exit::Code(101)),
        ];
        assert_eq!(header.models.len(), logs.len());
        for (model, (log, exit)) in header.models.iter().zip(logs) {
            let mut row = MutantResult::error(&header.name, model.model(), Reason::Ignored);
            row.reason = classify(log, exit, &[]);
            row.baseline = Some(Reason::Passed);
            row.expect = header.expect.clone();
            assert_eq!(row.reason.label(), "production panic");
            assert_eq!(row.verdict(), Verdict::AsExpected);
            row.expect = None;
            assert_eq!(row.verdict(), Verdict::NotKilled, "not a kill");
            assert!(!row.verdict().good());
        }
    }

    #[test]
    fn header_stops_at_the_diff() {
        let text = format!("{PATCH}+Mutant: not_me\n");
        assert_eq!(parse_header(&text).unwrap().name, "seed_try_inc_leak");
    }
}
