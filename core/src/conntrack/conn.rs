//! One tracked connection: its tuples, its protocol state, its last use and its deadline.

use super::packet::{Packet, Transport};
use super::table::Config;
use super::tcp::{Env, Status, Tcb, TcpIgnored, TcpInvalid, TcpState, Verdict};
use super::tuple::{Direction, TransProto, Tuple};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Mutex;
use crate::time::Instant;
use std::fmt;
use std::time::Duration;

/// UDP (and ICMP echo) tracking: one reply makes the flow assured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UdpState {
    /// Only the originator has sent.
    Unreplied,
    /// The responder answered.
    Replied,
}

/// A snapshot of a connection's protocol state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// A TCP connection, by its Linux-style state.
    Tcp(TcpState),
    /// A UDP flow.
    Udp(UdpState),
    /// An ICMP echo exchange.
    IcmpEcho(UdpState),
}

impl State {
    /// Whether the state makes the connection a candidate for early drop even if assured.
    pub fn is_closing(self) -> bool {
        matches!(self, State::Tcp(s) if s.is_closing())
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Tcp(s) => write!(f, "tcp {s}"),
            State::Udp(UdpState::Unreplied) => f.write_str("udp unreplied"),
            State::Udp(UdpState::Replied) => f.write_str("udp replied"),
            State::IcmpEcho(UdpState::Unreplied) => f.write_str("icmp unreplied"),
            State::IcmpEcho(UdpState::Replied) => f.write_str("icmp replied"),
        }
    }
}

/// Why the tracker rejected a packet. A rejected packet creates no connection and moves no
/// state (the one exception is Linux's, on [`TcpInvalid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invalid {
    /// The TCP tracker rejected the segment.
    Tcp(TcpInvalid),
    /// An echo reply for which no request is tracked.
    EchoReplyWithoutRequest,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Tcp(e) => write!(f, "invalid TCP segment: {e}"),
            Invalid::EchoReplyWithoutRequest => {
                f.write_str("ICMP echo reply without a tracked request")
            }
        }
    }
}

impl std::error::Error for Invalid {}

#[derive(Clone, Copy, Debug)]
enum Proto {
    Tcp(Tcb),
    /// A UDP flow; it counts as a stream (longer timeout, assured) only for packets after
    /// `stream_at`.
    Udp {
        stream_at: Instant,
    },
    Icmp,
}

/// Protected by [`Conn::inner`].
#[derive(Debug)]
struct Inner {
    proto: Proto,
    last_used: Instant,
    status: Status,
    /// The latest time a decision about the connection was made at (see [`Conn`]).
    seen: Instant,
}

impl Inner {
    /// The time to decide at: the caller's clock reading, or the latest time a decision was
    /// already made at if that is later (the caller's reading is stale), which it records.
    fn decide_at(&mut self, now: Instant) -> Instant {
        self.seen = self.seen.max(now);
        self.seen
    }

    fn state(&self) -> State {
        let replied = if self.status.seen_reply {
            UdpState::Replied
        } else {
            UdpState::Unreplied
        };
        match &self.proto {
            Proto::Tcp(tcb) => State::Tcp(tcb.state()),
            Proto::Udp { .. } => State::Udp(replied),
            Proto::Icmp => State::IcmpEcho(replied),
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state(),
            assured: self.status.assured,
        }
    }
}

/// What an update did, for the table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Updated {
    /// The packet moved the connection; `true` if it also refreshed its deadline (a
    /// retransmitted SYN before any reply does not, as in Linux).
    Accepted(Snapshot, bool),
    /// Let through without moving the connection or refreshing its deadline.
    Ignored(Snapshot, TcpIgnored),
    /// Accepted, and the connection is over: the table removes it (a RST before any reply).
    Killed(Snapshot),
    /// The packet reopens a closed connection: the table removes it and tracks the packet as
    /// the first of a new one.
    Reopen,
}

/// Why an update did not happen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UpdateError {
    /// The connection had expired by the caller's `now`: treat it as absent.
    Expired,
    /// The tracker rejected the packet.
    Invalid(Invalid),
}

