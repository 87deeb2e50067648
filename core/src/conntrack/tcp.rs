//! TCP tracking with Linux's semantics: `nf_conntrack_proto_tcp`'s states, transitions,
//! window checks and timeouts, rebuilt for a Rust table.
//!
//! A middlebox sees every segment but not the endpoints' minds, so the tracker follows three
//! things per connection:
//! - **the state** ([`TcpState`], Linux's names), moved by a transition table indexed by the
//!   segment's direction and its *class* (RST, SYN, SYN-ACK, FIN, ACK, none: the first of
//!   those that the flags contain);
//! - **each side's sequence space** as seen on the wire: the highest `seq + len` it sent
//!   (`end`), the highest right edge its peer allowed it (`maxend`), the largest window it
//!   advertised (`maxwin`), the highest ACK it sent (`maxack`), its window scale and flags
//!   (window scaling and SACK offered, close initiated, data unacknowledged);
//! - **the last segment** that moved the state (class, direction, `seq`, `end`, window), which
//!   resolves the ambiguous cases: a SYN-ACK answering a SYN the tracker ignored, an RST
//!   answering it, a retransmitted ACK, an RFC 5961 challenge ACK in `last-ack`.
//!
//! Every segment ends in one of three verdicts, as in Linux:
//! - **accepted**: the state and windows move and the timeout is refreshed;
//! - **ignored** ([`TcpIgnored`]): the segment is let through but nothing that matters moves
//!   and the timeout is not refreshed — the tracker may be out of sync with the endpoints
//!   (a SYN in `established`: if it is bogus the receiver answers with a RST that the tracker
//!   then sees), or the segment is an old retransmission;
//! - **invalid** ([`TcpInvalid`]): the flags make no sense, the segment is outside what the
//!   window check allows, or the transition table forbids it. A firewall drops it.
//!
//! The window check (Guido van Rooij's "Real Stateful TCP Packet Filtering", as Linux
//! applies it) asks four things of a segment from `sender` to `receiver`:
//! 1. `seq <= sender.maxend` (no data beyond what the receiver ever allowed),
//! 2. `seq + len >= sender.end - receiver.maxwin` (not older than one window),
//! 3. `ack <= receiver.end` (nothing acknowledged that was not sent),
//! 4. `ack >= receiver.end - max(66000, sender.maxwin)` (not an absurdly old ACK).
//!
//! Failing 1 or 3 is invalid; failing 2 or 4 means an old retransmission or delayed ACK, and
//! the segment is ignored (Linux ≥ 6.1). `ack` is the highest SACK edge when both sides
//! offered SACK.
//!
//! Departures from Linux are listed in `oracle/DEPARTURES.md` at the workspace root, each
//! pinned by a test and measured by `cargo xtask oracle` against the running kernel.
//!
//! Against gVisor's tracker (the seed), whose rules refwatch used to follow: retransmissions
//! of acknowledged data, a SYN retried from the same port, and an RST that is in the window but
//! not exact are no longer refused; invalid flag combinations no longer pass; the timeout
//! drops to 300 s while data is unacknowledged or after three retransmissions.

use super::packet::{TcpFlags, TcpSegment};
use super::timeouts::Timeouts;
use super::tuple::Direction;
use crate::time::Instant;
use std::fmt;
use std::time::Duration;

/// Linux's name for where a TCP connection is (`/proc/net/nf_conntrack`); picks the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    /// A SYN was seen.
    SynSent,
    /// A SYN-ACK was seen.
    SynRecv,
    /// The handshake's last ACK was seen.
    Established,
    /// A FIN was seen.
    FinWait,
    /// A FIN was seen and acknowledged.
    CloseWait,
    /// FINs were seen in both directions.
    LastAck,
    /// The last ACK was seen.
    TimeWait,
    /// A RST was seen.
    Close,
    /// Simultaneous open: a SYN was seen from each side.
    SynSent2,
}

impl TcpState {
    /// refwatch's spelling: `syn-sent`, `established`, `time-wait`, …
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "syn-sent",
            TcpState::SynRecv => "syn-recv",
            TcpState::Established => "established",
            TcpState::FinWait => "fin-wait",
            TcpState::CloseWait => "close-wait",
            TcpState::LastAck => "last-ack",
            TcpState::TimeWait => "time-wait",
            TcpState::Close => "close",
            TcpState::SynSent2 => "syn-sent2",
        }
    }

    /// The kernel's spelling in `/proc/net/nf_conntrack`: `SYN_SENT`, `ESTABLISHED`, …
    pub fn linux_name(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    /// Whether the connection is being torn down (an early-drop candidate even if assured;
    /// Linux's `tcp_can_early_drop`).
    pub fn is_closing(self) -> bool {
        matches!(
            self,
            TcpState::FinWait
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the tracker called a segment invalid. An invalid segment moves no state; the one
/// exception is Linux's: an invalid FIN or RST on an assured connection is remembered, and
/// one answering it from the other side shortens the timeout to
/// [`Timeouts::tcp_unacknowledged`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpInvalid {
    /// A flag combination no TCP sends (SYN+FIN, FIN without ACK, no flags, …).
    BadFlags,
    /// The first segment of a flow cannot open a connection: not a SYN (and not an ACK with
    /// [`TcpConfig::loose`] on).
    NotSyn,
    /// The state machine does not allow a segment of this kind here (e.g. data before the
    /// SYN-ACK, a SYN-ACK from the originator).
    Unexpected {
        /// The state the connection was in.
        state: TcpState,
    },
    /// Sequence number beyond the right edge of the receiver's window.
    SeqAboveWindow,
    /// The ACK acknowledges data that was never sent.
    AckAboveSent,
    /// A RST whose sequence number lies before data the peer already acknowledged.
    StaleRst,
}

impl fmt::Display for TcpInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpInvalid::BadFlags => f.write_str("invalid TCP flag combination"),
            TcpInvalid::NotSyn => f.write_str("the first segment of a TCP flow must be a SYN"),
            TcpInvalid::Unexpected { state } => {
                write!(f, "segment not allowed in state {state}")
            }
            TcpInvalid::SeqAboveWindow => {
                f.write_str("sequence number beyond the receiver's window")
            }
            TcpInvalid::AckAboveSent => f.write_str("the ACK acknowledges data never sent"),
            TcpInvalid::StaleRst => f.write_str("RST before data the peer acknowledged"),
        }
    }
}

