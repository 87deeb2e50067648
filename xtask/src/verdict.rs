//! What one model run means: the [`Reason`] it passed or failed, read from its exit and its
//! output.
//!
//! A failing run counts as the model catching a bug (a *kill*) only when it fails by one of
//! the model's own assertions (a panic located in `models/tests/` or `models/src/`) or by a
//! violation the checker itself detects: loom's deadlock, causality violation, leaked object,
//! or a panic while panicking; shuttle's deadlock. Everything else is reported as what it is
//! and is not a kill: a panic in production code (`core/src/`, such as refwatch's own misuse
//! checks), the checker's branch or step limit, any other panic, a timeout, a crash, a build
//! failure, a patch that does not apply.
//!
//! The *first* panic decides. loom and shuttle keep unwinding after a failure, and the
//! unwinding often panics again (`join().unwrap()` in the model, loom's own bookkeeping, then
//! `panic in a destructor during cleanup` and an abort): those later panics are consequences,
//! and an abort that follows a first panic is part of that panic's verdict, not a crash.

use std::fmt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use crate::models::parse_model_line;

/// Where a panic happened and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// `file:line:col`, relative to the workspace root for the workspace's own files.
    pub location: String,
    /// The panic message (all its lines).
    pub message: String,
}

impl Site {
    /// `location: first line of the message`.
    pub fn summary(&self) -> String {
        let first = self.message.lines().next().unwrap_or_default();
        format!("{}: {first}", self.location)
    }
}

/// Why a run passed, failed, or did not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Exit 0 and exactly one full `REFWATCH-MODEL` line.
    Passed,
    /// Kill: a panic located in the model (`models/tests/`, `models/src/`).
    Assertion(Site),
    /// Kill: loom (`deadlock; threads = …`) or shuttle (`deadlock! …`) found every thread
    /// blocked, or a thread taking a lock it holds.
    Deadlock(Site),
    /// Kill: loom's `Causality violation` (an access not ordered after a conflicting one).
    CausalityViolation(Site),
    /// Kill: loom's `… leaked` (an `Arc`, a tracked allocation or channel messages never freed).
    Leak(Site),
    /// Kill: the run's first panic is already a panic while panicking (no earlier panic in
    /// the output to blame), as loom reports a failure inside unwinding.
    DoublePanic(Site),
    /// Not a kill: a panic located in production code (`core/src/`), such as refwatch's own
    /// misuse checks. The mutant broke an invariant the model never asserted.
    ProductionPanic(Site),
    /// Not a kill: the checker's own limit (loom's maximum number of branches or threads,
    /// shuttle's `max_steps`): the model did not finish exploring.
    CheckerLimit(Site),
    /// Not a kill: a panic anywhere else (the standard library, a checker's internals with an
    /// unknown message, the test harness).
    OtherPanic(Site),
    /// Not a kill: the run exceeded `--timeout`.
    Timeout(Duration),
    /// Not a kill: the process died without a panic (a signal, an abort, out of memory, a
    /// stack overflow) or exited non-zero without one.
    Crash(String),
    /// Not a pass: exit 0 without exactly one `REFWATCH-MODEL` line.
    Silent(String),
    /// Not a pass: the `REFWATCH-MODEL` line says exploration was cut short (`cut=`) or
    /// changed by the harness (`mode=`).
    Shortened(String),
    /// Not a pass: the test is `#[ignore]`d, so nothing checks it.
    Ignored,
    /// A mutant names a model that does not exist.
    NoSuchModel(String),
    /// A mutant's patch does not apply.
    PatchDoesNotApply(String),
    /// The models, or a mutant, do not build.
    BuildFailure(String),
}

