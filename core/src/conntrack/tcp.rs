//! TCP tracking: a per-connection control block that follows both sequence spaces.
//!
//! In the spirit of gVisor's `tcpconntrack`: each direction keeps its oldest unacknowledged
//! sequence number (`una`), the next one it will send (`nxt`), the right edge of the window
//! its peer granted it (`end`) and its window scale. [`Tcb::update`] classifies a segment
//! into a [`TcpResult`] and, on top of it, [`Tcb::state`] names the Linux-style state
//! ([`TcpState`]) that picks the timeout.
//!
//! Rules kept from the seed: a reply in SYN-sent counts only if its ACK acknowledges the SYN
//! (a forged RST or SYN-ACK with a wrong ack is ignored); a segment outside the sender's
//! window is ignored; the connection is closed when both FINs are acknowledged, and the side
//! whose FIN came first is the side that closed it.
//!
//! Where refwatch departs from the seed's tracker, on purpose:
//! - **A reset is final.** The seed keeps feeding segments to the same handler after a RST,
//!   and the next in-window ACK turns a `Reset` connection back into `Alive`. Here every
//!   segment after a RST is [`TcpInvalid::AfterReset`]; only a fresh SYN from the originator
//!   (a new ISN: port reuse) starts the connection over ([`Tcb::reopens`]).
//! - **No mid-stream pick-up.** The seed's `Init` accepts any first segment and, when it is
//!   not a SYN, leaves the connection `Connecting` for good (no later segment can complete a
//!   handshake it never saw) while it occupies a table slot for two minutes. Here a first
//!   segment that is not a bare SYN is [`TcpInvalid::NotSyn`] and creates nothing (Linux with
//!   `nf_conntrack_tcp_loose=0`): a spoofed ACK flood cannot fill the table.
//! - **Rejected means unchanged.** The seed reports an ignored segment as the current state;
//!   here it is an error and every check runs before the first field is written.
//! - **Window scaling** (RFC 7323) is honoured: the shift from each side's SYN applies to the
//!   windows of its later segments when both SYNs carried the option; SYN windows are never
//!   scaled.

use super::packet::{TcpFlags, TcpSegment};
use super::tuple::Direction;
use std::fmt;

/// What the seed's tracker reports about a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpResult {
    /// The originator's SYN was seen, no acceptable reply yet.
    Connecting,
    /// The handshake got a reply and the connection is not closed.
    Alive,
    /// An acceptable RST was seen.
    Reset,
    /// Both FINs were acknowledged; the originator sent the first.
    ClosedByOriginator,
    /// Both FINs were acknowledged; the responder sent the first.
    ClosedByResponder,
}

/// Linux's name for where a TCP connection is (`/proc/net/nf_conntrack`); picks the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    /// The originator's SYN was seen.
    SynSent,
    /// The responder's SYN-ACK was seen.
    SynRecv,
    /// Both SYNs were acknowledged.
    Established,
    /// A FIN was seen, not yet acknowledged.
    FinWait,
    /// A FIN was acknowledged; the other side has not sent its own.
    CloseWait,
    /// Both FINs were seen, the last not yet acknowledged.
    LastAck,
    /// Both FINs were acknowledged.
    TimeWait,
    /// A RST was seen.
    Close,
    /// Simultaneous open: the responder sent a SYN without acknowledging ours.
    SynSent2,
}

