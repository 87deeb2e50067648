//! The refwatch side: a fresh [`ConnTable`] per sequence on a manual clock, fed the same
//! bytes as the kernel.

use crate::compare::{ConnView, Observation};
use refwatch::conntrack::{Config, ConnTable, Packet, State, TrackError, UdpState};
use refwatch::time::{Clock, ManualClock};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// The TCP tracker's switches both sides run with (`nf_conntrack_tcp_loose`,
/// `nf_conntrack_tcp_be_liberal`). The default run uses 0 for both; `--loose` and
/// `--be-liberal` check refwatch's other settings against the kernel's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Switches {
    /// `nf_conntrack_tcp_loose` / `Config::tcp.loose`.
    pub loose: bool,
    /// `nf_conntrack_tcp_be_liberal` / `Config::tcp.be_liberal`.
    pub be_liberal: bool,
}

/// The table configuration the harness compares against the kernel's settings: Linux's
/// defaults with `switches`, which the kernel side sets too (see [`crate::kernel`]).
pub fn config(switches: Switches) -> Config {
    let mut c = Config::with_buckets(64);
    c.tcp.loose = switches.loose;
    c.tcp.be_liberal = switches.be_liberal;
    c
}

/// A harness error on the refwatch side: refwatch could not take the packet at all.
#[derive(Debug)]
pub enum RefError {
    /// `track_bytes` said the bytes are malformed (the harness built them: a harness bug).
    Malformed(String),
    /// The table was full (64 buckets hold hundreds: a harness bug).
    TableFull,
    /// The table refused the configuration.
    Config(String),
}

impl fmt::Display for RefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefError::Malformed(e) => {
                write!(f, "refwatch found a harness-built packet malformed: {e}")
            }
            RefError::TableFull => f.write_str("refwatch's table is full"),
            RefError::Config(e) => write!(f, "refwatch refused the table config: {e}"),
        }
    }
}

impl std::error::Error for RefError {}

/// One sequence's table and clock.
#[derive(Debug)]
pub struct RefSide {
    clock: ManualClock,
    table: ConnTable<ManualClock>,
    client: IpAddr,
}

/// The Linux spelling of a refwatch state: `syn-sent` → `SYN_SENT`; UDP and ICMP echo flows
/// are `UNREPLIED` or `REPLIED`.
pub fn state_name(state: State) -> String {
    match state {
        State::Tcp(s) => s.name().to_ascii_uppercase().replace('-', "_"),
        State::Udp(UdpState::Unreplied) | State::IcmpEcho(UdpState::Unreplied) => {
            "UNREPLIED".into()
        }
        State::Udp(UdpState::Replied) | State::IcmpEcho(UdpState::Replied) => "REPLIED".into(),
    }
}

impl RefSide {
    /// A fresh table; `client` is the address of the sequence's `O` endpoint.
    pub fn new(client: IpAddr, switches: Switches) -> Result<RefSide, RefError> {
        let clock = ManualClock::new();
        let table = ConnTable::with_clock(config(switches), clock.clone())
            .map_err(|e| RefError::Config(e.to_string()))?;
        Ok(RefSide {
            clock,
            table,
            client,
        })
    }

    /// Lets `d` pass.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Tracks `bytes` and reads the packet's connection afterwards.
    pub fn send(&self, bytes: &[u8]) -> Result<Observation, RefError> {
        let pkt = Packet::parse(bytes).map_err(|e| RefError::Malformed(e.to_string()))?;
        let (accepted, refreshed) = match self.table.track(&pkt) {
            Ok(t) => (true, Some(t.refreshed)),
            Err(TrackError::Invalid(_)) => (false, None),
            Err(TrackError::Malformed(e)) => return Err(RefError::Malformed(e.to_string())),
            Err(TrackError::TableFull { .. }) => return Err(RefError::TableFull),
        };
        let conn = self.table.lookup(pkt.tuple()).map(|(conn, _)| {
            let timeout = conn.deadline().duration_since(self.clock.now()).as_secs();
            ConnView {
                state: state_name(conn.state()),
                from_server: conn.original().src() != self.client,
                assured: conn.assured(),
                timeout,
            }
        });
        Ok(Observation {
            accepted,
            conn,
            refreshed,
        })
    }
}
