//! Packet building: IPv4 datagrams carrying TCP, UDP or ICMP echo, with correct checksums
//! (the kernel's conntrack verifies them in prerouting, so a wrong checksum would make every
//! packet invalid on the kernel side only).

use std::net::Ipv4Addr;

/// IP protocol numbers.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;

/// TCP flag bits, as in the header's flag byte.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// A TCP option the harness can put in a header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpOption {
    /// Maximum segment size (kind 2).
    Mss(u16),
    /// Window scale shift (kind 3), sent as is (values above 14 included).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// SACK blocks (kind 5): left and right edges.
    Sack(Vec<(u32, u32)>),
}

/// The addresses and ports (or ICMP identifier) of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addrs {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port (TCP/UDP).
    pub sport: u16,
    /// Destination port (TCP/UDP).
    pub dport: u16,
}

/// A TCP segment to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (written even without ACK).
    pub ack: u32,
    /// Flag byte.
    pub flags: u8,
    /// Advertised (unscaled) window.
    pub window: u16,
    /// Options, in order; padded with NOPs to a multiple of four bytes.
    pub options: Vec<TcpOption>,
    /// Payload bytes (filled with a pattern).
    pub payload_len: usize,
}

/// The one's-complement sum of `data` added to `sum` (not folded).
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Folds a 32-bit sum and complements it: the Internet checksum.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum16(0, data))
}

/// The TCP/UDP checksum of `segment` with the IPv4 pseudo-header.
pub fn transport_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = proto;
    // Segments built here are far below 64 KiB.
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    pseudo[10..12].copy_from_slice(&len.to_be_bytes());
    fold(sum16(sum16(0, &pseudo), segment))
}

/// Payload of `len` bytes: a recognisable pattern.
fn payload(len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8)
}

/// Wraps `l4` in an IPv4 header (no options, DF set, TTL 64, identification `id`).
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, id: u16, l4: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + l4.len()).unwrap_or(u16::MAX);
    let mut p = Vec::with_capacity(20 + l4.len());
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

/// The encoded options of `opts`, padded with NOPs to a multiple of four bytes.
fn encode_options(opts: &[TcpOption]) -> Vec<u8> {
    let mut o = Vec::new();
    for opt in opts {
        match opt {
            TcpOption::Mss(mss) => {
                o.extend_from_slice(&[2, 4]);
                o.extend_from_slice(&mss.to_be_bytes());
            }
            TcpOption::WindowScale(shift) => o.extend_from_slice(&[1, 3, 3, *shift]),
            TcpOption::SackPermitted => o.extend_from_slice(&[1, 1, 4, 2]),
            TcpOption::Sack(blocks) => {
                o.extend_from_slice(&[1, 1, 5, (2 + 8 * blocks.len()) as u8]);
                for (l, r) in blocks {
                    o.extend_from_slice(&l.to_be_bytes());
                    o.extend_from_slice(&r.to_be_bytes());
                }
            }
        }
    }
    while o.len() % 4 != 0 {
        o.push(1);
    }
    o
}

