//! The two model checkers, and building and running `refwatch-models` test binaries under one.
//!
//! Only the child `cargo` gets `RUSTFLAGS="--cfg loom"` (or shuttle); xtask itself is built
//! normally. Test binaries are run directly rather than through `cargo test`, so that each
//! model's time is its own and a time limit kills the model itself.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::environment;
use crate::exec::{self, Logged};
use crate::Result;

/// The package whose tests are the models.
const MODELS_PACKAGE: &str = "refwatch-models";
/// Where that package lives, relative to a workspace root.
pub const MODELS_DIR: &str = "models";

/// A model checker; a model's test file name starts with [`Checker::file_prefix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checker {
    Loom,
    Shuttle,
}

impl Checker {
    pub const ALL: [Checker; 2] = [Checker::Loom, Checker::Shuttle];

    pub fn name(self) -> &'static str {
        match self {
            Checker::Loom => "loom",
            Checker::Shuttle => "shuttle",
        }
    }

    /// `loom_` or `shuttle_`: the prefix of this checker's files in `models/tests/`.
    pub fn file_prefix(self) -> &'static str {
        match self {
            Checker::Loom => "loom_",
            Checker::Shuttle => "shuttle_",
        }
    }

    /// The checker of a test file (`loom_refs` → loom), by its prefix.
    pub fn of_test_file(file: &str) -> Option<Checker> {
        Checker::ALL
            .into_iter()
            .find(|c| file.starts_with(c.file_prefix()))
    }

    /// The command that reruns one model of the working tree by hand.
    pub fn rerun_command(self, file: &str, test: &str) -> String {
        format!(
            "RUSTFLAGS=\"--cfg {self}\" CARGO_TARGET_DIR=target/{self} cargo test -p {MODELS_PACKAGE} \
             --release --test {file} -- --exact {test} --nocapture"
        )
    }

    /// `RUSTFLAGS` for the child cargo: the caller's, plus this checker's cfg.
    fn rustflags(self) -> OsString {
        let mut flags = std::env::var_os("RUSTFLAGS").unwrap_or_default();
        if !flags.is_empty() {
            flags.push(" ");
        }
        flags.push("--cfg ");
        flags.push(self.name());
        flags
    }
}

impl fmt::Display for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a build is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The unmutated models, in `target/<checker>`.
    Baseline,
    /// A mutant, in the scratch copy's shared target directory.
    Mutant,
}

/// Model test binaries of one workspace, built for one checker.
#[derive(Debug)]
pub struct Build {
    /// The workspace root it was built from (a panic location may be relative to it).
    pub workspace: PathBuf,
    models_dir: PathBuf,
    /// Test file name (`loom_refs`) → its executable.
    binaries: BTreeMap<String, PathBuf>,
}