impl std::error::Error for TcpInvalid {}

/// Why the tracker let a segment through without moving the connection (Linux's "ignored"
/// packets: accepted, no state change, no timeout refresh).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpIgnored {
    /// The segment may show that the tracker is out of sync with the endpoints (a SYN in
    /// `established`, a retransmitted SYN-ACK, an ACK answering a SYN in `syn-sent`): let it
    /// pass and see how the receiver answers.
    OutOfSync,
    /// Data older than one window: a retransmission of something already acknowledged.
    Retransmission,
    /// An ACK far below what was already acknowledged (an overly delayed segment).
    OldAck,
    /// More data than the receiver's window allows, but within one window of it (some TCPs
    /// overshoot); remembered so that its ACK is accepted.
    Overshoot,
    /// An RFC 5961 challenge ACK in `last-ack`, which does not acknowledge the last FIN.
    ChallengeAck,
}

impl fmt::Display for TcpIgnored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpIgnored::OutOfSync => "possibly out of sync with the endpoints",
            TcpIgnored::Retransmission => "retransmission of acknowledged data",
            TcpIgnored::OldAck => "ACK below the acknowledged window",
            TcpIgnored::Overshoot => "data past the receiver's window",
            TcpIgnored::ChallengeAck => "RFC 5961 challenge ACK",
        })
    }
}

/// Linux's per-namespace switches of the TCP tracker (`net.netfilter.nf_conntrack_tcp_*`),
/// with Linux's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Pick up connections in the middle: an ACK without a tracked connection creates one
    /// (`nf_conntrack_tcp_loose`, default on). Off, only a SYN creates a connection, so a
    /// spoofed ACK flood cannot fill the table.
    pub loose: bool,
    /// Accept segments outside the window instead of calling them invalid or ignoring them
    /// (`nf_conntrack_tcp_be_liberal`, default off); RSTs are still checked.
    pub be_liberal: bool,
    /// Identical ACK segments in a row after which the timeout drops to
    /// [`Timeouts::tcp_retrans`] (`nf_conntrack_tcp_max_retrans`, default 3).
    pub max_retrans: u8,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            loose: true,
            be_liberal: false,
            max_retrans: 3,
        }
    }
}

/// `a < b` in sequence space.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a > b` in sequence space.
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// The largest window shift (RFC 7323); larger offers are clamped to it, as Linux does.
pub const MAX_WSCALE: u8 = 14;

/// The lowest acceptable ACK lies this far (or one `maxwin`, if larger) below `end`.
const MAX_ACK_WINDOW: u32 = 66_000;

/// The class of a segment: the first of RST, SYN, FIN, ACK that its flags contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    None,
}

impl Class {
    fn of(flags: TcpFlags) -> Class {
        if flags.contains(TcpFlags::RST) {
            Class::Rst
        } else if flags.contains(TcpFlags::SYN) {
            if flags.contains(TcpFlags::ACK) {
                Class::SynAck
            } else {
                Class::Syn
            }
        } else if flags.contains(TcpFlags::FIN) {
            Class::Fin
        } else if flags.contains(TcpFlags::ACK) {
            Class::Ack
        } else {
            Class::None
        }
    }
}

/// Whether the flags, ignoring PSH, ECE and CWR, are a combination a TCP sends: SYN (with URG),
/// SYN-ACK, RST (with ACK), FIN-ACK (with URG), ACK (with URG).
pub fn valid_flags(flags: TcpFlags) -> bool {
    const FIN: u8 = TcpFlags::FIN.bits();
    const SYN: u8 = TcpFlags::SYN.bits();
    const RST: u8 = TcpFlags::RST.bits();
    const ACK: u8 = TcpFlags::ACK.bits();
    const URG: u8 = TcpFlags::URG.bits();
    let core = flags.bits() & (FIN | SYN | RST | ACK | URG);
    matches!(
        core,
        SYN | 0x22 /* SYN|URG */
            | 0x12 /* SYN|ACK */
            | RST
            | 0x14 /* RST|ACK */
            | 0x11 /* FIN|ACK */
            | 0x31 /* FIN|ACK|URG */
            | ACK
            | 0x30 /* ACK|URG */
    )
}