/// An IPv4 TCP packet.
pub fn tcp(a: &Addrs, id: u16, h: &TcpHeader) -> Vec<u8> {
    let opts = encode_options(&h.options);
    let doff = 20 + opts.len();
    let mut t = Vec::with_capacity(doff + h.payload_len);
    t.extend_from_slice(&a.sport.to_be_bytes());
    t.extend_from_slice(&a.dport.to_be_bytes());
    t.extend_from_slice(&h.seq.to_be_bytes());
    t.extend_from_slice(&h.ack.to_be_bytes());
    t.push(((doff / 4) as u8) << 4);
    t.push(h.flags);
    t.extend_from_slice(&h.window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    t.extend_from_slice(&opts);
    t.extend(payload(h.payload_len));
    let sum = transport_checksum(a.src, a.dst, PROTO_TCP, &t);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    ipv4(a.src, a.dst, PROTO_TCP, id, &t)
}

/// An IPv4 UDP packet with `len` bytes of payload.
pub fn udp(a: &Addrs, id: u16, len: usize) -> Vec<u8> {
    let ulen = u16::try_from(8 + len).unwrap_or(u16::MAX);
    let mut u = Vec::with_capacity(8 + len);
    u.extend_from_slice(&a.sport.to_be_bytes());
    u.extend_from_slice(&a.dport.to_be_bytes());
    u.extend_from_slice(&ulen.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend(payload(len));
    let sum = match transport_checksum(a.src, a.dst, PROTO_UDP, &u) {
        0 => 0xffff,
        s => s,
    };
    u[6..8].copy_from_slice(&sum.to_be_bytes());
    ipv4(a.src, a.dst, PROTO_UDP, id, &u)
}

/// An IPv4 ICMP echo request (`reply` false) or reply, identifier `ident`, sequence `seq`.
pub fn icmp_echo(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    reply: bool,
    ident: u16,
    seq: u16,
) -> Vec<u8> {
    let mut m = vec![if reply { 0 } else { 8 }, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend(payload(16));
    let sum = checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv4(src, dst, PROTO_ICMP, id, &m)
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use refwatch::conntrack::{Packet, TcpFlags, TransProto};

    fn addrs() -> Addrs {
        Addrs {
            src: Ipv4Addr::new(198, 18, 0, 7),
            dst: Ipv4Addr::new(198, 19, 0, 9),
            sport: 40000,
            dport: 80,
        }
    }

    /// Verifying a checksum: the sum over the data including the checksum folds to zero.
    fn verifies(data: &[u8]) -> bool {
        checksum(data) == 0
    }

    fn pseudo_ok(p: &[u8]) -> bool {
        let l4 = &p[20..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, p[9]]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(l4);
        verifies(&pseudo)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071's example words sum to 0xddf2 (folded), so the checksum is its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn tcp_round_trips_through_refwatch_parser() {
        let h = TcpHeader {
            seq: 1000,
            ack: 5001,
            flags: flags::SYN | flags::ACK,
            window: 1234,
            options: vec![
                TcpOption::Mss(1460),
                TcpOption::SackPermitted,
                TcpOption::WindowScale(7),
                TcpOption::Sack(vec![(1, 2), (3, 4)]),
            ],
            payload_len: 7,
        };
        let p = tcp(&addrs(), 42, &h);
        assert!(verifies(&p[..20]), "IPv4 header checksum");
        assert!(pseudo_ok(&p), "TCP checksum");
        let pkt = Packet::parse(&p).unwrap();
        let seg = pkt.tcp_segment().unwrap();
        assert_eq!(seg.flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!((seg.seq, seg.ack, seg.window), (1000, 5001, 1234));
        assert_eq!(seg.wscale, Some(7));
        assert_eq!(seg.payload_len, 7);
        assert_eq!(pkt.tuple().src_port(), 40000);
        assert_eq!(pkt.tuple().dst_port(), 80);
        assert_eq!(pkt.tuple().src().to_string(), "198.18.0.7");
    }

    #[test]
    fn udp_and_icmp_round_trip() {
        let p = udp(&addrs(), 1, 5);
        assert!(verifies(&p[..20]) && pseudo_ok(&p));
        let pkt = Packet::parse(&p).unwrap();
        assert_eq!(pkt.trans_proto(), TransProto::Udp);
        assert_eq!(pkt.tuple().dst_port(), 80);

        let a = addrs();
        let req = icmp_echo(a.src, a.dst, 2, false, 77, 1);
        assert!(verifies(&req[..20]) && verifies(&req[20..]));
        let pkt = Packet::parse(&req).unwrap();
        assert_eq!(pkt.tuple().is_echo_reply(), Some(false));
        let rep = icmp_echo(a.dst, a.src, 3, true, 77, 1);
        let pkt = Packet::parse(&rep).unwrap();
        assert_eq!(pkt.tuple().is_echo_reply(), Some(true));
    }
}
