//! Packets: the parser that turns raw IPv4/IPv6 bytes into what the tracker needs.
//!
//! [`Packet::parse`] reads an IPv4 header (options included) or an IPv6 header (no extension
//! headers), then a TCP header (with its options: the window scale is kept), a UDP header, or
//! an ICMP/ICMPv6 echo header. Anything truncated, malformed or not supported is a
//! [`ParseError`]; the parser never panics and never reads past the lengths the headers claim.
//! Checksums are not verified (the tracker only classifies packets).
//!
//! ```
//! # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
//! use refwatch::conntrack::{Packet, TcpFlags};
//!
//! // IPv4 + TCP SYN from 10.0.0.1:1000 to 10.0.0.2:80.
//! let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
//! p.extend_from_slice(&[0x03, 0xe8, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
//! let pkt = Packet::parse(&p).unwrap();
//! assert_eq!(pkt.tuple().dst_port(), 80);
//! assert_eq!(pkt.tcp_segment().unwrap().flags, TcpFlags::SYN);
//! assert!(Packet::parse(&p[..30]).is_err());
//! ```

use super::tuple::{TransProto, Tuple, TupleError};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::BitOr;

/// TCP header flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(u8);

impl TcpFlags {
    /// No flags.
    pub const NONE: TcpFlags = TcpFlags(0);
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG.
    pub const URG: TcpFlags = TcpFlags(0x20);

    /// The flags from the header's flag byte.
    pub const fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags(bits)
    }

    /// The header's flag byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// What the tracker needs of a TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful with [`TcpFlags::ACK`]).
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Advertised window, unscaled.
    pub window: u16,
    /// The window scale option's shift, if present. The parser passes it on as sent; the
    /// tracker clamps it to 14 ([`MAX_WSCALE`](super::MAX_WSCALE)), as Linux does.
    pub wscale: Option<u8>,
    /// The SACK-permitted option was present.
    pub sack_permitted: bool,
    /// The highest right edge of the SACK blocks, if the segment carried any.
    pub sack: Option<u32>,
    /// The header carried TCP options (of any kind). A segment built by hand with
    /// `wscale` or `sack_permitted` set counts as having options either way.
    pub has_options: bool,
    /// Bytes of payload.
    pub payload_len: u32,
}

impl TcpSegment {
    /// A segment without payload or options, with a 64 KiB window.
    pub fn new(flags: TcpFlags, seq: u32, ack: u32) -> TcpSegment {
        TcpSegment {
            seq,
            ack,
            flags,
            window: u16::MAX,
            wscale: None,
            sack_permitted: false,
            sack: None,
            has_options: false,
            payload_len: 0,
        }
    }

    /// Whether the segment carries options ([`has_options`](TcpSegment::has_options), or an
    /// option field set by hand).
    pub fn carries_options(&self) -> bool {
        self.has_options || self.wscale.is_some() || self.sack_permitted || self.sack.is_some()
    }

    /// Sequence space the segment occupies: payload plus one for SYN and one for FIN.
    pub fn logical_len(&self) -> u32 {
        self.payload_len
            .wrapping_add(u32::from(self.flags.contains(TcpFlags::SYN)))
            .wrapping_add(u32::from(self.flags.contains(TcpFlags::FIN)))
    }
}

/// The transport part of a [`Packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A TCP segment.
    Tcp(TcpSegment),
    /// A UDP datagram.
    Udp,
    /// An ICMP or ICMPv6 echo request or reply.
    IcmpEcho,
}

/// A parsed packet: its tuple and, for TCP, its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    tuple: Tuple,
    transport: Transport,
}

/// The header a [`ParseError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// IPv4 header.
    Ipv4,
    /// IPv6 header.
    Ipv6,
    /// TCP header.
    Tcp,
    /// UDP header.
    Udp,
    /// ICMP or ICMPv6 header.
    Icmp,
}

