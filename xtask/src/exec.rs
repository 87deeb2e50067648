//! Runs a child process with its output captured, optionally under a time limit.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// How many of the last output lines a failure report shows.
pub const TAIL_LINES: usize = 40;

/// What a finished (or killed) child left behind.
#[derive(Debug)]
pub struct Captured {
    /// The exit status; `None` when the time limit ran out and the child was killed.
    pub status: Option<ExitStatus>,
    /// Every line the child wrote to stdout.
    pub stdout: Vec<String>,
    /// The last [`TAIL_LINES`] lines of stdout and stderr, in the order they arrived.
    pub tail: Vec<String>,
    /// The last [`TAIL_LINES`] lines of stderr alone.
    pub stderr_tail: Vec<String>,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
}

impl Captured {
    /// Exited with status zero.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Killed by the time limit.
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// The tail as one string, for error messages.
    pub fn tail_text(&self) -> String {
        self.tail.join("\n")
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

/// Runs `cmd` to completion (stdin closed, stdout and stderr captured). With `limit`, the child
/// is killed once it has run that long. With `echo_stderr`, the child's stderr is also copied
/// to ours as it arrives (cargo's "Compiling ..." progress).
pub fn run(mut cmd: Command, limit: Option<Duration>, echo_stderr: bool) -> io::Result<Captured> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let deadline = limit.map(|limit| start + limit);
    let mut child = cmd.spawn()?;

    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        forward(out, Stream::Out, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward(err, Stream::Err, tx);
    }

    let mut stdout = Vec::new();
    let mut tail = VecDeque::with_capacity(TAIL_LINES + 1);
    let mut stderr_tail = VecDeque::with_capacity(TAIL_LINES + 1);
    let mut keep = |stream: Stream, line: String| {
        push_bounded(&mut tail, line.clone());
        match stream {
            Stream::Out => stdout.push(line),
            Stream::Err => {
                if echo_stderr {
                    eprintln!("{line}");
                }
                push_bounded(&mut stderr_tail, line);
            }
        }
    };

    // Read until both pipes close or time runs out.
    let mut expired = false;
    loop {
        let next = match deadline {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(deadline) => rx.recv_timeout(deadline.saturating_duration_since(Instant::now())),
        };
        match next {
            Ok((stream, line)) => keep(stream, line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                expired = true;
                break;
            }
        }
    }

    // The pipes can close before the process exits; keep honouring the deadline.
    let status = loop {
        if expired {
            break None;
        }
        match child.try_wait()? {
            Some(status) => break Some(status),
            None if deadline.is_some_and(|d| Instant::now() >= d) => expired = true,
            None => thread::sleep(Duration::from_millis(10)),
        }
    };
    if status.is_none() {
        // Already exited in the meantime is fine: kill only fails then.
        let _ = child.kill();
        child.wait()?;
        // Whatever was still buffered in the pipes; bounded in case a grandchild holds them.
        while let Ok((stream, line)) = rx.recv_timeout(Duration::from_secs(1)) {
            keep(stream, line);
        }
    }

    Ok(Captured {
        status,
        stdout,
        tail: tail.into(),
        stderr_tail: stderr_tail.into(),
        elapsed: start.elapsed(),
    })
}

fn push_bounded(lines: &mut VecDeque<String>, line: String) {
    lines.push_back(line);
    if lines.len() > TAIL_LINES {
        lines.pop_front();
    }
}

/// Sends each line of `pipe` on `tx` from a thread of its own, so that neither pipe can fill up
/// and block the child while we read the other.
fn forward(pipe: impl Read + Send + 'static, stream: Stream, tx: Sender<(Stream, String)>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    if tx.send((stream, line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn captures_stdout_and_tail() {
        let out = run(sh("echo a; echo b >&2; echo c; exit 3"), None, false).unwrap();
        assert_eq!(out.stdout, ["a", "c"]);
        assert_eq!(out.tail.len(), 3);
        assert_eq!(out.stderr_tail, ["b"]);
        assert_eq!(out.status.and_then(|s| s.code()), Some(3));
        assert!(!out.success() && !out.timed_out());
    }

    #[test]
    fn kills_at_the_limit() {
        let limit = Duration::from_millis(200);
        let out = run(sh("echo started; exec sleep 30"), Some(limit), false).unwrap();
        assert!(out.timed_out());
        assert_eq!(out.stdout, ["started"]);
        assert!(out.elapsed < Duration::from_secs(10));
    }
}
