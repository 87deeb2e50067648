//! The seeded random generator: sequences that model both endpoints and mostly send what a
//! real TCP would send next, with a minority of perturbations.
//!
//! The model of each endpoint holds its ISN, what it has sent (`nxt`), what it has received
//! and acknowledges (`rcv`), the window and scale it advertises, and whether it has sent its
//! SYN, FIN or a RST. A plausible step continues the handshake, sends data that fits the
//! peer's window, acknowledges, retransmits, reorders, closes or resets. A perturbation takes
//! a plausible step and breaks it (wrong sequence or acknowledgement number, out-of-window
//! data, stray flags, a zero window), or inserts a duplicate or a new SYN; perturbed packets
//! do not update the model. Sequence `i` of seed `s` depends only on `(s, i)`, so any
//! sequence can be regenerated alone.

use crate::notation::{Dir, Step, TcpStep};
use crate::wire::flags as f;

/// SplitMix64: a tiny, good-enough PRNG with a 64-bit state.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; 0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }

    /// True with probability `pct` percent.
    pub fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// A random 32-bit value.
    pub fn u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    /// Picks an index by weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len().saturating_sub(1)
    }
}

/// The per-sequence generator seed derived from the run's seed and the sequence index.
pub fn sequence_seed(seed: u64, index: u64) -> u64 {
    let mut m = SplitMix64::new(seed ^ index.wrapping_mul(0xd134_2543_de82_ef95));
    m.next_u64()
}

/// One endpoint of the TCP model.
#[derive(Clone, Debug, Default)]
struct End {
    isn: u32,
    /// Next sequence number to send.
    nxt: u32,
    /// What this end has received in order (its ACK number).
    rcv: u32,
    /// The highest ACK the peer sent us, and the peer's window (scaled) with it.
    peer_ack: u32,
    peer_win: u32,
    /// Advertised window (unscaled) and the scale option offered in the SYN.
    win: u16,
    ws: Option<u8>,
    sack_ok: bool,
    syn: bool,
    /// Whether we have seen the peer's SYN.
    got_syn: bool,
    fin: Option<u32>,
    rst: bool,
    /// Data segments sent, for retransmissions: (seq, len).
    sent: Vec<(u32, u32)>,
}

/// Both ends plus what the generator queued.
#[derive(Debug)]
struct Tcp {
    ends: [End; 2],
    /// Both sides offered window scaling.
    scaling: bool,
    /// An ACK after both SYNs was sent: the handshake is over.
    established: bool,
    /// This connection's handshake is not to complete (the server refuses, answers with a
    /// bare SYN, or stays silent while the client retries): about a third of the sequences.
    stall: bool,
    /// Plausible steps queued (the second half of a reordering).
    queue: Vec<TcpStep>,
    last: Option<TcpStep>,
}

fn idx(d: Dir) -> usize {
    match d {
        Dir::O => 0,
        Dir::R => 1,
    }
}

fn pick_window(rng: &mut SplitMix64) -> u16 {
    match rng.weighted(&[40, 20, 20, 10, 2]) {
        0 => 65535,
        1 => 29200,
        2 => rng.range(1000, 8000) as u16,
        3 => rng.range(1, 500) as u16,
        _ => 0,
    }
}

fn pick_wscale(rng: &mut SplitMix64) -> Option<u8> {
    match rng.weighted(&[40, 50, 10]) {
        0 => None,
        1 => Some(rng.range(0, 14) as u8),
        _ => Some(rng.range(15, 20) as u8),
    }
}

fn pick_isn(rng: &mut SplitMix64) -> u32 {
    if rng.pct(10) {
        // Near the wrap-around.
        0u32.wrapping_sub(rng.range(1, 3000))
    } else {
        rng.u32()
    }
}

impl Tcp {
    fn new(rng: &mut SplitMix64) -> Tcp {
        let end = |rng: &mut SplitMix64| End {
            isn: pick_isn(rng),
            win: pick_window(rng),
            ws: pick_wscale(rng),
            sack_ok: rng.pct(50),
            ..End::default()
        };
        let ends = [end(rng), end(rng)];
        Tcp {
            ends,
            scaling: false,
            established: false,
            stall: false,
            queue: Vec::new(),
            last: None,
        }
    }

