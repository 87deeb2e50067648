//! `/proc/net/nf_conntrack`: the kernel's connection table as text, one entry a line.
//!
//! ```text
//! ipv4     2 tcp      6 431999 ESTABLISHED src=198.18.0.1 dst=198.19.1.1 sport=40000 dport=80 src=198.19.1.1 dst=198.18.0.1 sport=80 dport=40000 [ASSURED] mark=0 zone=0 use=2
//! ipv4     2 udp      17 29 src=198.18.0.1 dst=198.19.1.1 sport=40000 dport=53 [UNREPLIED] src=198.19.1.1 dst=198.18.0.1 sport=53 dport=40000 mark=0 zone=0 use=2
//! ipv4     2 icmp     1 29 src=198.18.0.1 dst=198.19.1.1 type=8 code=0 id=7 [UNREPLIED] src=198.19.1.1 dst=198.18.0.1 type=0 code=0 id=7 mark=0 zone=0 use=2
//! ```

use std::fmt;
use std::io;
use std::net::Ipv4Addr;

/// One direction of a kernel entry. `a`/`b` are the ports (TCP, UDP) or the ICMP type and
/// identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KTuple {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port, or ICMP type.
    pub a: u16,
    /// Destination port, or ICMP identifier.
    pub b: u16,
}

/// One line of `/proc/net/nf_conntrack`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `tcp`, `udp`, `icmp`, …
    pub proto: String,
    /// Seconds until the entry expires.
    pub timeout: u64,
    /// The TCP state word (`ESTABLISHED`…); `None` for protocols without one.
    pub state: Option<String>,
    /// The original tuple.
    pub original: KTuple,
    /// The reply tuple.
    pub reply: KTuple,
    /// `[ASSURED]`.
    pub assured: bool,
    /// `[UNREPLIED]`.
    pub unreplied: bool,
}

impl Entry {
    /// Whether `t` is one of the entry's two tuples.
    pub fn has(&self, t: &KTuple) -> bool {
        self.original == *t || self.reply == *t
    }
}

/// Why a line could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The line.
    pub line: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unreadable /proc/net/nf_conntrack line ({}): {}",
            self.reason, self.line
        )
    }
}

impl std::error::Error for ParseError {}

#[derive(Default)]
struct Partial {
    src: Option<Ipv4Addr>,
    dst: Option<Ipv4Addr>,
    a: Option<u16>,
    b: Option<u16>,
}

impl Partial {
    fn done(&self) -> Option<KTuple> {
        Some(KTuple {
            src: self.src?,
            dst: self.dst?,
            a: self.a?,
            b: self.b?,
        })
    }
}

/// Parses one line. Lines of other families (`ipv6`) parse too, as long as their addresses
/// are IPv4 (they are not: such lines are errors, and [`parse_table`] skips them).
pub fn parse_line(line: &str) -> Result<Entry, ParseError> {
    let err = |reason| ParseError {
        line: line.to_string(),
        reason,
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() < 6 {
        return Err(err("too few fields"));
    }
    let proto = words[2].to_string();
    let timeout = words[4]
        .parse()
        .map_err(|_| err("timeout is not a number"))?;
    let mut rest = &words[5..];
    let mut state = None;
    if let Some(w) = rest.first() {
        if !w.contains('=') && !w.starts_with('[') {
            state = Some(w.to_string());
            rest = &rest[1..];
        }
    }
    let icmp = proto == "icmp";
    let mut tuples: Vec<Partial> = Vec::new();
    let (mut assured, mut unreplied) = (false, false);
    for w in rest {
        match *w {
            "[ASSURED]" => assured = true,
            "[UNREPLIED]" => unreplied = true,
            _ => {}
        }
        let Some((k, v)) = w.split_once('=') else {
            continue;
        };
        if k == "src" {
            if tuples.len() == 2 {
                return Err(err("more than two tuples"));
            }
            tuples.push(Partial::default());
        }
        let Some(t) = tuples.last_mut() else {
            continue; // keys before the first tuple: none are known
        };
        let port = |v: &str| v.parse::<u16>().map_err(|_| err("bad port, type or id"));
        match (k, icmp) {
            ("src", _) => t.src = Some(v.parse().map_err(|_| err("bad src address"))?),
            ("dst", _) => t.dst = Some(v.parse().map_err(|_| err("bad dst address"))?),
            ("sport", false) | ("type", true) => t.a = Some(port(v)?),
            ("dport", false) | ("id", true) => t.b = Some(port(v)?),
            _ => {}
        }
    }
    let [o, r] = tuples.as_slice() else {
        return Err(err("not two tuples"));
    };
    Ok(Entry {
        proto,
        timeout,
        state,
        original: o.done().ok_or_else(|| err("incomplete original tuple"))?,
        reply: r.done().ok_or_else(|| err("incomplete reply tuple"))?,
        assured,
        unreplied,
    })
}

/// Parses a whole table, keeping the IPv4 TCP, UDP and ICMP entries (others are skipped).
pub fn parse_table(text: &str) -> Result<Vec<Entry>, ParseError> {
    text.lines()
        .filter(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some("ipv4") && matches!(w.nth(1), Some("tcp" | "udp" | "icmp"))
        })
        .map(parse_line)
        .collect()
}

