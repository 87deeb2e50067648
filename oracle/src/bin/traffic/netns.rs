//! Private network namespaces, created from a thread with `unshare(CLONE_NEWNET)` and kept
//! alive by a file descriptor only: nothing is mounted or named under `/run/netns`, so a
//! namespace (and every device and socket in it) vanishes when the process exits.

use crate::error::{failed, Context, Result};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};

/// A network namespace this process created, held open by its `/proc/thread-self/ns/net` fd.
#[derive(Debug)]
pub struct Netns {
    name: String,
    fd: OwnedFd,
}

/// Moves the calling thread into the namespace behind `fd`.
fn setns(fd: RawFd) -> io::Result<()> {
    // SAFETY: setns takes an fd and a flag, no pointers; an invalid fd only makes it fail.
    // It changes the namespace of the calling thread alone.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Netns {
    /// Creates a fresh namespace: a short-lived thread unshares its network namespace and
    /// opens a handle to it, then exits; the handle keeps the namespace alive.
    pub fn create(name: &str) -> Result<Netns> {
        let fd = thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(|| -> io::Result<OwnedFd> {
                // SAFETY: unshare takes a flag, no pointers. CLONE_NEWNET moves only this
                // thread (network namespaces are per task) into a new namespace; the thread
                // ends right after opening the handle, so no other code runs in it.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(File::open("/proc/thread-self/ns/net")?.into())
            })
            .context("spawning a thread to create a network namespace")?
            .join()
            .map_err(|_| failed("the namespace-creating thread panicked"))?
            .with_context(|| format!("unshare(CLONE_NEWNET) for namespace {name}"))?;
        Ok(Netns {
            name: name.to_string(),
            fd,
        })
    }

    /// The namespace's name in reports (not a name in the system: it has none).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread into this namespace (for threads this harness spawned).
    pub fn enter(&self) -> Result<()> {
        setns(self.fd.as_raw_fd()).with_context(|| format!("setns into namespace {}", self.name))
    }

    /// Runs `f` on a new thread inside the namespace and waits for it.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        thread::scope(|s| {
            thread::Builder::new()
                .name(format!("in-{}", self.name))
                .spawn_scoped(s, || {
                    self.enter()?;
                    f()
                })
                .context("spawning a thread")?
                .join()
                .map_err(|_| failed(format!("a thread in namespace {} panicked", self.name)))?
        })
    }

    /// Spawns a named thread inside the namespace running `f`.
    pub fn spawn<T: Send + 'static>(
        &self,
        name: String,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<JoinHandle<Result<T>>> {
        let fd = self
            .fd
            .try_clone()
            .context("duplicating a namespace handle")?;
        let ns = self.name.clone();
        thread::Builder::new()
            .name(name)
            .spawn(move || {
                setns(fd.as_raw_fd()).with_context(|| format!("setns into namespace {ns}"))?;
                drop(fd);
                f()
            })
            .context("spawning a thread")
    }

    /// Runs `program args…` inside the namespace (entered between fork and exec), feeding it
    /// `stdin`, and returns its standard output; a non-zero exit is an error carrying stderr.
    pub fn command(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let raw = self.fd.as_raw_fd();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let enter = move || setns(raw);
        // SAFETY: the hook runs in the forked child before exec. It only calls setns (a
        // raw syscall: async-signal-safe, no allocation, no locks); `raw` stays open in the
        // child because the parent holds it for the whole call.
        unsafe {
            cmd.pre_exec(enter);
        }
        let line = format!("{program} {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting `{line}` in namespace {}", self.name))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(input.as_bytes())
                .with_context(|| format!("writing the input of `{line}`"))?;
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for `{line}`"))?;
        if !out.status.success() {
            return Err(failed(format!(
                "`{line}` in namespace {} failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Reads a file (a sysctl, a `/proc/thread-self/net` table) as seen from inside.
    pub fn read(&self, path: &str) -> Result<String> {
        let path = path.to_string();
        self.run(move || {
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading {path} in namespace {}", self.name))
        })
    }

    /// Writes a sysctl (or other `/proc/sys` file) inside the namespace and reads it back.
    pub fn sysctl_set(&self, path: &str, value: &str) -> Result<()> {
        let (p, v) = (path.to_string(), value.to_string());
        self.run(move || {
            std::fs::write(&p, &v).with_context(|| format!("writing {v} to {p}"))?;
            let back = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
            if back.trim() != v {
                return Err(failed(format!(
                    "{p} reads {} after writing {v}",
                    back.trim()
                )));
            }
            Ok(())
        })
        .with_context(|| format!("sysctl in namespace {}", self.name))
    }
}