    fn end(&self, d: Dir) -> &End {
        &self.ends[idx(d)]
    }

    fn end_mut(&mut self, d: Dir) -> &mut End {
        &mut self.ends[idx(d)]
    }

    /// The window `d` advertises now, scaled as the peer reads it.
    fn scaled_win(&self, d: Dir) -> u32 {
        let e = self.end(d);
        let shift = if self.scaling {
            e.ws.unwrap_or(0).min(14)
        } else {
            0
        };
        u32::from(e.win) << shift
    }

    /// A segment from `d` carrying its current ACK.
    fn seg(&self, d: Dir, flags: u8, seq: u32) -> TcpStep {
        let e = self.end(d);
        let ack = if flags & f::ACK != 0 { e.rcv } else { 0 };
        TcpStep::new(d, flags, seq, ack).win(e.win)
    }

    /// Applies a plausible segment to the model (as delivered to the peer).
    fn apply(&mut self, s: &TcpStep) {
        let d = s.dir;
        let syn = s.flags & f::SYN != 0;
        let fin = s.flags & f::FIN != 0;
        let len = s.len + u32::from(syn) + u32::from(fin);
        let end_seq = s.seq.wrapping_add(len);
        let win = if syn {
            u32::from(s.window)
        } else {
            self.scaled_win(d)
        };
        {
            let e = self.end_mut(d);
            if syn {
                e.syn = true;
                e.isn = s.seq;
                e.nxt = s.seq;
            }
            if fin && e.fin.is_none() {
                e.fin = Some(s.seq.wrapping_add(s.len));
            }
            if s.flags & f::RST != 0 {
                e.rst = true;
            }
            if s.len > 0 {
                e.sent.push((s.seq, s.len));
            }
            if (end_seq.wrapping_sub(e.nxt) as i32) > 0 {
                e.nxt = end_seq;
            }
        }
        let p = self.end_mut(d.other());
        if syn {
            p.got_syn = true;
            p.rcv = end_seq;
        } else if (s.seq == p.rcv || (s.seq.wrapping_sub(p.rcv) as i32) < 0)
            && (end_seq.wrapping_sub(p.rcv) as i32) > 0
        {
            // In order (or overlapping what was received): the peer takes it.
            p.rcv = end_seq;
        }
        if s.flags & f::ACK != 0 {
            p.peer_ack = s.ack;
            p.peer_win = win;
        }
        if s.flags & f::RST != 0 {
            p.rst = true;
        }
        if !syn && s.flags & f::ACK != 0 && self.ends[0].syn && self.ends[1].syn {
            self.established = true;
        }
        if syn && s.flags & f::ACK != 0 {
            let (a, b) = (self.ends[0].ws, self.ends[1].ws);
            self.scaling = a.is_some() && b.is_some();
        }
    }

    /// Room `d` has in the peer's window.
    fn room(&self, d: Dir) -> u32 {
        let e = self.end(d);
        e.peer_ack
            .wrapping_add(e.peer_win)
            .wrapping_sub(e.nxt)
            .min(1 << 30)
    }

