//! One tracked connection: its tuples, its protocol state, its last use and its deadline.

use super::packet::{Packet, Transport};
use super::tcp::{Tcb, TcpInvalid, TcpState};
use super::timeouts::Timeouts;
use super::tuple::{Direction, TransProto, Tuple};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::Mutex;
use crate::time::Instant;
use std::fmt;

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

/// Why the tracker rejected a packet. A rejected packet changes nothing: no connection is
/// created, no state moves, the last-used time stays.
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
    Udp { replied: bool },
    Icmp { replied: bool },
}

impl Proto {
    fn state(&self) -> State {
        let udp = |replied: bool| {
            if replied {
                UdpState::Replied
            } else {
                UdpState::Unreplied
            }
        };
        match self {
            Proto::Tcp(tcb) => State::Tcp(tcb.state()),
            Proto::Udp { replied } => State::Udp(udp(*replied)),
            Proto::Icmp { replied } => State::IcmpEcho(udp(*replied)),
        }
    }
}

fn timeout(state: State, t: &Timeouts) -> std::time::Duration {
    match state {
        State::Tcp(s) => t.tcp(s),
        State::Udp(UdpState::Unreplied) => t.udp_unreplied,
        State::Udp(UdpState::Replied) => t.udp_replied,
        State::IcmpEcho(_) => t.icmp,
    }
}

/// Protected by [`Conn::inner`].
#[derive(Debug)]
struct Inner {
    proto: Proto,
    last_used: Instant,
    assured: bool,
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
/// Lock: `inner` (the connection's own lock) protects the protocol state, the last-used time
/// and the assured flag. It is the innermost lock: the table takes it only inside a bucket
/// lock of this connection, and nothing is locked while it is held (see the table's lock
/// order), so the accessors below are safe to call from anywhere.
/// `deadline` is written only under `inner` *and* a bucket lock of this connection, so it is
/// exact for a reader holding both bucket locks and a hint for a reader holding one.
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

/// A snapshot taken while the connection's lock was held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) state: State,
    pub(crate) assured: bool,
}

impl Conn {
    /// Whether `pkt` may open a new connection (TCP: a bare SYN; ICMP: an echo request).
    pub(crate) fn check_opener(pkt: &Packet) -> Result<(), Invalid> {
        match pkt.transport() {
            Transport::Tcp(seg) if !Tcb::opens(seg) => Err(Invalid::Tcp(TcpInvalid::NotSyn)),
            Transport::IcmpEcho if pkt.tuple().is_echo_reply() == Some(true) => {
                Err(Invalid::EchoReplyWithoutRequest)
            }
            _ => Ok(()),
        }
    }

    /// A new connection opened by `pkt` at `now`.
    pub(crate) fn new(
        pkt: &Packet,
        buckets: [u32; 2],
        now: Instant,
        timeouts: &Timeouts,
    ) -> Result<(Conn, Snapshot), Invalid> {
        Conn::check_opener(pkt)?;
        let proto = match pkt.transport() {
            Transport::Tcp(seg) => Proto::Tcp(Tcb::new(seg).map_err(Invalid::Tcp)?),
            Transport::Udp => Proto::Udp { replied: false },
            Transport::IcmpEcho => Proto::Icmp { replied: false },
        };
        let state = proto.state();
        let deadline = now.saturating_add(timeout(state, timeouts));
        let conn = Conn {
            original: *pkt.tuple(),
            buckets,
            deadline: AtomicU64::new(deadline.as_nanos()),
            inner: Mutex::new(Inner {
                proto,
                last_used: now,
                assured: false,
            }),
        };
        Ok((
            conn,
            Snapshot {
                state,
                assured: false,
            },
        ))
    }

    /// Feeds `pkt`, travelling in `dir`, to the connection at `now`.
    ///
    /// Preconditions: the caller holds the lock of the bucket where it found this connection's
    /// `dir` tuple (so no one can remove the connection meanwhile).
    pub(crate) fn update(
        &self,
        dir: Direction,
        pkt: &Packet,
        now: Instant,
        timeouts: &Timeouts,
    ) -> Result<Snapshot, UpdateError> {
        let mut inner = self.inner.lock();
        if self.expired_at(now) {
            return Err(UpdateError::Expired);
        }
        match (&mut inner.proto, pkt.transport()) {
            (Proto::Tcp(tcb), Transport::Tcp(seg)) => {
                if tcb.reopens(dir, seg) {
                    *tcb = Tcb::new(seg).map_err(|e| UpdateError::Invalid(Invalid::Tcp(e)))?;
                    inner.assured = false;
                } else {
                    tcb.update(dir, seg)
                        .map_err(|e| UpdateError::Invalid(Invalid::Tcp(e)))?;
                }
            }
            (Proto::Udp { replied }, Transport::Udp)
            | (Proto::Icmp { replied }, Transport::IcmpEcho) => {
                if dir == Direction::Reply {
                    *replied = true;
                }
            }
            // The tuple names the protocol, so a packet found by its tuple always matches.
            _ => return Err(UpdateError::Invalid(Invalid::EchoReplyWithoutRequest)),
        }
        let state = inner.proto.state();
        if matches!(
            state,
            State::Tcp(TcpState::Established)
                | State::Udp(UdpState::Replied)
                | State::IcmpEcho(UdpState::Replied)
        ) {
            inner.assured = true;
        }
        inner.last_used = now;
        let deadline = now.saturating_add(timeout(state, timeouts));
        self.deadline.store(deadline.as_nanos(), Ordering::Release);
        Ok(Snapshot {
            state,
            assured: inner.assured,
        })
    }

    /// Whether the connection is expired at `now` according to its deadline. Exact when the
    /// caller holds both bucket locks or this connection's lock; otherwise a hint that the
    /// caller must confirm under those locks before acting on it.
    pub fn expired_at(&self, now: Instant) -> bool {
        now.as_nanos() > self.deadline.load(Ordering::Acquire)
    }

    /// [`expired_at`](Conn::expired_at), exact: read under the connection's lock.
    pub(crate) fn expired_locked(&self, now: Instant) -> bool {
        let _inner = self.inner.lock();
        self.expired_at(now)
    }

    /// Whether early drop may evict this connection: not assured, or closing.
    pub(crate) fn evictable(&self) -> bool {
        let inner = self.inner.lock();
        !inner.assured || inner.proto.state().is_closing()
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
        self.inner.lock().proto.state()
    }

    /// Whether a reply was seen and the connection was established (UDP: replied).
    pub fn assured(&self) -> bool {
        self.inner.lock().assured
    }

    /// When the last accepted packet was seen.
    pub fn last_used(&self) -> Instant {
        self.inner.lock().last_used
    }
}