/// A tracked connection. Shared (`Arc`) between its two table entries and the callers of
/// `track`; it stays readable after it left the table.
///
/// Lock: `inner` (the connection's own lock) protects the protocol state, the last-used time,
/// the status (reply seen, assured) and `seen` (below). It is the innermost lock: the table takes it only
/// inside a bucket lock of this connection, and nothing is locked while it is held (see the
/// table's lock order), so the accessors below are safe to call from anywhere.
/// `deadline` is written only under `inner` *and* a bucket lock of this connection, so it is
/// exact for a reader holding both bucket locks and a hint for a reader holding one.
///
/// Time: a packet path reads the clock once, before it takes any lock, so its reading can be
/// older than one another thread has already acted on. Every decision that reads or moves
/// the deadline under `inner` (an update, an expiry check before removal, the lookup's
/// confirmation) is made at the later of the caller's reading and the latest time a decision
/// about this connection was made at, `seen`, which it then records. The lock orders these
/// decisions, so their times never go backwards: a connection found expired stays expired (a
/// delayed packet cannot revive it after another thread judged it expired and replaced it),
/// and a delayed packet never sets the last use back, nor the deadline back to what an
/// earlier reading would give. (Reading the clock under the lock would do the same at the
/// price of a second clock read per packet, a quarter of a hit's cost on the development
/// VM.) Outside `inner`, a reading is a hint.
///
/// The deadline *can* move earlier: a packet that moves a TCP connection to a state with a
/// shorter timeout (a FIN or RST on an established connection, a RST's `close`, an invalid
/// RST that shortens the timeout, unacknowledged data's 300 s after 5 days) sets it to its
/// decision's time plus that shorter timeout, and a UDP profile whose replied timeout is
/// shorter than its unreplied one does the same. What never moves back is the *decision
/// time*: every deadline is set by a decision at some time `s >= seen` (as `seen` was when
/// the deadline was set) to `s` plus one of the profile's timeouts, so from the moment
/// `seen` is read under `inner`, no deadline is ever set below `seen + shortest`
/// ([`Timeouts::shortest`](super::Timeouts::shortest)). Hence the table's *deadline hint*
/// (`hint_locked`): `min(deadline, seen + shortest)`, read under `inner`, is a lower bound
/// of the deadline for as long as the connection lives, whatever packets come later. A hint
/// computed from a deadline read outside `inner`, or from a clock reading not recorded in
/// `seen`, is not (a delayed packet may then decide at an earlier time and shorten the
/// deadline below it).
pub struct Conn {
    original: Tuple,
    /// Buckets of the original and of the reply tuple. Immutable.
    buckets: [u32; 2],
    /// Nanoseconds of the instant after which the connection is expired.
    deadline: AtomicU64,
    inner: Mutex<Inner>,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("original", &self.original)
            .field(
                "deadline",
                &Instant::from_nanos(self.deadline.load(Ordering::Acquire)),
            )
            .finish_non_exhaustive()
    }
}

/// A lower bound of a connection's deadline, as a bucket entry keeps it (see [`Conn`] for
/// why it stays one): 32 bits of 2^30-nanosecond units (about 1.07 s; 146 years in all),
/// rounded down, so that an entry stays 16 bytes. Rounding down keeps it a lower bound; a
/// walk reads the connection up to a unit early, and a time past 146 years always does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Hint(u32);

impl Hint {
    const SHIFT: u32 = 30;

    /// The largest hint not after `nanos`.
    #[inline(always)]
    pub(crate) fn floor(nanos: u64) -> Hint {
        Hint(u32::try_from(nanos >> Hint::SHIFT).unwrap_or(u32::MAX))
    }

    /// The hint in nanoseconds: not after the instant it was made from.
    #[inline(always)]
    pub(crate) fn nanos(self) -> u64 {
        u64::from(self.0) << Hint::SHIFT
    }
}

/// A snapshot taken while the connection's lock was held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) state: State,
    pub(crate) assured: bool,
}

fn tcp_env(config: &Config, now: Instant, deadline: Instant) -> Env<'_> {
    Env {
        config: &config.tcp,
        timeouts: &config.timeouts,
        now,
        deadline,
    }
}

impl Conn {
    /// Whether `pkt` may open a new connection (TCP: a SYN, or an ACK with
    /// [`TcpConfig::loose`](super::TcpConfig::loose); ICMP: an echo request).
    pub(crate) fn check_opener(pkt: &Packet, config: &Config) -> Result<(), Invalid> {
        match pkt.transport() {
            Transport::Tcp(seg) => Tcb::check_opener(seg, &config.tcp).map_err(Invalid::Tcp),
            Transport::IcmpEcho if pkt.tuple().is_echo_reply() == Some(true) => {
                Err(Invalid::EchoReplyWithoutRequest)
            }
            _ => Ok(()),
        }
    }