/// What the transition table says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    To(TcpState),
    Ignore,
    Invalid,
}

/// The transition table. `old` is `None` for a segment that would create the connection.
fn next(dir: Direction, class: Class, old: Option<TcpState>) -> Next {
    use Next::{Ignore as IG, Invalid as IV, To};
    use TcpState::*;
    let Some(old) = old else {
        return match (dir, class) {
            (Direction::Original, Class::Syn) => To(SynSent),
            (Direction::Original, Class::Ack) => To(Established),
            _ => IV,
        };
    };
    let original = dir == Direction::Original;
    match class {
        Class::Syn => match old {
            SynSent if original => To(SynSent), // retransmitted (or re-ISN'd) SYN
            SynSent => To(SynSent2),            // simultaneous open
            SynSent2 => To(SynSent2),
            TimeWait => To(SynSent), // reopening; the caller decides whether it may
            Close if original => To(SynSent),
            _ if original => IG, // a SYN in a synchronised state: out of sync, or bogus
            _ => IV,
        },
        Class::SynAck => match old {
            SynSent2 => To(SynRecv),
            SynRecv if original => To(SynRecv), // simultaneous open, retransmitted
            SynSent if !original => To(SynRecv),
            _ if original => IV,
            _ => IG, // a late or retransmitted SYN-ACK
        },
        Class::Fin => match old {
            SynRecv | Established => To(FinWait),
            FinWait | CloseWait | LastAck => To(LastAck),
            TimeWait => To(TimeWait),
            Close => To(Close),
            SynSent | SynSent2 => IV,
        },
        Class::Ack => match old {
            SynRecv if original => To(Established),
            SynRecv => To(SynRecv), // may answer a late SYN
            Established => To(Established),
            FinWait | CloseWait => To(CloseWait),
            LastAck | TimeWait => To(TimeWait),
            Close => To(Close),
            SynSent | SynSent2 if original => IV,
            SynSent | SynSent2 => IG, // perhaps a half-open connection's answer
        },
        Class::Rst => To(Close),
        Class::None => IV,
    }
}

/// Per-side flags (the bit meanings of Linux's `IP_CT_TCP_FLAG_*` and `last_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flags(u8);

impl Flags {
    const WINDOW_SCALE: Flags = Flags(0x01);
    const SACK_PERM: Flags = Flags(0x02);
    const CLOSE_INIT: Flags = Flags(0x04);
    const BE_LIBERAL: Flags = Flags(0x08);
    const DATA_UNACKNOWLEDGED: Flags = Flags(0x10);
    const MAXACK_SET: Flags = Flags(0x20);
    const CHALLENGE_ACK: Flags = Flags(0x40);
    const SIMULTANEOUS_OPEN: Flags = Flags(0x80);

    fn has(self, f: Flags) -> bool {
        self.0 & f.0 != 0
    }
    fn set(&mut self, f: Flags) {
        self.0 |= f.0;
    }
    fn clear(&mut self, f: Flags) {
        self.0 &= !f.0;
    }
}

/// What a segment's SYN options say, clamped as Linux clamps them.
fn syn_options(seg: &TcpSegment) -> (Flags, u8) {
    let mut flags = Flags::default();
    let mut scale = 0;
    if let Some(ws) = seg.wscale {
        flags.set(Flags::WINDOW_SCALE);
        scale = ws.min(MAX_WSCALE);
    }
    if seg.sack_permitted {
        flags.set(Flags::SACK_PERM);
    }
    (flags, scale)
}

/// One side's sequence space, as seen on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Side {
    /// Highest `seq + len` this side sent.
    end: u32,
    /// Highest right edge of the window the peer granted (`ack + window`).
    maxend: u32,
    /// Largest window this side advertised (never 0 once the side is known).
    maxwin: u32,
    /// Highest ACK this side sent (valid with `MAXACK_SET`).
    maxack: u32,
    /// Window shift of this side's segments.
    scale: u8,
    flags: Flags,
}

impl Side {
    /// Applies the options of this side's SYN (only when it has options, as Linux does).
    fn take_syn_options(&mut self, seg: &TcpSegment) {
        if seg.carries_options() {
            let (flags, scale) = syn_options(seg);
            self.scale = scale;
            self.flags = Flags(self.flags.0 & Flags::BE_LIBERAL.0);
            self.flags.set(flags);
        }
    }
}

/// The last segment that moved (or was ignored by) the tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Last {
    class: Class,
    dir: Direction,
    seq: u32,
    ack: u32,
    end: u32,
    win: u16,
    wscale: u8,
    flags: Flags,
    retrans: u8,
}

/// What the table must do after an accepted segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The state moved; refresh the deadline to this timeout (`None`: keep the deadline, as
    /// for a retransmitted SYN, so port reuse cannot keep an entry alive forever).
    Accepted { timeout: Option<Duration> },
    /// Let through, nothing refreshed.
    Ignored(TcpIgnored),
    /// Accepted, and the connection is over: a RST before any reply (the connection never
    /// existed for the responder). The table removes it.
    Killed,
    /// A SYN reopening a closed connection: the table removes this one and tracks the segment
    /// as the first of a new connection.
    Reopen,
}

