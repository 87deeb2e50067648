//! Runs a model under a time limit, its stdout and stderr going to one log file.
//!
//! One file for both streams keeps their lines in the order they were written (a panic
//! message stays next to libtest's `FAILED`), and leaves the full output on disk for
//! whoever reads the report.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How many of the last output lines a failure report shows.
pub const TAIL_LINES: usize = 40;

/// A finished (or killed) run and where its output went.
#[derive(Debug)]
pub struct Logged {
    /// The exit status; `None` when the time limit ran out and the child was killed.
    pub status: Option<ExitStatus>,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
    /// The child's stdout and stderr, interleaved as written.
    pub log: PathBuf,
}

impl Logged {
    /// Every line of the log (invalid UTF-8 replaced).
    pub fn lines(&self) -> io::Result<Vec<String>> {
        let bytes = fs::read(&self.log)?;
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect())
    }
}

/// The last [`TAIL_LINES`] of `lines`.
pub fn tail(lines: &[String]) -> Vec<String> {
    lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec()
}

/// Runs `cmd` with stdin closed and stdout and stderr both written to `log` (created or
/// truncated), killing it once it has run for `limit`.
pub fn run_logged(mut cmd: Command, log: &Path, limit: Duration) -> io::Result<Logged> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir)?;
    }
    let out = File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);

    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() >= limit {
            // It may have exited just now; then kill fails, and wait reaps it all the same.
            let _ = child.kill();
            child.wait()?;
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    Ok(Logged {
        status,
        elapsed: start.elapsed(),
        log: log.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    fn log(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("xtask-exec-{}-{name}.log", std::process::id()))
    }

    #[test]
    fn interleaves_both_streams_in_order() {
        let path = log("order");
        let run = run_logged(
            sh("echo a; echo b >&2; echo c; exit 3"),
            &path,
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(run.lines().unwrap(), ["a", "b", "c"]);
        assert_eq!(run.status.and_then(|s| s.code()), Some(3));
        assert!(run.status.is_some_and(|s| !s.success()));
        fs::remove_file(path).unwrap();
    }

    #[test]
    fn kills_at_the_limit() {
        let path = log("limit");
        let limit = Duration::from_millis(200);
        let run = run_logged(sh("echo started; exec sleep 30"), &path, limit).unwrap();
        assert!(run.status.is_none(), "timed out");
        assert_eq!(run.lines().unwrap(), ["started"]);
        assert!(run.elapsed < Duration::from_secs(10));
        fs::remove_file(path).unwrap();
    }

    #[test]
    fn tail_keeps_the_end() {
        let lines: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let end = tail(&lines);
        assert_eq!(end.len(), TAIL_LINES);
        assert_eq!(end.last().map(String::as_str), Some("99"));
        assert_eq!(tail(&lines[..3]).len(), 3);
    }
}
