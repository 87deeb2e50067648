//! Property tests of connection tracking.
//!
//! - `table_matches_model`: a state machine of `track` (UDP both ways, with Linux's stream
//!   rule; TCP through its handshake, close, client reset (which removes a connection that
//!   never had a reply), reopen and out-of-window segments), clock advances,
//!   `reap_unused` steps, full reaper walks and lookups, against a reference model that is a
//!   plain map of flows with their state and last use (expired = absent). After every step
//!   the same connections are live, in the same direction and state, and the table audits
//!   clean; after a full walk, no expired connection is left and the live counter equals the
//!   model's count. The checks themselves change nothing (`peek` and `audit`, not `lookup`,
//!   which reaps what it meets): only the operations under test remove connections, so a
//!   reaper that misses some is seen.
//! - `parse_never_panics`, `parse_round_trips_valid_headers`: arbitrary bytes never panic the
//!   parser (and a failure never half-parses), and packets built from arbitrary valid headers
//!   (IPv4 options, TCP options, IPv6, UDP, ICMP echo) parse back to the right tuple and
//!   segment.
#![cfg(not(any(loom, shuttle)))]

use proptest::prelude::*;
use proptest::test_runner::Config as PropConfig;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use refwatch::conntrack::{
    Config, ConnTable, Direction, Packet, ParseError, State, TcpConfig, TcpFlags as F, TcpSegment,
    TcpState, TrackError, TransProto, Tuple, UdpState,
};
use refwatch::time::ManualClock;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

fn config(cases: u32) -> PropConfig {
    PropConfig {
        cases,
        failure_persistence: None,
        ..PropConfig::default()
    }
}

// =============================================================================================
// The table against a map of flows
// =============================================================================================

/// UDP flows are 0..UDP_FLOWS, TCP flows UDP_FLOWS..FLOWS.
const UDP_FLOWS: usize = 4;
const FLOWS: usize = 7;
/// Buckets of the table under test: small, so flows share buckets and both tuple orders
/// (reply above and below) occur.
const BUCKETS: usize = 8;
const SERVER_ISN: u32 = 5000;

/// The two ends of flow `f`: (client, server).
fn ends(f: usize) -> (SocketAddr, SocketAddr) {
    let f16 = f as u16;
    if f < UDP_FLOWS {
        (
            SocketAddr::from(([10, 0, 0, 1], 1000 + f16)),
            SocketAddr::from(([10, 0, 1, 1], 53)),
        )
    } else {
        (
            SocketAddr::from(([10, 0, 2, 1], 2000 + f16)),
            SocketAddr::from(([10, 0, 3, 1], 443)),
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// A UDP datagram on flow `f`, client to server if `forward`.
    Udp {
        f: usize,
        forward: bool,
    },
    /// The next segment of flow `f`'s scripted life (SYN, SYN-ACK, ACK, FIN, ACK, FIN, ACK,
    /// then a SYN with a new ISN that reopens it).
    TcpNext {
        f: usize,
    },
    /// A RST from the client at its next sequence number.
    TcpRst {
        f: usize,
    },
    /// A client segment far outside any window.
    TcpBogus {
        f: usize,
    },
    Advance(Duration),
    /// One `reap_unused` call.
    Reap,
    /// `reap_unused` until every bucket was walked once.
    ReapAll,
    Lookup {
        f: usize,
        forward: bool,
    },
}

/// One connection in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flow {
    /// Original direction is client to server.
    forward: bool,
    state: State,
    assured: bool,
    /// When the connection was last refreshed, and for how long.
    last_used: Duration,
    timeout: Duration,
    /// When the flow was created (UDP: a stream only after 2 s).
    created: Duration,
    /// A packet in the reply direction was seen.
    seen_reply: bool,
    /// TCP: segments of the script sent so far (1 = SYN, ..., 7 = final ACK).
    step: u8,
    /// TCP: the client's current ISN.
    isn: u32,
}

#[derive(Clone, Debug, Default)]
struct Model {
    now: Duration,
    flows: BTreeMap<usize, Flow>,
    /// TCP ISNs used so far (a reopen needs a new one).
    generation: u32,
}

/// Linux's default timeouts, written out independently of `Timeouts::linux()`.
fn timeout(state: State) -> Duration {
    let secs = match state {
        State::Tcp(
            TcpState::SynSent | TcpState::FinWait | TcpState::TimeWait | TcpState::SynSent2,
        ) => 120,
        State::Tcp(TcpState::SynRecv | TcpState::CloseWait) => 60,
        State::Tcp(TcpState::Established) => 5 * 24 * 3600,
        State::Tcp(TcpState::LastAck) => 30,
        State::Tcp(TcpState::Close) => 10,
        State::Udp(_) | State::IcmpEcho(_) => unreachable!("UDP keeps its own timeout"),
    };
    Duration::from_secs(secs)
}

/// The Linux state after `step` segments of the script.
fn script_state(step: u8) -> TcpState {
    [
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
    ][usize::from(step) - 1]
}

/// What `track` must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Tracked {
        created: bool,
        dir: Direction,
        state: State,
        assured: bool,
    },
    Invalid,
}

