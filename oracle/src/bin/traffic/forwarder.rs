//! The forwarder: one thread that moves IP packets between the two tun devices, tracking each
//! with refwatch's [`ConnTable`], dropping what refwatch calls invalid, and dropping a seeded
//! pseudo-random fraction to force retransmissions.
//!
//! Loss is applied A→B *after* tracking and B→A *before* tracking, so refwatch sees exactly
//! the packets that A's kernel sees leave (output hook) and arrive (input hook).
//!
//! Per-packet join with the kernel's verdicts, through the IPv4 DSCP field (which neither
//! tracker looks at): A's nftables output chain marks what the kernel's conntrack calls
//! invalid with [`DSCP_KERNEL_INVALID`], so the forwarder knows the kernel's verdict on every
//! A→B packet it reads; in `observe` mode the forwarder delivers what refwatch calls invalid
//! instead of dropping it, marked with [`DSCP_REFWATCH_INVALID`], and A's input chain counts
//! how many of those the kernel calls invalid too.

use crate::error::{Context, Result};
use crate::probe::{ProbeResult, PROBE_PORT};
use crate::rng::SplitMix64;
use crate::tun::Tun;
use refwatch::conntrack::{ConnTable, Packet, State, TrackError, Transport, Tuple};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How many recent packets of each flow are kept for the report.
const HISTORY: usize = 16;
/// Packets read from one device before the other gets a turn.
const BATCH: usize = 64;

/// DSCP (CS2) that A's output chain sets on packets the kernel's conntrack calls invalid.
pub const DSCP_KERNEL_INVALID: u8 = 16;
/// DSCP (CS1) that the forwarder sets, in observe mode, on B→A packets refwatch calls invalid.
pub const DSCP_REFWATCH_INVALID: u8 = 8;

/// The DSCP of an IPv4 packet.
fn dscp(pkt: &[u8]) -> Option<u8> {
    (pkt.len() >= 20 && pkt[0] >> 4 == 4).then(|| pkt[1] >> 2)
}

/// A copy of an IPv4 packet with its DSCP set to `code` and the header checksum redone.
fn with_dscp(pkt: &[u8], code: u8) -> Option<Vec<u8>> {
    dscp(pkt)?;
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    if ihl < 20 || pkt.len() < ihl {
        return None;
    }
    let mut out = pkt.to_vec();
    out[1] = (code << 2) | (out[1] & 0x03);
    out[10] = 0;
    out[11] = 0;
    let mut sum: u32 = out[..ihl]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    out[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    Some(out)
}

/// Which way a packet travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// From A (clients) to B (servers).
    AtoB,
    /// From B to A.
    BtoA,
}

impl fmt::Display for Way {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Way::AtoB => "A->B",
            Way::BtoA => "B->A",
        })
    }
}

/// What the forwarder did with one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Tracked and delivered; the connection's state afterwards.
    Forwarded(State),
    /// Dropped by the simulated loss (A→B: after tracking, B→A: before).
    Lost,
    /// refwatch called it invalid: dropped (or, in observe mode, delivered marked).
    Invalid(String),
    /// Dropped: the table was full.
    TableFull,
}

/// One packet of a flow's recent history.
#[derive(Clone, Debug)]
pub struct PacketNote {
    /// Since the forwarder started.
    pub at: Duration,
    /// Direction.
    pub way: Way,
    /// TCP: flags, seq, ack, window, payload; `None` for UDP.
    pub tcp: Option<refwatch::conntrack::TcpSegment>,
    /// What happened to it.
    pub verdict: Verdict,
    /// A→B: whether the kernel's conntrack called it invalid (from the DSCP mark).
    pub kernel_invalid: Option<bool>,
}

impl fmt::Display for PacketNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>9.3}s {} ", self.at.as_secs_f64(), self.way)?;
        match &self.tcp {
            Some(s) => write!(
                f,
                "{:?} seq={} ack={} win={}{} len={}",
                s.flags,
                s.seq,
                s.ack,
                s.window,
                s.wscale.map(|w| format!(" wscale={w}")).unwrap_or_default(),
                s.payload_len
            )?,
            None => f.write_str("udp")?,
        }
        match &self.verdict {
            Verdict::Forwarded(st) => write!(f, " -> {st}")?,
            Verdict::Lost => f.write_str(" -> lost (simulated)")?,
            Verdict::Invalid(r) => write!(f, " -> refwatch INVALID: {r}")?,
            Verdict::TableFull => f.write_str(" -> DROPPED table full")?,
        }
        if self.kernel_invalid == Some(true) {
            f.write_str(" [kernel: invalid]")?;
        }
        Ok(())
    }
}

