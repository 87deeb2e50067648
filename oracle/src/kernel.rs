//! The kernel side: two tun devices in the private namespace, IPv4 forwarding between them,
//! nftables rules that switch conntrack on and drop what it calls invalid, and the reads that
//! say what conntrack did with each packet.
//!
//! Clients live in 198.18.0.0/16 behind `tun0`, servers in 198.19.0.0/16 behind `tun1`. A
//! client's packet is written into `tun0`; if conntrack accepts it, the kernel forwards it out
//! of `tun1`, where the harness reads it back. A packet conntrack marks invalid is dropped by
//! `ct state invalid drop`.
//!
//! **Barrier.** After each packet the harness writes a marker (UDP to port 9, exempted from
//! conntrack by a `notrack` rule at raw priority) into the same tun and reads the other tun
//! until the marker comes out: everything the packet caused is then visible. It also reads
//! right after `write` returns, before the marker, and counts the packets that were not there
//! yet ([`SyncStats::late`]): with tun's `rx_batched` at 0 the stack processes a packet
//! inside `write`, so that count is expected to stay 0, and the report shows it.
//!
//! **Reading the table.** Entries are read over ctnetlink (a hash lookup by the packet's
//! tuple); `/proc/net/nf_conntrack`, which walks every bucket of the (host-wide) hash table
//! and costs about 0.4 ms a read here, serves as a cross-check on a subset of packets.

use crate::ctnetlink::CtNetlink;
use crate::netns::{self, find_program};
use crate::notation::Dir;
use crate::procfs::{self, Entry, KTuple};
use crate::refside::Switches;
use crate::tun::Tun;
use crate::wire::{self, Addrs};
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The marker's client-side address (never used by a sequence).
pub const MARKER_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 254);
/// The marker's server-side address.
pub const MARKER_SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 254);
/// The marker's UDP port (both ends).
pub const MARKER_PORT: u16 = 9;
/// How long to wait for a marker before calling the namespace broken.
const MARKER_TIMEOUT: Duration = Duration::from_secs(2);

/// The nftables ruleset: conntrack on for forwarded traffic, invalid dropped, markers exempt.
pub const RULESET: &str = "\
table ip refwatch_oracle {
  chain raw_pre {
    type filter hook prerouting priority raw; policy accept;
    udp dport 9 notrack
  }
  chain forward_filter {
    type filter hook forward priority filter; policy accept;
    ct state invalid counter drop
  }
}
";

/// What the barrier saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Packets sent.
    pub packets: u64,
    /// Of which forwarded.
    pub forwarded: u64,
    /// Forwarded packets that were not readable yet when `write` returned (found only by the
    /// marker barrier).
    pub late: u64,
    /// Packets read that were neither the one sent nor the marker.
    pub strays: u64,
    /// The first few strays, described.
    pub stray_examples: Vec<String>,
}

/// The kernel's conntrack, driven through the private namespace.
#[derive(Debug)]
pub struct KernelSide {
    /// `tun0` (clients) and `tun1` (servers).
    tuns: [Tun; 2],
    netlink: CtNetlink,
    marker: u64,
    buf: Vec<u8>,
    ip_id: u16,
    /// Barrier statistics.
    pub sync: SyncStats,
    /// Lookups checked against `/proc/net/nf_conntrack`.
    pub cross_checked: u64,
}

fn tun_of(dir: Dir) -> usize {
    match dir {
        Dir::O => 0,
        Dir::R => 1,
    }
}

/// Whether `out` is `sent` after forwarding (TTL and header checksum may differ).
fn same_packet(sent: &[u8], out: &[u8]) -> bool {
    sent.len() == out.len()
        && sent.len() >= 20
        && sent[4..6] == out[4..6]
        && sent[9] == out[9]
        && sent[12..] == out[12..]
        && sent[..2] == out[..2]
}

fn is_marker(out: &[u8], n: u64) -> bool {
    out.len() == 20 + 8 + 8
        && out[9] == wire::PROTO_UDP
        && u16::from_be_bytes([out[22], out[23]]) == MARKER_PORT
        && out[28..36] == n.to_be_bytes()
}