impl Build {
    /// Builds the test targets `files` of `refwatch-models` in `workspace` with `--release`,
    /// `--cfg <checker>` and `target_dir`, without running them. For the baselines
    /// ([`Purpose::Baseline`]) cargo's progress goes to stderr as it happens; either way a
    /// failure carries the end of cargo's output. Mutants ([`Purpose::Mutant`]) build
    /// incrementally: each patch changes a function or two of a crate the previous mutant
    /// already compiled, and rustc's incremental cache cuts such a rebuild from about 25 s to
    /// 8 s on two cores (the binaries may run a little slower, which only the depth search
    /// notices).
    pub fn compile(
        checker: Checker,
        workspace: &Path,
        target_dir: &Path,
        files: &[String],
        purpose: Purpose,
    ) -> Result<Build> {
        let echo = purpose == Purpose::Baseline;
        let mut cmd = Command::new(cargo());
        cmd.current_dir(workspace)
            .arg("test")
            .arg("--manifest-path")
            .arg(workspace.join("Cargo.toml"))
            .args(["--package", MODELS_PACKAGE, "--release", "--no-run"])
            .arg("--message-format=json-render-diagnostics")
            .env("RUSTFLAGS", checker.rustflags())
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("CARGO_TARGET_DIR", target_dir);
        if purpose == Purpose::Mutant {
            // No debug info either: verdicts read panic locations, which need none, and the
            // line tables cost a mutant build about a second of codegen and linking.
            cmd.env("CARGO_PROFILE_RELEASE_INCREMENTAL", "true")
                .env("CARGO_PROFILE_RELEASE_DEBUG", "false");
        }
        for file in files {
            cmd.args(["--test", file]);
        }
        // stdout carries cargo's JSON messages; the rendered diagnostics go to stderr.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if echo {
                Stdio::inherit()
            } else {
                Stdio::piped()
            });
        let out = cmd
            .output()
            .map_err(|e| format!("running {}: {e}", cargo().to_string_lossy()))?;
        if !out.status.success() {
            let stderr: Vec<String> = lines(&out.stderr);
            let detail = if echo {
                "see cargo's messages above".to_string()
            } else {
                exec::tail(&stderr).join("\n")
            };
            return Err(format!(
                "building the {checker} models failed (cargo test --no-run):\n{detail}"
            )
            .into());
        }
        let binaries = test_executables(&lines(&out.stdout));
        if let Some(missing) = files.iter().find(|f| !binaries.contains_key(*f)) {
            return Err(format!("cargo built no test binary for `{missing}`").into());
        }
        Ok(Build {
            workspace: workspace.to_path_buf(),
            models_dir: workspace.join(MODELS_DIR),
            binaries,
        })
    }

    /// The tests of `file`, `#[ignore]`d ones apart.
    pub fn list(&self, file: &str) -> Result<TestList> {
        let all = self.list_with(file, &[])?;
        let ignored = self.list_with(file, &["--ignored"])?;
        let run = all.into_iter().filter(|t| !ignored.contains(t)).collect();
        Ok(TestList { run, ignored })
    }

    fn list_with(&self, file: &str, extra: &[&str]) -> Result<Vec<String>> {
        let out = self
            .command(file)?
            .arg("--list")
            .args(extra)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!("`{file} --list` failed:\n{}", stderr.trim_end()).into());
        }
        Ok(parse_test_list(&lines(&out.stdout)))
    }

    /// Runs exactly the test `test` of `file`, alone and uncaptured by libtest, its output
    /// going to `log`, with `env` added to a scrubbed environment (see [`environment`]).
    /// Backtraces are off so that a failure's tail shows the panic, not the stack; the report
    /// gives the command that reruns the model by hand.
    pub fn run(
        &self,
        file: &str,
        test: &str,
        limit: Duration,
        log: &Path,
        env: &[(&str, String)],
    ) -> Result<Logged> {
        let mut cmd = self.command(file)?;
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("RUST_BACKTRACE", "0");
        for (key, value) in env {
            cmd.env(key, value);
        }
        exec::run_logged(cmd, log, limit).map_err(|e| format!("running {file}::{test}: {e}").into())
    }

    /// The test binary of `file`, started the way `cargo test` starts it.
    fn command(&self, file: &str) -> Result<Command> {
        let exe = self
            .binaries
            .get(file)
            .ok_or_else(|| format!("no test binary was built for `{file}`"))?;
        let mut cmd = Command::new(exe);
        environment::scrub(&mut cmd);
        cmd.current_dir(&self.models_dir)
            .env("CARGO_MANIFEST_DIR", &self.models_dir);
        Ok(cmd)
    }
}

/// The tests of one test binary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TestList {
    /// The tests that run by default.
    pub run: Vec<String>,
    /// The `#[ignore]`d ones: a model that is ignored checks nothing.
    pub ignored: Vec<String>,
}

impl TestList {
    pub fn contains(&self, test: &str) -> bool {
        self.run.iter().any(|t| t == test)
    }

    pub fn is_ignored(&self, test: &str) -> bool {
        self.ignored.iter().any(|t| t == test)
    }
}

/// The cargo that runs us (`$CARGO` under `cargo run`), else `cargo` from `PATH`.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Output bytes as lines (invalid UTF-8 replaced).
fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Test target name → executable, from cargo's `--message-format=json` lines.
fn test_executables(lines: &[String]) -> BTreeMap<String, PathBuf> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["profile"]["test"] == true)
        .filter_map(|msg| {
            let name = msg["target"]["name"].as_str()?;
            let exe = msg["executable"].as_str()?;
            Some((name.to_string(), PathBuf::from(exe)))
        })
        .collect()
}

/// Test names from the output of a libtest binary's `--list` (`name: test` lines).
pub fn parse_test_list(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn test_list() {
        let out = lines(
            "two_try_inc_race_last_dec_refs: test\n\
             nested::try_inc_never_sees_destroyed_sticky: test\n\
             some_bench: benchmark\n\
             \n\
             2 tests, 1 benchmark\n",
        );
        assert_eq!(
            parse_test_list(&out),
            [
                "two_try_inc_race_last_dec_refs",
                "nested::try_inc_never_sees_destroyed_sticky"
            ]
        );
        assert!(parse_test_list(&lines("0 tests, 0 benchmarks")).is_empty());
    }

    #[test]
    fn checker_of_file() {
        assert_eq!(Checker::of_test_file("loom_refs"), Some(Checker::Loom));
        assert_eq!(
            Checker::of_test_file("shuttle_leak"),
            Some(Checker::Shuttle)
        );
        assert_eq!(Checker::of_test_file("refs_loom"), None);
    }

    #[test]
    fn executables_from_cargo_json() {
        let out = lines(concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"refwatch","kind":["lib"]},"profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"loom_refs","kind":["test"]},"profile":{"test":true},"executable":"/t/loom_refs-abc"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        ));
        let exes = test_executables(&out);
        assert_eq!(exes.len(), 1);
        assert_eq!(exes["loom_refs"], PathBuf::from("/t/loom_refs-abc"));
    }
}