/// Counters of one direction.
#[derive(Clone, Debug, Default)]
pub struct DirStats {
    /// Packets read from the source device.
    pub read: u64,
    /// Packets written to the destination device.
    pub forwarded: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Dropped by the simulated loss.
    pub lost: u64,
    /// Dropped as invalid by refwatch, by reason.
    pub invalid: BTreeMap<String, u64>,
    /// Forwarded without tracking because refwatch does not parse them, by reason.
    pub untracked: BTreeMap<String, u64>,
    /// Dropped because the table was full.
    pub table_full: u64,
    /// Failed writes, by error.
    pub write_errors: BTreeMap<String, u64>,
    /// The largest packet read (above the MTU would mean the device hands out GSO packets).
    pub largest: usize,
    /// A→B only: packets by (kernel called it invalid, refwatch called it invalid).
    pub join: [[u64; 2]; 2],
}

impl DirStats {
    /// Packets dropped as invalid, all reasons.
    pub fn invalid_total(&self) -> u64 {
        self.invalid.values().sum()
    }
}

/// What one flow (keyed by its A→B tuple) went through.
#[derive(Clone, Debug, Default)]
pub struct FlowLog {
    /// Packets seen, both ways.
    pub packets: u64,
    /// Packets refwatch called invalid.
    pub invalid: u64,
    /// The most recent packets.
    pub recent: VecDeque<PacketNote>,
    /// The first invalid packets (up to [`HISTORY`]).
    pub first_invalid: Vec<PacketNote>,
}

/// What the forwarder did, handed back when it stops.
#[derive(Debug, Default)]
pub struct ForwardReport {
    /// A→B counters.
    pub a_to_b: DirStats,
    /// B→A counters.
    pub b_to_a: DirStats,
    /// Original tuples of the connections refwatch created, in order (with repeats if a
    /// tuple was created again).
    pub created: Vec<Tuple>,
    /// Per-flow logs, keyed by the flow's A→B tuple.
    pub flows: HashMap<Tuple, FlowLog>,
    /// Read errors (other than "nothing to read").
    pub read_errors: BTreeMap<String, u64>,
}

/// A running forwarder.
#[derive(Debug)]
pub struct Forwarder {
    stop: OwnedFd,
    activity: Arc<Activity>,
    handle: JoinHandle<(ForwardReport, Tun, Tun)>,
}

/// Loss and seed of the forwarder.
#[derive(Clone, Copy, Debug)]
pub struct ForwardConfig {
    /// Fraction of packets dropped, each way.
    pub loss: f64,
    /// Seed of the loss pattern.
    pub seed: u64,
    /// Deliver what refwatch calls invalid (marked) instead of dropping it.
    pub observe: bool,
}

impl Forwarder {
    /// Starts forwarding between `tun_a` and `tun_b` through `table`; the verdicts on the
    /// [probe](crate::probe) go to `probe`.
    pub fn spawn(
        tun_a: Tun,
        tun_b: Tun,
        table: Arc<ConnTable>,
        cfg: ForwardConfig,
        probe: mpsc::Sender<ProbeResult>,
    ) -> Result<Forwarder> {
        // SAFETY: eventfd takes two integers and returns a new descriptor or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error())
                .context("eventfd for the forwarder's stop signal");
        }
        // SAFETY: `raw` is a descriptor eventfd just returned, owned by nobody else.
        let stop = unsafe { OwnedFd::from_raw_fd(raw) };
        let stop_raw = stop.as_raw_fd();
        let activity = Arc::new(Activity::default());
        let act = Arc::clone(&activity);
        let handle = std::thread::Builder::new()
            .name("forwarder".into())
            .spawn(move || {
                let mut fwd = Loop {
                    table,
                    rng: SplitMix64::new(cfg.seed ^ 0x10_55),
                    loss: cfg.loss,
                    observe: cfg.observe,
                    probe,
                    start: Instant::now(),
                    report: ForwardReport::default(),
                    activity: act,
                };
                fwd.run(&tun_a, &tun_b, stop_raw);
                (fwd.report, tun_a, tun_b)
            })
            .context("spawning the forwarder thread")?;
        Ok(Forwarder {
            stop,
            activity,
            handle,
        })
    }

    /// Packets read so far, both ways.
    pub fn packets(&self) -> u64 {
        *self
            .activity
            .count
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until more than `seen` packets were read, or `timeout` passes; returns the count.
    /// (For waiting until the traffic has drained: a quiet `timeout` means nothing moves.)
    pub fn wait_for_packets(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = self
            .activity
            .count
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .activity
            .moved
            .wait_timeout_while(guard, timeout, |n| *n <= seen)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }

    /// Stops the forwarder and returns its report and the devices (still open).
    pub fn stop(self) -> Result<(ForwardReport, Tun, Tun)> {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to the eventfd this struct owns.
        let n = unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if n != 8 {
            return Err(io::Error::last_os_error()).context("signalling the forwarder to stop");
        }
        self.handle
            .join()
            .map_err(|_| crate::error::failed("the forwarder thread panicked"))
    }
}

