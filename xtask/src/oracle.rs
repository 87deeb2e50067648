//! `cargo xtask oracle` and `cargo xtask traffic`: build and run one of `refwatch-oracle`'s
//! binaries (`cargo run -p refwatch-oracle --release --bin differential|traffic -- ARGS`) and
//! pass its exit code through.

use std::path::Path;
use std::process::{Command, ExitCode};

/// Runs `refwatch-oracle`'s binary `bin` with `args` from the workspace `root`.
pub fn run(root: &Path, bin: &str, args: &[String]) -> ExitCode {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(root)
        .args([
            "run",
            "-p",
            "refwatch-oracle",
            "--release",
            "--bin",
            bin,
            "--",
        ])
        .args(args)
        .status();
    match status {
        Ok(s) => match s.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            None => {
                eprintln!("xtask: {bin} was killed by a signal ({s})");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("xtask: running {}: {e}", cargo.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}