impl TcpState {
    /// Linux's spelling: `syn-sent`, `established`, `time-wait`, …
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "syn-sent",
            TcpState::SynRecv => "syn-recv",
            TcpState::Established => "established",
            TcpState::FinWait => "fin-wait",
            TcpState::CloseWait => "close-wait",
            TcpState::LastAck => "last-ack",
            TcpState::TimeWait => "time-wait",
            TcpState::Close => "close",
            TcpState::SynSent2 => "syn-sent2",
        }
    }

    /// Whether the connection is being torn down (an early-drop candidate even if assured).
    pub fn is_closing(self) -> bool {
        matches!(
            self,
            TcpState::FinWait
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the tracker rejected a segment. A rejected segment changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpInvalid {
    /// The first segment of a flow is not a bare SYN (no ACK, RST or FIN).
    NotSyn,
    /// The ACK acknowledges data that was never sent (in SYN-sent: does not acknowledge
    /// the SYN).
    BadAck,
    /// The segment lies outside the window its receiver granted.
    OutOfWindow,
    /// A SYN whose sequence number is not the sender's initial one.
    BadSyn,
    /// Not expected while the handshake has no reply (e.g. data before a SYN-ACK, or a RST
    /// without an acceptable ACK).
    UnexpectedInSynSent,
    /// The connection was reset; nothing revives it.
    AfterReset,
}

impl fmt::Display for TcpInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpInvalid::NotSyn => "the first segment of a TCP flow must be a bare SYN",
            TcpInvalid::BadAck => "the ACK acknowledges data that was never sent",
            TcpInvalid::OutOfWindow => "the segment is outside the receiver's window",
            TcpInvalid::BadSyn => "SYN with a sequence number other than the initial one",
            TcpInvalid::UnexpectedInSynSent => "segment not expected before the handshake's reply",
            TcpInvalid::AfterReset => "the connection was reset",
        })
    }
}

impl std::error::Error for TcpInvalid {}

/// `a < b` in sequence space.
fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

/// `lo <= x < hi` in sequence space.
fn in_range(x: u32, lo: u32, hi: u32) -> bool {
    x.wrapping_sub(lo) < hi.wrapping_sub(lo)
}

/// Whether a segment of `len` at `seq` overlaps the window `[una, end]` (gVisor's
/// `header.Acceptable`, Linux's `<=` at the right edge).
fn acceptable(seq: u32, len: u32, una: u32, end: u32) -> bool {
    if una == end {
        return len == 0 && seq == una;
    }
    if len == 0 {
        return in_range(seq, una, end.wrapping_add(1));
    }
    lt(una, seq.wrapping_add(len)) && le(seq, end)
}

/// One direction's sequence space, as seen by a middlebox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Stream {
    /// Initial sequence number (from this side's SYN).
    isn: u32,
    /// Oldest sequence number not yet acknowledged by the peer.
    una: u32,
    /// Next sequence number this side will send (highest `seq + len` seen).
    nxt: u32,
    /// Right edge of the window the peer granted.
    end: u32,
    /// Sequence number of this side's FIN, once seen.
    fin: Option<u32>,
    /// Window scale from this side's SYN.
    wscale: Option<u8>,
}

impl Stream {
    /// This side's FIN was sent and acknowledged.
    fn closed(&self) -> bool {
        self.fin.is_some_and(|fin| lt(fin, self.una))
    }
}

/// The TCP control block of one tracked connection.
///
/// ```
/// use refwatch::conntrack::{Direction::*, Tcb, TcpFlags as F, TcpResult, TcpSegment, TcpState};
///
/// let mut tcb = Tcb::new(&TcpSegment::new(F::SYN, 100, 0)).unwrap();
/// assert_eq!(tcb.state(), TcpState::SynSent);
/// // A SYN-ACK that does not acknowledge our SYN is ignored.
/// assert!(tcb.update(Reply, &TcpSegment::new(F::SYN | F::ACK, 900, 5)).is_err());
/// assert_eq!(tcb.update(Reply, &TcpSegment::new(F::SYN | F::ACK, 900, 101)), Ok(TcpResult::Alive));
/// assert_eq!(tcb.state(), TcpState::SynRecv);
/// tcb.update(Original, &TcpSegment::new(F::ACK, 101, 901)).unwrap();
/// assert_eq!(tcb.state(), TcpState::Established);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcb {
    /// Indexed by [`Direction`]: what the originator sends, what the responder sends.
    streams: [Stream; 2],
    /// The responder's SYN was seen (the handshake left SYN-sent).
    reply_syn_seen: bool,
    /// An acceptable RST was seen.
    reset: bool,
    /// Who sent the first FIN.
    first_fin: Option<Direction>,
    /// The originator's SYN window, kept until the responder's ISN gives it a base.
    syn_window: u16,
}