fn describe(p: &[u8]) -> String {
    match refwatch::conntrack::Packet::parse(p) {
        Ok(pkt) => format!("{:?} {:?}", pkt.tuple(), pkt.transport()),
        Err(e) => format!("{} bytes, unparsable: {e}", p.len()),
    }
}

impl KernelSide {
    /// Configures the current (private, fresh) namespace and opens everything. Call only after
    /// [`netns::enter_private_netns`]: this changes the namespace's sysctls and interfaces.
    pub fn setup(switches: Switches) -> io::Result<KernelSide> {
        let missing =
            |p: &str| io::Error::new(io::ErrorKind::NotFound, format!("`{p}` not found on PATH"));
        let ip = find_program("ip").ok_or_else(|| missing("ip"))?;
        let nft = find_program("nft").ok_or_else(|| missing("nft"))?;
        for path in [
            "/proc/sys/net/ipv6/conf/all/disable_ipv6",
            "/proc/sys/net/ipv6/conf/default/disable_ipv6",
        ] {
            // No IPv6 in the namespace: no router solicitations or MLD reports on the tuns.
            match netns::write_sysctl(path, "1") {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        for path in [
            "/proc/sys/net/ipv4/conf/all/rp_filter",
            "/proc/sys/net/ipv4/conf/default/rp_filter",
        ] {
            netns::set_sysctl(path, "0")?;
        }
        let tuns = [Tun::create("tun0")?, Tun::create("tun1")?];
        netns::run(&ip, &["link", "set", "lo", "up"])?;
        for t in &tuns {
            netns::run(&ip, &["link", "set", t.name(), "up"])?;
            netns::set_sysctl(
                &format!("/proc/sys/net/ipv4/conf/{}/rp_filter", t.name()),
                "0",
            )?;
        }
        netns::run(&ip, &["route", "add", "198.18.0.0/16", "dev", "tun0"])?;
        netns::run(&ip, &["route", "add", "198.19.0.0/16", "dev", "tun1"])?;
        netns::set_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        netns::run_with_input(&nft, &["-f", "-"], Some(RULESET))?;
        // These appear once conntrack is active in the namespace (the ruleset's `ct` rules).
        let flag = |on: bool| if on { "1" } else { "0" };
        netns::set_sysctl(
            "/proc/sys/net/netfilter/nf_conntrack_tcp_loose",
            flag(switches.loose),
        )?;
        netns::set_sysctl(
            "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal",
            flag(switches.be_liberal),
        )?;
        procfs::read_table()?;
        let mut netlink = CtNetlink::open()?;
        netlink.flush()?;
        let mut k = KernelSide {
            tuns,
            netlink,
            marker: 0,
            buf: vec![0; 65536],
            ip_id: 1,
            sync: SyncStats::default(),
            cross_checked: 0,
        };
        // Both ways, the marker must come through: forwarding works.
        k.barrier(Dir::O, None)?;
        k.barrier(Dir::R, None)?;
        Ok(k)
    }

    /// The conntrack sysctls that matter here, as `name=value` pairs (for the report).
    pub fn sysctls() -> Vec<String> {
        [
            "nf_conntrack_tcp_loose",
            "nf_conntrack_tcp_be_liberal",
            "nf_conntrack_tcp_ignore_invalid_rst",
            "nf_conntrack_checksum",
            "nf_conntrack_tcp_max_retrans",
        ]
        .iter()
        .map(|n| {
            let v = netns::read_sysctl(&format!("/proc/sys/net/netfilter/{n}"))
                .unwrap_or_else(|_| "?".into());
            format!("{n}={v}")
        })
        .collect()
    }

    /// A fresh IPv4 identification for the next packet (the harness matches on it).
    pub fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1).max(1);
        self.ip_id
    }

