//! The private network namespace: entering it, its sysctls, and the `ip` and `nft` commands
//! that configure it. Nothing here touches the namespace the process started in, except
//! [`enter_private_netns`] leaving it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Moves the calling process into a new, private network namespace. Child processes (`ip`,
/// `nft`) inherit it.
///
/// Call it while the process is single-threaded (first thing in `main`): `unshare` moves only
/// the calling thread, and threads started earlier would stay behind.
pub fn enter_private_netns() -> io::Result<()> {
    // SAFETY: `unshare` takes a flag word and touches no memory of ours; it only changes the
    // calling thread's namespace membership.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(
            e.kind(),
            format!("unshare(CLONE_NEWNET) failed: {e}"),
        ))
    }
}

/// Writes `value` to the sysctl file `path` (under `/proc/sys`), with the path in the error.
pub fn write_sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {value:?} to {path}: {e}")))
}

/// Reads a sysctl file, trimmed.
pub fn read_sysctl(path: &str) -> io::Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("reading {path}: {e}")))
}

/// Writes a sysctl and reads it back, failing if the value did not stick.
pub fn set_sysctl(path: &str, value: &str) -> io::Result<()> {
    write_sysctl(path, value)?;
    let now = read_sysctl(path)?;
    if now == value {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{path} reads {now:?} after writing {value:?}"
        )))
    }
}

/// The full path of `program` found on `PATH` (or in the sbin directories, which a root
/// shell has but a non-login environment may lack).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Runs `program args…` to completion, with its stderr in the error if it fails.
pub fn run(program: &Path, args: &[&str]) -> io::Result<()> {
    run_with_input(program, args, None)
}

/// Runs `program args…`, feeding it `input` on stdin.
pub fn run_with_input(program: &Path, args: &[&str], input: Option<&str>) -> io::Result<()> {
    let what = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting `{what}`: {e}")))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("feeding `{what}`: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| io::Error::new(e.kind(), format!("waiting for `{what}`: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