impl Tcb {
    /// Starts tracking from the originator's SYN. Anything but a bare SYN is
    /// [`TcpInvalid::NotSyn`].
    pub fn new(syn: &TcpSegment) -> Result<Tcb, TcpInvalid> {
        if !Tcb::opens(syn) {
            return Err(TcpInvalid::NotSyn);
        }
        let nxt = syn.seq.wrapping_add(syn.logical_len());
        let orig = Stream {
            isn: syn.seq,
            una: syn.seq,
            nxt,
            end: nxt,
            fin: None,
            wscale: syn.wscale,
        };
        Ok(Tcb {
            streams: [orig, Stream::default()],
            reply_syn_seen: false,
            reset: false,
            first_fin: None,
            syn_window: syn.window,
        })
    }

    /// Whether `seg` can open a connection: SYN without ACK, RST or FIN.
    pub fn opens(seg: &TcpSegment) -> bool {
        seg.flags.contains(TcpFlags::SYN)
            && !seg.flags.contains(TcpFlags::ACK)
            && !seg.flags.contains(TcpFlags::RST)
            && !seg.flags.contains(TcpFlags::FIN)
    }

    /// Whether `seg`, sent in `dir`, starts this (finished) connection over: the connection
    /// was reset or closed, and the originator sends a bare SYN with a new ISN.
    pub fn reopens(&self, dir: Direction, seg: &TcpSegment) -> bool {
        let finished = self.reset || (self.streams[0].closed() && self.streams[1].closed());
        finished && dir == Direction::Original && Tcb::opens(seg) && seg.seq != self.streams[0].isn
    }

    /// Feeds one segment travelling in `dir`. On error nothing changed.
    pub fn update(&mut self, dir: Direction, seg: &TcpSegment) -> Result<TcpResult, TcpInvalid> {
        if self.reset {
            return Err(TcpInvalid::AfterReset);
        }
        if self.reply_syn_seen {
            self.update_open(dir, seg)
        } else {
            self.update_syn_sent(dir, seg)
        }
    }

    fn update_syn_sent(
        &mut self,
        dir: Direction,
        seg: &TcpSegment,
    ) -> Result<TcpResult, TcpInvalid> {
        let flags = seg.flags;
        let orig = self.streams[0];
        if dir == Direction::Original {
            if flags.contains(TcpFlags::RST)
                && in_range(seg.seq, orig.una, orig.nxt.wrapping_add(1))
            {
                self.reset = true;
                return Ok(TcpResult::Reset);
            }
            if Tcb::opens(seg) && seg.seq == orig.isn {
                return Ok(TcpResult::Connecting); // a retransmitted SYN
            }
            return Err(TcpInvalid::UnexpectedInSynSent);
        }
        let ack_present = flags.contains(TcpFlags::ACK);
        if ack_present && !in_range(seg.ack.wrapping_sub(1), orig.una, orig.nxt) {
            return Err(TcpInvalid::BadAck);
        }
        if flags.contains(TcpFlags::RST) {
            if !ack_present {
                return Err(TcpInvalid::UnexpectedInSynSent);
            }
            self.reset = true;
            return Ok(TcpResult::Reset);
        }
        if !flags.contains(TcpFlags::SYN) {
            return Err(TcpInvalid::UnexpectedInSynSent);
        }
        // The responder's SYN (a SYN-ACK, or a SYN alone in a simultaneous open).
        let len = seg.logical_len();
        let nxt = seg.seq.wrapping_add(len);
        self.streams[1] = Stream {
            isn: seg.seq,
            una: seg.seq,
            nxt,
            end: nxt.wrapping_add(u32::from(self.syn_window)),
            fin: None,
            wscale: seg.wscale,
        };
        let orig = &mut self.streams[0];
        let base = if ack_present { seg.ack } else { orig.nxt };
        if ack_present && lt(orig.una, seg.ack) {
            orig.una = seg.ack;
        }
        let end = base.wrapping_add(u32::from(seg.window)); // SYN windows are never scaled
        if lt(orig.end, end) {
            orig.end = end;
        }
        if flags.contains(TcpFlags::FIN) {
            self.note_fin(Direction::Reply, seg.seq.wrapping_add(len).wrapping_sub(1));
        }
        self.reply_syn_seen = true;
        Ok(self.result())
    }