/// Why bytes are not a packet the tracker can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// No bytes at all.
    Empty,
    /// The IP version nibble is neither 4 nor 6.
    UnknownIpVersion(u8),
    /// Fewer bytes than the header needs.
    Truncated {
        /// The header being read.
        layer: Layer,
        /// Bytes it needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// A length field is impossible (below the header's minimum or beyond the packet).
    BadLength {
        /// The header whose length field is wrong.
        layer: Layer,
        /// The value it claims.
        claimed: usize,
    },
    /// An IPv4 fragment: only a whole datagram carries both ports.
    Fragment,
    /// An IPv6 extension header (not supported).
    Ipv6ExtensionHeader(u8),
    /// A transport protocol the tracker does not follow.
    UnsupportedProtocol(u8),
    /// An ICMP message other than echo request or reply.
    UnsupportedIcmpType(u8),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty packet"),
            ParseError::UnknownIpVersion(v) => write!(f, "IP version {v} is neither 4 nor 6"),
            ParseError::Truncated {
                layer,
                needed,
                available,
            } => write!(
                f,
                "{layer:?} header truncated: needs {needed} bytes, {available} available"
            ),
            ParseError::BadLength { layer, claimed } => {
                write!(
                    f,
                    "{layer:?} length field claims an impossible {claimed} bytes"
                )
            }
            ParseError::Fragment => {
                f.write_str("IPv4 fragments are not tracked (reassemble first)")
            }
            ParseError::Ipv6ExtensionHeader(n) => {
                write!(f, "IPv6 extension header {n} is not supported")
            }
            ParseError::UnsupportedProtocol(p) => {
                write!(
                    f,
                    "transport protocol {p} is not tracked (TCP, UDP, ICMP echo are)"
                )
            }
            ParseError::UnsupportedIcmpType(t) => {
                write!(
                    f,
                    "ICMP type {t} is not tracked (only echo request and reply)"
                )
            }
        }
    }
}

impl std::error::Error for ParseError {}

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
/// IPv6 next-header values that are extension headers.
const IPV6_EXTENSIONS: [u8; 8] = [0, 43, 44, 50, 51, 60, 135, 139];

fn need(bytes: &[u8], layer: Layer, needed: usize) -> Result<(), ParseError> {
    if bytes.len() < needed {
        Err(ParseError::Truncated {
            layer,
            needed,
            available: bytes.len(),
        })
    } else {
        Ok(())
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Packet {
    /// Parses raw IPv4 or IPv6 bytes (starting at the IP header).
    pub fn parse(bytes: &[u8]) -> Result<Packet, ParseError> {
        let first = *bytes.first().ok_or(ParseError::Empty)?;
        match first >> 4 {
            4 => parse_ipv4(bytes),
            6 => parse_ipv6(bytes),
            v => Err(ParseError::UnknownIpVersion(v)),
        }
    }

    /// A TCP packet from `src` to `dst`.
    pub fn tcp(src: SocketAddr, dst: SocketAddr, seg: TcpSegment) -> Result<Packet, TupleError> {
        Ok(Packet {
            tuple: Tuple::tcp(src, dst)?,
            transport: Transport::Tcp(seg),
        })
    }

    /// A UDP packet from `src` to `dst`.
    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Result<Packet, TupleError> {
        Ok(Packet {
            tuple: Tuple::udp(src, dst)?,
            transport: Transport::Udp,
        })
    }

    /// An ICMP echo request from `src` to `dst`.
    pub fn icmp_echo_request(src: IpAddr, dst: IpAddr, id: u16) -> Result<Packet, TupleError> {
        Ok(Packet {
            tuple: Tuple::icmp_echo_request(src, dst, id)?,
            transport: Transport::IcmpEcho,
        })
    }

    /// An ICMP echo reply from `src` to `dst`.
    pub fn icmp_echo_reply(src: IpAddr, dst: IpAddr, id: u16) -> Result<Packet, TupleError> {
        Ok(Packet {
            tuple: Tuple::icmp_echo_reply(src, dst, id)?,
            transport: Transport::IcmpEcho,
        })
    }

    /// The packet's tuple.
    pub fn tuple(&self) -> &Tuple {
        &self.tuple
    }

    /// The transport part.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The TCP segment, for a TCP packet.
    pub fn tcp_segment(&self) -> Option<&TcpSegment> {
        match &self.transport {
            Transport::Tcp(seg) => Some(seg),
            _ => None,
        }
    }

    /// Transport protocol of the packet.
    pub fn trans_proto(&self) -> TransProto {
        self.tuple.trans_proto()
    }
}

fn parse_ipv4(b: &[u8]) -> Result<Packet, ParseError> {
    need(b, Layer::Ipv4, 20)?;
    let ihl = usize::from(b[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(ParseError::BadLength {
            layer: Layer::Ipv4,
            claimed: ihl,
        });
    }
    need(b, Layer::Ipv4, ihl)?;
    let total = usize::from(be16(b, 2));
    if total < ihl || total > b.len() {
        return Err(ParseError::BadLength {
            layer: Layer::Ipv4,
            claimed: total,
        });
    }
    let frag = be16(b, 6);
    if frag & 0x2000 != 0 || frag & 0x1fff != 0 {
        return Err(ParseError::Fragment);
    }
    let src = IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19]));
    let proto = b[9];
    let proto = match proto {
        PROTO_ICMP => PROTO_ICMP,
        PROTO_TCP | PROTO_UDP => proto,
        other => return Err(ParseError::UnsupportedProtocol(other)),
    };
    parse_transport(proto, src, dst, &b[ihl..total])
}

