//! ctnetlink over a raw netlink socket: reading one entry of the kernel's connection table
//! (a hash lookup, where `/proc/net/nf_conntrack` walks every bucket), setting an entry's
//! timeout, and flushing the table of the current network namespace.
//!
//! Attribute numbers are those of `linux/netfilter/nfnetlink_conntrack.h`.

use crate::procfs::{Entry, KTuple};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLMSG_ERROR: u16 = 2;
const NFNETLINK_V0: u8 = 0;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TIMEOUT: u16 = 7;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;

/// `IPS_SEEN_REPLY`.
const IPS_SEEN_REPLY: u32 = 1 << 1;
/// `IPS_ASSURED`.
const IPS_ASSURED: u32 = 1 << 2;

/// Linux's TCP conntrack state names, by their number (`tcp_conntrack_names`).
pub const TCP_STATE_NAMES: [&str; 10] = [
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
];

/// A netlink message under construction: header, nfgenmsg, attributes.
#[derive(Debug)]
struct Message {
    buf: Vec<u8>,
    /// Start offsets of the nests being written.
    nests: Vec<usize>,
}

impl Message {
    fn new(msg_type: u16, flags: u16, seq: u32) -> Message {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | msg_type).to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns ours
        buf.push(libc::AF_INET as u8);
        buf.push(NFNETLINK_V0);
        buf.extend_from_slice(&0u16.to_be_bytes()); // res_id
        Message {
            buf,
            nests: Vec::new(),
        }
    }

    fn attr(&mut self, ty: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    fn begin(&mut self, ty: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    }

    fn end(&mut self) {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
    }

    /// A `CTA_TUPLE_ORIG` nest naming `t` of protocol `proto`.
    fn tuple(&mut self, proto: u8, t: &KTuple) {
        self.begin(CTA_TUPLE_ORIG);
        self.begin(CTA_TUPLE_IP);
        self.attr(CTA_IP_V4_SRC, &t.src.octets());
        self.attr(CTA_IP_V4_DST, &t.dst.octets());
        self.end();
        self.begin(CTA_TUPLE_PROTO);
        self.attr(CTA_PROTO_NUM, &[proto]);
        if proto == crate::wire::PROTO_ICMP {
            self.attr(CTA_PROTO_ICMP_ID, &t.b.to_be_bytes());
            self.attr(CTA_PROTO_ICMP_TYPE, &[t.a as u8]);
            self.attr(CTA_PROTO_ICMP_CODE, &[0]);
        } else {
            self.attr(CTA_PROTO_SRC_PORT, &t.a.to_be_bytes());
            self.attr(CTA_PROTO_DST_PORT, &t.b.to_be_bytes());
        }
        self.end();
        self.end();
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// The flush request: an nlmsghdr and an nfgenmsg for AF_INET, no attributes.
pub fn flush_message(seq: u32) -> Vec<u8> {
    Message::new(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq).finish()
}

/// The request for the entry holding tuple `t` (either direction: the kernel's hash holds
/// both).
pub fn get_message(seq: u32, proto: u8, t: &KTuple) -> Vec<u8> {
    let mut m = Message::new(IPCTNL_MSG_CT_GET, NLM_F_REQUEST, seq);
    m.tuple(proto, t);
    m.finish()
}

/// The request setting the timeout of the existing entry holding `t` to `secs`.
pub fn set_timeout_message(seq: u32, proto: u8, t: &KTuple, secs: u32) -> Vec<u8> {
    let mut m = Message::new(IPCTNL_MSG_CT_NEW, NLM_F_REQUEST | NLM_F_ACK, seq);
    m.tuple(proto, t);
    m.attr(CTA_TIMEOUT, &secs.to_be_bytes());
    m.finish()
}

/// The error code of an NLMSG_ERROR answer to `seq` (0 is an ACK), or `None` if `buf` is
/// some other message.
pub fn ack_code(buf: &[u8], seq: u32) -> Option<i32> {
    if buf.len() < 20 {
        return None;
    }
    let ty = u16::from_ne_bytes([buf[4], buf[5]]);
    let got = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if ty != NLMSG_ERROR || got != seq {
        return None;
    }
    Some(i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]))
}

/// The attributes in `buf`: `(type without flags, payload)`. Stops at the first malformed one.
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    while buf.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            break;
        }
        v.push((ty, &buf[4..len]));
        let padded = (len + 3) & !3;
        buf = &buf[padded.min(buf.len())..];
    }
    v
}

fn find<'a>(list: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    list.iter().find(|(t, _)| *t == ty).map(|(_, p)| *p)
}

fn be16(p: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(p.get(..2)?.try_into().ok()?))
}