    /// A new connection opened by `pkt` at `now`, its snapshot, and its deadline hint for
    /// `shortest` (see [`Conn`]).
    pub(crate) fn new(
        pkt: &Packet,
        buckets: [u32; 2],
        now: Instant,
        config: &Config,
        shortest: Duration,
    ) -> Result<(Conn, Snapshot, Hint), Invalid> {
        Conn::check_opener(pkt, config)?;
        let t = &config.timeouts;
        let (proto, timeout) = match pkt.transport() {
            Transport::Tcp(seg) => {
                let env = tcp_env(config, now, now);
                let (tcb, verdict) = Tcb::new(seg, &env).map_err(Invalid::Tcp)?;
                let timeout = match verdict {
                    Verdict::Accepted {
                        timeout: Some(timeout),
                    } => timeout,
                    _ => t.tcp(tcb.state()),
                };
                (Proto::Tcp(tcb), timeout)
            }
            Transport::Udp => (
                Proto::Udp {
                    stream_at: now.saturating_add(t.udp_stream_after),
                },
                t.udp_unreplied,
            ),
            Transport::IcmpEcho => (Proto::Icmp, t.icmp),
        };
        let inner = Inner {
            proto,
            last_used: now,
            status: Status::default(),
            seen: now,
        };
        let snap = inner.snapshot();
        let deadline = now.saturating_add(timeout).as_nanos();
        let hint = Hint::floor(deadline.min(now.saturating_add(shortest).as_nanos()));
        let conn = Conn {
            original: *pkt.tuple(),
            buckets,
            deadline: AtomicU64::new(deadline),
            inner: Mutex::new(inner),
        };
        Ok((conn, snap, hint))
    }

    /// Feeds `pkt`, travelling in `dir`, to the connection at `now` — or at the latest time
    /// a decision about it was made at, if that is later (see [`Conn`]) — and, unless it had
    /// expired, sets `hint` (the entry's deadline hint) anew for `shortest`.
    ///
    /// Preconditions: the caller holds the lock of the bucket where it found this connection's
    /// `dir` tuple (so no one can remove the connection meanwhile), and `hint` is that entry's.
    pub(crate) fn update(
        &self,
        dir: Direction,
        pkt: &Packet,
        now: Instant,
        config: &Config,
        shortest: Duration,
        hint: &mut Hint,
    ) -> Result<Updated, UpdateError> {
        let mut inner = self.inner.lock();
        let now = inner.decide_at(now);
        if self.expired_at(now) {
            return Err(UpdateError::Expired);
        }
        let result = self.update_locked(&mut inner, dir, pkt, now, config);
        *hint = self.hint_of(&inner, shortest);
        result
    }

    /// `update`'s body, at the decision time `now`.
    ///
    /// Preconditions: `inner` is this connection's, locked, and `now` its decision time.
    #[inline(always)]
    fn update_locked(
        &self,
        inner: &mut Inner,
        dir: Direction,
        pkt: &Packet,
        now: Instant,
        config: &Config,
    ) -> Result<Updated, UpdateError> {
        let t = &config.timeouts;
        let refresh = |inner: &mut Inner, timeout: Duration| {
            inner.last_used = now;
            let deadline = now.saturating_add(timeout);
            self.deadline.store(deadline.as_nanos(), Ordering::Release);
        };
        let reply = dir == Direction::Reply;
        let outcome = match (&mut inner.proto, pkt.transport()) {
            (Proto::Tcp(tcb), Transport::Tcp(seg)) => {
                let env = tcp_env(config, now, self.deadline());
                let mut status = inner.status;
                match tcb.update(dir, seg, &env, &mut status) {
                    Err((invalid, shorten)) => {
                        if let Some(timeout) = shorten {
                            let deadline = now.saturating_add(timeout);
                            self.deadline.store(deadline.as_nanos(), Ordering::Release);
                        }
                        return Err(UpdateError::Invalid(Invalid::Tcp(invalid)));
                    }
                    Ok(Verdict::Reopen) => return Ok(Updated::Reopen),
                    Ok(verdict) => {
                        inner.status.assured = status.assured;
                        verdict
                    }
                }
            }
            (Proto::Udp { stream_at }, Transport::Udp) => {
                let timeout = if inner.status.seen_reply && now > *stream_at {
                    inner.status.assured = true;
                    t.udp_replied
                } else {
                    t.udp_unreplied
                };
                Verdict::Accepted {
                    timeout: Some(timeout),
                }
            }
            (Proto::Icmp, Transport::IcmpEcho) => Verdict::Accepted {
                timeout: Some(t.icmp),
            },
            // The tuple names the protocol, so a packet found by its tuple always matches.
            _ => return Err(UpdateError::Invalid(Invalid::EchoReplyWithoutRequest)),
        };
        if reply {
            inner.status.seen_reply = true;
        }
        Ok(match outcome {
            Verdict::Accepted { timeout } => {
                if let Some(timeout) = timeout {
                    refresh(inner, timeout);
                } else {
                    inner.last_used = now;
                }
                Updated::Accepted(inner.snapshot(), timeout.is_some())
            }
            Verdict::Ignored(why) => Updated::Ignored(inner.snapshot(), why),
            Verdict::Killed => {
                inner.last_used = now;
                Updated::Killed(inner.snapshot())
            }
            Verdict::Reopen => Updated::Reopen,
        })
    }

