//! Table-level tests on the manual clock.

use super::*;
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::Arc;
use crate::time::{Clock, ManualClock};
use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::time::Duration;
use TcpFlags as F;

type Fixed = BuildHasherDefault<DefaultHasher>;
type Table = ConnTable<ManualClock, Fixed>;

fn table(buckets: usize, max: Option<usize>) -> (Table, ManualClock) {
    let clock = ManualClock::new();
    let config = Config {
        max_connections: max,
        ..Config::with_buckets(buckets)
    };
    let t = ConnTable::with_clock_and_hasher(config, clock.clone(), Fixed::default()).unwrap();
    (t, clock)
}

fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, host], port))
}

fn udp(a: SocketAddr, b: SocketAddr) -> Packet {
    Packet::udp(a, b).unwrap()
}

fn tcp(a: SocketAddr, b: SocketAddr, flags: TcpFlags, seq: u32, ack: u32) -> Packet {
    Packet::tcp(a, b, TcpSegment::new(flags, seq, ack)).unwrap()
}

/// A TCP connection through its handshake.
fn establish(t: &Table, c: SocketAddr, s: SocketAddr) -> Arc<Conn> {
    t.track(&tcp(c, s, F::SYN, 100, 0)).unwrap();
    t.track(&tcp(s, c, F::SYN | F::ACK, 900, 101)).unwrap();
    let done = t.track(&tcp(c, s, F::ACK, 101, 901)).unwrap();
    assert_eq!(done.state, State::Tcp(TcpState::Established));
    assert!(done.assured);
    done.conn
}

/// A UDP flow whose original tuple hashes to a higher bucket than its reply tuple.
fn flow_with_reply_below(t: &Table) -> (SocketAddr, SocketAddr) {
    (1..u16::MAX)
        .map(|p| (addr(1, p), addr(2, 53)))
        .find(|&(a, b)| {
            let orig = Tuple::udp(a, b).unwrap();
            t.bucket_of(&orig) > t.bucket_of(&orig.reply())
        })
        .unwrap()
}

#[test]
fn udp_becomes_an_assured_stream_only_after_a_reply_and_two_seconds() {
    let (t, clock) = table(16, None);
    let (a, b) = (addr(1, 1000), addr(2, 53));
    let left = |c: &Conn| c.deadline().duration_since(clock.now()).as_secs();
    let first = t.track(&udp(a, b)).unwrap();
    assert!(first.created && !first.assured);
    assert_eq!(first.state, State::Udp(UdpState::Unreplied));
    assert_eq!(left(&first.conn), 30);
    let reply = t.track(&udp(b, a)).unwrap();
    assert!(Arc::ptr_eq(&first.conn, &reply.conn));
    assert_eq!(
        (reply.dir, reply.state, reply.assured, reply.created),
        (
            Direction::Reply,
            State::Udp(UdpState::Replied),
            false,
            false
        )
    );
    // A query and its answer within two seconds are not a stream (Linux: a DNS lookup
    // should not hold an entry for two minutes).
    assert_eq!(left(&reply.conn), 30);
    clock.advance(Duration::from_secs(2));
    assert!(!t.track(&udp(a, b)).unwrap().assured, "not *after* 2 s yet");
    clock.advance(Duration::from_millis(1));
    let stream = t.track(&udp(a, b)).unwrap();
    assert!(stream.assured);
    assert_eq!(left(&stream.conn), 120);
    clock.advance(Duration::from_secs(120));
    assert!(t.lookup(&Tuple::udp(a, b).unwrap()).is_some(), "120 s");
    clock.advance(Duration::from_secs(1));
    assert!(t.lookup(&Tuple::udp(a, b).unwrap()).is_none());
    assert_eq!(t.stats().live, 0);
    assert_eq!(t.stats().reaped, 1);
    assert_eq!(t.audit().unwrap().tuples, 0);
}

