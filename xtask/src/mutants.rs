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

use crate::checker::{Build, Checker};
use crate::cli::Options;
use crate::Result;

/// The `Mutant:` / `Model:` / `Why:` lines before a patch's diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    /// Every model that must fail on the mutant, in the order written (at least one).
    pub models: Vec<ModelRef>,
    pub why: Option<String>,
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

/// Parses the header of a mutant patch: everything before its first `diff --git` line.
pub fn parse_header(text: &str) -> Result<Header, String> {
    let (mut name, mut models, mut why) = (None, Vec::new(), None);
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
    Ok(Header { name, models, why })
}

/// What happened to one mutant.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its model failed: the bug was caught.
    Killed,
    /// Its model passed: the bug went unnoticed.
    Survived,
    /// Its model ran out of time; counted as survived.
    TimedOut,
    /// The patch did not apply, the mutant did not build, or the model does not exist.
    Error(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Killed => "killed",
            Outcome::Survived => "survived",
            Outcome::TimedOut => "timeout",
            Outcome::Error(_) => "error",
        }
    }
}

/// The verdict on one mutant.
#[derive(Debug)]
pub struct MutantResult {
    pub name: String,
    /// `file::test`, or the patch's file name when its header did not parse.
    pub model: String,
    pub outcome: Outcome,
    pub seconds: f64,
    /// The output of its model run, when the model ran.
    pub log: Option<PathBuf>,
}

/// Applies and checks every mutant that `options` selects, in name order.
pub fn run_all(root: &Path, options: &Options) -> Result<Vec<MutantResult>> {
    let patches = patches(root)?;
    if patches.is_empty() {
        eprintln!("verify: mutants: no models/mutants/*.patch");
        return Ok(Vec::new());
    }
    let mut scratch = Scratch::new(root);
    let mut results = Vec::new();
    for patch in patches {
        let stem = patch
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let header = fs::read_to_string(&patch)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_header(&text));
        let header = match header {
            Ok(header) => header,
            Err(e) => {
                if options.selects(&[&stem]) {
                    eprintln!("verify: mutant {stem}: ERROR: {}: {e}", patch.display());
                    results.push(MutantResult {
                        name: stem,
                        model: "?".into(),
                        outcome: Outcome::Error(format!("bad header: {e}")),
                        seconds: 0.0,
                        log: None,
                    });
                }
                continue;
            }
        };
        for model in &header.models {
            if !options.selects(&[&header.name, &model.model()]) {
                continue;
            }
            eprint!("verify: mutant {} ({}) ... ", header.name, model.model());
            let start = std::time::Instant::now();
            let outcome = scratch.check(&header.name, model, &patch, options)?;
            let seconds = start.elapsed().as_secs_f64();
            match &outcome {
                Outcome::Error(e) => {
                    let first = e.lines().next().unwrap_or_default().trim_end_matches(':');
                    eprintln!("ERROR ({seconds:.1} s): {first}");
                }
                other => eprintln!("{} ({seconds:.1} s)", other.label()),
            }
            let ran = !matches!(outcome, Outcome::Error(_));
            results.push(MutantResult {
                model: model.model(),
                log: ran.then(|| scratch.log_path(&header.name, model)),
                name: header.name.clone(),
                outcome,
                seconds,
            });
        }
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

    /// Resyncs the copy, applies `patch`, builds the model's test file and runs the model.
    /// `Err` only for failures of the harness itself (a missing `git`, an unwritable disk).
    fn check(
        &mut self,
        name: &str,
        model: &ModelRef,
        patch: &Path,
        options: &Options,
    ) -> Result<Outcome> {
        self.sync()?;
        if let Err(e) = self.apply(patch)? {
            return Ok(Outcome::Error(format!("patch does not apply:\n{e}")));
        }
        let checker = Checker::of_test_file(&model.file).expect("checked by parse_header");
        let target_dir = self.base.join(format!("target-{checker}"));
        let files = [model.file.clone()];
        let build = match Build::compile(checker, &self.dir, &target_dir, &files, false) {
            Ok(build) => build,
            Err(e) => return Ok(Outcome::Error(format!("mutant does not build: {e}"))),
        };
        if !build.list(&model.file)?.contains(&model.test) {
            return Ok(Outcome::Error(format!(
                "no test `{}` in models/tests/{}.rs",
                model.test, model.file
            )));
        }
        let log = self.log_path(name, model);
        let run = build.run(&model.file, &model.test, options.timeout, &log)?;
        Ok(if run.timed_out() {
            Outcome::TimedOut
        } else if run.success() {
            Outcome::Survived
        } else {
            Outcome::Killed
        })
    }

    /// `target/verify-logs/mutants/<name>--<file>.log`: the output of one model run on the mutant.
    fn log_path(&self, name: &str, model: &ModelRef) -> PathBuf {
        let logs = self
            .source
            .join("target")
            .join("verify-logs")
            .join("mutants");
        logs.join(format!("{name}--{}.log", model.file))
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
    fn header_stops_at_the_diff() {
        let text = format!("{PATCH}+Mutant: not_me\n");
        assert_eq!(parse_header(&text).unwrap().name, "seed_try_inc_leak");
    }
}
