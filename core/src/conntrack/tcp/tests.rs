//! The TCP tracker against the cases where refwatch used to disagree with Linux (each one
//! checked against the kernel by `cargo xtask oracle`), and its invariants.

use super::*;
use Direction::{Original as O, Reply as R};
use TcpFlags as F;

const SEC: Duration = Duration::from_secs(1);

/// One connection driven segment by segment, as `Conn` drives it.
struct Flow {
    tcb: Tcb,
    status: Status,
    timeout: Duration,
    config: TcpConfig,
    timeouts: Timeouts,
}

type Step = Result<Verdict, (TcpInvalid, Option<Duration>)>;

fn seg(flags: TcpFlags, seq: u32, ack: u32, len: u32) -> TcpSegment {
    TcpSegment {
        payload_len: len,
        ..TcpSegment::new(flags, seq, ack)
    }
}

impl Flow {
    fn open(first: TcpSegment) -> Flow {
        Flow::open_with(first, TcpConfig::default())
    }

    fn open_with(first: TcpSegment, config: TcpConfig) -> Flow {
        let timeouts = Timeouts::linux();
        let env = Env {
            config: &config,
            timeouts: &timeouts,
            now: Instant::default(),
            deadline: Instant::default(),
        };
        let (tcb, verdict) = Tcb::new(&first, &env).unwrap();
        let Verdict::Accepted {
            timeout: Some(timeout),
        } = verdict
        else {
            panic!("a new connection is accepted: {verdict:?}")
        };
        Flow {
            tcb,
            status: Status::default(),
            timeout,
            config,
            timeouts,
        }
    }

    fn send(&mut self, dir: Direction, s: TcpSegment) -> Step {
        let env = Env {
            config: &self.config,
            timeouts: &self.timeouts,
            now: Instant::default(),
            deadline: Instant::default().saturating_add(self.timeout),
        };
        let out = self.tcb.update(dir, &s, &env, &mut self.status);
        match out {
            Ok(Verdict::Accepted { timeout: Some(t) }) | Err((_, Some(t))) => self.timeout = t,
            _ => {}
        }
        if out.is_ok() && dir == R {
            self.status.seen_reply = true;
        }
        out
    }

    fn state(&self) -> TcpState {
        self.tcb.state()
    }

    /// A handshake with originator ISN 1000 and responder ISN 5000, window 65535, no options.
    fn established() -> Flow {
        let mut f = Flow::open(seg(F::SYN, 1000, 0, 0));
        f.send(R, seg(F::SYN | F::ACK, 5000, 1001, 0)).unwrap();
        f.send(O, seg(F::ACK, 1001, 5001, 0)).unwrap();
        assert_eq!(f.state(), TcpState::Established);
        assert!(f.status.assured);
        f
    }
}

fn accepted() -> Step {
    Ok(Verdict::Accepted {
        timeout: Some(Duration::ZERO),
    })
}

/// Compares verdict kinds (the timeout is checked separately).
fn kind(step: &Step) -> std::mem::Discriminant<Verdict> {
    match step {
        Ok(v) => std::mem::discriminant(v),
        Err(_) => panic!("expected a verdict, got {step:?}"),
    }
}

#[test]
fn retransmitted_data_and_fin_after_their_ack_are_let_through() {
    let mut f = Flow::established();
    f.send(O, seg(F::ACK | F::PSH, 1001, 5001, 100)).unwrap();
    f.send(R, seg(F::ACK, 5001, 1101, 0)).unwrap();
    // The ACK was lost on its way to the sender, which resends: Linux accepts it.
    let again = f.send(O, seg(F::ACK | F::PSH, 1001, 5001, 100));
    assert_eq!(kind(&again), kind(&accepted()));
    f.send(O, seg(F::FIN | F::ACK, 1101, 5001, 0)).unwrap();
    f.send(R, seg(F::ACK, 5001, 1102, 0)).unwrap();
    assert_eq!(f.state(), TcpState::CloseWait);
    assert!(f.send(O, seg(F::FIN | F::ACK, 1101, 5001, 0)).is_ok());
}