/// What the connection knows that the TCP state does not: the connection's status bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Status {
    /// A packet in the reply direction was accepted (Linux's `IPS_SEEN_REPLY`).
    pub(crate) seen_reply: bool,
    /// The connection is assured (`IPS_ASSURED`).
    pub(crate) assured: bool,
}

/// Everything [`Tcb::update`] needs besides the segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Env<'a> {
    pub(crate) config: &'a TcpConfig,
    pub(crate) timeouts: &'a Timeouts,
    /// The time the decision is made at.
    pub(crate) now: Instant,
    /// The connection's deadline before this segment.
    pub(crate) deadline: Instant,
}

impl Env<'_> {
    /// Time left before the connection expires. Only an invalid segment needs it, so it is
    /// computed then rather than for every segment (a division, on the hit path).
    fn remaining(&self) -> Duration {
        self.deadline.duration_since(self.now)
    }
}

/// The TCP control block of one tracked connection. Protected by the connection's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tcb {
    state: TcpState,
    /// Indexed by [`Direction::index`].
    sides: [Side; 2],
    last: Last,
}

impl Tcb {
    /// Whether `seg` may open a connection: valid flags, and a SYN (or, with `loose`, an ACK).
    pub(crate) fn check_opener(seg: &TcpSegment, config: &TcpConfig) -> Result<(), TcpInvalid> {
        if !valid_flags(seg.flags) {
            return Err(TcpInvalid::BadFlags);
        }
        match Class::of(seg.flags) {
            Class::Syn => Ok(()),
            Class::Ack if config.loose => Ok(()),
            _ => Err(TcpInvalid::NotSyn),
        }
    }

    /// Starts tracking from the first segment of a flow (Linux's `tcp_new` then the packet
    /// itself). Returns the control block, the verdict on the segment and the status.
    pub(crate) fn new(seg: &TcpSegment, env: &Env<'_>) -> Result<(Tcb, Verdict), TcpInvalid> {
        Tcb::check_opener(seg, env.config)?;
        let class = Class::of(seg.flags);
        let end = seg.seq.wrapping_add(seg.logical_len());
        let maxwin = u32::from(seg.window).max(1);
        let mut first = Side {
            end,
            maxend: end,
            maxwin,
            ..Side::default()
        };
        let mut second = Side::default();
        match next(Direction::Original, class, None) {
            Next::To(TcpState::SynSent) => first.take_syn_options(seg),
            Next::To(_) if env.config.loose => {
                // Picked up in the middle: the history is lost, so be liberal with windows.
                first.maxend = end.wrapping_add(maxwin);
                first.flags = Flags(Flags::SACK_PERM.0 | Flags::BE_LIBERAL.0);
                second.flags = first.flags;
            }
            _ => return Err(TcpInvalid::NotSyn),
        }
        let mut tcb = Tcb {
            state: TcpState::SynSent, // overwritten below: `None` is passed as the old state
            sides: [first, second],
            last: Last {
                class: Class::None,
                dir: Direction::Original,
                seq: 0,
                ack: 0,
                end: 0,
                win: 0,
                wscale: 0,
                flags: Flags::default(),
                retrans: 0,
            },
        };
        let mut status = Status::default();
        let verdict = tcb
            .packet(None, Direction::Original, seg, env, &mut status)
            .map_err(|at| match at {
                InvalidAt::Transition(e) | InvalidAt::Window(e) => e,
            })?;
        Ok((tcb, verdict))
    }

    /// The Linux-style state.
    pub(crate) fn state(&self) -> TcpState {
        self.state
    }

    /// Feeds one segment travelling in `dir`; may set `status.assured`. On `Err` nothing
    /// changed but what Linux also keeps of an invalid FIN or RST (see [`TcpInvalid`]); the
    /// returned timeout, if any, then shortens the connection's deadline.
    ///
    /// Inlined into the caller: the hit path is small, and the general path is a call.
    #[inline(always)]
    pub(crate) fn update(
        &mut self,
        dir: Direction,
        seg: &TcpSegment,
        env: &Env<'_>,
        status: &mut Status,
    ) -> Result<Verdict, (TcpInvalid, Option<Duration>)> {
        match self.established_ack(dir, seg, env, status) {
            Some(verdict) => Ok(verdict),
            None => self.update_general(dir, seg, env, status),
        }
    }

    /// [`update`](Tcb::update) for every segment the hit path does not take.
    #[inline(never)]
    fn update_general(
        &mut self,
        dir: Direction,
        seg: &TcpSegment,
        env: &Env<'_>,
        status: &mut Status,
    ) -> Result<Verdict, (TcpInvalid, Option<Duration>)> {
        if !valid_flags(seg.flags) {
            return Err((TcpInvalid::BadFlags, None));
        }
        // A segment the transition table or the RST checks refuse is refused before anything
        // is written (`a_rejected_segment_changes_nothing_the_transition_table_refuses`).
        match self.packet(Some(self.state), dir, seg, env, status) {
            Ok(v) => Ok(v),
            Err(InvalidAt::Transition(e)) => Err((e, None)),
            Err(InvalidAt::Window(e)) => {
                let shorten = self.on_invalid(dir, seg, env, status);
                Err((e, shorten))
            }
        }
    }