    /// A plausible next segment, or `None` when the connection is over.
    fn plausible(&mut self, rng: &mut SplitMix64) -> Option<TcpStep> {
        if !self.queue.is_empty() {
            return Some(self.queue.remove(0));
        }
        let (c, s) = (self.end(Dir::O).clone(), self.end(Dir::R).clone());
        if c.rst || s.rst {
            return None;
        }
        if !c.syn {
            let mut st = TcpStep::new(Dir::O, f::SYN, c.isn, 0).win(c.win);
            st.wscale = c.ws;
            st.sack_ok = c.sack_ok;
            st.mss = rng.pct(50).then_some(1460);
            return Some(st);
        }
        if !s.syn {
            let w = if self.stall {
                [0, 20, 20, 35, 25]
            } else {
                [60, 8, 5, 15, 12]
            };
            return Some(match rng.weighted(&w) {
                0 => {
                    let mut st =
                        TcpStep::new(Dir::R, f::SYN | f::ACK, s.isn, c.isn.wrapping_add(1))
                            .win(s.win);
                    st.wscale = s.ws;
                    st.sack_ok = s.sack_ok && c.sack_ok;
                    st
                }
                1 => TcpStep::new(Dir::R, f::RST | f::ACK, 0, c.isn.wrapping_add(1)).win(0),
                2 => {
                    let mut st = TcpStep::new(Dir::R, f::SYN, s.isn, 0).win(s.win);
                    st.wscale = s.ws;
                    st
                }
                3 => {
                    let mut st = TcpStep::new(Dir::O, f::SYN, c.isn, 0).win(c.win);
                    st.wscale = c.ws;
                    st
                }
                _ => {
                    // The client gives up and tries another ISN.
                    let isn = pick_isn(rng);
                    self.end_mut(Dir::O).isn = isn;
                    TcpStep::new(Dir::O, f::SYN, isn, 0).win(c.win)
                }
            });
        }
        if !c.got_syn {
            // Simultaneous open: the server sent a bare SYN; the client answers SYN-ACK.
            let mut st =
                TcpStep::new(Dir::O, f::SYN | f::ACK, c.isn, s.isn.wrapping_add(1)).win(c.win);
            st.wscale = c.ws;
            return Some(st);
        }
        if !s.got_syn {
            return Some(self.seg(Dir::R, f::SYN | f::ACK, s.isn));
        }
        // Both SYNs seen, the handshake's last ACK not sent yet.
        if !self.established {
            let w = if self.stall {
                [0, 30, 0, 30, 40]
            } else {
                [64, 10, 12, 6, 8]
            };
            return Some(match rng.weighted(&w) {
                0 => self.seg(Dir::O, f::ACK, c.nxt),
                1 => {
                    let mut st = TcpStep::new(Dir::R, f::SYN | f::ACK, s.isn, s.rcv).win(s.win);
                    st.wscale = s.ws;
                    st
                }
                2 => self
                    .data(Dir::O, rng)
                    .unwrap_or_else(|| self.seg(Dir::O, f::ACK, c.nxt)),
                3 => self.seg(Dir::O, f::RST, c.nxt),
                _ => TcpStep::new(Dir::O, f::SYN, c.isn, 0).win(c.win),
            });
        }
        let both_fin = c.fin.is_some() && s.fin.is_some();
        let fins_acked = c.fin.is_some_and(|x| s.rcv == x.wrapping_add(1))
            && s.fin.is_some_and(|x| c.rcv == x.wrapping_add(1))
            && c.peer_ack == c.nxt
            && s.peer_ack == s.nxt;
        if both_fin && fins_acked {
            return None;
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let d = if rng.pct(55) { Dir::O } else { Dir::R };
            let e = self.end(d).clone();
            let peer = self.end(d.other()).clone();
            let owes_ack = e.rcv != peer.peer_ack || peer.peer_ack != peer.nxt;
            let w = [
                if e.fin.is_none() { 40 } else { 0 },  // data
                if owes_ack { 30 } else { 6 },         // pure ACK
                if e.sent.is_empty() { 0 } else { 6 }, // retransmission
                if e.fin.is_none() { 5 } else { 0 },   // reordered pair
                if e.fin.is_none() { 10 } else { 2 },  // FIN (or its retransmission)
                2,                                     // RST
                if self.end(Dir::O).sack_ok && self.end(Dir::R).sack_ok {
                    3
                } else {
                    0
                }, // SACK
                2,                                     // window change
            ];
            let st = match rng.weighted(&w) {
                0 => self.data(d, rng),
                1 => Some(self.seg(d, f::ACK, e.nxt)),
                2 => {
                    let (seq, len) = e.sent[rng.below(e.sent.len() as u64) as usize];
                    Some(self.seg(d, f::PSH | f::ACK, seq).len(len))
                }
                3 => self.reordered(d, rng),
                4 => Some(match e.fin {
                    None => self.seg(d, f::FIN | f::ACK, e.nxt),
                    Some(x) => self.seg(d, f::FIN | f::ACK, x),
                }),
                5 => Some(if rng.pct(50) {
                    self.seg(d, f::RST, e.nxt).win(0)
                } else {
                    self.seg(d, f::RST | f::ACK, e.nxt).win(0)
                }),
                6 => {
                    let mut st = self.seg(d, f::ACK, e.nxt);
                    let l = peer.nxt.wrapping_add(rng.range(1, 500));
                    st.sack = vec![(l, l.wrapping_add(rng.range(1, 500)))];
                    Some(st)
                }
                _ => {
                    self.end_mut(d).win = pick_window(rng).max(1);
                    Some(self.seg(d, f::ACK, e.nxt))
                }
            };
            if let Some(st) = st {
                return Some(st);
            }
            if tries > 8 {
                return Some(self.seg(d, f::ACK, e.nxt));
            }
        }
    }

