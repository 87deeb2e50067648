//! Driving one sequence through both sides, packet by packet.

use crate::compare::{compare, state_value, ConnView, Observation, KNOWN_TIMEOUTS};
use crate::kernel::KernelSide;
use crate::notation::{Dir, Step};
use crate::procfs::{Entry, KTuple};
use crate::refside::Switches;
use crate::refside::{RefError, RefSide};
pub use crate::sequence::{Origin, PacketResult, SeqInput, SeqResult};
use crate::wire::{self, flags as f, Addrs, TcpHeader, TcpOption};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// A failure of the harness itself (not a disagreement).
#[derive(Debug)]
pub enum HarnessError {
    /// The kernel side failed.
    Kernel(io::Error),
    /// The refwatch side failed.
    Refwatch(RefError),
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::Kernel(e) => write!(f, "kernel side: {e}"),
            HarnessError::Refwatch(e) => write!(f, "refwatch side: {e}"),
        }
    }
}

impl std::error::Error for HarnessError {}

impl From<io::Error> for HarnessError {
    fn from(e: io::Error) -> Self {
        HarnessError::Kernel(e)
    }
}

impl From<RefError> for HarnessError {
    fn from(e: RefError) -> Self {
        HarnessError::Refwatch(e)
    }
}

/// The addresses of one sequence: a client and a server no other sequence of the batch
/// uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The `O` end (198.18.0.0/16).
    pub client: Ipv4Addr,
    /// The `R` end (198.19.0.0/16).
    pub server: Ipv4Addr,
    /// The client's port.
    pub client_port: u16,
    /// The ICMP echo identifier.
    pub echo_id: u16,
}

/// Distinct slots before addresses repeat (the table is flushed before they do).
pub const SLOTS: u32 = 250 * 250;

impl Endpoints {
    /// The endpoints of slot `slot` (taken modulo [`SLOTS`]).
    pub fn for_slot(slot: u32) -> Endpoints {
        let s = slot % SLOTS;
        Endpoints {
            client: Ipv4Addr::new(198, 18, (1 + s / 250) as u8, (1 + s % 250) as u8),
            server: Ipv4Addr::new(198, 19, 1, 1),
            client_port: 20000 + (s % 40000) as u16,
            echo_id: s as u16,
        }
    }

    fn ports(&self, step: &Step) -> u16 {
        match step {
            Step::Udp { .. } => 53,
            _ => 80,
        }
    }

    fn addrs(&self, step: &Step, dir: Dir) -> Addrs {
        let (c, s) = (
            (self.client, self.client_port),
            (self.server, self.ports(step)),
        );
        let ((src, sport), (dst, dport)) = match dir {
            Dir::O => (c, s),
            Dir::R => (s, c),
        };
        Addrs {
            src,
            dst,
            sport,
            dport,
        }
    }

    /// The bytes of a packet step and the kernel tuple it belongs to.
    pub fn build(&self, step: &Step, ip_id: u16) -> Option<(Dir, Vec<u8>, KTuple)> {
        let dir = step.dir()?;
        let a = self.addrs(step, dir);
        let ports = KTuple {
            src: a.src,
            dst: a.dst,
            a: a.sport,
            b: a.dport,
        };
        let (bytes, tuple) = match step {
            Step::Tcp(t) => {
                let mut options = Vec::new();
                if let Some(mss) = t.mss {
                    options.push(TcpOption::Mss(mss));
                }
                if t.sack_ok {
                    options.push(TcpOption::SackPermitted);
                }
                if let Some(ws) = t.wscale {
                    options.push(TcpOption::WindowScale(ws));
                }
                if !t.sack.is_empty() {
                    options.push(TcpOption::Sack(t.sack.clone()));
                }
                let h = TcpHeader {
                    seq: t.seq,
                    ack: t.ack,
                    flags: t.flags,
                    window: t.window,
                    options,
                    payload_len: t.len as usize,
                };
                (wire::tcp(&a, ip_id, &h), ports)
            }
            Step::Udp { len, .. } => (wire::udp(&a, ip_id, usize::from(*len)), ports),
            Step::Echo { reply, seq, .. } => (
                wire::icmp_echo(a.src, a.dst, ip_id, *reply, self.echo_id, *seq),
                KTuple {
                    src: a.src,
                    dst: a.dst,
                    a: if *reply { 0 } else { 8 },
                    b: self.echo_id,
                },
            ),
            Step::Wait(_) => return None,
        };
        Some((dir, bytes, tuple))
    }
}