    /// The hit path: what [`packet`](Tcb::packet) does with an ACK (with or without data;
    /// no SYN, FIN or RST) that passes the window checks in `established`, when both sides'
    /// windows are known. Nearly every segment of a connection is one, and for it the
    /// transition table, the RST checks and the window check's set-up for SYNs, RSTs and
    /// sides first seen mid-stream decide nothing: skipping them is most of what the Linux
    /// rules cost a hit over the gVisor-style tracker they replaced. `None`: the segment is
    /// not such a one, and nothing was written (the general path decides).
    #[inline(always)]
    fn established_ack(
        &mut self,
        dir: Direction,
        seg: &TcpSegment,
        env: &Env<'_>,
        status: &mut Status,
    ) -> Option<Verdict> {
        const CLASS_FLAGS: u8 = TcpFlags::FIN.bits()
            | TcpFlags::SYN.bits()
            | TcpFlags::RST.bits()
            | TcpFlags::ACK.bits();
        // ACK (or ACK|URG) alone among the class flags: valid flags, of class ACK.
        if self.state != TcpState::Established
            || seg.flags.bits() & CLASS_FLAGS != TcpFlags::ACK.bits()
            || self.sides[dir.index()].maxwin == 0
        {
            return None;
        }
        let span = self.span(dir, seg);
        if self.window_checks(dir, &span) != Window::Accept {
            return None;
        }
        self.window_advance(dir, Class::Ack, &span, false, true);
        self.last.class = Class::Ack;
        self.last.dir = dir;
        let t = env.timeouts;
        let mut timeout = self.timeout(t.tcp_established, Class::Ack, env);
        if !status.seen_reply {
            timeout = timeout.min(t.tcp_unacknowledged);
        } else if !status.assured {
            status.assured = true; // a valid segment after the handshake's last ACK
        }
        Some(Verdict::Accepted {
            timeout: Some(timeout),
        })
    }

    /// Linux's `nf_conntrack_tcp_packet` after the flag check.
    fn packet(
        &mut self,
        old: Option<TcpState>,
        dir: Direction,
        seg: &TcpSegment,
        env: &Env<'_>,
        status: &mut Status,
    ) -> Result<Verdict, InvalidAt> {
        let class = Class::of(seg.flags);
        let d = dir.index();
        // `old` is the state the transition starts from (a resynchronisation restarts it from
        // `syn-sent`); `current` stays the connection's state before this segment.
        let current = old;
        let mut old = old;
        let mut new = next(dir, class, old);
        let mut skip_window = false;

        let mut ignore = new == Next::Ignore;
        if new == Next::To(TcpState::SynSent)
            && matches!(old, Some(TcpState::TimeWait | TcpState::Close))
        {
            let closing = (self.sides[0].flags.0 | self.sides[1].flags.0) & Flags::CLOSE_INIT.0;
            if closing != 0 || (self.last.dir == dir && self.last.class == Class::Rst) {
                return Ok(Verdict::Reopen);
            }
            ignore = true;
        }

        if ignore {
            if class == Class::SynAck
                && self.last.class == Class::Syn
                && self.last.dir != dir
                && seg.ack == self.last.end
            {
                // This SYN-ACK answers a SYN that was ignored: the endpoints are in sync and
                // the tracker is not. Resynchronise from what was noted of that SYN.
                let l = self.last;
                old = Some(TcpState::SynSent);
                new = Next::To(TcpState::SynRecv);
                let mut flags = l.flags;
                flags.clear(Flags::CHALLENGE_ACK);
                self.sides[l.dir.index()] = Side {
                    end: l.end,
                    maxend: l.end,
                    maxwin: u32::from(l.win).max(1),
                    scale: l.wscale,
                    flags,
                    ..self.sides[l.dir.index()]
                };
                self.last.flags.clear(Flags::CHALLENGE_ACK);
                let liberal = self.sides[d].flags.0 & Flags::BE_LIBERAL.0;
                self.sides[d] = Side {
                    flags: Flags(liberal),
                    ..Side::default()
                };
            } else {
                self.last.class = class;
                self.last.dir = dir;
                self.last.seq = seg.seq;
                self.last.end = seg.seq.wrapping_add(seg.logical_len());
                self.last.win = seg.window;
                if class == Class::Syn && dir == Direction::Original {
                    let (flags, scale) = if seg.carries_options() {
                        syn_options(seg)
                    } else {
                        (Flags::default(), 0)
                    };
                    self.last.flags = flags;
                    self.last.wscale = if flags.has(Flags::WINDOW_SCALE) {
                        scale
                    } else {
                        0
                    };
                    if old == Some(TcpState::LastAck) {
                        self.last.flags.set(Flags::CHALLENGE_ACK);
                    }
                }
                if old == Some(TcpState::SynSent) && class == Class::Ack && dir == Direction::Reply
                {
                    self.last.ack = seg.ack;
                }
                return Ok(Verdict::Ignored(TcpIgnored::OutOfSync));
            }
        }

        let Next::To(mut new_state) = new else {
            return Err(InvalidAt::Transition(TcpInvalid::Unexpected {
                state: old.unwrap_or(TcpState::SynSent),
            }));
        };
        match new_state {
            TcpState::TimeWait
                if old == Some(TcpState::LastAck)
                    && class == Class::Ack
                    && self.last.dir != dir
                    && self.last.class == Class::Syn
                    && self.last.flags.has(Flags::CHALLENGE_ACK) =>
            {
                self.last.flags.clear(Flags::CHALLENGE_ACK);
                return Ok(Verdict::Ignored(TcpIgnored::ChallengeAck));
            }
            TcpState::SynSent2 => self.last.flags.set(Flags::SIMULTANEOUS_OPEN),
            TcpState::SynRecv
                if dir == Direction::Reply
                    && class == Class::Ack
                    && self.last.flags.has(Flags::SIMULTANEOUS_OPEN) =>
            {
                new_state = TcpState::Established;
            }
            TcpState::Close if class == Class::Rst => match self.check_rst(old, dir, seg, status) {
                RstCheck::Invalid => {
                    return Err(InvalidAt::Transition(TcpInvalid::StaleRst));
                }
                RstCheck::SkipWindow => skip_window = true,
                RstCheck::KeepState => {
                    if let Some(o) = old {
                        new_state = o;
                    }
                    skip_window = self.rst_answers_let_through(old, dir, seg, status);
                }
                RstCheck::Unchecked => {
                    skip_window = self.rst_answers_let_through(old, dir, seg, status)
                }
                RstCheck::Window => {}
            },
            _ => {}
        }

        if !skip_window {
            match self.in_window(current, dir, class, seg, env.config) {
                Window::Accept => {}
                Window::Ignore(why) => return Ok(Verdict::Ignored(why)),
                Window::Invalid(e) => return Err(InvalidAt::Window(e)),
            }
        }

        self.last.class = class;
        self.last.dir = dir;
        self.state = new_state;
        if old != Some(new_state) && new_state == TcpState::FinWait {
            self.sides[d].flags.set(Flags::CLOSE_INIT);
        }
        let t = env.timeouts;
        let mut timeout = self.timeout(t.tcp(new_state), class, env);
        if !status.seen_reply {
            if class == Class::Rst {
                return Ok(Verdict::Killed);
            }
            if class == Class::Syn && old == Some(TcpState::SynSent) {
                return Ok(Verdict::Accepted { timeout: None });
            }
            if new_state == TcpState::Established && timeout > t.tcp_unacknowledged {
                timeout = t.tcp_unacknowledged;
            }
        } else if !status.assured
            && matches!(old, Some(TcpState::SynRecv | TcpState::Established))
            && new_state == TcpState::Established
        {
            status.assured = true;
        }
        Ok(Verdict::Accepted {
            timeout: Some(timeout),
        })
    }