#[test]
fn data_older_than_a_window_is_ignored_not_refused() {
    let mut f = Flow::established();
    for k in 0..3u32 {
        let seq = 1001 + k * 60_000;
        f.send(O, seg(F::ACK, seq, 5001, 60_000)).unwrap();
        f.send(R, seg(F::ACK, 5001, seq + 60_000, 0)).unwrap();
    }
    let before = f.tcb;
    assert_eq!(
        f.send(O, seg(F::ACK, 1001, 5001, 100)),
        Ok(Verdict::Ignored(TcpIgnored::Retransmission))
    );
    assert_eq!(f.tcb, before, "an ignored retransmission moves nothing");
}

#[test]
fn a_new_syn_in_syn_sent_restarts_the_handshake() {
    let mut f = Flow::open(seg(F::SYN, 1000, 0, 0));
    f.send(O, seg(F::SYN, 3000, 0, 0)).unwrap();
    assert_eq!(f.state(), TcpState::SynSent);
    f.send(R, seg(F::SYN | F::ACK, 5000, 3001, 0)).unwrap();
    assert_eq!(f.state(), TcpState::SynRecv);
    f.send(O, seg(F::ACK, 3001, 5001, 0)).unwrap();
    assert_eq!(f.state(), TcpState::Established);
}

#[test]
fn a_retransmitted_syn_does_not_refresh_the_timeout() {
    let mut f = Flow::open(seg(F::SYN, 1000, 0, 0));
    assert_eq!(
        f.send(O, seg(F::SYN, 1000, 0, 0)),
        Ok(Verdict::Accepted { timeout: None })
    );
}

#[test]
fn invalid_flag_combinations_are_refused_in_every_state() {
    let bad = [
        F::SYN | F::FIN,
        F::FIN,
        F::FIN | F::RST,
        F::NONE,
        F::PSH,
        F::SYN | F::RST,
        F::SYN | F::ACK | F::URG,
    ];
    for flags in bad {
        let mut f = Flow::established();
        let before = f.tcb;
        assert_eq!(
            f.send(O, seg(flags, 1001, 5001, 0)),
            Err((TcpInvalid::BadFlags, None)),
            "{flags:?}"
        );
        assert_eq!(f.tcb, before);
        let env = Env {
            config: &TcpConfig::default(),
            timeouts: &Timeouts::linux(),
            now: Instant::default(),
            deadline: Instant::default(),
        };
        assert_eq!(
            Tcb::new(&seg(flags, 1, 0, 0), &env).unwrap_err(),
            TcpInvalid::BadFlags
        );
    }
    assert!(valid_flags(F::ACK | F::PSH | TcpFlags::from_bits(0xc0)));
}

#[test]
fn unacknowledged_data_caps_the_timeout_at_300_seconds() {
    let mut f = Flow::established();
    assert_eq!(f.timeout, 5 * 24 * 3600 * SEC);
    f.send(O, seg(F::ACK | F::PSH, 1001, 5001, 10)).unwrap();
    assert_eq!(f.timeout, 300 * SEC);
    f.send(R, seg(F::ACK, 5001, 1011, 0)).unwrap();
    assert_eq!(f.timeout, 5 * 24 * 3600 * SEC, "all acknowledged again");
}

#[test]
fn repeated_identical_acks_cap_the_timeout() {
    let mut f = Flow::established();
    // The handshake's last ACK was the first of the run; its third repetition caps it.
    let dup = seg(F::ACK, 1001, 5001, 0);
    for expected in [5 * 24 * 3600, 5 * 24 * 3600, 300, 300] {
        f.send(O, dup).unwrap();
        assert_eq!(f.timeout, expected * SEC);
    }
}

#[test]
fn a_rst_must_hit_the_acknowledged_sequence_number_to_close() {
    // In the window but not exact: the state stays, so that the endpoint may answer with a
    // challenge ACK (RFC 5961); Linux still gives the entry the close timeout.
    let mut f = Flow::established();
    assert!(f.send(R, seg(F::RST, 5001 + 100, 0, 0)).is_ok());
    assert_eq!(f.state(), TcpState::Established);
    assert_eq!(f.timeout, 10 * SEC);
    let mut f = Flow::established();
    f.send(R, seg(F::RST, 5001, 0, 0)).unwrap();
    assert_eq!(f.state(), TcpState::Close);
    // Before what the peer acknowledged: invalid.
    let mut f = Flow::established();
    assert_eq!(
        f.send(R, seg(F::RST, 4000, 0, 0)),
        Err((TcpInvalid::StaleRst, None))
    );
}

