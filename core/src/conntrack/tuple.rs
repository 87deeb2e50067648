//! Tuples: what identifies one direction of a connection.
//!
//! A [`Tuple`] names the two ends (address and port), the transport protocol and, through the
//! address family, the network protocol. [`Tuple::reply`] is the tuple of the packets that
//! travel the other way. Both address families of a tuple are always the same: the
//! constructors take socket addresses and refuse mixed families.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Network-layer protocol of a tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetProto {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// Transport-layer protocol of a tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransProto {
    /// TCP, keyed by ports.
    Tcp,
    /// UDP, keyed by ports.
    Udp,
    /// ICMP or ICMPv6 echo, keyed by the echo identifier. The request direction and the reply
    /// direction are told apart (an echo *request* sent by the responder is another flow).
    IcmpEcho,
}

/// Which way a packet travels on its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// From the end that opened the connection.
    Original,
    /// From the responder.
    Reply,
}

impl Direction {
    /// The other direction.
    pub fn opposite(self) -> Direction {
        match self {
            Direction::Original => Direction::Reply,
            Direction::Reply => Direction::Original,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The two addresses of a tuple: one family by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Addrs {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

/// Why a tuple could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TupleError {
    /// The source and destination are of different address families.
    MixedFamilies,
}

impl fmt::Display for TupleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TupleError::MixedFamilies => f.write_str(
                "source and destination addresses are of different families (IPv4 and IPv6)",
            ),
        }
    }
}

impl std::error::Error for TupleError {}

/// One direction of a connection. Immutable, `Copy`, 38 bytes.
///
/// It hashes as whole machine words — two for IPv4 (both addresses in one; ports, protocol
/// and family in the other), five for IPv6 — so a hasher makes a few `write_u64` calls, not
/// one per field (see [`KeyedHash`](super::KeyedHash), the table's default). Equal tuples
/// write equal words, and the last word names the family and protocol.
///
/// ```
/// # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
/// use refwatch::conntrack::{Tuple, TransProto};
///
/// let t = Tuple::tcp("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap()).unwrap();
/// let r = t.reply();
/// assert_eq!(r.src(), t.dst());
/// assert_eq!(r.dst_port(), 40000);
/// assert_eq!(r.reply(), t);
/// assert_eq!(t.trans_proto(), TransProto::Tcp);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    addrs: Addrs,
    /// TCP/UDP: source port. ICMP echo: the identifier.
    a: u16,
    /// TCP/UDP: destination port. ICMP echo: `ECHO_REQUEST` or `ECHO_REPLY`.
    b: u16,
    proto: TransProto,
}

impl std::hash::Hash for Tuple {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let proto = match self.proto {
            TransProto::Tcp => 6u64,
            TransProto::Udp => 17,
            TransProto::IcmpEcho => 1,
        };
        // Ports (or echo id and kind), protocol, family: one word, in its low 48 bits.
        let tail =
            |family: u64| u64::from(self.a) << 32 | u64::from(self.b) << 16 | proto << 8 | family;
        match self.addrs {
            Addrs::V4 { src, dst } => {
                state.write_u64(u64::from(u32::from(src)) << 32 | u64::from(u32::from(dst)));
                state.write_u64(tail(4));
            }
            Addrs::V6 { src, dst } => {
                let (src, dst) = (u128::from(src), u128::from(dst));
                state.write_u64((src >> 64) as u64);
                state.write_u64(src as u64);
                state.write_u64((dst >> 64) as u64);
                state.write_u64(dst as u64);
                state.write_u64(tail(6));
            }
        }
    }
}

const ECHO_REQUEST: u16 = 0;
const ECHO_REPLY: u16 = 1;