    /// The timeout after an accepted segment of `class` that leaves the connection in a state
    /// whose timeout is `of_state`, before the rules about replies: shorter after repeated
    /// identical ACKs, after a RST, while data is unacknowledged and while a window is closed.
    #[inline(always)]
    fn timeout(&self, of_state: Duration, class: Class, env: &Env<'_>) -> Duration {
        let t = env.timeouts;
        let unacked =
            (self.sides[0].flags.0 | self.sides[1].flags.0) & Flags::DATA_UNACKNOWLEDGED.0 != 0;
        if self.last.retrans >= env.config.max_retrans && of_state > t.tcp_retrans {
            t.tcp_retrans
        } else if class == Class::Rst {
            t.tcp_close
        } else if unacked && of_state > t.tcp_unacknowledged {
            t.tcp_unacknowledged
        } else if self.last.win == 0 && of_state > t.tcp_retrans {
            t.tcp_retrans
        } else {
            of_state
        }
    }

    /// The checks Linux makes of a RST before its window check.
    fn check_rst(
        &self,
        old: Option<TcpState>,
        dir: Direction,
        seg: &TcpSegment,
        status: &Status,
    ) -> RstCheck {
        if old.is_some_and(TcpState::is_closing) {
            // The flow may already be reused; the window data is stale. Let it close.
            return RstCheck::SkipWindow;
        }
        let peer = &self.sides[dir.opposite().index()];
        if !(peer.flags.has(Flags::MAXACK_SET) && self.last.class != Class::Syn) {
            return RstCheck::Unchecked;
        }
        let established = old == Some(TcpState::Established) && status.assured;
        if seg.seq == 0 && !established {
            return RstCheck::Window; // most likely answering a SYN that was let through
        }
        if before(seg.seq, peer.maxack) {
            return RstCheck::Invalid;
        }
        if !established || seg.seq == peer.maxack {
            return RstCheck::Window;
        }
        if self.last.class == Class::Ack && self.last.dir == dir && seg.seq == self.last.end {
            return RstCheck::Window; // the RST ends a train of this side's segments
        }
        // In the window but not exact: keep the state, so that the endpoint can answer
        // with a challenge ACK (RFC 5961).
        RstCheck::KeepState
    }

    /// Whether a RST answers a SYN or ACK the tracker let through while out of sync (then
    /// its window check is skipped: it may acknowledge what was ignored).
    fn rst_answers_let_through(
        &self,
        old: Option<TcpState>,
        dir: Direction,
        seg: &TcpSegment,
        status: &Status,
    ) -> bool {
        let l = &self.last;
        // Linux 6.18, as `cargo xtask oracle` shows it: a RST in the direction of the SYN it
        // would answer does not skip the window check.
        let answers_syn = status.seen_reply && l.class == Class::Syn && l.dir != dir;
        if (answers_syn || (!status.assured && l.class == Class::Ack)) && seg.ack == l.end {
            return true;
        }
        old == Some(TcpState::SynSent)
            && l.class == Class::Ack
            && l.dir == Direction::Reply
            && seg.seq == l.ack
    }

