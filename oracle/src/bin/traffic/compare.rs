//! The per-flow comparison: every flow in A's kernel conntrack table against refwatch's table,
//! and every flow refwatch tracked against the kernel's.

use crate::kernel::KernelFlow;
use refwatch::conntrack::{ConnTable, Direction, State, Tuple, UdpState};
use refwatch::time::Clock;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// One side's view of a flow, in the kernel's vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// TCP: the kernel's state word (`TIME_WAIT`); UDP: `UNREPLIED` or `REPLIED`.
    pub state: String,
    /// The assured flag.
    pub assured: bool,
    /// Seconds until the entry expires.
    pub timeout: f64,
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}timeout {:.1}s",
            self.state,
            if self.assured { "ASSURED " } else { "" },
            self.timeout
        )
    }
}

/// The outcome for one flow.
#[derive(Clone, Debug)]
pub struct FlowResult {
    /// The flow's original tuple (A→B).
    pub tuple: Tuple,
    /// What traffic it was (connection number and close), if known.
    pub label: String,
    /// The kernel's view; `None` if the kernel lists no such flow.
    pub kernel: Option<View>,
    /// The kernel's line, as read.
    pub kernel_line: Option<String>,
    /// refwatch's view; `None` if its table has no such live flow.
    pub refwatch: Option<View>,
    /// What differs (empty: the flow agrees).
    pub diffs: Vec<String>,
    /// Why a difference is tolerated (an entry expiring at the moment of reading).
    pub tolerated: Option<String>,
}

impl FlowResult {
    /// Whether the two sides agree (or differ only in a tolerated way).
    pub fn agrees(&self) -> bool {
        self.diffs.is_empty() || self.tolerated.is_some()
    }
}

/// The whole comparison.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Each flow, kernel flows first, then refwatch-only flows.
    pub flows: Vec<FlowResult>,
    /// Kernel entries that are neither TCP nor UDP, or that name no ports.
    pub other_kernel: Vec<String>,
}

impl Comparison {
    /// Flows whose sides disagree.
    pub fn disagreements(&self) -> impl Iterator<Item = &FlowResult> {
        self.flows.iter().filter(|f| !f.agrees())
    }
}

/// The kernel's state word for a refwatch state.
pub fn kernel_state_name(s: State) -> String {
    match s {
        State::Tcp(t) => t.name().to_uppercase().replace('-', "_"),
        State::Udp(UdpState::Unreplied) | State::IcmpEcho(UdpState::Unreplied) => {
            "UNREPLIED".into()
        }
        State::Udp(UdpState::Replied) | State::IcmpEcho(UdpState::Replied) => "REPLIED".into(),
    }
}

fn kernel_view(k: &KernelFlow) -> View {
    let state = match &k.state {
        Some(s) => s.clone(),
        None if k.unreplied => "UNREPLIED".into(),
        None => "REPLIED".into(),
    };
    View {
        state,
        assured: k.assured,
        timeout: k.timeout as f64,
    }
}

fn refwatch_view(table: &ConnTable, t: &Tuple) -> Option<(View, Direction)> {
    let (conn, dir) = table.lookup(t)?;
    let left = conn.deadline().duration_since(table.clock().now());
    Some((
        View {
            state: kernel_state_name(conn.state()),
            assured: conn.assured(),
            timeout: left.as_secs_f64(),
        },
        dir,
    ))
}

fn kernel_tuple(k: &KernelFlow) -> Option<Tuple> {
    let (src, dst) = k.original?;
    match k.proto.as_str() {
        "tcp" => Tuple::tcp(src, dst).ok(),
        "udp" => Tuple::udp(src, dst).ok(),
        _ => None,
    }
}

/// Compares flow by flow. `tolerance`: how far the timeouts may differ, and how close to
/// expiry a flow present on one side only may be for that to be put down to timing.
pub fn compare(
    kernel: &[KernelFlow],
    table: &ConnTable,
    created: &[Tuple],
    labels: &HashMap<Tuple, String>,
    tolerance: Duration,
) -> Comparison {
    let tol = tolerance.as_secs_f64();
    let mut out = Comparison::default();
    let mut seen = HashSet::new();
    let label = |t: &Tuple| {
        labels
            .get(t)
            .cloned()
            .unwrap_or_else(|| "unknown traffic".into())
    };
    for k in kernel {
        let Some(t) = kernel_tuple(k) else {
            out.other_kernel.push(k.line.clone());
            continue;
        };
        seen.insert(t);
        let kv = kernel_view(k);
        let mut r = FlowResult {
            tuple: t,
            label: label(&t),
            kernel: Some(kv.clone()),
            kernel_line: Some(k.line.clone()),
            refwatch: None,
            diffs: Vec::new(),
            tolerated: None,
        };
        match refwatch_view(table, &t) {
            None => {
                r.diffs
                    .push("refwatch has no live entry for this flow".into());
                if kv.timeout <= tol {
                    r.tolerated = Some(format!("the kernel's entry expires within {tol}s"));
                }
            }
            Some((rv, dir)) => {
                if dir != Direction::Original {
                    r.diffs.push(
                        "refwatch has the flow the other way round (A's tuple is its reply)".into(),
                    );
                }
                if rv.state != kv.state {
                    r.diffs
                        .push(format!("state: kernel {}, refwatch {}", kv.state, rv.state));
                }
                if rv.assured != kv.assured {
                    r.diffs.push(format!(
                        "assured: kernel {}, refwatch {}",
                        kv.assured, rv.assured
                    ));
                }
                // The kernel prints whole seconds, rounded down.
                if rv.timeout < kv.timeout - tol || rv.timeout > kv.timeout + 1.0 + tol {
                    r.diffs.push(format!(
                        "timeout: kernel {}s, refwatch {:.1}s",
                        kv.timeout, rv.timeout
                    ));
                }
                r.refwatch = Some(rv);
            }
        }
        out.flows.push(r);
    }
    for t in created {
        if !seen.insert(*t) {
            continue;
        }
        if let Some((rv, _)) = refwatch_view(table, t) {
            let tolerated =
                (rv.timeout <= tol).then(|| format!("refwatch's entry expires within {tol}s"));
            out.flows.push(FlowResult {
                tuple: *t,
                label: label(t),
                kernel: None,
                kernel_line: None,
                refwatch: Some(rv),
                diffs: vec!["the kernel lists no such flow".into()],
                tolerated,
            });
        }
    }
    out
}
