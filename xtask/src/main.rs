//! `cargo xtask verify`: runs every loom and shuttle model of `refwatch-models`, then every
//! mutant in `models/mutants/`, and prints one report.
//!
//! `cargo xtask oracle`: builds and runs `refwatch-oracle`'s `differential` binary (the
//! Linux kernel's conntrack against refwatch's, packet by packet) and passes its exit code
//! through.
//!
//! - Each model runs on its own (one test binary invocation per `#[test]`), so each gets its
//!   own verdict, time, preemption bound and interleaving count (read from the
//!   `REFWATCH-MODEL` line the model prints; see `models/src/lib.rs`).
//! - Each mutant is applied to a scratch copy of the workspace in `target/mutants/work` (never
//!   to the working tree); all mutants of one checker share a target directory, so a mutant
//!   only rebuilds what its patch touches.
//! - Every run gets a [`verdict::Reason`]. A mutant is killed only when its model fails by
//!   the model's own assertion or a checker's violation (not by a production panic, a
//!   checker limit, a timeout or a crash), and only when that model passed unmutated earlier
//!   in the same run (the baselines run first). Each kill's preemption depth is measured
//!   ([`depth`]).
//! - Variables that would shorten exploration are refused ([`environment`]); an ignored,
//!   missing or silent model is an error.
//!
//! The exit code is 0 when every model passed, every mutant was killed and (on a full run)
//! every model has a kill that needs a race; 1 otherwise; 2 for a usage error or a refused
//! environment.

mod checker;
mod cli;
mod depth;
mod environment;
mod exec;
#[cfg(test)]
mod fixtures;
mod models;
mod mutants;
mod oracle;
mod report;
mod verdict;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use checker::Checker;
use cli::{Command, Options};

/// Errors that stop `verify` itself (as opposed to a failing model or a surviving mutant).
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Verify(options)) => options,
        Ok(Command::Oracle(args)) => return oracle::run(&workspace_root(), "differential", &args),
        Ok(Command::Traffic(args)) => return oracle::run(&workspace_root(), "traffic", &args),
        Err(e) => {
            eprintln!(
                "xtask: {e}\nUsage: cargo xtask verify|oracle|traffic [OPTIONS] (see `cargo xtask --help`)"
            );
            return ExitCode::from(2);
        }
    };
    if let Err(refusal) = environment::check() {
        eprintln!("xtask: {refusal}");
        return ExitCode::from(2);
    }
    match verify(&workspace_root(), &options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory, whatever the cwd.
fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Runs what `options` selects, prints the report, and says whether everything held.
///
/// The selected mutants are planned first, so that the models they name run unmutated (their
/// baselines) before any mutant, even under `--filter` or `--only-mutants`.
fn verify(root: &Path, options: &Options) -> Result<bool> {
    let plan = if options.skip_mutants {
        Vec::new()
    } else {
        mutants::plan(root, options)?
    };
    let named = mutants::named_models(&plan);
    let mut models = Vec::new();
    if !options.only_mutants || !named.is_empty() {
        for checker in Checker::ALL {
            models.extend(models::run_all(root, checker, options, &named)?);
        }
    }
    let mutants = mutants::run_all(root, options, &plan, &models)?;
    if models.is_empty() && mutants.is_empty() {
        eprintln!("verify: warning: nothing ran (no model or mutant matched)");
    }

    let require_mutants =
        options.filter.is_none() && !options.skip_mutants && !options.only_mutants;
    let report = report::Report {
        models,
        mutants,
        require_mutants,
    };
    if options.json {
        println!("{}", report.to_json());
        eprint!("{}", report.requirements());
        eprintln!("{}", report.summary());
        eprintln!("{}", report.tally());
    } else {
        print!("{}", report.table());
        print!("{}", report.failures());
        print!("{}", report.requirements());
        println!("{}", report.summary());
        println!("{}", report.tally());
    }
    Ok(report.all_good())
}