    fn data(&self, d: Dir, rng: &mut SplitMix64) -> Option<TcpStep> {
        let room = self.room(d);
        if room == 0 {
            return None;
        }
        let len = rng.range(1, room.min(1400));
        Some(self.seg(d, f::PSH | f::ACK, self.end(d).nxt).len(len))
    }

    /// Two data segments sent in the wrong order: the second now, the first queued.
    fn reordered(&mut self, d: Dir, rng: &mut SplitMix64) -> Option<TcpStep> {
        let room = self.room(d);
        if room < 2 {
            return None;
        }
        let total = rng.range(2, room.min(1400));
        let first = rng.range(1, total - 1);
        let nxt = self.end(d).nxt;
        let a = self.seg(d, f::PSH | f::ACK, nxt).len(first);
        let b = self
            .seg(d, f::PSH | f::ACK, nxt.wrapping_add(first))
            .len(total - first);
        self.queue.push(a);
        Some(b)
    }

    /// Breaks a plausible segment.
    fn perturb(&self, mut st: TcpStep, rng: &mut SplitMix64) -> TcpStep {
        match rng.weighted(&[20, 20, 15, 15, 10, 10]) {
            0 => {
                st.seq = st.seq.wrapping_add(match rng.below(4) {
                    0 => 1,
                    1 => u32::MAX,
                    2 => rng.range(1, 200_000),
                    _ => rng.u32(),
                })
            }
            1 => {
                st.flags |= f::ACK;
                st.ack = st.ack.wrapping_add(match rng.below(4) {
                    0 => 1,
                    1 => u32::MAX,
                    2 => 0u32.wrapping_sub(rng.range(1, 200_000)),
                    _ => rng.u32(),
                })
            }
            2 => {
                // Out of the window: past the right edge.
                let e = self.end(st.dir);
                st.seq = e
                    .peer_ack
                    .wrapping_add(e.peer_win)
                    .wrapping_add(rng.range(1, 70_000));
                st.len = st.len.max(1);
            }
            3 => {
                st.flags = if rng.pct(50) {
                    st.flags ^ (1 << rng.below(6))
                } else {
                    rng.below(64) as u8
                }
            }
            4 => st.window = 0,
            _ => st.len = st.len.saturating_add(rng.range(1, 1400)).min(1400),
        }
        st
    }
}