#[test]
fn lookup_reaps_an_expired_connection_whose_reply_is_in_a_lower_bucket() {
    let (t, clock) = table(4, None);
    let (a, b) = flow_with_reply_below(&t);
    let old = t.track(&udp(a, b)).unwrap().conn;
    clock.advance(Duration::from_secs(31));
    assert!(t.lookup(&old.original()).is_none());
    // Both tuples are gone now, not left behind for the lower bucket's walk.
    let audit = t.audit().unwrap();
    assert_eq!((audit.tuples, audit.connections), (0, 0));
    assert_eq!(t.stats().reaped, 1);
    // The next packet of the flow makes a new connection, alone in the table.
    let new = t.track(&udp(a, b)).unwrap();
    assert!(new.created && !Arc::ptr_eq(&new.conn, &old));
    assert_eq!(t.audit().unwrap().tuples, 2);
}

#[test]
fn track_never_returns_an_expired_connection() {
    let (t, clock) = table(1, None);
    let (a, b) = (addr(1, 7), addr(2, 7));
    let old = t.track(&udp(a, b)).unwrap().conn;
    clock.advance(Duration::from_secs(30));
    assert!(
        Arc::ptr_eq(&t.track(&udp(a, b)).unwrap().conn, &old),
        "alive at the deadline"
    );
    clock.advance(Duration::from_secs(31));
    let fresh = t.track(&udp(b, a)).unwrap();
    assert!(!Arc::ptr_eq(&fresh.conn, &old));
    assert!(fresh.created);
    assert_eq!(
        fresh.dir,
        Direction::Original,
        "b -> a is now the original direction"
    );
    t.audit().unwrap();
}

#[test]
fn reap_unused_walks_at_least_one_bucket_even_on_a_small_table() {
    let (t, clock) = table(4, Some(100));
    for p in 0..20 {
        t.track(&udp(addr(1, p), addr(2, 9))).unwrap();
    }
    clock.advance(Duration::from_secs(31));
    let mut start = 0;
    let mut interval = Duration::from_millis(10);
    for call in 0..4 {
        let (next, i) = t.reap_unused(start, interval);
        assert_eq!(next, (start + 1) % 4, "call {call} walks one bucket");
        (start, interval) = (next, i);
    }
    assert_eq!(t.stats().live, 0);
    assert_eq!(t.stats().reaped, 20);
    assert_eq!(t.audit().unwrap().tuples, 0);
}

#[test]
fn reap_interval_adapts_like_the_seed() {
    let (t, clock) = table(256, None);
    let rc = t.config().reaper;
    let min = rc.min_interval;
    assert_eq!(rc.max_interval(), Duration::from_secs(60) / 128);
    // Nothing expired: grow by the minimum, up to the maximum.
    assert_eq!(t.reap_unused(0, min).1, 2 * min);
    assert_eq!(t.reap_unused(0, rc.max_interval()).1, rc.max_interval());
    // 256 buckets / 128 = 2 per call.
    assert_eq!(t.reap_unused(254, min).0, 0);
    // Everything expired: back to the minimum.
    for p in 0..2000 {
        t.track(&udp(addr(1, p), addr(2, 9))).unwrap();
    }
    clock.advance(Duration::from_secs(31));
    let (mut start, mut interval) = (0, rc.max_interval());
    let (_, first) = loop {
        let r = t.reap_unused(start, interval);
        if t.stats().reaped > 0 {
            break r;
        }
        (start, interval) = r;
    };
    assert_eq!(first, min);
}