impl Model {
    /// The live flow `f`, if any (an expired one counts as absent).
    fn live(&self, f: usize) -> Option<&Flow> {
        self.flows
            .get(&f)
            .filter(|flow| self.now <= flow.last_used + flow.timeout)
    }

    fn forget_expired(&mut self, f: usize) {
        if self.live(f).is_none() {
            self.flows.remove(&f);
        }
    }

    /// The segment `TcpNext` sends on flow `f` now, and from which end.
    fn next_segment(&self, f: usize) -> (bool, TcpSegment) {
        let syn = |isn| (true, TcpSegment::new(F::SYN, isn, 0));
        let Some(flow) = self.live(f) else {
            return syn(1000 + self.generation);
        };
        let State::Tcp(state) = flow.state else {
            unreachable!("TCP flows only")
        };
        if state == TcpState::Close || flow.step == 7 {
            return syn(1000 + self.generation); // reopens: the client's RST or FIN closed it
        }
        let (c, s) = (flow.isn, SERVER_ISN);
        match flow.step {
            1 => (false, TcpSegment::new(F::SYN | F::ACK, s, c + 1)),
            2 => (true, TcpSegment::new(F::ACK, c + 1, s + 1)),
            3 => (true, TcpSegment::new(F::FIN | F::ACK, c + 1, s + 1)),
            4 => (false, TcpSegment::new(F::ACK, s + 1, c + 2)),
            5 => (false, TcpSegment::new(F::FIN | F::ACK, s + 1, c + 2)),
            _ => (true, TcpSegment::new(F::ACK, c + 2, s + 2)),
        }
    }

    /// The RST `TcpRst` sends on flow `f`, from the client.
    fn rst_segment(&self, f: usize) -> TcpSegment {
        match self.live(f) {
            Some(flow) if flow.step >= 4 => TcpSegment::new(F::RST, flow.isn + 2, 0),
            Some(flow) => TcpSegment::new(F::RST, flow.isn + 1, 0),
            None => TcpSegment::new(F::RST, 7, 0),
        }
    }

