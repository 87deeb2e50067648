//! Timeouts: how long a connection may stay idle in each state.
//!
//! A connection expires when the table's [`Clock`](crate::time::Clock) passes its last use
//! plus the timeout of its current state (strictly: exactly at the deadline it is still
//! alive, as in the seed's `now.Sub(lastUsed) > timeout`). Both are read on that clock, so a
//! timeout is honoured to the clock's granularity: see [`Timeouts`].

use super::tcp::TcpState;
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

/// Idle timeouts per state. [`Timeouts::linux`] is the default.
///
/// # Granularity
///
/// A connection expires when the table's clock reads strictly more than its last use plus
/// its timeout, both read on that clock. On the default clock of
/// [`ConnTable::new`](super::ConnTable::new), a [`CoarseClock`](crate::time::CoarseClock)
/// with 1 ms ticks, that is decided in whole ticks, as Linux decides it in jiffies, so a
/// timeout is honoured to within the tick:
/// - a connection is never judged expired before it has been idle, in real time, for its
///   timeout minus two ticks (one tick of rounding, one the ticker may make up after running
///   late); usually it is within one tick and the ticker's wake-up latency;
/// - it may outlive its timeout by a tick plus that latency, and by any stall of the ticker
///   while it was idle (a starved ticker stops the clock and does not catch up: connections
///   live longer, never shorter) — on top of the time until a lookup or the reaper meets it.
///
/// On a [`MonotonicClock`](crate::time::MonotonicClock) the granularity is the nanosecond;
/// on a [`ManualClock`](crate::time::ManualClock) time is whatever the test says. Timeouts
/// much shorter than a few ticks are not meaningful on the coarse clock.
///
/// UDP follows Linux's stream rule: a flow gets [`udp_replied`](Timeouts::udp_replied) (and
/// is assured) only for a packet seen after a reply *and* more than
/// [`udp_stream_after`](Timeouts::udp_stream_after) after the flow's first packet; until then
/// every packet refreshes it to [`udp_unreplied`](Timeouts::udp_unreplied).
///
/// ```
/// # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
/// use refwatch::conntrack::{TcpState, Timeouts};
/// use std::time::Duration;
///
/// assert_eq!(Timeouts::linux().tcp(TcpState::LastAck), Duration::from_secs(30));
/// assert_eq!(Timeouts::seed().tcp(TcpState::FinWait), Duration::from_secs(5 * 24 * 3600));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP `syn-sent`.
    pub tcp_syn_sent: Duration,
    /// TCP `syn-recv`.
    pub tcp_syn_recv: Duration,
    /// TCP `established`.
    pub tcp_established: Duration,
    /// TCP `fin-wait`.
    pub tcp_fin_wait: Duration,
    /// TCP `close-wait`.
    pub tcp_close_wait: Duration,
    /// TCP `last-ack`.
    pub tcp_last_ack: Duration,
    /// TCP `time-wait`.
    pub tcp_time_wait: Duration,
    /// TCP `close` (after a RST).
    pub tcp_close: Duration,
    /// TCP `syn-sent2` (simultaneous open).
    pub tcp_syn_sent2: Duration,
    /// TCP, any state with a longer timeout, after [`TcpConfig::max_retrans`] identical
    /// segments in a row or while the receiver advertises a zero window
    /// (`nf_conntrack_tcp_timeout_max_retrans`).
    ///
    /// [`TcpConfig::max_retrans`]: super::TcpConfig::max_retrans
    pub tcp_retrans: Duration,
    /// TCP, any state with a longer timeout, while data is unacknowledged, and for a
    /// connection picked up in the middle before any reply
    /// (`nf_conntrack_tcp_timeout_unacknowledged`).
    pub tcp_unacknowledged: Duration,
    /// UDP, no reply seen yet.
    pub udp_unreplied: Duration,
    /// UDP, a reply was seen and the flow is older than `udp_stream_after` (assured).
    pub udp_replied: Duration,
    /// How old a replied UDP flow must be to count as a stream (Linux: 2 s).
    pub udp_stream_after: Duration,
    /// ICMP echo.
    pub icmp: Duration,
}

