//! Reading the kernel's side: A's conntrack table (`/proc/thread-self/net/nf_conntrack`, read
//! from a thread inside A), the nftables counters, and the TCP socket states of a namespace.

use crate::error::{failed, Context, Result};
use crate::netns::Netns;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// One line of `nf_conntrack`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFlow {
    /// `tcp`, `udp`, `icmp`, …
    pub proto: String,
    /// Seconds left before the entry expires.
    pub timeout: u64,
    /// The TCP state word (`ESTABLISHED`, `TIME_WAIT`, …); `None` for other protocols.
    pub state: Option<String>,
    /// Original direction: source and destination.
    pub original: Option<(SocketAddr, SocketAddr)>,
    /// `[ASSURED]` is set.
    pub assured: bool,
    /// `[UNREPLIED]` is set.
    pub unreplied: bool,
    /// The line as read.
    pub line: String,
}

/// Parses one `nf_conntrack` line:
/// `ipv4 2 tcp 6 118 TIME_WAIT src=… dst=… sport=… dport=… src=… … [ASSURED] mark=0 use=1`.
pub fn parse_line(line: &str) -> Option<KernelFlow> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() < 5 {
        return None;
    }
    let proto = words[2].to_string();
    let timeout = words[4].parse().ok()?;
    let state = words
        .get(5)
        .filter(|w| !w.contains('=') && !w.starts_with('['))
        .map(|w| w.to_string());
    let field = |key: &str| -> Option<&str> {
        words
            .iter()
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    };
    let original = (|| {
        let src: IpAddr = field("src")?.parse().ok()?;
        let dst: IpAddr = field("dst")?.parse().ok()?;
        let sport: u16 = field("sport")?.parse().ok()?;
        let dport: u16 = field("dport")?.parse().ok()?;
        Some((SocketAddr::new(src, sport), SocketAddr::new(dst, dport)))
    })();
    Some(KernelFlow {
        proto,
        timeout,
        state,
        original,
        assured: words.contains(&"[ASSURED]"),
        unreplied: words.contains(&"[UNREPLIED]"),
        line: line.to_string(),
    })
}

/// A's conntrack entries, read from inside A.
pub fn conntrack(ns: &Netns) -> Result<Vec<KernelFlow>> {
    let text = ns.read("/proc/thread-self/net/nf_conntrack")?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            parse_line(l).ok_or_else(|| failed(format!("cannot parse nf_conntrack line: {l}")))
        })
        .collect()
}

/// The nftables counters of a namespace, by rule comment: (packets, bytes).
pub fn nft_counters(ns: &Netns) -> Result<BTreeMap<String, (u64, u64)>> {
    let text = ns
        .command("nft", &["list", "ruleset"], None)
        .context("reading the nftables counters")?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(c) = line.find("comment \"") else {
            continue;
        };
        let rest = &line[c + 9..];
        let Some(end) = rest.find('"') else { continue };
        let num = |key: &str| -> Option<u64> {
            let at = line.find(key)? + key.len();
            line[at..].split_whitespace().next()?.parse().ok()
        };
        if let (Some(p), Some(b)) = (num("packets "), num("bytes ")) {
            out.insert(rest[..end].to_string(), (p, b));
        }
    }
    Ok(out)
}

/// Linux's TCP socket state names, by the number `/proc/net/tcp` shows.
fn tcp_state_name(n: u8) -> &'static str {
    match n {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "?",
    }
}

/// How many TCP sockets of the namespace are in each state.
pub fn tcp_socket_states(ns: &Netns) -> Result<BTreeMap<&'static str, usize>> {
    let text = ns.read("/proc/thread-self/net/tcp")?;
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        let Some(st) = line.split_whitespace().nth(3) else {
            continue;
        };
        let n = u8::from_str_radix(st, 16).context("parsing /proc/net/tcp")?;
        *out.entry(tcp_state_name(n)).or_default() += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_udp_lines() {
        let t = parse_line(
            "ipv4     2 tcp      6 118 TIME_WAIT src=198.18.1.1 dst=198.18.2.1 sport=40000 dport=5000 \
             src=198.18.2.1 dst=198.18.1.1 sport=5000 dport=40000 [ASSURED] mark=0 zone=0 use=2",
        )
        .unwrap();
        assert_eq!(t.proto, "tcp");
        assert_eq!(t.timeout, 118);
        assert_eq!(t.state.as_deref(), Some("TIME_WAIT"));
        assert!(t.assured && !t.unreplied);
        let (s, d) = t.original.unwrap();
        assert_eq!(s, "198.18.1.1:40000".parse().unwrap());
        assert_eq!(d, "198.18.2.1:5000".parse().unwrap());
        let u = parse_line(
            "ipv4     2 udp      17 27 src=198.18.1.1 dst=198.18.2.1 sport=5 dport=5001 \
             [UNREPLIED] src=198.18.2.1 dst=198.18.1.1 sport=5001 dport=5 mark=0 use=2",
        )
        .unwrap();
        assert_eq!(u.state, None);
        assert!(u.unreplied && !u.assured);
        assert_eq!(u.timeout, 27);
    }
}