impl Reason {
    /// The name the report and `--json` print.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Passed => "passed",
            Reason::Assertion(_) => "assertion",
            Reason::Deadlock(_) => "deadlock",
            Reason::CausalityViolation(_) => "causality violation",
            Reason::Leak(_) => "leak",
            Reason::DoublePanic(_) => "double panic",
            Reason::ProductionPanic(_) => "production panic",
            Reason::CheckerLimit(_) => "checker limit",
            Reason::OtherPanic(_) => "other panic",
            Reason::Timeout(_) => "timeout",
            Reason::Crash(_) => "crash",
            Reason::Silent(_) => "silent",
            Reason::Shortened(_) => "shortened",
            Reason::Ignored => "ignored",
            Reason::NoSuchModel(_) => "no such model",
            Reason::PatchDoesNotApply(_) => "patch does not apply",
            Reason::BuildFailure(_) => "build failure",
        }
    }

    /// What exactly happened (where it panicked and why, which signal, …), or empty.
    pub fn detail(&self) -> String {
        if let Some(site) = self.site() {
            return site.summary();
        }
        match self {
            Reason::Passed | Reason::Ignored => String::new(),
            Reason::Assertion(_)
            | Reason::Deadlock(_)
            | Reason::CausalityViolation(_)
            | Reason::Leak(_)
            | Reason::DoublePanic(_)
            | Reason::ProductionPanic(_)
            | Reason::CheckerLimit(_)
            | Reason::OtherPanic(_) => unreachable!("has a site"),
            Reason::Timeout(limit) => format!("ran longer than {} s", limit.as_secs()),
            Reason::Crash(s)
            | Reason::Silent(s)
            | Reason::Shortened(s)
            | Reason::NoSuchModel(s)
            | Reason::PatchDoesNotApply(s)
            | Reason::BuildFailure(s) => s.clone(),
        }
    }

    /// The model caught the bug: its own assertion or a violation the checker detects.
    pub fn is_kill(&self) -> bool {
        matches!(
            self,
            Reason::Assertion(_)
                | Reason::Deadlock(_)
                | Reason::CausalityViolation(_)
                | Reason::Leak(_)
                | Reason::DoublePanic(_)
        )
    }

    /// Where it panicked, for the reasons that are panics.
    pub fn site(&self) -> Option<&Site> {
        match self {
            Reason::Assertion(site)
            | Reason::Deadlock(site)
            | Reason::CausalityViolation(site)
            | Reason::Leak(site)
            | Reason::DoublePanic(site)
            | Reason::ProductionPanic(site)
            | Reason::CheckerLimit(site)
            | Reason::OtherPanic(site) => Some(site),
            _ => None,
        }
    }

    pub fn is_pass(&self) -> bool {
        *self == Reason::Passed
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.detail();
        if detail.is_empty() {
            f.write_str(self.label())
        } else {
            write!(f, "{} ({detail})", self.label())
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Killed by verify after this long.
    TimedOut(Duration),
}

impl Exit {
    /// From a child's status (`None`: killed at the time limit `limit`).
    pub fn of(status: Option<ExitStatus>, limit: Duration) -> Exit {
        let Some(status) = status else {
            return Exit::TimedOut(limit);
        };
        if let Some(code) = status.code() {
            return Exit::Code(code);
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(signal) = status.signal() {
                return Exit::Signal(signal);
            }
        }
        Exit::Code(-1)
    }
}

/// The workspace's own files, relative to its root: a panic in the model, or in production
/// code.
const MODEL_DIRS: [&str; 2] = ["models/tests/", "models/src/"];
const PRODUCTION_DIRS: [&str; 1] = ["core/src/"];

/// The checkers' crates, as their source directories are named in a panic location
/// (`…/loom-0.7.3/src/rt/execution.rs`, `…/shuttle-engine-0.1.8/src/…`).
const CHECKER_CRATES: [&str; 2] = ["loom-", "shuttle"];

/// Messages of loom's and shuttle's own verdicts, by the start of the panic message.
const DEADLOCK: [&str; 2] = ["deadlock; threads =", "deadlock!"];
const CAUSALITY: &str = "Causality violation";
/// loom's `UnsafeCell` tracking: an access opened while another thread's conflicting access
/// to the same cell is still open (a `with_mut` during a `with`: a data race on the cell, as
/// a use-after-free through an escaped reference shows up). Classed with causality
/// violations: loom itself detected that the accesses overlap.
const CELL_ACCESS: [&str; 2] = ["currently reading from cell", "currently writing to cell"];
const LEAKED: [&str; 3] = ["Arc leaked", "Allocation leaked", "Messages leaked"];
const LIMITS: [&str; 3] = [
    "Model exceeded maximum number of branches",
    "exceeded max_steps bound",
    "assertion failed: self.threads.len() < self.max()",
];
/// What the standard library says when a panic happens during unwinding.
const DOUBLE_PANIC: [&str; 3] = [
    "panic in a destructor during cleanup",
    "panicked while processing panic",
    "panic in a function that cannot unwind",
];

/// Reads a finished run: its output (stdout and stderr interleaved) and how it ended.
/// `roots` are workspace roots (the working tree, the mutants' scratch copy): a panic
/// location under one of them is read relative to it.
pub fn classify(output: &str, exit: Exit, roots: &[&Path]) -> Reason {
    if let Exit::TimedOut(limit) = exit {
        return Reason::Timeout(limit);
    }
    if let Some(site) = first_panic(output, roots) {
        return classify_panic(site);
    }
    match exit {
        Exit::Code(0) => classify_success(output),
        Exit::Code(code) => Reason::Crash(match crash_note(output) {
            Some(note) => format!("{note}, exit status {code}"),
            None => format!("exited with status {code} without a panic"),
        }),
        Exit::Signal(signal) => Reason::Crash(match crash_note(output) {
            Some(note) => format!("{note}, killed by signal {signal}"),
            None => format!("killed by signal {signal}{}", signal_name(signal)),
        }),
        Exit::TimedOut(_) => unreachable!("handled first"),
    }
}

/// A passing exit: exactly one `REFWATCH-MODEL` line, and one that claims the full space.
fn classify_success(output: &str) -> Reason {
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| parse_model_line(l).is_some())
        .collect();
    match lines.as_slice() {
        [] if output.contains("running 0 tests") => {
            Reason::Silent("the test binary ran no test (no such test?)".into())
        }
        [] => Reason::Silent("exited 0 but printed no REFWATCH-MODEL line".into()),
        [line] => match shortening_fields(line) {
            Some(fields) => Reason::Shortened(fields),
            None => Reason::Passed,
        },
        more => Reason::Silent(format!(
            "printed {} REFWATCH-MODEL lines, expected 1",
            more.len()
        )),
    }
}