    /// Applies `op`'s packet to the model; returns what `track` must answer.
    fn track(&mut self, op: &Op) -> Option<Expect> {
        let now = self.now;
        match *op {
            Op::Udp { f, forward } => {
                self.forget_expired(f);
                Some(match self.flows.get_mut(&f) {
                    Some(flow) => {
                        let dir = if flow.forward == forward {
                            Direction::Original
                        } else {
                            Direction::Reply
                        };
                        // Linux: a stream (120 s, assured) only once a reply was seen before
                        // this packet and the flow is more than 2 s old; 30 s otherwise.
                        if flow.seen_reply && now > flow.created + Duration::from_secs(2) {
                            flow.assured = true;
                            flow.timeout = Duration::from_secs(120);
                        } else {
                            flow.timeout = Duration::from_secs(30);
                        }
                        if dir == Direction::Reply {
                            flow.seen_reply = true;
                            flow.state = State::Udp(UdpState::Replied);
                        }
                        flow.last_used = now;
                        Expect::Tracked {
                            created: false,
                            dir,
                            state: flow.state,
                            assured: flow.assured,
                        }
                    }
                    None => {
                        let state = State::Udp(UdpState::Unreplied);
                        self.flows.insert(
                            f,
                            Flow {
                                forward,
                                state,
                                assured: false,
                                last_used: now,
                                timeout: Duration::from_secs(30),
                                created: now,
                                seen_reply: false,
                                step: 0,
                                isn: 0,
                            },
                        );
                        Expect::Tracked {
                            created: true,
                            dir: Direction::Original,
                            state,
                            assured: false,
                        }
                    }
                })
            }
            Op::TcpNext { f } => {
                self.forget_expired(f);
                let (from_client, seg) = self.next_segment(f);
                let dir = if from_client {
                    Direction::Original
                } else {
                    Direction::Reply
                };
                let reopen = self
                    .flows
                    .get(&f)
                    .is_none_or(|flow| flow.state == State::Tcp(TcpState::Close) || flow.step == 7);
                if reopen {
                    // A new connection: the old one (closed by the client's RST or FIN)
                    // leaves the table.
                    self.generation += 1;
                    let state = State::Tcp(TcpState::SynSent);
                    self.flows.insert(
                        f,
                        Flow {
                            forward: true,
                            state,
                            assured: false,
                            last_used: now,
                            timeout: timeout(state),
                            created: now,
                            seen_reply: false,
                            step: 1,
                            isn: seg.seq,
                        },
                    );
                    return Some(Expect::Tracked {
                        created: true,
                        dir: Direction::Original,
                        state,
                        assured: false,
                    });
                }
                let flow = self.flows.get_mut(&f).expect("checked above");
                flow.step += 1;
                flow.state = State::Tcp(script_state(flow.step));
                flow.assured |= flow.step >= 3;
                flow.seen_reply |= dir == Direction::Reply;
                flow.last_used = now;
                flow.timeout = timeout(flow.state);
                Some(Expect::Tracked {
                    created: false,
                    dir,
                    state: flow.state,
                    assured: flow.assured,
                })
            }
            Op::TcpRst { f } => {
                self.forget_expired(f);
                let closed = State::Tcp(TcpState::Close);
                Some(match self.flows.get_mut(&f) {
                    // Before any reply, Linux deletes the connection at once.
                    Some(flow) if !flow.seen_reply => {
                        self.flows.remove(&f);
                        Expect::Tracked {
                            created: false,
                            dir: Direction::Original,
                            state: closed,
                            assured: false,
                        }
                    }
                    Some(flow) => {
                        flow.state = closed;
                        flow.last_used = now;
                        flow.timeout = timeout(closed);
                        Expect::Tracked {
                            created: false,
                            dir: Direction::Original,
                            state: closed,
                            assured: flow.assured,
                        }
                    }
                    None => Expect::Invalid,
                })
            }
            Op::TcpBogus { f } => {
                self.forget_expired(f);
                Some(Expect::Invalid)
            }
            _ => None,
        }
    }
}

struct TableMachine;

impl ReferenceStateMachine for TableMachine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model::default()).boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Op> {
        let udp = (0..UDP_FLOWS, any::<bool>());
        let tcp = UDP_FLOWS..FLOWS;
        // Steps that land just before or after every timeout.
        let secs = prop::sample::select(vec![
            1u64,
            9,
            11,
            29,
            31,
            59,
            61,
            119,
            121,
            3600,
            5 * 86400 + 1,
        ]);
        prop_oneof![
            4 => udp.clone().prop_map(|(f, forward)| Op::Udp { f, forward }),
            5 => tcp.clone().prop_map(|f| Op::TcpNext { f }),
            1 => tcp.clone().prop_map(|f| Op::TcpRst { f }),
            1 => tcp.clone().prop_map(|f| Op::TcpBogus { f }),
            2 => secs.prop_map(|s| Op::Advance(Duration::from_secs(s))),
            1 => Just(Op::Reap),
            1 => Just(Op::ReapAll),
            2 => (0..FLOWS, any::<bool>()).prop_map(|(f, forward)| Op::Lookup { f, forward }),
        ]
        .boxed()
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        match op {
            Op::Advance(d) => state.now += *d,
            _ => {
                state.track(op);
            }
        }
        state
    }
}

struct Sut {
    /// The reference, advanced in lockstep: `apply` is handed the state *after* the
    /// transition, and the expectation needs the state before it.
    shadow: Model,
    table: ConnTable<ManualClock>,
    clock: ManualClock,
    reap_start: usize,
    reap_interval: Duration,
}

fn tuple(f: usize, forward: bool) -> Tuple {
    let (c, s) = ends(f);
    let (a, b) = if forward { (c, s) } else { (s, c) };
    if f < UDP_FLOWS {
        Tuple::udp(a, b).unwrap()
    } else {
        Tuple::tcp(a, b).unwrap()
    }
}

struct TableTest;