impl Timeouts {
    /// Linux's defaults (`nf_conntrack_tcp_timeout_*`, `nf_conntrack_udp_timeout*`,
    /// `nf_conntrack_icmp_timeout`).
    pub const fn linux() -> Timeouts {
        Timeouts {
            tcp_syn_sent: Duration::from_secs(120),
            tcp_syn_recv: Duration::from_secs(60),
            tcp_established: Duration::from_secs(5 * 24 * 60 * 60),
            tcp_fin_wait: Duration::from_secs(120),
            tcp_close_wait: Duration::from_secs(60),
            tcp_last_ack: Duration::from_secs(30),
            tcp_time_wait: Duration::from_secs(120),
            tcp_close: Duration::from_secs(10),
            tcp_syn_sent2: Duration::from_secs(120),
            tcp_retrans: Duration::from_secs(300),
            tcp_unacknowledged: Duration::from_secs(300),
            udp_unreplied: Duration::from_secs(30),
            udp_replied: Duration::from_secs(120),
            udp_stream_after: Duration::from_secs(2),
            icmp: Duration::from_secs(30),
        }
    }

    /// The seed's rule: 5 days while the tracker says `Alive`, 120 s otherwise. `Alive` covers
    /// every state from the reply's SYN until both FINs are acknowledged, so only `syn-sent`,
    /// `time-wait` and `close` get 120 s. (The seed tracks no UDP: Linux's values are used.)
    pub const fn seed() -> Timeouts {
        let alive = Duration::from_secs(5 * 24 * 60 * 60);
        let other = Duration::from_secs(120);
        Timeouts {
            tcp_syn_sent: other,
            tcp_syn_recv: alive,
            tcp_established: alive,
            tcp_fin_wait: alive,
            tcp_close_wait: alive,
            tcp_last_ack: alive,
            tcp_time_wait: other,
            tcp_close: other,
            tcp_syn_sent2: alive,
            tcp_retrans: alive,
            tcp_unacknowledged: alive,
            ..Timeouts::linux()
        }
    }

    /// The timeout of a TCP state.
    pub fn tcp(&self, state: TcpState) -> Duration {
        match state {
            TcpState::SynSent => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
            TcpState::SynSent2 => self.tcp_syn_sent2,
        }
    }

    /// The longest timeout of the profile.
    pub fn longest(&self) -> Duration {
        self.all().into_iter().max().unwrap_or(SECOND)
    }

    /// The shortest timeout of the profile: every deadline the tracker sets is a decision's
    /// time plus one of these timeouts, so none is set earlier than the decision's time plus
    /// this (the table's deadline hints rest on it).
    pub fn shortest(&self) -> Duration {
        self.all().into_iter().min().unwrap_or(Duration::ZERO)
    }

    /// Every timeout a deadline can be set to (not `udp_stream_after`, which is an age).
    fn all(&self) -> [Duration; 14] {
        [
            self.tcp_syn_sent,
            self.tcp_syn_recv,
            self.tcp_established,
            self.tcp_fin_wait,
            self.tcp_close_wait,
            self.tcp_last_ack,
            self.tcp_time_wait,
            self.tcp_close,
            self.tcp_syn_sent2,
            self.tcp_retrans,
            self.tcp_unacknowledged,
            self.udp_unreplied,
            self.udp_replied,
            self.icmp,
        ]
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::linux()
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    #[test]
    fn linux_values_match_the_kernel_defaults() {
        let t = Timeouts::linux();
        let secs = |s| Duration::from_secs(s);
        assert_eq!(t.tcp(TcpState::SynSent), secs(120));
        assert_eq!(t.tcp(TcpState::SynRecv), secs(60));
        assert_eq!(t.tcp(TcpState::Established), 5 * DAY);
        assert_eq!(t.tcp(TcpState::FinWait), secs(120));
        assert_eq!(t.tcp(TcpState::CloseWait), secs(60));
        assert_eq!(t.tcp(TcpState::LastAck), secs(30));
        assert_eq!(t.tcp(TcpState::TimeWait), secs(120));
        assert_eq!(t.tcp(TcpState::Close), secs(10));
        assert_eq!(t.tcp(TcpState::SynSent2), secs(120));
        assert_eq!(
            (t.tcp_retrans, t.tcp_unacknowledged),
            (secs(300), secs(300))
        );
        assert_eq!(t.udp_stream_after, secs(2));
        assert_eq!((t.udp_unreplied, t.udp_replied), (secs(30), secs(120)));
        assert_eq!(t.longest(), 5 * DAY);
    }

    #[test]
    fn seed_profile_is_five_days_while_alive() {
        let t = Timeouts::seed();
        assert_eq!(t.tcp(TcpState::Established), 5 * DAY);
        assert_eq!(t.tcp(TcpState::LastAck), 5 * DAY);
        assert_eq!(t.tcp(TcpState::SynSent), 120 * SECOND);
        assert_eq!(t.tcp(TcpState::TimeWait), 120 * SECOND);
        assert_eq!(t.tcp(TcpState::Close), 120 * SECOND);
    }
}