impl Tuple {
    fn with_ports(
        proto: TransProto,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<Tuple, TupleError> {
        let addrs = addrs(src.ip(), dst.ip())?;
        Ok(Tuple {
            addrs,
            a: src.port(),
            b: dst.port(),
            proto,
        })
    }

    /// The TCP tuple from `src` to `dst`.
    pub fn tcp(src: SocketAddr, dst: SocketAddr) -> Result<Tuple, TupleError> {
        Tuple::with_ports(TransProto::Tcp, src, dst)
    }

    /// The UDP tuple from `src` to `dst`.
    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Result<Tuple, TupleError> {
        Tuple::with_ports(TransProto::Udp, src, dst)
    }

    /// The tuple of an ICMP (or ICMPv6) echo request from `src` to `dst` with identifier `id`.
    pub fn icmp_echo_request(src: IpAddr, dst: IpAddr, id: u16) -> Result<Tuple, TupleError> {
        Ok(Tuple {
            addrs: addrs(src, dst)?,
            a: id,
            b: ECHO_REQUEST,
            proto: TransProto::IcmpEcho,
        })
    }

    /// The tuple of an ICMP (or ICMPv6) echo reply from `src` to `dst` with identifier `id`.
    pub fn icmp_echo_reply(src: IpAddr, dst: IpAddr, id: u16) -> Result<Tuple, TupleError> {
        Ok(Tuple {
            addrs: addrs(src, dst)?,
            a: id,
            b: ECHO_REPLY,
            proto: TransProto::IcmpEcho,
        })
    }

    /// The tuple of the packets travelling the other way on the same connection.
    pub fn reply(&self) -> Tuple {
        let addrs = match self.addrs {
            Addrs::V4 { src, dst } => Addrs::V4 { src: dst, dst: src },
            Addrs::V6 { src, dst } => Addrs::V6 { src: dst, dst: src },
        };
        let (a, b) = match self.proto {
            TransProto::Tcp | TransProto::Udp => (self.b, self.a),
            TransProto::IcmpEcho => (self.a, self.b ^ 1),
        };
        Tuple {
            addrs,
            a,
            b,
            proto: self.proto,
        }
    }

    /// Source address.
    pub fn src(&self) -> IpAddr {
        match self.addrs {
            Addrs::V4 { src, .. } => IpAddr::V4(src),
            Addrs::V6 { src, .. } => IpAddr::V6(src),
        }
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        match self.addrs {
            Addrs::V4 { dst, .. } => IpAddr::V4(dst),
            Addrs::V6 { dst, .. } => IpAddr::V6(dst),
        }
    }

    /// Source port (TCP, UDP) or echo identifier (ICMP echo).
    pub fn src_port(&self) -> u16 {
        self.a
    }

    /// Destination port (TCP, UDP) or echo identifier (ICMP echo).
    pub fn dst_port(&self) -> u16 {
        match self.proto {
            TransProto::Tcp | TransProto::Udp => self.b,
            TransProto::IcmpEcho => self.a,
        }
    }

    /// For ICMP echo: whether this is the reply direction's tuple (echo reply). `None` for
    /// TCP and UDP.
    pub fn is_echo_reply(&self) -> Option<bool> {
        (self.proto == TransProto::IcmpEcho).then_some(self.b == ECHO_REPLY)
    }

    /// Network protocol (from the address family).
    pub fn net_proto(&self) -> NetProto {
        match self.addrs {
            Addrs::V4 { .. } => NetProto::Ipv4,
            Addrs::V6 { .. } => NetProto::Ipv6,
        }
    }

    /// Transport protocol.
    pub fn trans_proto(&self) -> TransProto {
        self.proto
    }
}

fn addrs(src: IpAddr, dst: IpAddr) -> Result<Addrs, TupleError> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => Ok(Addrs::V4 { src, dst }),
        (IpAddr::V6(src), IpAddr::V6(dst)) => Ok(Addrs::V6 { src, dst }),
        _ => Err(TupleError::MixedFamilies),
    }
}

impl fmt::Debug for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            TransProto::Tcp | TransProto::Udp => {
                let proto = if self.proto == TransProto::Tcp {
                    "tcp"
                } else {
                    "udp"
                };
                write!(
                    f,
                    "{proto} {} -> {}",
                    SocketAddr::new(self.src(), self.a),
                    SocketAddr::new(self.dst(), self.b)
                )
            }
            TransProto::IcmpEcho => {
                let kind = if self.b == ECHO_REPLY {
                    "reply"
                } else {
                    "request"
                };
                write!(
                    f,
                    "icmp echo-{kind} {} -> {} id={}",
                    self.src(),
                    self.dst(),
                    self.a
                )
            }
        }
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reply_swaps_ends_and_is_an_involution() {
        let t = Tuple::udp(sa("[2001:db8::1]:53"), sa("[2001:db8::2]:5353")).unwrap();
        let r = t.reply();
        assert_eq!((r.src(), r.src_port()), (t.dst(), t.dst_port()));
        assert_eq!((r.dst(), r.dst_port()), (t.src(), t.src_port()));
        assert_eq!(r.net_proto(), NetProto::Ipv6);
        assert_ne!(r, t);
        assert_eq!(r.reply(), t);
    }

    #[test]
    fn echo_reply_tuple_is_the_reply_of_the_request_tuple() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let req = Tuple::icmp_echo_request(a, b, 7).unwrap();
        let rep = Tuple::icmp_echo_reply(b, a, 7).unwrap();
        assert_eq!(req.reply(), rep);
        assert_eq!(rep.is_echo_reply(), Some(true));
        // The responder's own request with the same id is a different flow.
        assert_ne!(Tuple::icmp_echo_request(b, a, 7).unwrap(), rep);
        assert_eq!(req.src_port(), 7);
        assert_eq!(req.dst_port(), 7);
    }

    #[test]
    fn mixed_families_are_refused() {
        assert_eq!(
            Tuple::tcp(sa("10.0.0.1:1"), sa("[::1]:2")),
            Err(TupleError::MixedFamilies)
        );
        assert!(TupleError::MixedFamilies.to_string().contains("families"));
    }

    #[test]
    fn tuple_is_small() {
        assert!(
            std::mem::size_of::<Tuple>() <= 40,
            "{}",
            std::mem::size_of::<Tuple>()
        );
    }
}