    fn update_open(&mut self, dir: Direction, seg: &TcpSegment) -> Result<TcpResult, TcpInvalid> {
        let (s, r) = (dir.index(), dir.opposite().index());
        let flags = seg.flags;
        let ack_present = flags.contains(TcpFlags::ACK);
        if ack_present && !le(seg.ack, self.streams[r].nxt) {
            return Err(TcpInvalid::BadAck);
        }
        if flags.contains(TcpFlags::SYN) {
            // Only this side's own SYN again: a retransmission, or the originator's SYN-ACK
            // in a simultaneous open. Its ACK still counts.
            if seg.seq != self.streams[s].isn {
                return Err(TcpInvalid::BadSyn);
            }
            if ack_present {
                self.apply_ack(dir, seg, 0);
            }
            return Ok(self.result());
        }
        let len = seg.logical_len();
        let sender = self.streams[s];
        if !acceptable(seg.seq, len, sender.una, sender.end) {
            return Err(TcpInvalid::OutOfWindow);
        }
        if flags.contains(TcpFlags::RST) {
            self.reset = true;
            return Ok(TcpResult::Reset);
        }
        if ack_present {
            let shift = self.shift(dir);
            self.apply_ack(dir, seg, shift);
        }
        let end = seg.seq.wrapping_add(len);
        let sender = &mut self.streams[s];
        if lt(sender.nxt, end) {
            sender.nxt = end;
        }
        if flags.contains(TcpFlags::FIN) {
            self.note_fin(dir, end.wrapping_sub(1));
        }
        Ok(self.result())
    }

    /// The window shift of segments sent in `dir` (0 unless both SYNs asked for scaling).
    fn shift(&self, dir: Direction) -> u32 {
        match (self.streams[0].wscale, self.streams[1].wscale) {
            (Some(_), Some(_)) => u32::from(self.streams[dir.index()].wscale.unwrap_or(0)),
            _ => 0,
        }
    }

    /// Preconditions: the ACK was validated (`ack <= receiver's nxt`).
    fn apply_ack(&mut self, dir: Direction, seg: &TcpSegment, shift: u32) {
        let peer = &mut self.streams[dir.opposite().index()];
        if lt(peer.una, seg.ack) {
            peer.una = seg.ack;
        }
        let window = u32::from(seg.window) << shift;
        let end = seg.ack.wrapping_add(window);
        if lt(peer.end, end) {
            peer.end = end;
        }
    }

    fn note_fin(&mut self, dir: Direction, fin: u32) {
        let stream = &mut self.streams[dir.index()];
        if stream.fin.is_none() {
            stream.fin = Some(fin);
            self.first_fin.get_or_insert(dir);
        }
    }

    /// The seed's classification of the connection.
    pub fn result(&self) -> TcpResult {
        if self.reset {
            return TcpResult::Reset;
        }
        if !self.reply_syn_seen {
            return TcpResult::Connecting;
        }
        if self.streams[0].closed() && self.streams[1].closed() {
            return match self.first_fin {
                Some(Direction::Original) => TcpResult::ClosedByOriginator,
                _ => TcpResult::ClosedByResponder,
            };
        }
        TcpResult::Alive
    }

