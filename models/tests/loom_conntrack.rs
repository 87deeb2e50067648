//! loom models of the conntrack table's lock order and reaping, on 2–4 bucket tables with a
//! manual clock and a fixed hash key (so that the buckets each tuple lands in are chosen).
//!
//! Every model runs without a preemption bound: every interleaving is explored.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p refwatch-models --release --test loom_conntrack`
#![cfg(loom)]

use loom::thread;
use refwatch::conntrack::{
    Config, ConnTable, ConnTrack, Direction, Packet, State, Tuple, UdpState,
};
use refwatch::sync::Arc;
use refwatch::time::{Clock, ManualClock};
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
    let config = Config {
        max_connections: Some(16),
        ..Config::with_buckets(buckets)
    };
    let table = ConnTable::with_clock_and_hasher(config, clock.clone(), Fixed::default())
        .expect("valid config");
    (Arc::new(table), clock)
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
    // Three threads over four buckets: unbounded runs past 5 minutes. Bound 4 explores 34,940
    // executions in ~6 s; bound 5 explores 182,391 in ~50 s (release, one core) — too much
    // for CI next to every mutant. Every mutant this model names fails within bound 4.
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
                    let (mut start, mut interval) = (0, Duration::from_millis(10));
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