/// The kernel entry as an observation's connection view.
pub fn kernel_view(e: &Entry, server: Ipv4Addr) -> ConnView {
    let state = match &e.state {
        Some(s) => s.clone(),
        None if e.unreplied => "UNREPLIED".into(),
        None => "REPLIED".into(),
    };
    ConnView {
        state,
        from_server: e.original.src == server,
        assured: e.assured,
        timeout: e.timeout,
    }
}

/// The tun devices' MTU (Linux's default for tun): no packet may be larger.
pub const TUN_MTU: usize = 1500;

/// How many sequences share the kernel table between flushes.
pub const FLUSH_EVERY: u32 = 256;

/// The timeout (seconds) an existing kernel entry is set to before a packet, given the
/// `prev` seconds it has left: a few seconds less, so that any timeout the packet sets reads
/// differently, and no more than that, because the kernel reads the remaining time in places
/// (an invalid FIN or RST on an assured connection shrinks a timeout above 120 s to 300 s) and
/// a sentinel far from the real value would change what it does. The sentinel stays clear of
/// every default timeout, so a refresh to one of them never reads as the sentinel. `None`
/// when too little time is left to probe safely.
pub fn sentinel_for(prev: u64) -> Option<u64> {
    (5..=15)
        .filter_map(|k| prev.checked_sub(k))
        .filter(|&s| s >= 3)
        .find(|&s| {
            KNOWN_TIMEOUTS
                .iter()
                .all(|&t| !(s.saturating_sub(1)..=s + 3).contains(&t))
        })
}

/// Whether a reading `r` after the packet is the sentinel `s`, untouched (time passes: it
/// can only tick down, by a second or two).
pub fn reads_sentinel(r: u64, s: u64) -> bool {
    r <= s && s - r <= 2
}

/// Runs sequences against the kernel and a fresh refwatch table each.
#[derive(Debug)]
pub struct Runner {
    /// The kernel side.
    pub kernel: KernelSide,
    slot: u32,
    /// Seconds of real waiting the `+Ns` steps cost.
    pub waited: Duration,
    /// Lookups still to cross-check against `/proc/net/nf_conntrack`.
    pub cross_check_left: u64,
    /// Whether to set the sentinel timeout before each packet (the refresh field).
    pub refresh_probe: bool,
    /// The TCP switches both sides run with (the kernel side was set up with them).
    pub switches: Switches,
}

impl Runner {
    /// A runner over a set-up kernel side.
    pub fn new(kernel: KernelSide) -> Runner {
        Runner {
            kernel,
            slot: 0,
            waited: Duration::ZERO,
            cross_check_left: 0,
            refresh_probe: true,
            switches: Switches::default(),
        }
    }