/// Reads `/proc/net/nf_conntrack`.
pub fn read_table() -> io::Result<Vec<Entry>> {
    const PATH: &str = "/proc/net/nf_conntrack";
    let text = std::fs::read_to_string(PATH)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {PATH}: {e}")))?;
    parse_table(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    const TCP: &str = "ipv4     2 tcp      6 431999 ESTABLISHED src=198.18.0.1 dst=198.19.1.1 \
        sport=40000 dport=80 src=198.19.1.1 dst=198.18.0.1 sport=80 dport=40000 [ASSURED] \
        mark=0 zone=0 use=2";
    const UDP: &str = "ipv4     2 udp      17 29 src=198.18.0.1 dst=198.19.1.1 sport=40000 \
        dport=53 [UNREPLIED] src=198.19.1.1 dst=198.18.0.1 sport=53 dport=40000 mark=0 use=2";
    const ICMP: &str = "ipv4     2 icmp     1 30 src=198.18.0.1 dst=198.19.1.1 type=8 code=0 \
        id=7 src=198.19.1.1 dst=198.18.0.1 type=0 code=0 id=7 mark=0 zone=0 use=2";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_line() {
        let e = parse_line(TCP).unwrap();
        assert_eq!(e.proto, "tcp");
        assert_eq!(e.timeout, 431999);
        assert_eq!(e.state.as_deref(), Some("ESTABLISHED"));
        assert!(e.assured && !e.unreplied);
        let o = KTuple {
            src: ip("198.18.0.1"),
            dst: ip("198.19.1.1"),
            a: 40000,
            b: 80,
        };
        assert_eq!(e.original, o);
        assert_eq!(e.reply.a, 80);
        assert!(e.has(&o) && e.has(&e.reply.clone()));
    }

    #[test]
    fn udp_and_icmp_lines() {
        let u = parse_line(UDP).unwrap();
        assert_eq!(
            (u.state.clone(), u.timeout, u.unreplied, u.assured),
            (None, 29, true, false)
        );
        assert_eq!(u.reply.dst, ip("198.18.0.1"));
        let i = parse_line(ICMP).unwrap();
        assert_eq!((i.original.a, i.original.b), (8, 7));
        assert_eq!((i.reply.a, i.reply.b), (0, 7));
        assert!(!i.unreplied);
    }

    #[test]
    fn table_skips_other_families_and_rejects_garbage() {
        let text = format!(
            "{TCP}\nipv6     10 tcp      6 10 CLOSE src=2001:db8::1 dst=2001:db8::2 sport=1 dport=2 src=2001:db8::2 dst=2001:db8::1 sport=2 dport=1 use=1\n{UDP}\n"
        );
        assert_eq!(parse_table(&text).unwrap().len(), 2);
        assert!(parse_line("ipv4 2 tcp 6 x SYN_SENT").is_err());
        assert!(parse_line("ipv4 2 tcp 6 10 SYN_SENT src=1.2.3.4 dst=1.2.3.5 sport=1").is_err());
        assert!(parse_line("ipv4 2 tcp 6 10 SYN_SENT src=a dst=b sport=1 dport=2").is_err());
    }
}