fn parse_ipv6(b: &[u8]) -> Result<Packet, ParseError> {
    need(b, Layer::Ipv6, 40)?;
    let payload = usize::from(be16(b, 4));
    if 40 + payload > b.len() {
        return Err(ParseError::BadLength {
            layer: Layer::Ipv6,
            claimed: payload,
        });
    }
    let next = b[6];
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&b[8..24]);
    dst.copy_from_slice(&b[24..40]);
    let (src, dst) = (
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
    );
    match next {
        PROTO_TCP | PROTO_UDP | PROTO_ICMPV6 => {
            parse_transport(next, src, dst, &b[40..40 + payload])
        }
        n if IPV6_EXTENSIONS.contains(&n) => Err(ParseError::Ipv6ExtensionHeader(n)),
        n => Err(ParseError::UnsupportedProtocol(n)),
    }
}

fn parse_transport(proto: u8, src: IpAddr, dst: IpAddr, t: &[u8]) -> Result<Packet, ParseError> {
    // Both addresses come from the same header, so the families always match.
    let mixed = |_: TupleError| ParseError::UnsupportedProtocol(proto);
    match proto {
        PROTO_TCP => {
            let (src_port, dst_port, seg) = parse_tcp(t)?;
            let tuple = Tuple::tcp(
                SocketAddr::new(src, src_port),
                SocketAddr::new(dst, dst_port),
            )
            .map_err(mixed)?;
            Ok(Packet {
                tuple,
                transport: Transport::Tcp(seg),
            })
        }
        PROTO_UDP => {
            need(t, Layer::Udp, 8)?;
            let len = usize::from(be16(t, 4));
            if len < 8 || len > t.len() {
                return Err(ParseError::BadLength {
                    layer: Layer::Udp,
                    claimed: len,
                });
            }
            let tuple = Tuple::udp(
                SocketAddr::new(src, be16(t, 0)),
                SocketAddr::new(dst, be16(t, 2)),
            )
            .map_err(mixed)?;
            Ok(Packet {
                tuple,
                transport: Transport::Udp,
            })
        }
        _ => {
            need(t, Layer::Icmp, 8)?;
            let (request, reply) = if proto == PROTO_ICMP {
                (8, 0)
            } else {
                (128, 129)
            };
            let id = be16(t, 4);
            let tuple = match t[0] {
                ty if ty == request => Tuple::icmp_echo_request(src, dst, id),
                ty if ty == reply => Tuple::icmp_echo_reply(src, dst, id),
                ty => return Err(ParseError::UnsupportedIcmpType(ty)),
            }
            .map_err(mixed)?;
            Ok(Packet {
                tuple,
                transport: Transport::IcmpEcho,
            })
        }
    }
}

