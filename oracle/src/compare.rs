//! Comparing what the kernel and refwatch say about one packet: the four fields, the
//! tolerance on timeouts, and the pattern key that groups disagreements.

use std::fmt;

/// A connection as one side reports it after a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnView {
    /// Linux's state name: `SYN_SENT`, … for TCP; `UNREPLIED`/`REPLIED` for UDP and ICMP.
    pub state: String,
    /// Whether the connection's original direction starts at the server (`R`).
    pub from_server: bool,
    /// Whether the connection is assured.
    pub assured: bool,
    /// Seconds until it expires.
    pub timeout: u64,
}

/// What one side did with a packet and what it holds afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Accepted (the kernel forwarded it) or invalid (the kernel dropped it).
    pub accepted: bool,
    /// The packet's connection after it, if any.
    pub conn: Option<ConnView>,
    /// For an accepted packet of an existing connection: whether it refreshed the
    /// connection's timeout (`false`: Linux's "ignored" packets). `None` when unknown.
    pub refreshed: Option<bool>,
}

impl Observation {
    /// The state as compared: the state name, `@R` when the server opened the connection,
    /// `NONE` when there is no connection.
    pub fn state_value(&self) -> String {
        state_value(self.conn.as_ref())
    }
}

/// [`Observation::state_value`] of a connection view.
pub fn state_value(conn: Option<&ConnView>) -> String {
    match conn {
        None => "NONE".into(),
        Some(c) if c.from_server => format!("{}@R", c.state),
        Some(c) => c.state.clone(),
    }
}

/// The compared fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// Connection state (or its absence).
    State,
    /// Accepted or invalid.
    Verdict,
    /// The assured flag (compared when both sides have a connection).
    Assured,
    /// The timeout (compared when both sides have a connection).
    Timeout,
    /// Whether an accepted packet refreshed the timeout or was ignored (compared when both
    /// sides know).
    Refresh,
}

impl Field {
    /// All fields, in report order.
    pub const ALL: [Field; 5] = [
        Field::State,
        Field::Verdict,
        Field::Assured,
        Field::Timeout,
        Field::Refresh,
    ];

    /// The field's name in keys and reports.
    pub fn name(self) -> &'static str {
        match self {
            Field::State => "state",
            Field::Verdict => "verdict",
            Field::Assured => "assured",
            Field::Timeout => "timeout",
            Field::Refresh => "refresh",
        }
    }

    /// Index into per-field arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The kernel's timeouts it may show, for naming a reading: a kernel reading `r` is shown as
/// the nearest of these within 2 seconds above it (`299` reads as `300`).
pub const KNOWN_TIMEOUTS: [u64; 7] = [10, 30, 60, 120, 180, 300, 432_000];

/// A kernel timeout reading as it appears in pattern keys.
pub fn kernel_timeout_name(r: u64) -> u64 {
    KNOWN_TIMEOUTS
        .iter()
        .copied()
        .find(|&k| k >= r && k - r <= 2)
        .unwrap_or(r)
}

/// Whether a kernel reading `r` matches refwatch's timeout `t`: `t - 2 <= r <= t` (the kernel
/// rounds down and time passes between the packet and the read).
pub fn timeout_matches(kernel: u64, refwatch: u64) -> bool {
    kernel <= refwatch && refwatch - kernel <= 2
}

/// One field on which the sides disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The field.
    pub field: Field,
    /// The kernel's value.
    pub kernel: String,
    /// refwatch's value.
    pub refwatch: String,
}

/// The outcome of comparing one packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Which fields were compared (assured and timeout only when both have a connection,
    /// refresh only when both know).
    pub compared: [bool; 5],
    /// The disagreements.
    pub mismatches: Vec<Mismatch>,
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn verdict(accepted: bool) -> String {
    if accepted { "accepted" } else { "invalid" }.into()
}

/// Compares the kernel's observation with refwatch's.
pub fn compare(kernel: &Observation, refwatch: &Observation) -> Comparison {
    let mut c = Comparison::default();
    let mut check = |field: Field, equal: bool, k: String, r: String| {
        c.compared[field.index()] = true;
        if !equal {
            c.mismatches.push(Mismatch {
                field,
                kernel: k,
                refwatch: r,
            });
        }
    };
    let (ks, rs) = (kernel.state_value(), refwatch.state_value());
    check(Field::State, ks == rs, ks, rs);
    check(
        Field::Verdict,
        kernel.accepted == refwatch.accepted,
        verdict(kernel.accepted),
        verdict(refwatch.accepted),
    );
    if let (Some(k), Some(r)) = (&kernel.conn, &refwatch.conn) {
        check(
            Field::Assured,
            k.assured == r.assured,
            yes_no(k.assured),
            yes_no(r.assured),
        );
        check(
            Field::Timeout,
            timeout_matches(k.timeout, r.timeout),
            kernel_timeout_name(k.timeout).to_string(),
            r.timeout.to_string(),
        );
    }
    if let (Some(k), Some(r)) = (kernel.refreshed, refwatch.refreshed) {
        let name = |b: bool| if b { "refreshed" } else { "ignored" }.to_string();
        check(Field::Refresh, k == r, name(k), name(r));
    }
    c
}