    /// Linux's `nf_tcp_handle_invalid`: an invalid FIN or RST on an assured connection that
    /// answers one from the other side shortens a long timeout; otherwise it is noted.
    fn on_invalid(
        &mut self,
        dir: Direction,
        seg: &TcpSegment,
        env: &Env<'_>,
        status: &Status,
    ) -> Option<Duration> {
        let class = Class::of(seg.flags);
        if !status.assured || !matches!(class, Class::Rst | Class::Fin) {
            return None;
        }
        if self.last.dir != dir && matches!(self.last.class, Class::Fin | Class::Rst) {
            let unack = env.timeouts.tcp_unacknowledged;
            let remaining = env.remaining();
            if remaining < Duration::from_secs(120) || remaining <= unack {
                return None;
            }
            return Some(unack);
        }
        self.last.class = class;
        self.last.dir = dir;
        None
    }

    /// Linux's `tcp_in_window`: the four window checks, and the window bookkeeping.
    fn in_window(
        &mut self,
        current: Option<TcpState>,
        dir: Direction,
        class: Class,
        seg: &TcpSegment,
        config: &TcpConfig,
    ) -> Window {
        let (d, r) = (dir.index(), dir.opposite().index());
        let syn = seg.flags.contains(TcpFlags::SYN);
        let has_ack = seg.flags.contains(TcpFlags::ACK);
        let rst = seg.flags.contains(TcpFlags::RST);
        let mut span = self.span(dir, seg);
        let win = u32::from(seg.window);

        if self.sides[d].maxwin == 0 {
            if syn {
                self.init_sender(dir, seg, span.end, win);
                if !has_ack {
                    return Window::Accept; // simultaneous open
                }
            } else {
                // This side is first seen in the middle of the connection.
                let sender = &mut self.sides[d];
                sender.end = span.end;
                let swin = win << sender.scale;
                sender.maxwin = swin.max(1);
                sender.maxend = span.end.wrapping_add(sender.maxwin);
                let receiver = &mut self.sides[r];
                if receiver.maxwin == 0 {
                    receiver.end = span.sack;
                    receiver.maxend = span.sack;
                } else if span.sack == receiver.end.wrapping_add(1) {
                    receiver.end = receiver.end.wrapping_add(1); // answering a keepalive
                }
            }
        } else if syn
            && after(span.end, self.sides[d].end)
            && matches!(current, Some(TcpState::SynSent | TcpState::SynRecv))
        {
            // A SYN with a higher ISN: the endpoint reinitialised (RFC 793); start over.
            self.init_sender(dir, seg, span.end, win);
            if dir == Direction::Reply && !has_ack {
                return Window::Accept;
            }
        }

        if !has_ack || (rst && span.ack == 0) {
            // No ACK (or a broken stack's RST with ACK 0): pretend it acknowledged it all.
            span.ack = self.sides[r].end;
            span.sack = span.ack;
        }
        if rst && span.seq == 0 && current == Some(TcpState::SynSent) {
            span.seq = self.sides[d].end; // a RST answering the SYN
            span.end = span.seq;
        }

        let liberal = config.be_liberal || self.sides[d].flags.has(Flags::BE_LIBERAL);
        match self.window_checks(dir, &span) {
            Window::Accept => {}
            w => {
                if w == Window::Ignore(TcpIgnored::Overshoot) {
                    // Some TCPs send past the window; remember it so that its ACK passes.
                    let sender = &mut self.sides[d];
                    sender.end = span.end;
                    sender.flags.set(Flags::DATA_UNACKNOWLEDGED);
                }
                return if liberal { Window::Accept } else { w };
            }
        }
        self.window_advance(dir, class, &span, syn, has_ack);
        Window::Accept
    }

    /// Where a segment travelling in `dir` lies in sequence space, before the adjustments
    /// [`in_window`](Tcb::in_window) makes for SYNs, RSTs and segments without ACK.
    #[inline(always)]
    fn span(&self, dir: Direction, seg: &TcpSegment) -> Span {
        let sack = match seg.sack {
            Some(edge)
                if after(edge, seg.ack)
                    && self.sides[dir.opposite().index()]
                        .flags
                        .has(Flags::SACK_PERM) =>
            {
                edge
            }
            _ => seg.ack,
        };
        Span {
            seq: seg.seq,
            end: seg.seq.wrapping_add(seg.logical_len()),
            ack: seg.ack,
            sack,
            window: seg.window,
        }
    }