    /// Writes `packet` from `dir`'s side and says whether the kernel forwarded it (accepted)
    /// or dropped it (invalid).
    pub fn send(&mut self, dir: Dir, packet: &[u8]) -> io::Result<bool> {
        self.sync.packets += 1;
        self.tuns[tun_of(dir)].send(packet)?;
        let out = tun_of(dir.other());
        let mut early = false;
        while let Some(n) = self.tuns[out].try_recv(&mut self.buf)? {
            if same_packet(packet, &self.buf[..n]) {
                early = true;
            } else {
                self.stray(n);
            }
        }
        let forwarded = self.barrier(dir, Some(packet))? || early;
        if forwarded {
            self.sync.forwarded += 1;
            if !early {
                self.sync.late += 1;
            }
        }
        Ok(forwarded)
    }

    fn stray(&mut self, n: usize) {
        self.sync.strays += 1;
        if self.sync.stray_examples.len() < 5 {
            let d = describe(&self.buf[..n]);
            self.sync.stray_examples.push(d);
        }
    }

    /// Sends a marker from `dir`'s side and reads the other tun until it arrives; says
    /// whether `packet` came out before it.
    fn barrier(&mut self, dir: Dir, packet: Option<&[u8]>) -> io::Result<bool> {
        self.marker += 1;
        let n = self.marker;
        let (src, dst) = match dir {
            Dir::O => (MARKER_CLIENT, MARKER_SERVER),
            Dir::R => (MARKER_SERVER, MARKER_CLIENT),
        };
        let a = Addrs {
            src,
            dst,
            sport: MARKER_PORT,
            dport: MARKER_PORT,
        };
        let mut m = wire::udp(&a, 0, 8);
        m[28..36].copy_from_slice(&n.to_be_bytes());
        // The payload changed: recompute the UDP checksum.
        m[26..28].copy_from_slice(&[0, 0]);
        let sum = match wire::transport_checksum(src, dst, wire::PROTO_UDP, &m[20..]) {
            0 => 0xffff,
            s => s,
        };
        m[26..28].copy_from_slice(&sum.to_be_bytes());
        self.tuns[tun_of(dir)].send(&m)?;
        let out = tun_of(dir.other());
        let mut seen = false;
        loop {
            match self.tuns[out].try_recv(&mut self.buf)? {
                Some(len) if is_marker(&self.buf[..len], n) => return Ok(seen),
                Some(len) if packet.is_some_and(|p| same_packet(p, &self.buf[..len])) => {
                    seen = true
                }
                Some(len) => self.stray(len),
                None => {
                    if !self.tuns[out].wait_readable(MARKER_TIMEOUT)? {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "marker {n} sent into {} did not come out of {} within {:?}: \
                                 forwarding in the namespace is broken",
                                self.tuns[tun_of(dir)].name(),
                                self.tuns[out].name(),
                                MARKER_TIMEOUT
                            ),
                        ));
                    }
                }
            }
        }
    }

    /// The kernel's entry holding tuple `t` of protocol `proto`, if any, read over
    /// ctnetlink (a hash lookup). With `cross_check`, `/proc/net/nf_conntrack` is read too and
    /// a difference between the two is an error.
    pub fn lookup(
        &mut self,
        proto: u8,
        t: &KTuple,
        cross_check: bool,
    ) -> io::Result<Option<Entry>> {
        let entry = self.netlink.get(proto, t)?;
        if cross_check {
            self.cross_checked += 1;
            let proc_entry = procfs::read_table()?.into_iter().find(|e| e.has(t));
            // The two reads are a moment apart: the timeout may tick down by a second.
            let same = match (&entry, &proc_entry) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    Entry {
                        timeout: b.timeout,
                        ..a.clone()
                    } == *b
                        && a.timeout.abs_diff(b.timeout) <= 1
                }
                _ => false,
            };
            if !same {
                return Err(io::Error::other(format!(
                    "ctnetlink and /proc/net/nf_conntrack disagree about {t:?}: {entry:?} vs {proc_entry:?}"
                )));
            }
        }
        Ok(entry)
    }

    /// Sets the timeout of the entry holding `t` to `secs`; `false` if there is none.
    pub fn set_timeout(&mut self, proto: u8, t: &KTuple, secs: u32) -> io::Result<bool> {
        self.netlink.set_timeout(proto, t, secs)
    }

    /// Empties the kernel's table.
    pub fn flush(&mut self) -> io::Result<()> {
        self.netlink.flush()
    }
}