/// The `cut=` and `mode=` fields of a `REFWATCH-MODEL` line, if any.
pub fn shortening_fields(line: &str) -> Option<String> {
    let fields: Vec<&str> = line
        .split_whitespace()
        .filter(|f| f.starts_with("cut=") || f.starts_with("mode="))
        .collect();
    (!fields.is_empty()).then(|| fields.join(" "))
}

fn classify_panic(site: Site) -> Reason {
    let in_dirs = |dirs: &[&str]| dirs.iter().any(|d| site.location.starts_with(d));
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| site.message.starts_with(p));
    if in_dirs(&MODEL_DIRS) {
        return Reason::Assertion(site);
    }
    if in_dirs(&PRODUCTION_DIRS) {
        return Reason::ProductionPanic(site);
    }
    if starts(&DOUBLE_PANIC) {
        return Reason::DoublePanic(site);
    }
    if !in_checker(&site.location) {
        return Reason::OtherPanic(site);
    }
    if starts(&DEADLOCK) {
        Reason::Deadlock(site)
    } else if site.message.starts_with(CAUSALITY) || starts(&CELL_ACCESS) {
        Reason::CausalityViolation(site)
    } else if starts(&LEAKED) {
        Reason::Leak(site)
    } else if starts(&LIMITS) {
        Reason::CheckerLimit(site)
    } else {
        Reason::OtherPanic(site)
    }
}

/// Whether `location` lies in loom's or shuttle's sources (a registry path).
fn in_checker(location: &str) -> bool {
    Path::new(location).components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        CHECKER_CRATES.iter().any(|k| c.starts_with(k))
            && c.rsplit('-').next().is_some_and(|v| v.contains('.'))
    })
}

/// The first panic in `output`: `thread 'name' (tid) panicked at file:line:col:` followed by
/// its message, up to a blank line, a `note:` line or the backtrace.
pub fn first_panic(output: &str, roots: &[&Path]) -> Option<Site> {
    let mut lines = output.lines();
    while let Some(line) = lines.next() {
        let Some(location) = panic_location(line) else {
            continue;
        };
        let mut message = Vec::new();
        for next in lines.by_ref() {
            if next.is_empty()
                || next.starts_with("note: run with `RUST_BACKTRACE")
                || next.starts_with("stack backtrace:")
                || panic_location(next).is_some()
            {
                break;
            }
            message.push(next);
        }
        return Some(Site {
            location: relative(location, roots),
            message: message.join("\n"),
        });
    }
    None
}

/// `file:line:col` from a panic line, which may follow other output on the same line.
fn panic_location(line: &str) -> Option<&str> {
    let at = line.find("thread '")?;
    let rest = &line[at..];
    let start = rest
        .find("' panicked at ")
        .map(|i| i + "' panicked at ".len());
    // Since Rust 1.88 the thread id follows the name: `thread 'x' (1234) panicked at`.
    let start = start.or_else(|| {
        rest.find(") panicked at ")
            .map(|i| i + ") panicked at ".len())
    })?;
    rest[start..].strip_suffix(':')
}

/// `location` relative to the first of `roots` it lies under, else as it is.
fn relative(location: &str, roots: &[&Path]) -> String {
    for root in roots {
        if let Ok(rest) = Path::new(location).strip_prefix(root) {
            return rest.to_string_lossy().into_owned();
        }
    }
    location.to_string()
}

