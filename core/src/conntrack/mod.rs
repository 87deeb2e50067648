//! Connection tracking: a bucketed table of TCP, UDP and ICMP echo connections, reaped
//! incrementally (gVisor's conntrack garbage collection, seed 003).
//!
//! A packet path calls [`ConnTable::track`] (or [`ConnTrack`], a table with its own reaper
//! thread) for every packet: it finds the packet's connection in one bucket — reaping
//! expired tuples it meets on the way — or creates it, then feeds the packet to the
//! connection's state machine (for TCP, Linux's: see [`TcpState`]) and returns the connection, the packet's
//! [`Direction`] and the [`State`] that picks the timeout.
//!
//! ```
//! # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
//! use refwatch::conntrack::{Config, ConnTable, Packet, TcpFlags as F, TcpSegment, State, TcpState};
//! use refwatch::time::ManualClock;
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let table = ConnTable::with_clock(Config::with_buckets(1024), clock.clone()).unwrap();
//! let (c, s) = ("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:443".parse().unwrap());
//! table.track(&Packet::tcp(c, s, TcpSegment::new(F::SYN, 7, 0)).unwrap()).unwrap();
//! table.track(&Packet::tcp(s, c, TcpSegment::new(F::SYN | F::ACK, 90, 8)).unwrap()).unwrap();
//! let t = table.track(&Packet::tcp(c, s, TcpSegment::new(F::ACK, 8, 91)).unwrap()).unwrap();
//! assert_eq!(t.state, State::Tcp(TcpState::Established));
//! assert!(t.assured);
//!
//! clock.advance(Duration::from_secs(6 * 24 * 3600)); // past the 5-day established timeout
//! assert!(table.lookup(&t.conn.original()).is_none());
//! assert_eq!(table.stats().live, 0);
//! ```
//!
//! Modules: [`tuple`](Tuple) (one direction of a connection), [`hash`](KeyedHash) (the keyed hash), [`packet`](Packet) (the parser),
//! [`tcp`](TcpState) (the TCP tracker, with Linux's states, windows and timeouts), [`timeouts`](Timeouts),
//! [`table`](ConnTable) (buckets, lock order, early drop, counters) and [`reaper`](Reaper).

mod conn;
mod hash;
mod packet;
mod reaper;
mod table;
mod tcp;
mod timeouts;
mod tuple;

pub use conn::{Conn, Invalid, State, UdpState};
pub use hash::{KeyedHash, KeyedHasher};
pub use packet::{Layer, Packet, ParseError, TcpFlags, TcpSegment, Transport};
pub use reaper::{ConnTrack, Reaper, ReaperPanicked};
pub use table::{
    Audit, AuditError, Config, ConfigError, ConnTable, ReaperConfig, Stats, TrackError, Tracked,
};
pub use tcp::{valid_flags, TcpConfig, TcpIgnored, TcpInvalid, TcpState, MAX_WSCALE};
pub use timeouts::Timeouts;
pub use tuple::{Direction, NetProto, TransProto, Tuple, TupleError};

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests;