#[test]
fn an_ack_far_below_what_was_acknowledged_moves_nothing() {
    let mut f = Flow::established();
    let before = f.tcb;
    assert_eq!(
        f.send(
            O,
            seg(F::FIN | F::ACK, 1001, 5001u32.wrapping_sub(70_000), 0)
        ),
        Ok(Verdict::Ignored(TcpIgnored::OldAck))
    );
    assert_eq!(f.tcb, before);
    assert_eq!(f.state(), TcpState::Established);
}

#[test]
fn closing_walks_linux_states() {
    let mut f = Flow::established();
    f.send(O, seg(F::FIN | F::ACK, 1001, 5001, 0)).unwrap();
    assert_eq!(f.state(), TcpState::FinWait);
    f.send(R, seg(F::ACK, 5001, 1002, 0)).unwrap();
    assert_eq!(f.state(), TcpState::CloseWait);
    f.send(R, seg(F::FIN | F::ACK, 5001, 1002, 0)).unwrap();
    assert_eq!(f.state(), TcpState::LastAck);
    f.send(O, seg(F::ACK, 1002, 5002, 0)).unwrap();
    assert_eq!(f.state(), TcpState::TimeWait);
    assert_eq!(f.timeout, 120 * SEC);
    // A SYN after a FIN-initiated close reopens.
    assert_eq!(f.send(O, seg(F::SYN, 9000, 0, 0)), Ok(Verdict::Reopen));
}

#[test]
fn simultaneous_open_passes_through_syn_sent2() {
    let mut f = Flow::open(seg(F::SYN, 100, 0, 0));
    f.send(R, seg(F::SYN, 900, 0, 0)).unwrap();
    assert_eq!(f.state(), TcpState::SynSent2);
    f.send(O, seg(F::SYN | F::ACK, 100, 901, 0)).unwrap();
    assert_eq!(f.state(), TcpState::SynRecv);
    f.send(R, seg(F::ACK, 901, 101, 0)).unwrap();
    assert_eq!(f.state(), TcpState::Established);
}

#[test]
fn a_hand_built_wscale_of_255_is_clamped_not_a_panic() {
    let mut syn = seg(F::SYN, 0, 0, 0);
    syn.wscale = Some(255);
    let mut f = Flow::open(syn);
    let mut synack = seg(F::SYN | F::ACK, 0, 1, 0);
    synack.wscale = Some(200);
    f.send(R, synack).unwrap();
    let mut ack = seg(F::ACK, 1, 1, 0);
    ack.window = u16::MAX;
    f.send(O, ack).unwrap();
    assert_eq!(f.tcb.sides[0].scale, MAX_WSCALE);
    // The responder may now send up to 65535 << 14 bytes past 1.
    assert!(f
        .send(R, seg(F::ACK, 1 + (65_535 << 14) - 10, 1, 5))
        .is_ok());
    assert_eq!(f.state(), TcpState::Established);
}

#[test]
fn window_scale_applies_only_when_both_syns_carry_it() {
    let mut syn = seg(F::SYN, 0, 0, 0);
    syn.wscale = Some(2);
    syn.window = 100;
    let mut scaled = Flow::open(syn);
    let mut synack = seg(F::SYN | F::ACK, 0, 1, 0);
    synack.wscale = Some(3);
    scaled.send(R, synack).unwrap();
    let mut ack = seg(F::ACK, 1, 1, 0);
    ack.window = 1000;
    scaled.send(O, ack).unwrap();
    assert_eq!(scaled.tcb.sides[1].maxend, 1 + 4000);
    let mut plain = Flow::open(syn);
    plain.send(R, seg(F::SYN | F::ACK, 0, 1, 0)).unwrap();
    plain.send(O, ack).unwrap();
    assert_eq!(plain.tcb.sides[1].maxend, 1 + 1000);
}

#[test]
fn a_rejected_segment_changes_nothing_the_transition_table_refuses() {
    let mut f = Flow::open(seg(F::SYN, 1000, 0, 0));
    let before = f.tcb;
    // Data before the SYN-ACK.
    assert_eq!(
        f.send(O, seg(F::ACK, 1001, 0, 10)),
        Err((
            TcpInvalid::Unexpected {
                state: TcpState::SynSent
            },
            None
        ))
    );
    assert_eq!(f.tcb, before);
}