#[test]
fn syn_flood_of_ten_times_the_maximum_leaves_established_connections_alone() {
    let (t, _clock) = table(64, Some(100));
    let established: Vec<_> = (0..20)
        .map(|i| establish(&t, addr(1, 1000 + i), addr(2, 443)))
        .collect();
    let mut refused = 0;
    for i in 0..1000u32 {
        let src = SocketAddr::from(([192, 0, (i >> 8) as u8, i as u8], 5000 + (i % 7) as u16));
        match t.track(&tcp(src, addr(2, 80), F::SYN, i, 0)) {
            Ok(_) => {}
            Err(TrackError::TableFull { max }) => {
                assert_eq!(max, 100);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(t.stats().live <= 100);
    }
    for conn in &established {
        let (found, _) = t
            .lookup(&conn.original())
            .expect("established connection evicted");
        assert!(Arc::ptr_eq(&found, conn));
    }
    let stats = t.stats();
    assert!(stats.early_dropped > 0);
    assert_eq!(stats.refused, refused);
    assert_eq!(stats.live, 100, "{stats:?}");
    t.audit().unwrap();
}

#[test]
fn a_full_table_of_assured_connections_refuses_instead_of_growing() {
    let (t, _clock) = table(4, Some(3));
    for i in 0..3 {
        establish(&t, addr(1, 10 + i), addr(2, 22));
    }
    let err = t.track(&udp(addr(3, 1), addr(4, 1))).unwrap_err();
    assert_eq!(err, TrackError::TableFull { max: 3 });
    assert!(err.to_string().contains("full"));
    assert_eq!(t.stats().refused, 1);
    assert_eq!(t.stats().live, 3);
    t.audit().unwrap();
}

#[test]
fn a_closing_connection_is_dropped_early_even_if_assured() {
    let (t, _clock) = table(4, Some(1));
    let (c, s) = (addr(1, 10), addr(2, 22));
    let conn = establish(&t, c, s);
    t.track(&tcp(c, s, F::FIN | F::ACK, 101, 901)).unwrap();
    assert_eq!(conn.state(), State::Tcp(TcpState::FinWait));
    assert!(t.track(&udp(addr(3, 1), addr(4, 1))).unwrap().created);
    assert_eq!(t.stats().early_dropped, 1);
    assert!(t.lookup(&conn.original()).is_none());
}

#[test]
fn invalid_packets_change_nothing_and_are_counted() {
    let clock = ManualClock::new();
    let strict = Config {
        tcp: TcpConfig {
            loose: false,
            ..TcpConfig::default()
        },
        ..Config::with_buckets(16)
    };
    let t = ConnTable::with_clock(strict, clock.clone()).unwrap();
    let (c, s) = (addr(1, 10), addr(2, 22));
    assert_eq!(
        t.track(&tcp(c, s, F::ACK, 5, 5)).unwrap_err(),
        TrackError::Invalid(Invalid::Tcp(TcpInvalid::NotSyn))
    );
    assert_eq!(
        t.stats().live,
        0,
        "without loose, a mid-stream ACK creates nothing"
    );
    let syn = t.track(&tcp(c, s, F::SYN, 100, 0)).unwrap();
    let before = (syn.conn.last_used(), syn.conn.deadline());
    clock.advance(Duration::from_secs(1));
    let forged = t.track(&tcp(s, c, F::RST | F::ACK, 0, 4242)).unwrap_err();
    assert_eq!(
        forged,
        TrackError::Invalid(Invalid::Tcp(TcpInvalid::AckAboveSent))
    );
    assert_eq!(
        t.track(&tcp(c, s, F::SYN | F::FIN, 100, 0)).unwrap_err(),
        TrackError::Invalid(Invalid::Tcp(TcpInvalid::BadFlags))
    );
    assert_eq!(syn.conn.state(), State::Tcp(TcpState::SynSent));
    assert_eq!((syn.conn.last_used(), syn.conn.deadline()), before);
    let echo = Packet::icmp_echo_reply(c.ip(), s.ip(), 9).unwrap();
    assert_eq!(
        t.track(&echo).unwrap_err(),
        TrackError::Invalid(Invalid::EchoReplyWithoutRequest)
    );
    assert_eq!(t.stats().invalid, 4);
    assert!(matches!(
        t.track_bytes(&[0x45, 0, 0]),
        Err(TrackError::Malformed(ParseError::Truncated { .. }))
    ));
    assert_eq!(t.stats().live, 1);
    t.audit().unwrap();
}

#[test]
fn loose_picks_up_a_connection_in_the_middle_with_a_short_timeout() {
    let (t, clock) = table(16, None);
    let (c, s) = (addr(1, 10), addr(2, 22));
    let mid = t.track(&tcp(c, s, F::ACK, 5000, 9000)).unwrap();
    assert!(mid.created);
    assert_eq!(
        (mid.state, mid.assured),
        (State::Tcp(TcpState::Established), false)
    );
    // Until the other side answers, Linux keeps such an entry for 300 s, not 5 days.
    assert_eq!(
        mid.conn.deadline().duration_since(clock.now()),
        Duration::from_secs(300)
    );
    let answer = t.track(&tcp(s, c, F::ACK, 9000, 5000)).unwrap();
    assert!(Arc::ptr_eq(&answer.conn, &mid.conn));
    let again = t.track(&tcp(c, s, F::ACK, 5000, 9000)).unwrap();
    assert!(again.assured);
}

#[test]
fn icmp_echo_is_tracked_by_identifier() {
    let (t, _clock) = table(16, None);
    let (a, b) = (addr(1, 0).ip(), addr(2, 0).ip());
    let req = t
        .track(&Packet::icmp_echo_request(a, b, 77).unwrap())
        .unwrap();
    let rep = t
        .track(&Packet::icmp_echo_reply(b, a, 77).unwrap())
        .unwrap();
    assert!(Arc::ptr_eq(&req.conn, &rep.conn));
    assert_eq!(rep.state, State::IcmpEcho(UdpState::Replied));
    let other = t
        .track(&Packet::icmp_echo_request(a, b, 78).unwrap())
        .unwrap();
    assert!(other.created);
}

#[test]
fn a_syn_after_its_own_sides_rst_reopens_as_a_new_connection() {
    let (t, _clock) = table(16, None);
    let (c, s) = (addr(1, 10), addr(2, 22));
    let conn = establish(&t, c, s);
    t.track(&tcp(c, s, F::RST, 101, 0)).unwrap();
    assert_eq!(conn.state(), State::Tcp(TcpState::Close));
    let again = t.track(&tcp(c, s, F::SYN, 5555, 0)).unwrap();
    assert!(again.created && !Arc::ptr_eq(&again.conn, &conn));
    assert_eq!(
        (again.state, again.assured),
        (State::Tcp(TcpState::SynSent), false)
    );
    assert_eq!((t.stats().live, t.stats().closed), (1, 1));
    t.audit().unwrap();
}

#[test]
fn a_syn_after_the_peers_rst_is_let_through_and_ignored() {
    let (t, _clock) = table(16, None);
    let (c, s) = (addr(1, 10), addr(2, 22));
    let conn = establish(&t, c, s);
    t.track(&tcp(s, c, F::RST, 901, 0)).unwrap();
    let syn = t.track(&tcp(c, s, F::SYN, 5555, 0)).unwrap();
    assert!(Arc::ptr_eq(&syn.conn, &conn));
    assert_eq!(syn.ignored, Some(TcpIgnored::OutOfSync));
    assert_eq!(syn.state, State::Tcp(TcpState::Close));
    // The server's SYN-ACK to that SYN resynchronises the tracker.
    let synack = t.track(&tcp(s, c, F::SYN | F::ACK, 7000, 5556)).unwrap();
    assert_eq!(synack.state, State::Tcp(TcpState::SynRecv));
    assert_eq!(synack.ignored, None);
}

#[test]
fn a_rst_before_any_reply_removes_the_connection() {
    let (t, _clock) = table(16, None);
    let (c, s) = (addr(1, 10), addr(2, 22));
    let syn = t.track(&tcp(c, s, F::SYN, 100, 0)).unwrap();
    let rst = t.track(&tcp(s, c, F::RST | F::ACK, 0, 101)).unwrap();
    assert!(rst.removed && Arc::ptr_eq(&rst.conn, &syn.conn));
    assert_eq!(rst.state, State::Tcp(TcpState::Close));
    assert!(t.lookup(&syn.conn.original()).is_none());
    assert_eq!((t.stats().live, t.stats().closed), (0, 1));
    t.audit().unwrap();
}

#[test]
fn the_reaper_alone_fully_reaps_a_table_of_16_buckets() {
    let clock = ManualClock::new();
    let config = Config {
        reaper: ReaperConfig {
            min_interval: Duration::from_millis(1),
            max_full_traversal: Duration::from_millis(128),
            ..ReaperConfig::default()
        },
        ..Config::with_buckets(16)
    };
    let ct = ConnTrack::from_table(ConnTable::with_clock(config, clock.clone()).unwrap());
    for p in 0..64 {
        ct.track(&udp(addr(1, p), addr(2, 9))).unwrap();
    }
    assert_eq!(ct.stats().live, 64);
    clock.advance(Duration::from_secs(31));
    // Each pass walks at least one bucket: 16 passes after the clock moved walk them all.
    // No kick: the reaper's own timer drives it. A pass in progress now may have read the
    // clock before it moved, so wait for 17.
    let from = ct.reaper().passes();
    ct.reaper().wait_for_passes(from + 17).unwrap();
    assert_eq!(ct.stats().live, 0);
    assert_eq!(ct.stats().reaped, 64);
    assert_eq!(ct.audit().unwrap().tuples, 0);
}

#[test]
fn reap_now_returns_after_a_pass_that_saw_the_latest_clock() {
    let clock = ManualClock::new();
    let table = ConnTable::with_clock(Config::with_buckets(1), clock.clone()).unwrap();
    let ct = ConnTrack::from_table(table);
    ct.track(&udp(addr(1, 1), addr(2, 2))).unwrap();
    clock.advance(Duration::from_secs(31));
    ct.reaper().reap_now().unwrap();
    assert_eq!(ct.stats().reaped, 1);
}

#[test]
fn dropping_conntrack_stops_and_joins_the_reaper() {
    let ct = ConnTrack::new(Config::with_buckets(16)).unwrap();
    ct.reaper().wait_for_passes(1).unwrap();
    let table = Arc::clone(ct.table());
    assert_eq!(
        Arc::strong_count(&table),
        3,
        "ours, ConnTrack's, the reaper thread's"
    );
    drop(ct);
    assert_eq!(Arc::strong_count(&table), 1, "the reaper thread is gone");
}

#[test]
fn bad_configs_are_refused() {
    let clock = ManualClock::new();
    let refused = |config: Config| ConnTable::with_clock(config, clock.clone()).unwrap_err();
    assert_eq!(refused(Config::with_buckets(0)), ConfigError::ZeroBuckets);
    for n in [3, 100, (1 << 20) + 1] {
        assert_eq!(
            refused(Config::with_buckets(n)),
            ConfigError::BucketsNotPowerOfTwo(n)
        );
    }
    assert!(ConfigError::BucketsNotPowerOfTwo(100)
        .to_string()
        .contains("try 128"));
    let too_many = Config::MAX_BUCKETS + 1;
    assert_eq!(
        Config::with_buckets(too_many).sizes(),
        Err(ConfigError::TooManyBuckets(too_many))
    );
    assert_eq!(
        refused(Config::with_max_connections(0)).to_string(),
        "the maximum number of connections must be at least 1"
    );
    let zero_both = Config {
        max_connections: Some(0),
        ..Config::with_buckets(16)
    };
    assert_eq!(refused(zero_both), ConfigError::ZeroMaxConnections);
    let mut no_fraction = Config::default();
    no_fraction.reaper.fraction = 0;
    assert_eq!(refused(no_fraction), ConfigError::ZeroFraction);
    let table = ConnTable::new(Config::default()).unwrap();
    assert_eq!(
        (table.bucket_count(), table.max_connections()),
        (16384, 65536)
    );
}

#[test]
fn the_bucket_count_follows_the_maximum_unless_given() {
    let sizes = |buckets, max| {
        Config {
            buckets,
            max_connections: max,
            ..Config::default()
        }
        .sizes()
        .unwrap()
    };
    // Only the maximum: four connections a bucket, rounded up to a power of two.
    assert_eq!(sizes(None, Some(1)), (1, 1));
    assert_eq!(sizes(None, Some(4)), (1, 4));
    assert_eq!(sizes(None, Some(5)), (2, 5));
    assert_eq!(sizes(None, Some(65536)), (16384, 65536));
    assert_eq!(sizes(None, Some(1_000_000)), (1 << 18, 1_000_000));
    // ... bounded: a huge maximum does not allocate billions of buckets.
    assert_eq!(
        sizes(None, Some(usize::MAX)),
        (Config::MAX_DERIVED_BUCKETS, usize::MAX)
    );
    // Only the buckets: four connections each. Both: both. Neither: Linux's 16K / 64K.
    assert_eq!(sizes(Some(64), None), (64, 256));
    assert_eq!(sizes(Some(64), Some(10)), (64, 10));
    assert_eq!(sizes(None, None), (16384, 65536));
    let table = ConnTable::new(Config::with_max_connections(1 << 20)).unwrap();
    assert_eq!(table.bucket_count(), 1 << 18);
}

#[test]
fn a_connection_costs_well_under_256_bytes() {
    // Arc header (2 words) + Conn, and two 16-byte bucket entries.
    let per_conn = 16 + std::mem::size_of::<Conn>() + 2 * 16;
    assert!(per_conn <= 200, "{per_conn} bytes");
}

/// A clock that panics on every read from a chosen one on: how a test makes a reaper pass,
/// or a packet path, panic (the clock is the one thing a user plugs into the table).
#[derive(Debug)]
struct BreakableClock {
    time: ManualClock,
    reads: AtomicUsize,
    /// The first read that panics (`usize::MAX`: none).
    broken_from: AtomicUsize,
}

impl BreakableClock {
    fn new() -> Self {
        BreakableClock {
            time: ManualClock::new(),
            reads: AtomicUsize::new(0),
            broken_from: AtomicUsize::new(usize::MAX),
        }
    }

    /// Every read from now on panics.
    fn break_now(&self) {
        self.broken_from
            .store(self.reads.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The `n`th read from now on (0: the next one), and every one after it, panics.
    fn break_after(&self, n: usize) {
        self.broken_from
            .store(self.reads.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }

    fn repair(&self) {
        self.broken_from.store(usize::MAX, Ordering::SeqCst);
    }
}

impl Clock for BreakableClock {
    fn now(&self) -> crate::time::Instant {
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        assert!(
            n < self.broken_from.load(Ordering::SeqCst),
            "the test clock broke (on purpose)"
        );
        self.time.now()
    }
}

/// Bug 6: a reaper pass that panics ends the reaper thread; `reap_now` and
/// `wait_for_passes`, before or after, return an error instead of waiting forever.
#[test]
fn a_reaper_whose_pass_panics_fails_reap_now_and_wait_for_passes() {
    use std::sync::mpsc;
    let clock = Arc::new(BreakableClock::new());
    let table = ConnTable::with_clock(Config::with_buckets(4), Arc::clone(&clock)).unwrap();
    let ct = Arc::new(ConnTrack::from_table(table));
    assert_eq!(ct.reaper().wait_for_passes(1), Ok(1));
    assert!(!ct.reaper().panicked());
    clock.break_now();
    // The waits run on another thread so that a reaper that dies without a word, leaving
    // them blocked for ever, fails this test (at the deadline) instead of hanging it.
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let ct = Arc::clone(&ct);
        std::thread::spawn(move || {
            let now = ct.reaper().reap_now();
            let passes = ct.reaper().wait_for_passes(u64::MAX);
            tx.send((now, passes)).unwrap();
        })
    };
    let (now, passes) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("reap_now or wait_for_passes still waiting 30 s after the reaper panicked");
    waiter.join().unwrap();
    assert_eq!(now, Err(ReaperPanicked));
    assert_eq!(passes, Err(ReaperPanicked));
    assert!(ct.reaper().panicked());
    // Later calls fail at once; passes completed before the panic still count.
    assert_eq!(ct.reaper().reap_now(), Err(ReaperPanicked));
    assert_eq!(ct.reaper().wait_for_passes(1), Ok(ct.reaper().passes()));
    // The table still works.
    clock.repair();
    assert!(ct.track(&udp(addr(1, 1), addr(2, 2))).unwrap().created);
    let ct = Arc::into_inner(ct).expect("the waiter is gone");
    drop(ct); // joins the dead reaper without panicking
}

/// Every clock read the table makes can panic (a user's clock): wherever it does, the table
/// is left consistent — no half-created connection, no slot of `live` lost. (Each operation
/// reads the clock once, before it changes anything; this keeps it so.)
#[test]
fn a_clock_that_panics_anywhere_in_track_leaves_the_table_consistent() {
    let script = |t: &ConnTable<Arc<BreakableClock>, Fixed>, clock: &BreakableClock| {
        let below = (1..u16::MAX)
            .map(|p| (addr(1, p), addr(2, 53)))
            .find(|&(a, b)| {
                let orig = Tuple::udp(a, b).unwrap();
                t.bucket_of(&orig) > t.bucket_of(&orig.reply())
            })
            .unwrap();
        let steps: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| drop(t.track(&udp(below.0, below.1)))),
            Box::new(|| drop(t.track(&udp(addr(3, 1), addr(4, 53))))),
            Box::new(|| drop(t.track(&udp(addr(4, 53), addr(3, 1))))),
            Box::new(|| drop(t.track(&tcp(addr(5, 1), addr(6, 80), F::SYN, 100, 0)))),
            Box::new(|| {
                drop(t.track(&tcp(addr(6, 80), addr(5, 1), F::RST | F::ACK, 0, 101)));
            }),
            Box::new(|| clock.time.advance(Duration::from_secs(31))),
            // Expired: found, judged, removed, created again (both directions).
            Box::new(|| drop(t.track(&udp(below.0, below.1)))),
            Box::new(|| drop(t.track(&udp(addr(4, 53), addr(3, 1))))),
            Box::new(|| drop(t.lookup(&Tuple::udp(addr(3, 1), addr(4, 53)).unwrap()))),
            Box::new(|| {
                let _ = t.reap_unused(0, Duration::from_millis(10));
            }),
            // Full: early drop makes room.
            Box::new(|| drop(t.track(&udp(addr(7, 1), addr(8, 53))))),
            Box::new(|| drop(t.track(&udp(addr(7, 2), addr(8, 53))))),
        ];
        for step in steps {
            // Each step on its own: a panic in one does not skip the others.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step));
        }
    };
    let make = || {
        let clock = Arc::new(BreakableClock::new());
        let config = Config {
            max_connections: Some(3),
            ..Config::with_buckets(4)
        };
        let t =
            ConnTable::with_clock_and_hasher(config, Arc::clone(&clock), Fixed::default()).unwrap();
        (t, clock)
    };
    let reads = {
        let (t, clock) = make();
        script(&t, &clock);
        t.audit().unwrap();
        clock.reads.load(Ordering::SeqCst)
    };
    assert!(reads >= 10, "{reads} clock reads");
    for k in 0..reads {
        let (t, clock) = make();
        clock.break_after(k);
        script(&t, &clock);
        clock.repair();
        t.audit()
            .unwrap_or_else(|e| panic!("clock panicking from read {k} on: {e}"));
    }
}

/// A FIN on an established connection moves its deadline from 5 days to 2 minutes away:
/// the deadline moves earlier. The tuple the FIN did not travel on keeps its entry's old
/// hint, which must still be a lower bound of the new deadline (the audit checks every
/// hint), so a walk of that tuple's bucket alone — the reaper's, one bucket at a time —
/// still finds the connection expired once the 2 minutes are over. A hint equal to the
/// old deadline would hide it for 5 days.
#[test]
fn a_deadline_moved_earlier_is_reaped_on_time_through_the_other_tuples_bucket() {
    let (t, clock) = table(16, None);
    let (c, s) = (0..u16::MAX)
        .map(|p| (addr(1, 40000 + p), addr(2, 80)))
        .find(|&(c, s)| {
            let orig = Tuple::tcp(c, s).unwrap();
            t.bucket_of(&orig) != t.bucket_of(&orig.reply())
        })
        .unwrap();
    let conn = establish(&t, c, s);
    let reply_bucket = conn.bucket(Direction::Reply);
    // Walk the reply's bucket so its entry gets a hint from the 5-day deadline.
    clock.advance(Duration::from_secs(60));
    t.reap_unused(reply_bucket, Duration::ZERO);
    t.audit().unwrap();
    let before = conn.deadline();
    let fin = t.track(&tcp(c, s, F::FIN | F::ACK, 101, 901)).unwrap();
    assert_eq!(fin.state, State::Tcp(TcpState::FinWait));
    assert!(
        conn.deadline() < before,
        "the FIN moved the deadline earlier"
    );
    t.audit().unwrap_or_else(|e| panic!("{e}"));
    clock.advance(Duration::from_secs(121));
    // 16 buckets / 128: one bucket a call, the reply's.
    t.reap_unused(reply_bucket, Duration::ZERO);
    assert_eq!(
        t.stats().reaped,
        1,
        "the walk of the reply's bucket passed the expired connection by"
    );
    assert_eq!(t.live(), 0);
}

/// Hints are lower bounds that a walk refreshes: after many lookups of other flows in the
/// same bucket, across more than the shortest timeout, every hint is still at most its
/// connection's deadline, and a connection refreshed by packets is never reaped by a walk.
#[test]
fn hints_stay_below_deadlines_while_walks_refresh_them() {
    let (t, clock) = table(1, Some(64));
    let flows: Vec<_> = (0..8).map(|p| (addr(1, 1000 + p), addr(2, 53))).collect();
    for &(a, b) in &flows {
        t.track(&udp(a, b)).unwrap();
    }
    for round in 0..40 {
        clock.advance(Duration::from_secs(7));
        // Keep the first flow alive; look the others up (a walk of the one bucket).
        t.track(&udp(flows[0].0, flows[0].1)).unwrap();
        let _ = t.lookup(&Tuple::udp(flows[1].0, flows[1].1).unwrap());
        t.audit().unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    // The others expired after 30 s and were reaped by the walks; the first lives.
    assert_eq!(t.live(), 1);
    assert_eq!(t.stats().reaped, 7);
    let (first, _) = t
        .lookup(&Tuple::udp(flows[0].0, flows[0].1).unwrap())
        .unwrap();
    assert!(!first.expired_at(clock.now()));
}

/// Two tables with the default hasher draw two keys: the same flows land in unrelated
/// buckets, so a set of flows that collides in one table does not in the next.
#[test]
fn two_tables_with_the_default_hasher_lay_flows_out_differently() {
    let new = || ConnTable::with_clock(Config::with_buckets(1024), ManualClock::new()).unwrap();
    let (a, b) = (new(), new());
    let tuples: Vec<Tuple> = (0..4096u16)
        .map(|p| Tuple::udp(addr(1, 1024 + p), addr(2, 53)).unwrap())
        .collect();
    let same = tuples
        .iter()
        .filter(|t| a.bucket_of(t) == b.bucket_of(t))
        .count();
    // Independent layouts share a bucket for 1 tuple in 1,024: 4 expected.
    assert!(
        same < 40,
        "{same} of 4096 flows in the same bucket in both tables"
    );
    // One table, one layout.
    assert!(tuples.iter().all(|t| a.bucket_of(t) == a.bucket_of(t)));
}