/// What the output says about a crash without a panic.
fn crash_note(output: &str) -> Option<&'static str> {
    if output.contains("memory allocation of") && output.contains("failed") {
        Some("out of memory")
    } else if output.contains("has overflowed its stack") {
        Some("stack overflow")
    } else if output.contains("refwatch-models: harness error") {
        Some("harness error")
    } else {
        None
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        6 => " (SIGABRT: abort)",
        9 => " (SIGKILL: killed, perhaps out of memory)",
        11 => " (SIGSEGV: segmentation fault)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;

    fn site(reason: &Reason) -> &Site {
        reason.site().expect("a panic")
    }

    const ROOT: &str = "/work/wt/target/mutants/work";

    fn run(output: &str, exit: Exit) -> Reason {
        classify(output, exit, &[Path::new(ROOT)])
    }

    #[test]
    fn loom_deadlock_is_a_kill_despite_the_abort_that_follows() {
        let r = run(LOOM_DEADLOCK, Exit::Signal(6));
        assert_eq!(r.label(), "deadlock");
        assert!(r.is_kill());
        assert!(site(&r)
            .location
            .ends_with("loom-0.7.3/src/rt/execution.rs:215:13"));
        assert!(site(&r).message.starts_with("deadlock; threads"));
    }

    #[test]
    fn shuttle_deadlocks_are_kills() {
        for log in [SHUTTLE_DEADLOCK, SHUTTLE_RWLOCK_SELF_DEADLOCK] {
            let r = run(log, Exit::Code(101));
            assert_eq!(r.label(), "deadlock", "{log}");
            assert!(r.is_kill());
        }
    }

    #[test]
    fn loom_cell_access_overlaps_are_kills() {
        // From `handle_clone_without_inc_ref`: a clone that took no reference lets the last
        // holder free the payload while the clone still reads it.
        let log = "running 1 test\n\
            thread 'handle_reference_is_tracked_until_dropped_refs' (77) panicked at \
            /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/loom-0.7.3/src/rt/cell.rs:75:13:\n\
            currently reading from cell\n\
            note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        let r = run(log, Exit::Code(101));
        assert_eq!(r.label(), "causality violation", "{r:?}");
        assert!(r.is_kill());
        assert_eq!(site(&r).message, "currently reading from cell");
    }

    #[test]
    fn model_assertions_are_kills() {
        let r = run(LOOM_ASSERTION, Exit::Code(101));
        assert_eq!(
            r,
            Reason::Assertion(Site {
                location: "models/tests/loom_conntrack.rs:151:13".into(),
                message: "the expired connection came back".into(),
            })
        );
        let r = run(LOOM_ASSERT_EQ, Exit::Code(101));
        assert_eq!(r.label(), "assertion");
        assert_eq!(site(&r).message.lines().count(), 3, "{r:?}");
        assert_eq!(
            r.detail(),
            "models/tests/loom_kernfs.rs:105:5: assertion `left == right` failed: only the root is left in the tree"
        );
    }

    #[test]
    fn production_panics_are_not_kills() {
        let r = run(SHUTTLE_PRODUCTION_PANIC, Exit::Code(101));
        assert_eq!(r.label(), "production panic");
        assert!(!r.is_kill() && !r.is_pass());
        assert_eq!(site(&r).location, "core/src/refs.rs:252:18");
    }

    #[test]
    fn a_deliberately_wrong_mutant_is_a_production_panic_not_a_kill() {
        for (log, exit) in [
            (LOOM_CONTROL, Exit::Signal(6)),
            (SHUTTLE_CONTROL, Exit::Code(101)),
        ] {
            let r = run(log, exit);
            assert_eq!(r.label(), "production panic", "{log}");
            assert!(!r.is_kill());
            assert_eq!(
                r.detail(),
                "core/src/refs.rs:257:9: control mutant: Refs::dec_ref always panics"
            );
        }
    }

    #[test]
    fn the_first_panic_decides_not_the_models_unwrap_after_it() {
        let r = run(PRODUCTION_PANIC_THEN_MODEL_UNWRAP, Exit::Code(101));
        assert_eq!(r.label(), "production panic");
        assert!(!r.is_kill());
    }

    #[test]
    fn absolute_locations_under_a_root_are_relative() {
        let log = LOOM_ASSERTION.replace(
            "panicked at models/",
            &format!("panicked at {ROOT}/models/"),
        );
        assert_eq!(
            site(&run(&log, Exit::Code(101))).location,
            "models/tests/loom_conntrack.rs:151:13"
        );
        let log = SHUTTLE_PRODUCTION_PANIC
            .replace("panicked at core/", &format!("panicked at {ROOT}/core/"));
        assert_eq!(run(&log, Exit::Code(101)).label(), "production panic");
    }

    #[test]
    fn rusts_own_core_is_not_production_code() {
        let log = "thread 't' (1) panicked at /rustc/abc/library/core/src/slice/index.rs:10:5:\nindex out of bounds\n";
        assert_eq!(run(log, Exit::Code(101)).label(), "other panic");
    }

    #[test]
    fn loom_checker_violations() {
        assert_eq!(
            run(LOOM_CAUSALITY, Exit::Code(101)).label(),
            "causality violation"
        );
        assert_eq!(run(LOOM_LEAK, Exit::Code(101)).label(), "leak");
        assert!(run(LOOM_LEAK, Exit::Code(101)).is_kill());
        let r = run(LOOM_BRANCHES, Exit::Code(101));
        assert_eq!(r.label(), "checker limit");
        assert!(!r.is_kill());
    }

    #[test]
    fn checker_messages_count_only_from_the_checker() {
        // A production panic that happens to say "deadlock!" is still production code.
        let log =
            "thread 't' (1) panicked at core/src/sync.rs:9:9:\ndeadlock! detected by refwatch\n";
        assert_eq!(run(log, Exit::Code(101)).label(), "production panic");
        // A loom panic with a message we do not know is no verdict of loom's.
        let log = "thread 't' (1) panicked at /r/loom-0.7.3/src/rt/object.rs:245:18:\nobject is not branchable\n";
        assert_eq!(run(log, Exit::Code(101)).label(), "other panic");
    }

    #[test]
    fn a_lone_double_panic_is_a_kill() {
        let log = "thread 't' (1) panicked at /rustc/abc/library/core/src/panicking.rs:233:5:\npanic in a destructor during cleanup\nthread caused non-unwinding panic. aborting.\n";
        let r = run(log, Exit::Signal(6));
        assert_eq!(r.label(), "double panic");
        assert!(r.is_kill());
    }

    #[test]
    fn passes_and_not_quite_passes() {
        assert_eq!(run(PASSED, Exit::Code(0)), Reason::Passed);
        assert_eq!(run("running 0 tests\n", Exit::Code(0)).label(), "silent");
        assert_eq!(run("test x ... ok\n", Exit::Code(0)).label(), "silent");
        let twice = format!("{PASSED}{PASSED}");
        assert_eq!(run(&twice, Exit::Code(0)).label(), "silent");
        let cut = PASSED.replace("seconds=1.100", "seconds=0.001 cut=LOOM_MAX_PERMUTATIONS");
        assert_eq!(
            run(&cut, Exit::Code(0)),
            Reason::Shortened("cut=LOOM_MAX_PERMUTATIONS".into())
        );
        let seq = PASSED.replace("seconds=1.100", "seconds=1.1 mode=sequential");
        assert_eq!(run(&seq, Exit::Code(0)).label(), "shortened");
    }

    #[test]
    fn timeouts_and_crashes() {
        let limit = Duration::from_secs(300);
        assert_eq!(run(PASSED, Exit::TimedOut(limit)), Reason::Timeout(limit));
        assert_eq!(
            run("running 1 test\n", Exit::Signal(9)),
            Reason::Crash("killed by signal 9 (SIGKILL: killed, perhaps out of memory)".into())
        );
        let oom = "memory allocation of 1099511627776 bytes failed\n";
        assert_eq!(
            run(oom, Exit::Signal(6)),
            Reason::Crash("out of memory, killed by signal 6".into())
        );
        let overflow =
            "\nthread 'x' has overflowed its stack\nfatal runtime error: stack overflow\n";
        assert_eq!(run(overflow, Exit::Signal(6)).label(), "crash");
        assert_eq!(
            run("error: unrecognized option\n", Exit::Code(2)),
            Reason::Crash("exited with status 2 without a panic".into())
        );
    }

    #[test]
    fn panic_lines_with_and_without_thread_ids() {
        assert_eq!(
            panic_location("thread 'main' panicked at src/main.rs:2:5:"),
            Some("src/main.rs:2:5")
        );
        assert_eq!(
            panic_location("test x ... thread 'x' (12) panicked at a.rs:1:1:"),
            Some("a.rs:1:1")
        );
        assert_eq!(panic_location("test panicked in task '<unknown>'"), None);
    }
}