#[test]
fn loose_off_refuses_to_pick_up_and_on_picks_up_liberally() {
    const LINUX: Timeouts = Timeouts::linux();
    const LOOSE: TcpConfig = TcpConfig {
        loose: true,
        be_liberal: false,
        max_retrans: 3,
    };
    let env = |config| Env {
        config,
        timeouts: &LINUX,
        now: Instant::default(),
        deadline: Instant::default(),
    };
    let strict = TcpConfig {
        loose: false,
        ..TcpConfig::default()
    };
    assert_eq!(
        Tcb::new(&seg(F::ACK, 5, 5, 0), &env(&strict)).unwrap_err(),
        TcpInvalid::NotSyn
    );
    let mut f = Flow::open(seg(F::ACK, 5, 5, 0));
    assert_eq!(f.state(), TcpState::Established);
    assert_eq!(f.timeout, 300 * SEC, "picked up: unacknowledged timeout");
    // Picked-up connections are checked liberally: far data passes.
    assert!(f.send(O, seg(F::ACK, 5 + 10_000_000, 5, 10)).is_ok());
    // FIN or RST as a first segment never opens.
    for flags in [F::FIN | F::ACK, F::RST, F::SYN | F::ACK] {
        assert_eq!(
            Tcb::new(&seg(flags, 5, 5, 0), &env(&LOOSE)).unwrap_err(),
            TcpInvalid::NotSyn,
            "{flags:?}"
        );
    }
}

#[test]
fn be_liberal_accepts_out_of_window_data() {
    let liberal = TcpConfig {
        be_liberal: true,
        ..TcpConfig::default()
    };
    let mut f = Flow::open_with(seg(F::SYN, 1000, 0, 0), liberal);
    f.send(R, seg(F::SYN | F::ACK, 5000, 1001, 0)).unwrap();
    f.send(O, seg(F::ACK, 1001, 5001, 0)).unwrap();
    assert!(f.send(O, seg(F::ACK, 1001 + 200_000, 5001, 10)).is_ok());
    let mut strict = Flow::established();
    assert_eq!(
        strict.send(O, seg(F::ACK, 1001 + 200_000, 5001, 10)),
        Err((TcpInvalid::SeqAboveWindow, None))
    );
}

#[test]
fn sequence_comparisons_wrap() {
    assert!(before(u32::MAX, 0));
    assert!(after(1, u32::MAX - 3));
    let mut f = Flow::open(seg(F::SYN, u32::MAX, 0, 0));
    f.send(R, seg(F::SYN | F::ACK, 7, 0, 0)).unwrap();
    assert_eq!(f.state(), TcpState::SynRecv);
    f.send(O, seg(F::ACK, 0, 8, 5)).unwrap();
    assert_eq!(f.state(), TcpState::Established);
}

// The two cases below were found by `cargo xtask oracle` (Linux 6.18): reading the kernel's
// source alone gave the other answer.

#[test]
fn a_rst_from_the_side_of_an_ignored_syn_does_not_skip_the_window_check() {
    let mut f = Flow::open(seg(F::SYN, 1_000_000, 0, 0));
    // A SYN-ACK whose ACK is far below the SYN: ignored (but the reply was seen).
    assert_eq!(
        f.send(R, seg(F::SYN | F::ACK, 5000, 1, 0)),
        Ok(Verdict::Ignored(TcpIgnored::OldAck))
    );
    // The client's RST for it, with the ACK field 0: it answers nothing the client let
    // through, so the window check applies, and it is an old sequence number.
    assert_eq!(
        f.send(O, seg(F::RST, 1, 0, 0)),
        Ok(Verdict::Ignored(TcpIgnored::Retransmission))
    );
    assert_eq!(f.state(), TcpState::SynSent);
    // From the other side the same check is skipped: the server answers the client's SYN.
    assert!(matches!(
        f.send(R, seg(F::RST, 99_999_999, 0, 0)),
        Ok(Verdict::Accepted { .. })
    ));
    assert_eq!(f.state(), TcpState::Close);
}