impl StateMachineTest for TableTest {
    type SystemUnderTest = Sut;
    type Reference = TableMachine;

    fn init_test(_: &Model) -> Sut {
        let clock = ManualClock::new();
        // A random hash key per run: the behaviour must not depend on it. No mid-stream
        // pick-up: the bogus segments must not open connections.
        let config = Config {
            tcp: TcpConfig {
                loose: false,
                ..TcpConfig::default()
            },
            ..Config::with_buckets(BUCKETS)
        };
        let table = ConnTable::with_clock(config, clock.clone()).unwrap();
        Sut {
            shadow: Model::default(),
            table,
            clock,
            reap_start: 0,
            reap_interval: Duration::from_millis(10),
        }
    }

    fn apply(mut sut: Sut, model: &Model, op: Op) -> Sut {
        let before = sut.shadow.clone();
        match op {
            Op::Advance(d) => {
                sut.clock.advance(d);
                sut.shadow.now += d;
            }
            Op::Reap => {
                (sut.reap_start, sut.reap_interval) =
                    sut.table.reap_unused(sut.reap_start, sut.reap_interval);
            }
            Op::ReapAll => {
                for _ in 0..BUCKETS {
                    (sut.reap_start, sut.reap_interval) =
                        sut.table.reap_unused(sut.reap_start, sut.reap_interval);
                }
                let live = (0..FLOWS).filter(|&f| model.live(f).is_some()).count();
                assert_eq!(
                    sut.table.stats().live,
                    live,
                    "live counter after a full walk"
                );
                let audit = sut.table.audit().unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(audit.expired, 0, "expired connections after a full walk");
            }
            Op::Lookup { f, forward } => {
                let got = sut
                    .table
                    .lookup(&tuple(f, forward))
                    .map(|(c, dir)| (dir, c.state()));
                let want = before.live(f).map(|flow| {
                    let dir = if flow.forward == forward {
                        Direction::Original
                    } else {
                        Direction::Reply
                    };
                    (dir, flow.state)
                });
                assert_eq!(got, want, "lookup of flow {f} forward={forward}");
            }
            Op::Udp { f, forward } => {
                let (c, s) = ends(f);
                let (a, b) = if forward { (c, s) } else { (s, c) };
                check_track(&mut sut, &op, Packet::udp(a, b).unwrap());
            }
            Op::TcpNext { f } | Op::TcpRst { f } | Op::TcpBogus { f } => {
                let (c, s) = ends(f);
                let (from_client, seg) = match op {
                    Op::TcpNext { .. } => before.next_segment(f),
                    Op::TcpRst { .. } => (true, before.rst_segment(f)),
                    _ => {
                        let isn = before.live(f).map_or(7, |flow| flow.isn);
                        (
                            true,
                            TcpSegment::new(F::ACK, isn.wrapping_add(0x4000_0000), SERVER_ISN + 1),
                        )
                    }
                };
                let (a, b) = if from_client { (c, s) } else { (s, c) };
                check_track(&mut sut, &op, Packet::tcp(a, b, seg).unwrap());
            }
        }
        assert_eq!(
            sut.shadow.flows, model.flows,
            "shadow model diverged from the reference"
        );
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        for f in 0..FLOWS {
            for forward in [true, false] {
                let got = sut
                    .table
                    .peek(&tuple(f, forward))
                    .map(|(c, dir)| (dir, c.state(), c.assured()));
                let want = model.live(f).map(|flow| {
                    let dir = if flow.forward == forward {
                        Direction::Original
                    } else {
                        Direction::Reply
                    };
                    (dir, flow.state, flow.assured)
                });
                assert_eq!(got, want, "flow {f} forward={forward} at {:?}", model.now);
            }
        }
        let audit = sut.table.audit().unwrap_or_else(|e| panic!("{e}"));
        let live = (0..FLOWS).filter(|&f| model.live(f).is_some()).count();
        assert_eq!(
            audit.connections - audit.expired,
            live,
            "connections not expired"
        );
    }
}

/// Tracks `pkt` and checks the answer against the shadow model's prediction for `op`.
fn check_track(sut: &mut Sut, op: &Op, pkt: Packet) {
    let expect = sut.shadow.track(op).expect("a packet op");
    let got = match sut.table.track(&pkt) {
        Ok(t) => Expect::Tracked {
            created: t.created,
            dir: t.dir,
            state: t.state,
            assured: t.assured,
        },
        Err(TrackError::Invalid(_)) => Expect::Invalid,
        Err(e) => panic!("unexpected error {e}"),
    };
    assert_eq!(got, expect, "{op:?} ({pkt:?})");
}