/// Packets read so far, and a signal when the count moves.
#[derive(Debug, Default)]
struct Activity {
    count: Mutex<u64>,
    moved: Condvar,
}

struct Loop {
    table: Arc<ConnTable>,
    rng: SplitMix64,
    loss: f64,
    observe: bool,
    probe: mpsc::Sender<ProbeResult>,
    start: Instant,
    report: ForwardReport,
    activity: Arc<Activity>,
}

impl Loop {
    fn run(&mut self, a: &Tun, b: &Tun, stop: i32) {
        let mut buf = vec![0u8; 65536 + 4];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: a.raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: b.raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: stop,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a live array of three pollfd structs, its length passed along.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                *self
                    .report
                    .read_errors
                    .entry(format!("poll: {e}"))
                    .or_default() += 1;
                return;
            }
            if fds[2].revents != 0 {
                return;
            }
            if fds[0].revents != 0 {
                self.pump(a, b, Way::AtoB, &mut buf);
            }
            if fds[1].revents != 0 {
                self.pump(b, a, Way::BtoA, &mut buf);
            }
        }
    }

    /// Moves up to [`BATCH`] packets from `from` to `to`.
    fn pump(&mut self, from: &Tun, to: &Tun, way: Way, buf: &mut [u8]) {
        let mut moved = 0;
        for _ in 0..BATCH {
            match from.recv(buf) {
                Ok(n) => {
                    moved += 1;
                    self.handle(&buf[..n], to, way);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    *self
                        .report
                        .read_errors
                        .entry(format!("{way} read: {e}"))
                        .or_default() += 1;
                    break;
                }
            }
        }
        if moved > 0 {
            *self
                .activity
                .count
                .lock()
                .unwrap_or_else(|p| p.into_inner()) += moved;
            self.activity.moved.notify_all();
        }
    }

    fn lose(&mut self) -> bool {
        self.loss > 0.0 && self.rng.next_f64() < self.loss
    }

    /// The [probe](crate::probe): both verdicts reported, never delivered, counted nowhere
    /// else (refwatch's own `invalid` counter excepted).
    fn probe(&mut self, pkt: &Packet, kernel_invalid: bool) {
        let refwatch = match self.table.track(pkt) {
            Ok(t) => Ok(t.state.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let _ = self.probe.send(ProbeResult {
            kernel_invalid,
            refwatch,
        });
    }

    fn handle(&mut self, bytes: &[u8], to: &Tun, way: Way) {
        let kernel_invalid = (way == Way::AtoB).then(|| dscp(bytes) == Some(DSCP_KERNEL_INVALID));
        let parsed = Packet::parse(bytes);
        if let Ok(pkt) = &parsed {
            if way == Way::AtoB
                && matches!(pkt.transport(), Transport::Tcp(_))
                && pkt.tuple().dst_port() == PROBE_PORT
            {
                self.probe(pkt, kernel_invalid == Some(true));
                return;
            }
        }
        let stats = match way {
            Way::AtoB => &mut self.report.a_to_b,
            Way::BtoA => &mut self.report.b_to_a,
        };
        stats.read += 1;
        stats.largest = stats.largest.max(bytes.len());
        let pkt = match parsed {
            Ok(p) => p,
            Err(e) => {
                // Not something refwatch tracks (or could parse): deliver it untouched.
                *stats.untracked.entry(e.to_string()).or_default() += 1;
                self.deliver(bytes, to, way);
                return;
            }
        };
        {}
        let key = match way {
            Way::AtoB => *pkt.tuple(),
            Way::BtoA => pkt.tuple().reply(),
        };
        let tcp = match pkt.transport() {
            Transport::Tcp(seg) => Some(*seg),
            _ => None,
        };
        let verdict = if way == Way::BtoA && self.lose() {
            Verdict::Lost
        } else {
            let v = match self.table.track(&pkt) {
                Ok(t) => {
                    if t.created {
                        self.report.created.push(t.conn.original());
                    }
                    Verdict::Forwarded(t.state)
                }
                Err(TrackError::Invalid(inv)) => Verdict::Invalid(inv.to_string()),
                Err(TrackError::TableFull { .. }) => Verdict::TableFull,
                Err(TrackError::Malformed(e)) => Verdict::Invalid(format!("malformed: {e}")),
            };
            if let Some(k) = kernel_invalid {
                let r = matches!(v, Verdict::Invalid(_));
                self.report.a_to_b.join[usize::from(k)][usize::from(r)] += 1;
            }
            match v {
                Verdict::Forwarded(_) if way == Way::AtoB && self.lose() => Verdict::Lost,
                v => v,
            }
        };
        let stats = match way {
            Way::AtoB => &mut self.report.a_to_b,
            Way::BtoA => &mut self.report.b_to_a,
        };
        match &verdict {
            Verdict::Forwarded(_) => {}
            Verdict::Lost => stats.lost += 1,
            Verdict::Invalid(r) => *stats.invalid.entry(r.clone()).or_default() += 1,
            Verdict::TableFull => stats.table_full += 1,
        }
        let note = PacketNote {
            at: self.start.elapsed(),
            way,
            tcp,
            verdict,
            kernel_invalid,
        };
        let log = self.report.flows.entry(key).or_default();
        log.packets += 1;
        if matches!(note.verdict, Verdict::Invalid(_)) {
            log.invalid += 1;
            if log.first_invalid.len() < HISTORY {
                log.first_invalid.push(note.clone());
            }
        }
        let deliver = match note.verdict {
            Verdict::Forwarded(_) => true,
            Verdict::Invalid(_) => self.observe,
            Verdict::Lost | Verdict::TableFull => false,
        };
        let mark = matches!(note.verdict, Verdict::Invalid(_)) && way == Way::BtoA;
        if log.recent.len() == HISTORY {
            log.recent.pop_front();
        }
        log.recent.push_back(note);
        if deliver && mark {
            match with_dscp(bytes, DSCP_REFWATCH_INVALID) {
                Some(marked) => self.deliver(&marked, to, way),
                None => self.deliver(bytes, to, way),
            }
        } else if deliver {
            self.deliver(bytes, to, way);
        }
    }

    fn deliver(&mut self, bytes: &[u8], to: &Tun, way: Way) {
        let stats = match way {
            Way::AtoB => &mut self.report.a_to_b,
            Way::BtoA => &mut self.report.b_to_a,
        };
        match to.send(bytes) {
            Ok(_) => {
                stats.forwarded += 1;
                stats.bytes += bytes.len() as u64;
            }
            Err(e) => *stats.write_errors.entry(e.to_string()).or_default() += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dscp_mark_keeps_the_header_checksum_valid() {
        // A minimal IPv4 header (UDP, 198.18.2.1 -> 198.18.1.1) with a correct checksum.
        let mut h = [
            0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0, 0, 198, 18, 2, 1, 198,
            18, 1, 1,
        ];
        let sum = |b: &[u8]| {
            let mut s: u32 = b
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum();
            while s > 0xffff {
                s = (s & 0xffff) + (s >> 16);
            }
            s as u16
        };
        let c = !sum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(sum(&h), 0xffff);
        let m = with_dscp(&h, DSCP_REFWATCH_INVALID).unwrap();
        assert_eq!(dscp(&m), Some(DSCP_REFWATCH_INVALID));
        assert_eq!(sum(&m), 0xffff);
        assert_eq!(&m[12..], &h[12..]);
    }
}
