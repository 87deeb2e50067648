//! loom models of the conntrack table's lock order, reaping and clock reads, on 1–4 bucket
//! tables with a manual clock and a fixed hash key (so that the buckets each tuple lands in
//! are chosen), and of the reaper thread's protocol: `reap_now` tickets, stop, a panicking pass.
//!
//! A model runs without a preemption bound (every interleaving) when that stays under a few
//! seconds; the others say which bound they run at and why.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p refwatch-models --release --test loom_conntrack`
#![cfg(loom)]

use loom::thread;
use refwatch::conntrack::{
    Config, ConnTable, ConnTrack, Direction, Packet, ReaperPanicked, State, Timeouts, Tuple,
    UdpState,
};
use refwatch::sync::atomic::{AtomicU64, Ordering};
use refwatch::sync::Arc;
use refwatch::time::{Clock, Instant, ManualClock};
use refwatch_models::loom_model;
use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::net::SocketAddr;
use std::time::Duration;

type Fixed = BuildHasherDefault<DefaultHasher>;
type Table = ConnTable<ManualClock, Fixed>;

/// Past the UDP unreplied timeout (30 s).
const EXPIRE: Duration = Duration::from_secs(31);

fn table(buckets: usize) -> (Arc<Table>, ManualClock) {
    let clock = ManualClock::new();
    (table_on(buckets, clock.clone()), clock)
}

fn table_on<C: Clock>(buckets: usize, clock: C) -> Arc<ConnTable<C, Fixed>> {
    let config = Config {
        max_connections: Some(16),
        ..Config::with_buckets(buckets)
    };
    let table =
        ConnTable::with_clock_and_hasher(config, clock, Fixed::default()).expect("valid config");
    Arc::new(table)
}

/// A manual clock as fresh as a real one, for the models about when packets read the clock:
/// a read is a read-modify-write, which returns the latest time in every thread. With
/// `ManualClock`'s acquire load, loom may hand a thread a time older than an advance another
/// thread already made, so a stale-clock bug would show without any preemption, which no
/// real clock allows. Dearer to explore (two reads conflict), so only those models use it.
#[derive(Clone, Debug, Default)]
struct FreshClock(Arc<AtomicU64>);

impl FreshClock {
    fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).expect("a short step");
        self.0.fetch_add(nanos, Ordering::AcqRel);
    }
}

impl Clock for FreshClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.0.fetch_add(0, Ordering::Acquire))
    }
}

/// A UDP flow whose original tuple hashes to bucket `orig` and whose reply tuple hashes to
/// bucket `reply`, in a table of `buckets` buckets with the fixed key. Found outside the
/// model (hashing is deterministic), so every execution uses the same flows.
fn flow(buckets: usize, orig: usize, reply: usize, host: u8) -> (SocketAddr, SocketAddr) {
    let bucket = |t: &Tuple| (Fixed::default().hash_one(t) as usize) & (buckets - 1);
    (1..=u16::MAX)
        .map(|port| {
            (
                SocketAddr::from(([10, 0, host, 1], port)),
                SocketAddr::from(([10, 0, host, 2], 53)),
            )
        })
        .find(|&(a, b)| {
            let t = Tuple::udp(a, b).unwrap();
            bucket(&t) == orig && bucket(&t.reply()) == reply
        })
        .expect("some port lands in the wanted buckets")
}

fn udp(a: SocketAddr, b: SocketAddr) -> Packet {
    Packet::udp(a, b).unwrap()
}

