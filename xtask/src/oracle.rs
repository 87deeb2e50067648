//! `cargo xtask oracle`: builds and runs the kernel-differential harness
//! (`cargo run -p refwatch-oracle --release --bin differential -- ARGS`) and passes its exit
//! code through.

use std::path::Path;
use std::process::{Command, ExitCode};

/// Runs the harness with `args` from the workspace `root`.
pub fn run(root: &Path, args: &[String]) -> ExitCode {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(root)
        .args([
            "run",
            "-p",
            "refwatch-oracle",
            "--release",
            "--bin",
            "differential",
            "--",
        ])
        .args(args)
        .status();
    match status {
        Ok(s) => match s.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => {
                eprintln!("xtask: the oracle was killed by a signal ({s})");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("xtask: running {}: {e}", cargo.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}