    /// The Linux-style state name.
    pub fn state(&self) -> TcpState {
        let [orig, reply] = self.streams;
        if self.reset {
            return TcpState::Close;
        }
        if !self.reply_syn_seen {
            return TcpState::SynSent;
        }
        match (orig.fin.is_some(), reply.fin.is_some()) {
            (true, true) if orig.closed() && reply.closed() => return TcpState::TimeWait,
            (true, true) => return TcpState::LastAck,
            (true, false) => {
                return if orig.closed() {
                    TcpState::CloseWait
                } else {
                    TcpState::FinWait
                }
            }
            (false, true) => {
                return if reply.closed() {
                    TcpState::CloseWait
                } else {
                    TcpState::FinWait
                }
            }
            (false, false) => {}
        }
        if !lt(orig.isn, orig.una) {
            TcpState::SynSent2
        } else if !lt(reply.isn, reply.una) {
            TcpState::SynRecv
        } else {
            TcpState::Established
        }
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use Direction::{Original as O, Reply as R};
    use TcpFlags as F;

    fn seg(flags: TcpFlags, seq: u32, ack: u32, payload: u32) -> TcpSegment {
        TcpSegment {
            payload_len: payload,
            ..TcpSegment::new(flags, seq, ack)
        }
    }

    /// A connection through the handshake: originator ISN 1000, responder ISN 5000.
    fn established() -> Tcb {
        let mut t = Tcb::new(&seg(F::SYN, 1000, 0, 0)).unwrap();
        t.update(R, &seg(F::SYN | F::ACK, 5000, 1001, 0)).unwrap();
        t.update(O, &seg(F::ACK, 1001, 5001, 0)).unwrap();
        assert_eq!(t.state(), TcpState::Established);
        t
    }

    #[test]
    fn forged_replies_in_syn_sent_are_ignored_and_change_nothing() {
        let t0 = Tcb::new(&seg(F::SYN, 1000, 0, 0)).unwrap();
        let mut t = t0;
        assert_eq!(
            t.update(R, &seg(F::RST | F::ACK, 0, 77, 0)),
            Err(TcpInvalid::BadAck)
        );
        assert_eq!(
            t.update(R, &seg(F::SYN | F::ACK, 5000, 1000, 0)),
            Err(TcpInvalid::BadAck)
        );
        assert_eq!(
            t.update(R, &seg(F::RST, 0, 0, 0)),
            Err(TcpInvalid::UnexpectedInSynSent)
        );
        assert_eq!(
            t.update(O, &seg(F::ACK, 1001, 0, 10)),
            Err(TcpInvalid::UnexpectedInSynSent)
        );
        assert_eq!(t, t0);
        assert_eq!(
            t.update(O, &seg(F::SYN, 1000, 0, 0)),
            Ok(TcpResult::Connecting)
        );
        assert_eq!(
            t.update(R, &seg(F::RST | F::ACK, 0, 1001, 0)),
            Ok(TcpResult::Reset)
        );
        assert_eq!(t.state(), TcpState::Close);
    }

    #[test]
    fn first_segment_must_be_a_bare_syn() {
        for flags in [
            F::ACK,
            F::SYN | F::ACK,
            F::SYN | F::RST,
            F::SYN | F::FIN,
            F::NONE,
        ] {
            assert_eq!(
                Tcb::new(&seg(flags, 1, 0, 0)),
                Err(TcpInvalid::NotSyn),
                "{flags:?}"
            );
        }
    }

    #[test]
    fn close_by_originator_walks_linux_states() {
        let mut t = established();
        t.update(O, &seg(F::ACK, 1001, 5001, 100)).unwrap();
        t.update(R, &seg(F::ACK, 5001, 1101, 0)).unwrap();
        assert_eq!(
            t.update(O, &seg(F::FIN | F::ACK, 1101, 5001, 0)),
            Ok(TcpResult::Alive)
        );
        assert_eq!(t.state(), TcpState::FinWait);
        t.update(R, &seg(F::ACK, 5001, 1102, 0)).unwrap();
        assert_eq!(t.state(), TcpState::CloseWait);
        t.update(R, &seg(F::FIN | F::ACK, 5001, 1102, 0)).unwrap();
        assert_eq!(t.state(), TcpState::LastAck);
        assert_eq!(
            t.update(O, &seg(F::ACK, 1102, 5002, 0)),
            Ok(TcpResult::ClosedByOriginator)
        );
        assert_eq!(t.state(), TcpState::TimeWait);
    }

    #[test]
    fn close_by_responder_is_reported_as_such() {
        let mut t = established();
        t.update(R, &seg(F::FIN | F::ACK, 5001, 1001, 0)).unwrap();
        t.update(O, &seg(F::FIN | F::ACK, 1001, 5002, 0)).unwrap();
        assert_eq!(
            t.update(R, &seg(F::ACK, 5002, 1002, 0)),
            Ok(TcpResult::ClosedByResponder)
        );
    }

    #[test]
    fn out_of_window_and_bad_acks_are_rejected_without_change() {
        let mut t = established();
        let before = t;
        // The responder granted 65535 bytes from 1001.
        assert_eq!(
            t.update(O, &seg(F::ACK, 1001 + 70_000, 5001, 10)),
            Err(TcpInvalid::OutOfWindow)
        );
        assert_eq!(
            t.update(O, &seg(F::ACK, 1001, 9999, 0)),
            Err(TcpInvalid::BadAck)
        );
        assert_eq!(
            t.update(O, &seg(F::SYN, 4242, 0, 0)),
            Err(TcpInvalid::BadSyn)
        );
        assert_eq!(t, before);
    }

    #[test]
    fn reset_is_final_unlike_the_seed() {
        let mut t = established();
        assert_eq!(t.update(R, &seg(F::RST, 5001, 0, 0)), Ok(TcpResult::Reset));
        // The seed's tracker would call this ACK Alive again.
        assert_eq!(
            t.update(O, &seg(F::ACK, 1001, 5001, 0)),
            Err(TcpInvalid::AfterReset)
        );
        assert_eq!(t.result(), TcpResult::Reset);
        assert!(t.reopens(O, &seg(F::SYN, 77, 0, 0)));
        assert!(!t.reopens(R, &seg(F::SYN, 77, 0, 0)));
        assert!(!established().reopens(O, &seg(F::SYN, 77, 0, 0)));
    }

    #[test]
    fn window_scale_applies_only_when_both_syns_carry_it() {
        let mut syn = seg(F::SYN, 0, 0, 0);
        syn.wscale = Some(2);
        syn.window = 100; // SYN windows are never scaled: the responder may send 100 bytes
        let ack_with_window = |window| {
            let mut ack = seg(F::ACK, 1, 1, 0);
            ack.window = window;
            ack
        };
        let mut scaled = Tcb::new(&syn).unwrap();
        let mut synack = seg(F::SYN | F::ACK, 0, 1, 0);
        synack.wscale = Some(3);
        scaled.update(R, &synack).unwrap();
        // Both SYNs carry the option: the originator's 1000 means 1000 << 2 = 4000 bytes.
        scaled.update(O, &ack_with_window(1000)).unwrap();
        let mut probe = scaled;
        assert!(probe.update(R, &seg(F::ACK, 1 + 3999, 1, 1)).is_ok());
        let mut probe = scaled;
        assert_eq!(
            probe.update(R, &seg(F::ACK, 1 + 4001, 1, 1)),
            Err(TcpInvalid::OutOfWindow)
        );
        // Without the option on the SYN-ACK, 1000 means 1000.
        let mut plain = Tcb::new(&syn).unwrap();
        plain.update(R, &seg(F::SYN | F::ACK, 0, 1, 0)).unwrap();
        plain.update(O, &ack_with_window(1000)).unwrap();
        let mut probe = plain;
        assert!(probe.update(R, &seg(F::ACK, 1 + 999, 1, 1)).is_ok());
        let mut probe = plain;
        assert_eq!(
            probe.update(R, &seg(F::ACK, 1 + 1500, 1, 1)),
            Err(TcpInvalid::OutOfWindow)
        );
    }

    #[test]
    fn simultaneous_open_passes_through_syn_sent2() {
        let mut t = Tcb::new(&seg(F::SYN, 100, 0, 0)).unwrap();
        t.update(R, &seg(F::SYN, 900, 0, 0)).unwrap();
        assert_eq!(t.state(), TcpState::SynSent2);
        t.update(O, &seg(F::SYN | F::ACK, 100, 901, 0)).unwrap();
        t.update(R, &seg(F::SYN | F::ACK, 900, 101, 0)).unwrap();
        assert_eq!(t.state(), TcpState::Established);
    }

    #[test]
    fn sequence_comparisons_wrap() {
        assert!(lt(u32::MAX, 0));
        assert!(in_range(1, u32::MAX, 3));
        assert!(acceptable(u32::MAX, 2, u32::MAX - 1, 5));
        let mut t = Tcb::new(&seg(F::SYN, u32::MAX, 0, 0)).unwrap();
        t.update(R, &seg(F::SYN | F::ACK, 7, 0, 0)).unwrap();
        assert_eq!(t.state(), TcpState::SynRecv);
    }
}