/// The reaper walks the whole table while a packet path tracks a flow whose previous
/// connection expired (its reply tuple sits in a lower bucket, so removing it means taking
/// two buckets in order after letting go of the first), while a third thread creates a flow
/// whose tuples sit in the same two buckets the other way round. No deadlock; no connection
/// ever half-removed; the packet path gets a fresh connection, never the expired one; the
/// reaper alone removes the expired connection nobody looks up (a 4-bucket table: the seed
/// would walk no bucket at all); every tuple is accounted for at the end.
#[test]
fn reaper_lookup_and_insert_keep_lock_order() {
    // Three threads over four buckets: unbounded runs past 5 minutes. Bound 4 explores 92,489
    // executions in ~15 s (49,880 before walks took a connection's lock to refresh a stale
    // deadline hint); bound 5 explored 289,907 in ~40 s then (release, one core) — too much
    // for CI next to every mutant. Every mutant this model names fails within bound 4 (the
    // lock-order mutant at 1).
    const BOUND: Option<usize> = Some(4);
    const N: usize = 4;
    let c = flow(N, 3, 1, 1); // looked up: reply in a lower bucket
    let e = flow(N, 2, 0, 2); // expired, met only by the reaper
    let d = flow(N, 1, 3, 3); // inserted: same two buckets as `c`, the other way round
    loom_model(
        "reaper_lookup_and_insert_keep_lock_order",
        BOUND,
        move || {
            let (table, clock) = table(N);
            let old_c = table.track(&udp(c.0, c.1)).unwrap().conn;
            table.track(&udp(e.0, e.1)).unwrap();
            clock.advance(EXPIRE);

            let reaper = {
                let table = Arc::clone(&table);
                thread::spawn(move || {
                    // From the top bucket: the walk meets `c`'s original tuple before
                    // its reply, the one order in which reaping must let go of a bucket to
                    // take a lower one.
                    let (mut start, mut interval) = (N - 1, Duration::from_millis(10));
                    for _ in 0..N {
                        (start, interval) = table.reap_unused(start, interval);
                    }
                })
            };
            let inserter = {
                let table = Arc::clone(&table);
                thread::spawn(move || table.track(&udp(d.0, d.1)).unwrap())
            };
            let now = clock.now();
            let got = table.track(&udp(c.0, c.1)).unwrap();
            assert!(
                !got.conn.expired_at(now),
                "track returned an expired connection"
            );
            assert!(
                got.created && !Arc::ptr_eq(&got.conn, &old_c),
                "the expired connection came back"
            );
            let inserted = inserter.join().unwrap();
            assert!(inserted.created);
            reaper.join().unwrap();

            let audit = table.audit().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                audit.expired, 0,
                "an expired connection outlived a full reaper walk"
            );
            assert_eq!((audit.connections, audit.tuples), (2, 4));
            let stats = table.stats();
            assert_eq!((stats.created, stats.reaped, stats.live), (4, 2, 2));
        },
    );
}

/// Two packet paths track the same new flow at once: exactly one connection results (one
/// call creates it, the other finds it under the same two bucket locks), and the flow's
/// previous, expired connection — reply tuple in a lower bucket — is removed, both tuples,
/// not left behind next to the new one.
#[test]
fn same_flow_racing_over_an_expired_conn_yields_one_fresh_conn() {
    const N: usize = 4;
    let c = flow(N, 3, 1, 1);
    loom_model(
        "same_flow_racing_over_an_expired_conn_yields_one_fresh_conn",
        None,
        move || {
            let (table, clock) = table(N);
            let old = table.track(&udp(c.0, c.1)).unwrap().conn;
            clock.advance(EXPIRE);
            let other = {
                let table = Arc::clone(&table);
                thread::spawn(move || table.track(&udp(c.0, c.1)).unwrap())
            };
            let mine = table.track(&udp(c.0, c.1)).unwrap();
            let theirs = other.join().unwrap();
            assert!(
                Arc::ptr_eq(&mine.conn, &theirs.conn),
                "two connections for one flow"
            );
            assert!(
                !Arc::ptr_eq(&mine.conn, &old),
                "the expired connection came back"
            );
            assert!(
                mine.created ^ theirs.created,
                "exactly one call creates the connection"
            );
            let audit = table.audit().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((audit.connections, audit.tuples, audit.expired), (1, 2, 0));
            assert_eq!(table.stats().reaped, 1);
        },
    );
}

/// A flow's first packet and its first reply race (the reply tuple is in another bucket, so
/// the two creations lock the same two buckets from opposite ends): exactly one connection
/// results, the two packets travel in opposite directions on it, and it is replied (not yet
/// assured: Linux assures a UDP flow only after two seconds).
/// With the buckets locked in call order instead of ascending order this deadlocks.
#[test]
fn insert_races_insert_of_the_reverse_flow() {
    const N: usize = 2;
    let f = flow(N, 1, 0, 4);
    loom_model("insert_races_insert_of_the_reverse_flow", None, move || {
        let (table, _clock) = table(N);
        let other = {
            let table = Arc::clone(&table);
            thread::spawn(move || table.track(&udp(f.1, f.0)).unwrap())
        };
        let mine = table.track(&udp(f.0, f.1)).unwrap();
        let theirs = other.join().unwrap();
        assert!(
            Arc::ptr_eq(&mine.conn, &theirs.conn),
            "two connections for one flow"
        );
        assert!(mine.created ^ theirs.created);
        assert_ne!(mine.dir, theirs.dir);
        let creator = if mine.created { &mine } else { &theirs };
        assert_eq!(creator.dir, Direction::Original);
        assert_eq!(
            mine.conn.state(),
            State::Udp(UdpState::Replied),
            "the second packet is a reply: the flow is replied"
        );
        let audit = table.audit().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((audit.connections, audit.tuples), (1, 2));
    });
}