    /// Runs one sequence.
    pub fn run(&mut self, input: &SeqInput) -> Result<SeqResult, HarnessError> {
        if self.slot % FLUSH_EVERY == 0 {
            self.kernel.flush()?;
        }
        let ep = Endpoints::for_slot(self.slot);
        self.slot = (self.slot + 1) % SLOTS;
        let ours = RefSide::new(IpAddr::V4(ep.client), self.switches)?;
        // The kernel's view of each flow after its last packet.
        let mut last: HashMap<usize, (Option<ConnView>, std::time::Instant)> = HashMap::new();
        let mut packets = Vec::new();
        for (i, step) in input.steps.iter().enumerate() {
            if let Step::Wait(secs) = step {
                let d = Duration::from_secs(u64::from(*secs));
                // Time passing is what this step tests (e.g. UDP's two-second rule), not a
                // synchronisation: the kernel's clock cannot be moved any other way.
                std::thread::sleep(d);
                ours.advance(d);
                self.waited += d;
                continue;
            }
            let id = self.kernel.next_ip_id();
            let Some((dir, bytes, tuple)) = ep.build(step, id) else {
                continue;
            };
            if bytes.len() > TUN_MTU {
                // The kernel would answer "fragmentation needed" and drop it: not conntrack's
                // verdict.
                return Err(HarnessError::Kernel(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "step `{step}` builds a {}-byte packet, above the tun MTU of {TUN_MTU}",
                        bytes.len()
                    ),
                )));
            }
            let flow = step.flow();
            let proto = step.ip_proto();
            // An existing entry's timeout is set to a sentinel first: if it still reads
            // (about) the sentinel afterwards, the packet did not refresh it.
            let prev_read = last
                .get(&flow)
                .and_then(|(v, at)| v.as_ref().map(|v| (v.clone(), *at)));
            let prev = prev_read.as_ref().map(|(v, _)| v.clone());
            // What the entry has left now (time passed since it was read, e.g. a `+Ns` step).
            let remaining =
                prev_read.map(|(p, at)| p.timeout.saturating_sub(at.elapsed().as_secs()));
            let sentinel = match remaining.and_then(sentinel_for) {
                Some(secs) if self.refresh_probe => {
                    let secs32 = u32::try_from(secs).unwrap_or(u32::MAX);
                    self.kernel
                        .set_timeout(proto, &tuple, secs32)?
                        .then_some(secs)
                }
                _ => None,
            };
            let accepted = self.kernel.send(dir, &bytes)?;
            let cross_check = self.cross_check_left > 0;
            self.cross_check_left = self.cross_check_left.saturating_sub(1);
            let entry = self.kernel.lookup(proto, &tuple, cross_check)?;
            let read_at = std::time::Instant::now();
            let mut view = entry.as_ref().map(|e| kernel_view(e, ep.server));
            let mut refreshed = None;
            if let (Some(s), Some(v), Some(rem)) = (sentinel, view.as_mut(), remaining) {
                let untouched = reads_sentinel(v.timeout, s);
                if accepted {
                    refreshed = Some(!untouched);
                }
                if untouched {
                    // Not refreshed: what the timeout would read without the sentinel.
                    v.timeout += rem - s;
                }
            }
            let kernel = Observation {
                accepted,
                conn: view,
                refreshed,
            };
            let refwatch = ours.send(&bytes)?;
            last.insert(flow, (kernel.conn.clone(), read_at));
            let cmp = compare(&kernel, &refwatch);
            packets.push(PacketResult {
                step: i,
                before: state_value(prev.as_ref()),
                kernel,
                refwatch,
                cmp,
            });
        }
        Ok(SeqResult {
            input: input.clone(),
            packets,
        })
    }
}

/// Whether a TCP step is a bare SYN (for statistics).
pub fn is_bare_syn(step: &Step) -> bool {
    matches!(step, Step::Tcp(t) if t.flags & (f::SYN | f::ACK | f::RST | f::FIN) == f::SYN)
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use crate::notation::parse_step;
    use refwatch::conntrack::Packet;

    #[test]
    fn sentinels_stay_close_and_clear_of_default_timeouts() {
        for prev in [
            10, 29, 30, 59, 60, 119, 120, 299, 300, 431_999, 432_000, 27, 117,
        ] {
            let s = sentinel_for(prev).unwrap();
            assert!(s < prev && prev - s <= 15, "{prev} -> {s}");
            for t in KNOWN_TIMEOUTS {
                // A refresh to t reads t, t-1 or t-2: never the sentinel band.
                for r in t.saturating_sub(2)..=t {
                    assert!(
                        !reads_sentinel(r, s),
                        "prev {prev}, sentinel {s}, refresh {t}"
                    );
                }
            }
        }
        assert_eq!(sentinel_for(7), None);
        assert!(reads_sentinel(113, 115) && !reads_sentinel(116, 115) && !reads_sentinel(112, 115));
    }

    #[test]
    fn endpoints_are_distinct_and_in_range() {
        let a = Endpoints::for_slot(0);
        let b = Endpoints::for_slot(SLOTS - 1);
        assert_ne!(a.client, b.client);
        assert_eq!(a.client.octets()[..2], [198, 18]);
        assert_eq!(b.client.octets()[..2], [198, 18]);
        assert_ne!(b.client, crate::kernel::MARKER_CLIENT);
        assert_eq!(Endpoints::for_slot(SLOTS), a);
    }

    #[test]
    fn build_matches_refwatch_tuple() {
        let ep = Endpoints::for_slot(5);
        for text in [
            "O S 1000",
            "R SA 5000/1001",
            "O udp len=4",
            "R pong 3",
            "O ping 3",
        ] {
            let step = parse_step(text).unwrap();
            let (dir, bytes, kt) = ep.build(&step, 9).unwrap();
            assert_eq!(Some(dir), step.dir());
            let pkt = Packet::parse(&bytes).unwrap();
            assert_eq!(pkt.tuple().src(), IpAddr::V4(kt.src), "{text}");
            assert_eq!(pkt.tuple().dst(), IpAddr::V4(kt.dst), "{text}");
        }
        assert!(ep.build(&Step::Wait(1), 1).is_none());
    }
}