prop_state_machine! {
    #![proptest_config(config(192))]
    #[test]
    fn table_matches_model(sequential 1..60 => TableTest);
}

// =============================================================================================
// The parser
// =============================================================================================

#[derive(Clone, Debug)]
enum TcpOpt {
    Nop,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    Timestamps(u32, u32),
}

#[derive(Clone, Debug)]
enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        opts: Vec<TcpOpt>,
        payload: usize,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: usize,
    },
    Echo {
        request: bool,
        id: u16,
        seq: u16,
    },
}

#[derive(Clone, Debug)]
enum L3 {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        options: Vec<u8>,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
    },
}

fn tcp_opt() -> impl Strategy<Value = TcpOpt> {
    prop_oneof![
        Just(TcpOpt::Nop),
        any::<u16>().prop_map(TcpOpt::Mss),
        any::<u8>().prop_map(TcpOpt::WindowScale),
        Just(TcpOpt::SackPermitted),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| TcpOpt::Timestamps(a, b)),
    ]
}

fn l4() -> impl Strategy<Value = L4> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u16>(),
            prop::collection::vec(tcp_opt(), 0..4),
            0..64usize
        )
            .prop_map(
                |(sport, dport, seq, ack, flags, window, opts, payload)| L4::Tcp {
                    sport,
                    dport,
                    seq,
                    ack,
                    flags,
                    window,
                    opts,
                    payload
                }
            ),
        (any::<u16>(), any::<u16>(), 0..64usize).prop_map(|(sport, dport, payload)| L4::Udp {
            sport,
            dport,
            payload
        }),
        (any::<bool>(), any::<u16>(), any::<u16>()).prop_map(|(request, id, seq)| L4::Echo {
            request,
            id,
            seq
        }),
    ]
}

fn l3() -> impl Strategy<Value = L3> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            (0..=10usize).prop_flat_map(|words| prop::collection::vec(any::<u8>(), words * 4))
        )
            .prop_map(|(src, dst, options)| L3::V4 { src, dst, options }),
        (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(src, dst)| L3::V6 { src, dst }),
    ]
}