/// The reaper thread, kicked once and then dropped with its table handle: it stops and is
/// joined (no lost wake-up, no thread left behind), whatever the interleaving.
#[test]
fn reaper_thread_stops_and_joins_on_drop() {
    loom_model("reaper_thread_stops_and_joins_on_drop", None, || {
        let clock = ManualClock::new();
        let config = Config::with_buckets(2);
        let table = ConnTable::with_clock_and_hasher(config, clock, Fixed::default()).unwrap();
        let ct = ConnTrack::from_table(table);
        let shared = Arc::clone(ct.table());
        ct.reaper().kick();
        drop(ct);
        assert_eq!(
            Arc::strong_count(&shared),
            1,
            "the reaper thread still holds the table"
        );
    });
}

/// The clock moves while two packets of one flow and the reaper run. A UDP flow's connection
/// (deadline 30 s) is 20 s old; one packet of the flow travels in the original direction,
/// delayed; the main thread moves the clock to 40 s — past the deadline — and sends the
/// answer (the reply direction, found in the other bucket); the reaper walks the table.
/// Whatever the order, both packets end on the flow's one live connection, and that
/// connection was last used at 40 s and lives until 70 s. A packet that decides with a clock
/// read before it took the locks sets the last use and the deadline back to 20 s (what loom
/// finds, with 2 preemptions); and once a deadline can move back, a connection that another
/// thread judged expired and replaced can be revived — two live connections for one flow,
/// which the first two assertions guard (reaching it takes more stale packets than this
/// model has).
#[test]
fn packets_racing_the_clock_and_reaper_keep_one_live_conn_per_flow() {
    // Three threads over two buckets. A stale clock read bites at depth 2 (the delayed packet
    // reads the clock, is preempted, and resumes after the answer). Bound 4 explores 80,293
    // executions in ~7 s (release; 57,085 before the hinted walk); bound 5 explored 337,225
    // in ~29 s then: too long next to the others.
    const BOUND: Option<usize> = Some(4);
    const N: usize = 2;
    let f = flow(N, 1, 0, 5);
    loom_model(
        "packets_racing_the_clock_and_reaper_keep_one_live_conn_per_flow",
        BOUND,
        move || {
            let clock = FreshClock::default();
            let table = table_on(N, clock.clone());
            table.track(&udp(f.0, f.1)).unwrap();
            clock.advance(Duration::from_secs(20));
            let delayed = {
                let table = Arc::clone(&table);
                thread::spawn(move || table.track(&udp(f.0, f.1)).unwrap())
            };
            let reaper = {
                let table = Arc::clone(&table);
                thread::spawn(move || {
                    let (mut start, mut interval) = (0, Duration::from_millis(10));
                    for _ in 0..N {
                        (start, interval) = table.reap_unused(start, interval);
                    }
                })
            };
            clock.advance(Duration::from_secs(20));
            let end = clock.now();
            let answer = table.track(&udp(f.1, f.0)).unwrap();
            let delayed = delayed.join().unwrap();
            reaper.join().unwrap();
            assert!(
                Arc::ptr_eq(&delayed.conn, &answer.conn),
                "two connections for one flow: the delayed packet revived the expired one"
            );
            let audit = table.audit().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                (audit.connections, audit.tuples, audit.expired),
                (1, 2, 0),
                "one live connection for the flow"
            );
            let conn = &answer.conn;
            assert_eq!(conn.last_used(), end, "the last use went back in time");
            assert_eq!(
                conn.deadline(),
                end.saturating_add(Duration::from_secs(30)),
                "the deadline went back in time"
            );
        },
    );
}