#[test]
fn a_rst_that_passes_the_sequence_checks_goes_straight_to_the_window_check() {
    // The SYN carries 703 bytes and wraps; the server acknowledges 130 of them.
    let mut f = Flow::open(TcpSegment {
        window: 0,
        ..seg(F::SYN, 4_294_967_136, 0, 703)
    });
    let w340 = |s: TcpSegment| TcpSegment { window: 340, ..s };
    f.send(
        R,
        w340(seg(F::SYN | F::ACK, 3_129_586_290, 4_294_967_137, 0)),
    )
    .unwrap();
    f.send(R, w340(seg(F::ACK, 3_129_586_291, 131, 0))).unwrap();
    assert_eq!(f.state(), TcpState::SynRecv);
    // Its ACK equals the end of the server's last ACK, which would skip the window check
    // for an unchecked RST; this one was checked against what the server acknowledged.
    let rst = TcpSegment {
        window: 0,
        ..seg(F::RST | F::ACK, 131, 3_129_586_291, 0)
    };
    assert!(matches!(f.send(O, rst), Ok(Verdict::Ignored(_))));
    assert_eq!(f.state(), TcpState::SynRecv);
}

/// The hit path ([`Tcb::established_ack`]) decides every segment exactly as the general path
/// does: random walks of connections in many configurations, each segment fed to both from
/// the same control block and status, must give the same verdict and leave the same state.
#[test]
fn the_hit_path_decides_as_the_general_path() {
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u32| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % u64::from(n)) as u32
    };
    let mut hits = 0;
    for walk in 0..1000 {
        let config = TcpConfig {
            loose: true,
            be_liberal: walk % 5 == 4,
            max_retrans: [0, 1, 3][walk % 3],
        };
        let options = |s: TcpSegment, on: bool| TcpSegment {
            wscale: on.then_some(7),
            sack_permitted: on,
            ..s
        };
        let mut f = if walk % 7 == 6 {
            // Picked up in the middle: one side's window is still unknown.
            Flow::open_with(seg(F::ACK, 1001, 5001, 0), config)
        } else {
            let with = walk % 2 == 0;
            let mut f = Flow::open_with(options(seg(F::SYN, 1000, 0, 0), with), config);
            f.send(R, options(seg(F::SYN | F::ACK, 5000, 1001, 0), with))
                .unwrap();
            if walk % 11 != 10 {
                f.send(O, seg(F::ACK, 1001, 5001, 0)).unwrap();
            }
            f
        };
        // Where each side has got to, roughly: segments are drawn around it.
        let mut edge = [1001_u32, 5001];
        for _ in 0..300 {
            let dir = if next(2) == 0 { O } else { R };
            let (d, r) = (dir.index(), dir.opposite().index());
            // Mostly what the hit path takes, sometimes what ends it or it must not take.
            let flags = match next(40) {
                0 => F::ACK | F::FIN,
                1 => F::RST | F::ACK,
                2 => F::RST,
                3 => F::SYN,
                4 => F::SYN | F::ACK,
                5 => F::NONE,
                6 => F::FIN,
                7..=9 => F::ACK | F::PSH,
                10 => F::ACK | F::URG,
                _ => F::ACK,
            };
            let near = |x: u32, v: u32| x.wrapping_add(v).wrapping_sub(40_000);
            let seq = match next(8) {
                0 => next(u32::MAX),
                1..=2 => near(edge[d], next(80_000)),
                _ => edge[d],
            };
            let ack = match next(8) {
                0 => next(u32::MAX),
                1..=2 => near(edge[r], next(80_000)),
                _ => edge[r],
            };
            let s = TcpSegment {
                window: [0, 1, 512, 65_535][next(4) as usize],
                sack: (next(4) == 0).then(|| ack.wrapping_add(next(3000))),
                ..seg(flags, seq, ack, [0, 0, 1, 100, 1460][next(5) as usize])
            };
            let env = Env {
                config: &f.config,
                timeouts: &f.timeouts,
                now: Instant::default(),
                deadline: Instant::default().saturating_add(f.timeout),
            };
            let (mut tcb, mut status) = (f.tcb, f.status);
            let general = tcb.update_general(dir, &s, &env, &mut status);
            let state = f.tcb.state();
            let before = f.tcb;
            let out = f.send(dir, s);
            assert_eq!(out, general, "{dir:?} {s:?} in {state:?} from {before:?}");
            assert_eq!(f.tcb, tcb, "{dir:?} {s:?} from {before:?}");
            if dir == R && out.is_ok() {
                status.seen_reply = true;
            }
            assert_eq!(f.status, status, "{dir:?} {s:?} from {before:?}");
            if matches!(out, Ok(Verdict::Accepted { .. })) {
                hits += usize::from(state == TcpState::Established && flags.bits() & 0x07 == 0);
                edge[d] = seq.wrapping_add(s.logical_len());
            }
        }
    }
    assert!(hits > 10_000, "the walks take the hit path: {hits}");
}