/// What groups disagreements: the field, the packet (protocol, sender, flag class), the
/// kernel's state before the packet, and both values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PatternKey {
    /// `state`, `verdict`, `assured` or `timeout`.
    pub field: String,
    /// `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// `O` or `R`.
    pub dir: String,
    /// The flag class ([`crate::notation::Step::class`]).
    pub flags: String,
    /// The kernel's state of the packet's flow before it.
    pub before: String,
    /// The kernel's value.
    pub kernel: String,
    /// refwatch's value.
    pub refwatch: String,
}

impl PatternKey {
    /// The components as `(name, value)` pairs, in key order.
    pub fn components(&self) -> [(&'static str, &str); 7] {
        [
            ("field", &self.field),
            ("proto", &self.proto),
            ("dir", &self.dir),
            ("flags", &self.flags),
            ("before", &self.before),
            ("kernel", &self.kernel),
            ("refwatch", &self.refwatch),
        ]
    }
}

impl fmt::Display for PatternKey {
    /// `field=state proto=tcp dir=O flags=FA before=ESTABLISHED kernel=FIN_WAIT refwatch=…`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .components()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        f.write_str(&parts.join(" "))
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    fn obs(accepted: bool, conn: Option<(&str, bool, u64)>) -> Observation {
        Observation {
            accepted,
            conn: conn.map(|(s, a, t)| ConnView {
                state: s.into(),
                from_server: false,
                assured: a,
                timeout: t,
            }),
            refreshed: None,
        }
    }

    #[test]
    fn tolerance() {
        assert!(timeout_matches(119, 120));
        assert!(timeout_matches(118, 120));
        assert!(timeout_matches(120, 120));
        assert!(!timeout_matches(117, 120));
        assert!(!timeout_matches(121, 120));
        assert_eq!(kernel_timeout_name(299), 300);
        assert_eq!(kernel_timeout_name(431_999), 432_000);
        assert_eq!(kernel_timeout_name(25), 25);
    }

    #[test]
    fn fields() {
        let k = obs(true, Some(("ESTABLISHED", true, 299)));
        let r = obs(true, Some(("ESTABLISHED", true, 432_000)));
        let c = compare(&k, &r);
        assert_eq!(c.compared, [true, true, true, true, false]);
        assert_eq!(c.mismatches.len(), 1);
        assert_eq!(c.mismatches[0].field, Field::Timeout);
        assert_eq!(c.mismatches[0].kernel, "300");

        let c = compare(
            &obs(false, None),
            &obs(true, Some(("SYN_SENT", false, 120))),
        );
        assert_eq!(c.compared, [true, true, false, false, false]);
        let fields: Vec<Field> = c.mismatches.iter().map(|m| m.field).collect();
        assert_eq!(fields, [Field::State, Field::Verdict]);
        assert_eq!(c.mismatches[0].kernel, "NONE");

        let c = compare(&obs(true, None), &obs(true, None));
        assert!(c.mismatches.is_empty());

        let mut k = obs(true, Some(("ESTABLISHED", true, 432_000)));
        let mut r = k.clone();
        k.refreshed = Some(false);
        r.refreshed = Some(true);
        let c = compare(&k, &r);
        assert!(c.compared[Field::Refresh.index()]);
        assert_eq!(c.mismatches[0].kernel, "ignored");
    }

    #[test]
    fn key_text() {
        let k = PatternKey {
            field: "state".into(),
            proto: "tcp".into(),
            dir: "O".into(),
            flags: "FA".into(),
            before: "ESTABLISHED".into(),
            kernel: "FIN_WAIT".into(),
            refwatch: "CLOSE_WAIT".into(),
        };
        assert_eq!(
            k.to_string(),
            "field=state proto=tcp dir=O flags=FA before=ESTABLISHED kernel=FIN_WAIT refwatch=CLOSE_WAIT"
        );
        let mut from_server = obs(true, Some(("SYN_SENT", false, 120)));
        if let Some(c) = from_server.conn.as_mut() {
            c.from_server = true;
        }
        assert_eq!(from_server.state_value(), "SYN_SENT@R");
    }
}