/// Two packets of one live flow, one per direction (so each finds the connection under a
/// different bucket lock), while the clock moves from 20 s to 25 s: the connection's last use
/// ends at 25 s, whichever packet comes last. A packet that read the clock under its bucket
/// lock but before the connection's own lock could be overtaken by the other direction and
/// set the last use (and the deadline) back.
#[test]
fn packets_on_both_tuples_never_move_a_conn_back_in_time() {
    // Two threads, one packet each: exhaustive (110 executions).
    const N: usize = 2;
    let f = flow(N, 1, 0, 6);
    loom_model(
        "packets_on_both_tuples_never_move_a_conn_back_in_time",
        None,
        move || {
            let clock = FreshClock::default();
            let table = table_on(N, clock.clone());
            let conn = table.track(&udp(f.0, f.1)).unwrap().conn;
            clock.advance(Duration::from_secs(20));
            let forward = {
                let table = Arc::clone(&table);
                thread::spawn(move || table.track(&udp(f.0, f.1)).unwrap())
            };
            clock.advance(Duration::from_secs(5));
            let end = clock.now();
            let answer = table.track(&udp(f.1, f.0)).unwrap();
            let forward = forward.join().unwrap();
            assert!(Arc::ptr_eq(&forward.conn, &conn) && Arc::ptr_eq(&answer.conn, &conn));
            assert_eq!(conn.last_used(), end, "the last use went back in time");
            assert!(
                conn.deadline() >= end.saturating_add(Duration::from_secs(30)),
                "the deadline went back in time: {} at {end}",
                conn.deadline()
            );
        },
    );
}

/// A walk refreshes a deadline hint while a delayed packet shortens the deadline. Each bucket
/// entry keeps a hint, a lower bound of its connection's deadline, and a walk passes by any
/// entry whose hint is not before its `now` without reading the connection; once the hint
/// is past, the walk refreshes it under the connection's lock from the deadline and the
/// latest decision time. Here a UDP profile's replied timeout (10 s) is shorter than its
/// unreplied one (30 s), so a packet after the reply moves the deadline *earlier*. The flow
/// is created and replied at 0 s (deadline 30 s, hints ~10 s); a packet of the flow reads the
/// clock at 5 s and is delayed; the main thread moves the clock to 12 s and looks up another
/// flow in the same (only) bucket, which walks past both of the flow's entries and refreshes
/// their hints; then the clock moves to 16 s and the reaper walks the table. Whatever the
/// order: every hint stays at or below its connection's deadline, and no connection expired
/// at 16 s survives the reaper's walk. A refresh that reads the deadline without the
/// connection's lock and computes the hint from its own clock reading (12 s + 10 s) without
/// recording it lets the delayed packet decide at 5 s and set the deadline to 15 s, below
/// the hint: the reaper then passes the expired connection by.
#[test]
fn a_hint_refreshed_while_a_delayed_packet_shortens_the_deadline_stays_below_it() {
    // Two threads; the bug needs the delayed packet to read the clock before the main
    // thread moves it and to update after the walk: two preemptions. Exhaustive.
    const N: usize = 1;
    let f = flow(N, 0, 0, 8);
    let other = Tuple::udp(
        SocketAddr::from(([10, 0, 9, 1], 1)),
        SocketAddr::from(([10, 0, 9, 2], 2)),
    )
    .unwrap();
    loom_model(
        "a_hint_refreshed_while_a_delayed_packet_shortens_the_deadline_stays_below_it",
        None,
        move || {
            let clock = FreshClock::default();
            let config = Config {
                max_connections: Some(4),
                timeouts: Timeouts {
                    udp_unreplied: Duration::from_secs(30),
                    udp_replied: Duration::from_secs(10),
                    udp_stream_after: Duration::ZERO,
                    ..Timeouts::linux()
                },
                ..Config::with_buckets(N)
            };
            let table = Arc::new(
                ConnTable::with_clock_and_hasher(config, clock.clone(), Fixed::default()).unwrap(),
            );
            let conn = table.track(&udp(f.0, f.1)).unwrap().conn;
            table.track(&udp(f.1, f.0)).unwrap();
            clock.advance(Duration::from_secs(5));
            let delayed = {
                let table = Arc::clone(&table);
                thread::spawn(move || table.track(&udp(f.0, f.1)).unwrap())
            };
            clock.advance(Duration::from_secs(7));
            assert!(table.lookup(&other).is_none());
            let delayed = delayed.join().unwrap();
            assert!(Arc::ptr_eq(&delayed.conn, &conn));
            table.audit().unwrap_or_else(|e| panic!("{e}"));
            clock.advance(Duration::from_secs(4));
            table.reap_unused(0, Duration::from_millis(10));
            let audit = table.audit().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                audit.expired, 0,
                "the reaper passed an expired connection by: its hint was after its deadline"
            );
        },
    );
}