    /// Whether the connection is expired at `now` according to its deadline. Exact when the
    /// caller holds both bucket locks or this connection's lock; otherwise a hint that the
    /// caller must confirm under those locks before acting on it.
    pub fn expired_at(&self, now: Instant) -> bool {
        now.as_nanos() > self.deadline.load(Ordering::Acquire)
    }

    /// Whether the connection is expired at `now` (or at the latest time a decision about it
    /// was made at, if later), decided and recorded under the connection's lock: exact.
    pub(crate) fn expired_locked(&self, now: Instant) -> bool {
        let mut inner = self.inner.lock();
        let now = inner.decide_at(now);
        self.expired_at(now)
    }

    /// Decides at `now` (or later: see [`Conn`]), under the connection's lock, whether the
    /// connection has expired (`None`) and otherwise returns a deadline hint for `shortest`:
    /// a time that the deadline will never go below while the connection lives.
    ///
    /// Preconditions: the caller holds a bucket lock of this connection (the hint is for the
    /// entry it found there).
    pub(crate) fn hint_locked(&self, now: Instant, shortest: Duration) -> Option<Hint> {
        let mut inner = self.inner.lock();
        let now = inner.decide_at(now);
        if self.expired_at(now) {
            return None;
        }
        Some(self.hint_of(&inner, shortest))
    }

    /// `min(deadline, seen + shortest)`: a lower bound of every deadline from now on (see
    /// [`Conn`]).
    ///
    /// Preconditions: `inner` is this connection's, locked.
    #[inline(always)]
    fn hint_of(&self, inner: &Inner, shortest: Duration) -> Hint {
        let deadline = self.deadline.load(Ordering::Acquire);
        Hint::floor(deadline.min(inner.seen.saturating_add(shortest).as_nanos()))
    }

    /// Whether early drop may evict this connection: not assured, or closing.
    pub(crate) fn evictable(&self) -> bool {
        let inner = self.inner.lock();
        !inner.status.assured || inner.state().is_closing()
    }

    /// The instant after which the connection expires unless a packet refreshes it.
    pub fn deadline(&self) -> Instant {
        Instant::from_nanos(self.deadline.load(Ordering::Acquire))
    }

    /// The tuple in the original direction.
    pub fn original(&self) -> Tuple {
        self.original
    }

    /// The tuple in the reply direction.
    pub fn reply(&self) -> Tuple {
        self.original.reply()
    }

    /// The tuple of `dir`.
    pub fn tuple(&self, dir: Direction) -> Tuple {
        match dir {
            Direction::Original => self.original,
            Direction::Reply => self.original.reply(),
        }
    }

    /// Transport protocol.
    pub fn trans_proto(&self) -> TransProto {
        self.original.trans_proto()
    }

    pub(crate) fn bucket(&self, dir: Direction) -> usize {
        self.buckets[dir.index()] as usize
    }

    /// The current protocol state.
    pub fn state(&self) -> State {
        self.inner.lock().state()
    }

    /// Whether the connection is assured, as Linux decides it: TCP once the handshake's last
    /// ACK was followed by a valid segment in `established`; UDP once a packet arrives after a
    /// reply more than two seconds into the flow; ICMP never. Early drop spares assured
    /// connections that are not closing.
    pub fn assured(&self) -> bool {
        self.inner.lock().status.assured
    }

    /// When the last accepted packet was seen.
    pub fn last_used(&self) -> Instant {
        self.inner.lock().last_used
    }
}