fn parse_tcp(t: &[u8]) -> Result<(u16, u16, TcpSegment), ParseError> {
    need(t, Layer::Tcp, 20)?;
    let doff = usize::from(t[12] >> 4) * 4;
    if doff < 20 || doff > t.len() {
        return Err(ParseError::BadLength {
            layer: Layer::Tcp,
            claimed: doff,
        });
    }
    // Options are read the way Linux's conntrack reads them: a malformed option ends the
    // walk (what was read so far counts) instead of rejecting the segment.
    let opts = &t[20..doff];
    let mut wscale = None;
    let mut sack_permitted = false;
    let mut sack: Option<u32> = None;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = opts.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > opts.len() {
                    break;
                }
                let body = &opts[i + 2..i + len];
                match (kind, len) {
                    (3, 3) => wscale = Some(body[0]),
                    (4, 2) => sack_permitted = true,
                    (5, _) if len >= 10 && (len - 2) % 8 == 0 && sack.is_none() => {
                        sack = body
                            .chunks_exact(8)
                            .map(|block| be32(block, 4))
                            .reduce(|a, b| if (b.wrapping_sub(a) as i32) > 0 { b } else { a });
                    }
                    _ => {}
                }
                i += len;
            }
        }
    }
    let payload_len = u32::try_from(t.len() - doff).unwrap_or(u32::MAX);
    let seg = TcpSegment {
        seq: be32(t, 4),
        ack: be32(t, 8),
        flags: TcpFlags::from_bits(t[13]),
        window: be16(t, 14),
        wscale,
        sack_permitted,
        sack,
        has_options: doff > 20,
        payload_len,
    };
    Ok((be16(t, 0), be16(t, 2), seg))
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    fn ipv4(proto: u8, opts: &[u8], l4: &[u8]) -> Vec<u8> {
        let ihl = 20 + opts.len();
        let total = ihl + l4.len();
        let mut p = vec![
            0x40 | (ihl / 4) as u8,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            proto,
            0,
            0,
            192,
            0,
            2,
            1,
            192,
            0,
            2,
            2,
        ];
        p.extend_from_slice(opts);
        p.extend_from_slice(l4);
        p
    }

    fn tcp_hdr(flags: u8, opts: &[u8], payload: usize) -> Vec<u8> {
        let doff = 20 + opts.len();
        let mut t = vec![0x30, 0x39, 0, 80, 0, 0, 1, 0, 0, 0, 2, 0];
        t.push(((doff / 4) as u8) << 4);
        t.push(flags);
        t.extend_from_slice(&[0x10, 0, 0, 0, 0, 0]);
        t.extend_from_slice(opts);
        t.extend(vec![0xaa; payload]);
        t
    }

    #[test]
    fn ipv4_with_options_and_tcp_window_scale() {
        let opts = [1, 1, 1, 0]; // NOPs and EOL: 4 bytes of IPv4 options
        let tcp = tcp_hdr(0x12, &[2, 4, 5, 0xb4, 1, 3, 3, 7], 5);
        let p = Packet::parse(&ipv4(6, &opts, &tcp)).unwrap();
        let seg = p.tcp_segment().unwrap();
        assert_eq!(seg.flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!((seg.seq, seg.ack, seg.window), (256, 512, 0x1000));
        assert_eq!(seg.wscale, Some(7));
        assert!(!seg.sack_permitted);
        assert_eq!(seg.payload_len, 5);
        assert_eq!(seg.logical_len(), 6);
        assert_eq!(p.tuple().src_port(), 12345);
        assert_eq!(p.tuple().dst().to_string(), "192.0.2.2");
    }

    #[test]
    fn sack_blocks_give_their_highest_right_edge_and_wscale_is_passed_on_unclamped() {
        let mut opts = vec![1, 1, 5, 18];
        for (left, right) in [(u32::MAX - 10, u32::MAX - 5), (u32::MAX - 2, 3)] {
            opts.extend_from_slice(&left.to_be_bytes());
            opts.extend_from_slice(&right.to_be_bytes());
        }
        opts.extend_from_slice(&[4, 2, 3, 3, 30, 1, 1, 0]);
        let p = Packet::parse(&ipv4(6, &[], &tcp_hdr(0x10, &opts, 0))).unwrap();
        let seg = p.tcp_segment().unwrap();
        // 3 is after u32::MAX - 5 in sequence space (it wrapped).
        assert_eq!(seg.sack, Some(3));
        assert!(seg.sack_permitted);
        assert_eq!(seg.wscale, Some(30));
    }

    #[test]
    fn truncated_and_malformed_are_errors() {
        let tcp = tcp_hdr(0x02, &[], 0);
        let good = ipv4(6, &[], &tcp);
        for cut in 0..good.len() {
            assert!(Packet::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut frag = good.clone();
        frag[6] = 0x20; // more fragments
        assert_eq!(Packet::parse(&frag), Err(ParseError::Fragment));
        let mut bad_ihl = good.clone();
        bad_ihl[0] = 0x44;
        assert!(matches!(
            Packet::parse(&bad_ihl),
            Err(ParseError::BadLength {
                layer: Layer::Ipv4,
                ..
            })
        ));
        // A malformed option ends the option walk, as in Linux; the segment still parses.
        let bad_opt = ipv4(6, &[], &tcp_hdr(0x02, &[4, 2, 3, 0], 0));
        let seg = *Packet::parse(&bad_opt).unwrap().tcp_segment().unwrap();
        assert!(seg.sack_permitted && seg.has_options);
        assert_eq!(seg.wscale, None);
        assert_eq!(
            Packet::parse(&ipv4(47, &[], &[0; 8])),
            Err(ParseError::UnsupportedProtocol(47))
        );
        assert_eq!(Packet::parse(&[0x50]), Err(ParseError::UnknownIpVersion(5)));
        assert_eq!(Packet::parse(&[]), Err(ParseError::Empty));
    }

    #[test]
    fn ipv6_udp_and_icmpv6_echo() {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(4));
        p.extend_from_slice(&[0xfe, 0x80, 0, 1].repeat(4));
        p.extend_from_slice(&[0, 53, 0x14, 0xe9, 0, 8, 0, 0]);
        let pkt = Packet::parse(&p).unwrap();
        assert_eq!(pkt.trans_proto(), TransProto::Udp);
        assert_eq!((pkt.tuple().src_port(), pkt.tuple().dst_port()), (53, 5353));
        p[6] = 58;
        p[40] = 129; // echo reply
        let pkt = Packet::parse(&p).unwrap();
        assert_eq!(pkt.tuple().is_echo_reply(), Some(true));
        p[6] = 44; // fragment extension header
        assert_eq!(Packet::parse(&p), Err(ParseError::Ipv6ExtensionHeader(44)));
        p[6] = 58;
        p[40] = 1; // destination unreachable
        assert_eq!(Packet::parse(&p), Err(ParseError::UnsupportedIcmpType(1)));
    }

    #[test]
    fn errors_read_well() {
        let e = ParseError::Truncated {
            layer: Layer::Tcp,
            needed: 20,
            available: 3,
        };
        assert_eq!(
            e.to_string(),
            "Tcp header truncated: needs 20 bytes, 3 available"
        );
    }
}