fn be32(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

fn parse_tuple(nest: &[u8]) -> Option<(u8, KTuple)> {
    let top = attrs(nest);
    let ip = attrs(find(&top, CTA_TUPLE_IP)?);
    let l4 = attrs(find(&top, CTA_TUPLE_PROTO)?);
    let addr = |ty| -> Option<Ipv4Addr> {
        let o: [u8; 4] = find(&ip, ty)?.get(..4)?.try_into().ok()?;
        Some(Ipv4Addr::from(o))
    };
    let proto = *find(&l4, CTA_PROTO_NUM)?.first()?;
    let (a, b) = if proto == crate::wire::PROTO_ICMP {
        (
            u16::from(*find(&l4, CTA_PROTO_ICMP_TYPE)?.first()?),
            be16(find(&l4, CTA_PROTO_ICMP_ID)?)?,
        )
    } else {
        (
            be16(find(&l4, CTA_PROTO_SRC_PORT)?)?,
            be16(find(&l4, CTA_PROTO_DST_PORT)?)?,
        )
    };
    Some((
        proto,
        KTuple {
            src: addr(CTA_IP_V4_SRC)?,
            dst: addr(CTA_IP_V4_DST)?,
            a,
            b,
        },
    ))
}

/// Parses a conntrack message (`IPCTNL_MSG_CT_NEW`, as the kernel answers a GET) into the
/// same [`Entry`] a `/proc/net/nf_conntrack` line gives.
pub fn parse_entry(msg: &[u8]) -> Option<Entry> {
    let body = msg.get(20..)?;
    let top = attrs(body);
    let (proto, original) = parse_tuple(find(&top, CTA_TUPLE_ORIG)?)?;
    let (_, reply) = parse_tuple(find(&top, CTA_TUPLE_REPLY)?)?;
    let status = be32(find(&top, CTA_STATUS)?)?;
    let timeout = be32(find(&top, CTA_TIMEOUT)?)?;
    let state = find(&top, CTA_PROTOINFO)
        .and_then(|p| find(&attrs(p), CTA_PROTOINFO_TCP).map(attrs))
        .and_then(|tcp| find(&tcp, CTA_PROTOINFO_TCP_STATE).and_then(|s| s.first().copied()))
        .map(|s| {
            TCP_STATE_NAMES
                .get(usize::from(s))
                .map_or_else(|| format!("STATE{s}"), |n| n.to_string())
        });
    let name = match proto {
        crate::wire::PROTO_TCP => "tcp",
        crate::wire::PROTO_UDP => "udp",
        crate::wire::PROTO_ICMP => "icmp",
        _ => "unknown",
    };
    Some(Entry {
        proto: name.into(),
        timeout: u64::from(timeout),
        state,
        original,
        reply,
        assured: status & IPS_ASSURED != 0,
        unreplied: status & IPS_SEEN_REPLY == 0,
    })
}

/// A NETLINK_NETFILTER socket.
#[derive(Debug)]
pub struct CtNetlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl CtNetlink {
    /// Opens the socket (in the current network namespace).
    pub fn open() -> io::Result<CtNetlink> {
        // SAFETY: plain socket(2) call with constant arguments; no memory is passed.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("socket(AF_NETLINK, NETLINK_NETFILTER): {e}"),
            ));
        }
        // SAFETY: `fd` was just returned by socket(2), is valid and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(CtNetlink {
            fd,
            seq: 1,
            buf: vec![0; 65536],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, msg: &[u8], what: &str) -> io::Result<()> {
        // SAFETY: `msg` is a live buffer of `msg.len()` bytes; send(2) only reads it. A
        // netlink socket without a connected peer sends to the kernel.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("ctnetlink {what}: send: {e}"),
            ));
        }
        Ok(())
    }

    /// Receives one datagram (one or more messages) into `self.buf`; returns its length.
    fn recv(&mut self, what: &str) -> io::Result<usize> {
        loop {
            // SAFETY: `self.buf` is a live, exclusively borrowed buffer of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::new(
                    e.kind(),
                    format!("ctnetlink {what}: recv: {e}"),
                ));
            }
        }
    }

    /// Sends `msg` (which asks for an ACK) and waits for the ACK of `seq`.
    fn acked(&mut self, msg: &[u8], seq: u32, what: &str) -> io::Result<Result<(), i32>> {
        self.send(msg, what)?;
        loop {
            let n = self.recv(what)?;
            match ack_code(&self.buf[..n], seq) {
                Some(0) => return Ok(Ok(())),
                Some(code) => return Ok(Err(-code)),
                None => continue,
            }
        }
    }

    /// Deletes every IPv4 entry of the namespace's table and waits for the kernel's ACK.
    pub fn flush(&mut self) -> io::Result<()> {
        let seq = self.next_seq();
        match self.acked(&flush_message(seq), seq, "flush")? {
            Ok(()) => Ok(()),
            Err(errno) => Err(io::Error::other(format!(
                "ctnetlink flush refused: {}",
                io::Error::from_raw_os_error(errno)
            ))),
        }
    }

    /// The entry holding tuple `t` of protocol `proto`, if any.
    pub fn get(&mut self, proto: u8, t: &KTuple) -> io::Result<Option<Entry>> {
        let seq = self.next_seq();
        self.send(&get_message(seq, proto, t), "get")?;
        loop {
            let n = self.recv("get")?;
            let msg = &self.buf[..n];
            if let Some(code) = ack_code(msg, seq) {
                return match -code {
                    0 | libc::ENOENT => Ok(None),
                    errno => Err(io::Error::other(format!(
                        "ctnetlink get refused: {}",
                        io::Error::from_raw_os_error(errno)
                    ))),
                };
            }
            if msg.len() >= 16 && u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]) == seq {
                return parse_entry(msg).map(Some).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "ctnetlink get: unreadable conntrack message",
                    )
                });
            }
        }
    }

    /// Sets the timeout of the entry holding `t` to `secs` seconds. `Ok(false)` if there is
    /// no such entry.
    pub fn set_timeout(&mut self, proto: u8, t: &KTuple, secs: u32) -> io::Result<bool> {
        let seq = self.next_seq();
        match self.acked(
            &set_timeout_message(seq, proto, t, secs),
            seq,
            "set timeout",
        )? {
            Ok(()) => Ok(true),
            Err(libc::ENOENT) => Ok(false),
            Err(errno) => Err(io::Error::other(format!(
                "ctnetlink set timeout refused: {}",
                io::Error::from_raw_os_error(errno)
            ))),
        }
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    fn kt() -> KTuple {
        KTuple {
            src: Ipv4Addr::new(198, 18, 1, 2),
            dst: Ipv4Addr::new(198, 19, 1, 1),
            a: 20000,
            b: 80,
        }
    }

    #[test]
    fn flush_message_layout() {
        let m = flush_message(7);
        assert_eq!(m.len(), 20);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0102);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x05);
        assert_eq!(m[16], libc::AF_INET as u8);
    }

    #[test]
    fn ack_parsing() {
        let mut a = vec![0u8; 36];
        a[0..4].copy_from_slice(&36u32.to_ne_bytes());
        a[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        a[8..12].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(ack_code(&a, 9), Some(0));
        assert_eq!(ack_code(&a, 8), None);
        a[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(ack_code(&a, 9), Some(-1));
        assert_eq!(ack_code(&a[..10], 9), None);
    }

    /// A conntrack message as the kernel would answer, built with the request encoder.
    fn answer(proto: u8, o: KTuple, r: KTuple, state: Option<u8>, status: u32, t: u32) -> Vec<u8> {
        let mut m = Message::new(IPCTNL_MSG_CT_NEW, 0, 3);
        m.tuple(proto, &o);
        // The reply tuple: the same encoding under CTA_TUPLE_REPLY.
        let mut tmp = Message::new(0, 0, 0);
        tmp.tuple(proto, &r);
        let mut nest = tmp.finish()[20..].to_vec();
        nest[2..4].copy_from_slice(&(CTA_TUPLE_REPLY | NLA_F_NESTED).to_ne_bytes());
        m.buf.extend_from_slice(&nest);
        m.attr(CTA_STATUS, &status.to_be_bytes());
        m.attr(CTA_TIMEOUT, &t.to_be_bytes());
        if let Some(s) = state {
            m.begin(CTA_PROTOINFO);
            m.begin(CTA_PROTOINFO_TCP);
            m.attr(CTA_PROTOINFO_TCP_STATE, &[s]);
            m.end();
            m.end();
        }
        m.finish()
    }

    fn reversed(t: KTuple) -> KTuple {
        KTuple {
            src: t.dst,
            dst: t.src,
            a: t.b,
            b: t.a,
        }
    }

    #[test]
    fn entries_parse() {
        let (o, r) = (kt(), reversed(kt()));
        let e = parse_entry(&answer(
            6,
            o,
            r,
            Some(3),
            IPS_SEEN_REPLY | IPS_ASSURED,
            431_999,
        ));
        let e = e.unwrap();
        assert_eq!(e.proto, "tcp");
        assert_eq!(e.state.as_deref(), Some("ESTABLISHED"));
        assert_eq!(e.timeout, 431_999);
        assert!(e.assured && !e.unreplied);
        assert_eq!((e.original, e.reply), (o, r));

        let u = parse_entry(&answer(17, o, r, None, 0, 30)).unwrap();
        assert_eq!((u.state, u.unreplied, u.assured), (None, true, false));

        let ping = KTuple {
            a: 8,
            b: 77,
            ..kt()
        };
        let pong = KTuple {
            src: kt().dst,
            dst: kt().src,
            a: 0,
            b: 77,
        };
        let i = parse_entry(&answer(1, ping, pong, None, IPS_SEEN_REPLY, 29)).unwrap();
        assert_eq!(i.proto, "icmp");
        assert_eq!((i.original, i.reply), (ping, pong));
        assert!(!i.unreplied);
        assert!(parse_entry(&[0; 24]).is_none());
    }

    #[test]
    fn get_and_set_timeout_messages() {
        let g = get_message(5, 6, &kt());
        assert_eq!(u16::from_ne_bytes([g[4], g[5]]), 0x0101);
        assert_eq!(
            u32::from_ne_bytes(g[0..4].try_into().unwrap()) as usize,
            g.len()
        );
        let (proto, t) = parse_tuple(attrs(&g[20..])[0].1).unwrap();
        assert_eq!((proto, t), (6, kt()));
        let s = set_timeout_message(6, 6, &kt(), 7777);
        let top = attrs(&s[20..]);
        assert_eq!(be32(find(&top, CTA_TIMEOUT).unwrap()), Some(7777));
    }
}