/// Encodes the headers, independently of the parser; returns the bytes and the packet the
/// parser must return.
fn build(l3: &L3, l4: &L4) -> (Vec<u8>, Packet) {
    let (src, dst) = match l3 {
        L3::V4 { src, dst, .. } => (
            IpAddr::V4(Ipv4Addr::from(*src)),
            IpAddr::V4(Ipv4Addr::from(*dst)),
        ),
        L3::V6 { src, dst } => (
            IpAddr::V6(Ipv6Addr::from(*src)),
            IpAddr::V6(Ipv6Addr::from(*dst)),
        ),
    };
    let v6 = matches!(l3, L3::V6 { .. });
    let (proto, l4_bytes, expected) = match l4 {
        L4::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            window,
            opts,
            payload,
        } => {
            let mut o = Vec::new();
            let mut wscale = None;
            let mut sack_permitted = false;
            for opt in opts {
                match *opt {
                    TcpOpt::Nop => o.push(1),
                    TcpOpt::Mss(m) => o.extend([2, 4, (m >> 8) as u8, m as u8]),
                    TcpOpt::WindowScale(s) => {
                        o.extend([3, 3, s]);
                        wscale = Some(s);
                    }
                    TcpOpt::SackPermitted => {
                        o.extend([4, 2]);
                        sack_permitted = true;
                    }
                    TcpOpt::Timestamps(a, b) => {
                        o.extend([8, 10]);
                        o.extend(a.to_be_bytes());
                        o.extend(b.to_be_bytes());
                    }
                }
            }
            while o.len() % 4 != 0 {
                o.push(0); // end of options
            }
            let doff = 20 + o.len();
            let has_options = !o.is_empty();
            let mut t = Vec::new();
            t.extend(sport.to_be_bytes());
            t.extend(dport.to_be_bytes());
            t.extend(seq.to_be_bytes());
            t.extend(ack.to_be_bytes());
            t.push(((doff / 4) as u8) << 4);
            t.push(*flags);
            t.extend(window.to_be_bytes());
            t.extend([0, 0, 0, 0]);
            t.extend(o);
            t.extend(std::iter::repeat_n(0x5a, *payload));
            let seg = TcpSegment {
                seq: *seq,
                ack: *ack,
                flags: F::from_bits(*flags),
                window: *window,
                wscale,
                sack_permitted,
                sack: None,
                has_options,
                payload_len: *payload as u32,
            };
            (
                6,
                t,
                Packet::tcp(
                    SocketAddr::new(src, *sport),
                    SocketAddr::new(dst, *dport),
                    seg,
                )
                .unwrap(),
            )
        }
        L4::Udp {
            sport,
            dport,
            payload,
        } => {
            let mut u = Vec::new();
            u.extend(sport.to_be_bytes());
            u.extend(dport.to_be_bytes());
            u.extend(((8 + payload) as u16).to_be_bytes());
            u.extend([0, 0]);
            u.extend(std::iter::repeat_n(0xa5, *payload));
            (
                17,
                u,
                Packet::udp(SocketAddr::new(src, *sport), SocketAddr::new(dst, *dport)).unwrap(),
            )
        }
        L4::Echo { request, id, seq } => {
            let ty = match (v6, request) {
                (false, true) => 8,
                (false, false) => 0,
                (true, true) => 128,
                (true, false) => 129,
            };
            let mut i = vec![ty, 0, 0, 0];
            i.extend(id.to_be_bytes());
            i.extend(seq.to_be_bytes());
            let pkt = if *request {
                Packet::icmp_echo_request(src, dst, *id)
            } else {
                Packet::icmp_echo_reply(src, dst, *id)
            };
            (if v6 { 58 } else { 1 }, i, pkt.unwrap())
        }
    };
    let bytes = match l3 {
        L3::V4 { src, dst, options } => {
            let ihl = 20 + options.len();
            let total = (ihl + l4_bytes.len()) as u16;
            let mut p = vec![0x40 | (ihl / 4) as u8, 0];
            p.extend(total.to_be_bytes());
            p.extend([0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]); // DF set, not a fragment
            p.extend(src);
            p.extend(dst);
            p.extend(options);
            p.extend(l4_bytes);
            p
        }
        L3::V6 { src, dst } => {
            let mut p = vec![0x60, 0, 0, 0];
            p.extend((l4_bytes.len() as u16).to_be_bytes());
            p.extend([proto, 64]);
            p.extend(src);
            p.extend(dst);
            p.extend(l4_bytes);
            p
        }
    };
    (bytes, expected)
}

proptest! {
    #![proptest_config(config(2048))]

    /// Any bytes: an error or a packet, never a panic; and a table fed bytes that do not
    /// parse is left untouched.
    #[test]
    fn parse_never_panics(
        first in prop_oneof![any::<u8>(), Just(0x45u8), Just(0x4fu8), Just(0x60u8)],
        rest in prop::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut bytes = vec![first];
        bytes.extend(rest);
        let parsed = Packet::parse(&bytes);
        let table = ConnTable::with_clock(Config::with_buckets(16), ManualClock::new()).unwrap();
        match table.track_bytes(&bytes) {
            Err(TrackError::Malformed(e)) => {
                prop_assert_eq!(parsed, Err(e));
                prop_assert_eq!(table.stats().live, 0);
                prop_assert!(!e.to_string().is_empty());
            }
            other => prop_assert!(parsed.is_ok(), "{other:?}"),
        }
    }

    /// Valid headers round-trip to the right tuple and segment; every truncation is an
    /// error; the reply of the parsed tuple swaps its ends.
    #[test]
    fn parse_round_trips_valid_headers(l3 in l3(), l4 in l4()) {
        let (bytes, expected) = build(&l3, &l4);
        let parsed = Packet::parse(&bytes);
        prop_assert_eq!(parsed, Ok(expected));
        let t = *expected.tuple();
        prop_assert_eq!(t.reply().reply(), t);
        if t.trans_proto() != TransProto::IcmpEcho {
            prop_assert_eq!((t.reply().src(), t.reply().src_port()), (t.dst(), t.dst_port()));
        }
        for cut in 0..bytes.len() {
            let e = Packet::parse(&bytes[..cut]);
            prop_assert!(
                matches!(e, Err(ParseError::Truncated { .. } | ParseError::BadLength { .. } | ParseError::Empty)),
                "cut at {} of {}: {:?}", cut, bytes.len(), e
            );
        }
    }
}