    /// The four window checks of a segment travelling in `dir`, as if nothing were liberal.
    /// Writes nothing, so that the hit path can fall back on the general one when a check
    /// fails (the caller remembers an overshoot).
    #[inline(always)]
    fn window_checks(&self, dir: Direction, span: &Span) -> Window {
        let sender = &self.sides[dir.index()];
        let receiver = &self.sides[dir.opposite().index()];
        let Span { seq, end, sack, .. } = *span;
        let max_ack_window = sender.maxwin.max(MAX_ACK_WINDOW);

        if !before(seq, sender.maxend.wrapping_add(1)) {
            let overshot = end.wrapping_sub(sender.maxend).wrapping_add(1);
            let ack_ok = after(
                sack,
                receiver.end.wrapping_sub(max_ack_window).wrapping_sub(1),
            );
            let in_recv_win = receiver.maxwin != 0
                && after(
                    end,
                    sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
                );
            if in_recv_win
                && ack_ok
                && overshot <= receiver.maxwin
                && before(sack, receiver.end.wrapping_add(1))
            {
                return Window::Ignore(TcpIgnored::Overshoot);
            }
            return Window::Invalid(TcpInvalid::SeqAboveWindow);
        }
        if !before(sack, receiver.end.wrapping_add(1)) {
            return Window::Invalid(TcpInvalid::AckAboveSent);
        }
        let in_recv_win = receiver.maxwin == 0
            || after(
                end,
                sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
            );
        if !in_recv_win {
            return Window::Ignore(TcpIgnored::Retransmission);
        }
        if !after(
            sack,
            receiver.end.wrapping_sub(max_ack_window).wrapping_sub(1),
        ) {
            return Window::Ignore(TcpIgnored::OldAck);
        }
        Window::Accept
    }

    /// The window bookkeeping after a segment passed the window checks: both sides' windows
    /// and edges, the highest ACK, unacknowledged data, and identical ACKs in a row.
    #[inline(always)]
    fn window_advance(
        &mut self,
        dir: Direction,
        class: Class,
        span: &Span,
        syn: bool,
        has_ack: bool,
    ) {
        let (d, r) = (dir.index(), dir.opposite().index());
        let Span {
            seq,
            end,
            ack,
            sack,
            window,
        } = *span;
        let mut win = u32::from(window);
        if !syn {
            win = win.wrapping_shl(u32::from(self.sides[d].scale));
        }
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        let sender = &mut self.sides[d];
        if sender.maxwin < swin {
            sender.maxwin = swin;
        }
        if after(end, sender.end) {
            sender.end = end;
            sender.flags.set(Flags::DATA_UNACKNOWLEDGED);
        }
        if has_ack {
            if !sender.flags.has(Flags::MAXACK_SET) {
                sender.maxack = ack;
                sender.flags.set(Flags::MAXACK_SET);
            } else if after(ack, sender.maxack) {
                sender.maxack = ack;
            }
        }
        let sender_maxend = sender.maxend;
        let receiver = &mut self.sides[r];
        if receiver.maxwin != 0 && after(end, sender_maxend) {
            receiver.maxwin = receiver
                .maxwin
                .wrapping_add(end.wrapping_sub(sender_maxend));
        }
        if after(sack.wrapping_add(win), receiver.maxend.wrapping_sub(1)) {
            receiver.maxend = sack.wrapping_add(win);
            if win == 0 {
                receiver.maxend = receiver.maxend.wrapping_add(1);
            }
        }
        if ack == receiver.end {
            receiver.flags.clear(Flags::DATA_UNACKNOWLEDGED);
        }

        if class == Class::Ack {
            let l = &mut self.last;
            if l.dir == dir && l.seq == seq && l.ack == ack && l.end == end && l.win == window {
                l.retrans = l.retrans.saturating_add(1);
            } else {
                l.dir = dir;
                l.seq = seq;
                l.ack = ack;
                l.end = end;
                l.win = window;
                l.retrans = 0;
            }
        }
    }

    /// A side's SYN (or SYN-ACK) sets up its sequence space.
    fn init_sender(&mut self, dir: Direction, seg: &TcpSegment, end: u32, win: u32) {
        let (d, r) = (dir.index(), dir.opposite().index());
        let sender = &mut self.sides[d];
        sender.end = end;
        sender.maxend = end;
        sender.maxwin = win.max(1);
        sender.take_syn_options(seg);
        // RFC 7323: scaling applies in either direction only if both SYNs offered it.
        if dir == Direction::Reply
            && !(self.sides[d].flags.has(Flags::WINDOW_SCALE)
                && self.sides[r].flags.has(Flags::WINDOW_SCALE))
        {
            self.sides[d].scale = 0;
            self.sides[r].scale = 0;
        }
    }
}

/// A segment's place in sequence space, as the window check sees it.
#[derive(Clone, Copy, Debug)]
struct Span {
    seq: u32,
    /// `seq` plus the sequence space the segment occupies.
    end: u32,
    ack: u32,
    /// `ack`, or the highest SACK edge if it is above `ack` and the receiver offered SACK.
    sack: u32,
    /// The advertised window, unscaled.
    window: u16,
}

/// Where a segment was found invalid: the transition table (nothing changes) or the window
/// check (Linux's invalid-FIN/RST bookkeeping applies).
#[derive(Debug)]
enum InvalidAt {
    Transition(TcpInvalid),
    Window(TcpInvalid),
}

/// What the RST checks before the window check decided.
enum RstCheck {
    /// Before data the peer acknowledged.
    Invalid,
    /// The connection is closing: skip the window check.
    SkipWindow,
    /// In the window but not exact: keep the state; the answer checks still apply.
    KeepState,
    /// The sequence checks found nothing against it: go to the window check directly.
    Window,
    /// No sequence check applied (the peer never acknowledged anything, or the last segment
    /// was a SYN): the answer checks decide whether the window check is skipped.
    Unchecked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Accept,
    Ignore(TcpIgnored),
    Invalid(TcpInvalid),
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests;