/// Generates TCP steps.
fn tcp(rng: &mut SplitMix64) -> Vec<Step> {
    let mut m = Tcp::new(rng);
    m.stall = rng.pct(30);
    // Perturbation rate of this sequence, in percent; an eighth of the sequences are rough.
    let rate = if rng.pct(12) {
        35
    } else {
        rng.range(0, 12) as u64
    };
    let len = rng.range(3, 24) as usize;
    let mut steps = Vec::new();
    let mut restarts = 0;
    while steps.len() < len {
        if let Some(last) = m.last.clone() {
            if rng.pct(rate / 4) {
                steps.push(Step::Tcp(last)); // duplicate
                continue;
            }
        }
        if rng.pct(rate / 5) {
            let isn = pick_isn(rng);
            let d = if rng.pct(80) { Dir::O } else { Dir::R };
            steps.push(Step::Tcp(TcpStep::new(d, f::SYN, isn, 0)));
            continue;
        }
        let Some(st) = m.plausible(rng) else {
            // Over (closed or reset): reuse the ports or stop.
            if restarts < 1 && rng.pct(40) {
                restarts += 1;
                let old = m;
                m = Tcp::new(rng);
                if rng.pct(15) {
                    // The server reopens the tuple: swap the roles in the model.
                    m.ends[0].isn = old.ends[1].isn.wrapping_add(100_000);
                }
                continue;
            }
            break;
        };
        if rng.pct(rate) {
            steps.push(Step::Tcp(m.perturb(st, rng)));
        } else {
            m.apply(&st);
            m.last = Some(st.clone());
            steps.push(Step::Tcp(st));
        }
    }
    steps
}

fn udp(rng: &mut SplitMix64) -> Vec<Step> {
    let n = rng.range(1, 6);
    let mut dir = if rng.pct(85) { Dir::O } else { Dir::R };
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Step::Udp {
            dir,
            len: rng.range(0, 200) as u16,
        });
        if rng.pct(60) {
            dir = dir.other();
        }
    }
    v
}

fn icmp(rng: &mut SplitMix64) -> Vec<Step> {
    let n = rng.range(1, 6);
    let mut v = Vec::new();
    let mut seq = rng.range(0, 100) as u16;
    for _ in 0..n {
        let (dir, reply) = match rng.weighted(&[45, 35, 8, 6, 6]) {
            0 => (Dir::O, false),
            1 => (Dir::R, true),
            2 => (Dir::R, false),
            3 => (Dir::O, true),
            _ => (Dir::R, true),
        };
        v.push(Step::Echo { dir, reply, seq });
        if rng.pct(70) {
            seq = seq.wrapping_add(1);
        }
    }
    v
}

/// Generated sequence `index` of the run seeded `seed`: one in ten is UDP, one in ten ICMP
/// echo, the rest TCP.
pub fn generate(seed: u64, index: u64) -> Vec<Step> {
    let mut rng = SplitMix64::new(sequence_seed(seed, index));
    match index % 10 {
        3 => udp(&mut rng),
        7 => icmp(&mut rng),
        _ => tcp(&mut rng),
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use crate::notation::{format_steps, parse_steps};

    #[test]
    fn splitmix_reference_values() {
        // The first outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn deterministic_per_seed_and_index() {
        for i in 0..200 {
            assert_eq!(generate(42, i), generate(42, i));
        }
        let a: Vec<_> = (0..50).map(|i| generate(1, i)).collect();
        let b: Vec<_> = (0..50).map(|i| generate(2, i)).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn sequences_are_nonempty_and_round_trip_through_notation() {
        for i in 0..2000 {
            let s = generate(7, i);
            assert!(!s.is_empty(), "sequence {i} is empty");
            let text = format_steps(&s);
            assert_eq!(parse_steps(&text).unwrap(), s, "{text}");
        }
    }

    #[test]
    fn mostly_handshakes() {
        // At least half of the TCP sequences contain the client's final handshake ACK.
        let mut tcp = 0;
        let mut hs = 0;
        for i in 0..1000 {
            let s = generate(9, i);
            if !matches!(s.first(), Some(Step::Tcp(_))) {
                continue;
            }
            tcp += 1;
            let syn_ack = s
                .iter()
                .any(|st| matches!(st, Step::Tcp(t) if t.flags == f::SYN | f::ACK));
            let ack = s.iter().any(|st| matches!(st, Step::Tcp(t) if t.dir == Dir::O && t.flags & (f::SYN | f::RST | f::FIN) == 0 && t.flags & f::ACK != 0));
            if syn_ack && ack {
                hs += 1;
            }
        }
        assert!(hs * 2 > tcp, "{hs} of {tcp}");
    }
}