/// `reap_now` racing the reaper's passes: the reaper starts its first pass as soon as it is
/// spawned, possibly before the clock moves; a kicker asks for a pass at any moment; the main
/// thread moves the clock past a connection's deadline and calls `reap_now`. When `reap_now`
/// returns, a pass that started after its request — so after the clock moved — has walked the
/// table (one bucket: one pass walks it all) and reaped the connection. No wake-up is lost
/// (loom reports a thread waiting for ever as a deadlock).
#[test]
fn reap_now_is_served_by_a_pass_that_starts_after_it() {
    // Three threads (main, kicker, reaper). The ticket races need 2 preemptions (a request
    // landing while a pass is under way); bound 5 explores 113,288 executions in ~11 s
    // (release); unbounded, 3.5 million in 320 s.
    loom_model(
        "reap_now_is_served_by_a_pass_that_starts_after_it",
        Some(5),
        || {
            let clock = ManualClock::new();
            let config = Config {
                max_connections: Some(4),
                ..Config::with_buckets(1)
            };
            let table =
                ConnTable::with_clock_and_hasher(config, clock.clone(), Fixed::default()).unwrap();
            let f = flow(1, 0, 0, 7);
            table.track(&udp(f.0, f.1)).unwrap();
            let ct = Arc::new(ConnTrack::from_table(table));
            let kicker = {
                let ct = Arc::clone(&ct);
                thread::spawn(move || ct.reaper().kick())
            };
            clock.advance(EXPIRE);
            ct.reaper().reap_now().expect("the reaper is alive");
            // `stats`, not `lookup`: a lookup would reap the connection itself.
            assert_eq!(
                ct.stats().reaped,
                1,
                "reap_now returned before a pass that started after it"
            );
            kicker.join().unwrap();
            let ct = Arc::try_unwrap(ct).expect("the kicker is gone");
            drop(ct);
        },
    );
}

/// What the broken clock of `a_reaper_whose_pass_panics_wakes_every_waiter` panics with.
#[derive(Debug)]
struct Deliberate;

/// A clock that panics whenever it is read: the reaper's first pass panics on it.
#[derive(Debug)]
struct BrokenClock;

impl Clock for BrokenClock {
    fn now(&self) -> Instant {
        std::panic::panic_any(Deliberate)
    }
}

/// Keeps the default panic hook from printing the broken clock's panic, once per execution
/// (it is caught by the reaper); every other panic is printed as usual.
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Deliberate>() {
                default(info);
            }
        }));
    });
}

/// Bug 6: the reaper's pass panics (its table's clock does) while the main thread waits in
/// `reap_now` and another in `wait_for_passes`: both return `ReaperPanicked`, whenever they
/// started waiting, and the `ConnTrack` still drops cleanly. A reaper that ended without
/// telling them would leave them waiting for ever (loom: deadlock).
#[test]
fn a_reaper_that_panics_wakes_every_waiter() {
    quiet_deliberate_panics();
    // Three threads (main, waiter, reaper), each a few lock operations: exhaustive (7,702
    // executions, under a second).
    loom_model("a_reaper_that_panics_wakes_every_waiter", None, || {
        let ct = Arc::new(ConnTrack::from_table(
            ConnTable::with_clock_and_hasher(
                Config::with_buckets(2),
                BrokenClock,
                Fixed::default(),
            )
            .unwrap(),
        ));
        let waiter = {
            let ct = Arc::clone(&ct);
            thread::spawn(move || ct.reaper().wait_for_passes(1))
        };
        assert_eq!(ct.reaper().reap_now(), Err(ReaperPanicked));
        assert_eq!(waiter.join().unwrap(), Err(ReaperPanicked));
        assert!(ct.reaper().panicked());
        assert_eq!(ct.reaper().passes(), 0);
        let ct = Arc::try_unwrap(ct).expect("the waiter is gone");
        drop(ct);
    });
}
