//! shuttle runs of the conntrack table at a scale loom cannot explore: four packet threads,
//! dozens of buckets and hundreds of connections, with the reaper thread itself running —
//! kicked during the run, then stopped and joined when the `ConnTrack` is dropped.
//!
//! Run: `RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle cargo test -p refwatch-models --release --test shuttle_conntrack`
#![cfg(shuttle)]

use refwatch::conntrack::{
    Config, Conn, ConnTable, ConnTrack, Packet, State, TcpFlags as F, TcpSegment, TcpState,
    TrackError, Tuple, UdpState,
};
use refwatch::sync::{thread, Arc};
use refwatch::time::{Clock, ManualClock};
use refwatch_models::shuttle_pct;
use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::time::Duration;

type Fixed = BuildHasherDefault<DefaultHasher>;
type Track = ConnTrack<ManualClock, Fixed>;

const THREADS: u16 = 4;
const BUCKETS: usize = 32;
/// Schedules per scheduler (PCT, then random).
const SCHEDULES: usize = 1000;
/// PCT bug depth.
const DEPTH: usize = 3;

fn conntrack(max: usize) -> (Track, ManualClock) {
    let clock = ManualClock::new();
    let config = Config {
        max_connections: Some(max),
        ..Config::with_buckets(BUCKETS)
    };
    let table = ConnTable::with_clock_and_hasher(config, clock.clone(), Fixed::default()).unwrap();
    (ConnTrack::from_table(table), clock)
}

fn addr(a: u8, b: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, a, b, 1], port))
}

fn udp(a: SocketAddr, b: SocketAddr) -> Packet {
    Packet::udp(a, b).unwrap()
}

fn tcp(a: SocketAddr, b: SocketAddr, flags: F, seq: u32, ack: u32) -> Packet {
    Packet::tcp(a, b, TcpSegment::new(flags, seq, ack)).unwrap()
}

/// Has the reaper walk every bucket (one bucket per pass on a table this small), each pass
/// starting after the call.
fn reap_everything(ct: &Track) {
    for _ in 0..BUCKETS {
        ct.reaper().reap_now().expect("the reaper is alive");
    }
}

/// 128 flows expire; four threads then create 160 new flows, answer half of them, re-track
/// the expired ones and look flows up, while one of them keeps kicking the reaper. Nothing
/// returned is ever expired, every flow a thread created is still there with its reply,
/// and once the reaper has walked the table no expired connection is left; the counters
/// add up, and dropping the `ConnTrack` joins the reaper.
#[test]
fn packet_threads_and_reaper_thread_keep_the_table_consistent() {
    shuttle_pct(
        "packet_threads_and_reaper_thread_keep_the_table_consistent",
        SCHEDULES,
        DEPTH,
        || {
            let (ct, clock) = conntrack(1024);
            for p in 0..128 {
                ct.track(&udp(addr(9, 9, p), addr(9, 8, 53))).unwrap();
            }
            clock.advance(Duration::from_secs(31));
            let now = clock.now();
            let table = Arc::clone(ct.table());
            let threads: Vec<_> = (0..THREADS)
                .map(|i| {
                    let table = Arc::clone(&table);
                    thread::spawn(move || {
                        let mut mine = Vec::new();
                        for p in 0..40u16 {
                            let (a, b) = (addr(1, i as u8, p), addr(2, i as u8, 80));
                            let t = table.track(&udp(a, b)).unwrap();
                            assert!(
                                !t.conn.expired_at(now),
                                "track returned an expired connection"
                            );
                            if p % 2 == 0 {
                                let r = table.track(&udp(b, a)).unwrap();
                                assert!(
                                    Arc::ptr_eq(&r.conn, &t.conn),
                                    "a reply made a second connection"
                                );
                            }
                            // Re-track one of the expired flows (several threads share them).
                            let old = (p + 32 * i) % 128;
                            let again = table.track(&udp(addr(9, 9, old), addr(9, 8, 53))).unwrap();
                            assert!(!again.conn.expired_at(now));
                            if let Some((c, _)) = table.lookup(&Tuple::udp(a, b).unwrap()) {
                                assert!(Arc::ptr_eq(&c, &t.conn));
                            } else {
                                panic!("a live flow vanished");
                            }
                            mine.push(t.conn);
                        }
                        mine
                    })
                })
                .collect();
            for _ in 0..4 {
                ct.reaper().kick();
                thread::yield_now();
            }
            let created: Vec<_> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            reap_everything(&ct);

            let audit = ct.audit().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                audit.expired, 0,
                "an expired connection outlived a full reaper walk"
            );
            // 160 new flows, and the 128 expired flows re-created (all re-tracked).
            assert_eq!(audit.connections, 160 + 128);
            for (i, conn) in created.iter().enumerate() {
                let (found, _) = ct.lookup(&conn.original()).expect("flow lost");
                assert!(Arc::ptr_eq(&found, conn));
                let replied = (i % 40) % 2 == 0;
                assert_eq!(conn.state() == State::Udp(UdpState::Replied), replied);
                assert!(!conn.assured(), "UDP is assured only after 2 s");
            }
            let stats = ct.stats();
            assert_eq!(stats.reaped, 128);
            assert_eq!(stats.created, 128 + 160 + 128);
            drop(ct);
            assert_eq!(
                Arc::strong_count(&table),
                1,
                "the reaper thread outlived its ConnTrack"
            );
        },
    );
}

/// A TCP connection through its handshake: established and assured.
fn establish(table: &ConnTable<ManualClock, Fixed>, c: SocketAddr, s: SocketAddr) -> Arc<Conn> {
    table.track(&tcp(c, s, F::SYN, 100, 0)).unwrap();
    table.track(&tcp(s, c, F::SYN | F::ACK, 900, 101)).unwrap();
    let done = table.track(&tcp(c, s, F::ACK, 101, 901)).unwrap();
    assert!(done.state == State::Tcp(TcpState::Established) && done.assured);
    done.conn
}

/// Two threads establish TCP connections while two others flood SYNs at several times the
/// table's maximum, with the reaper running; four connections were established before the
/// flood. The reservation never lets the live count past the maximum; at the end the table
/// holds no more connections than its maximum, counted in the buckets; early drop evicted
/// connections (the flood really pressed) but no established one — neither the four (so the
/// check never passes for want of established connections) nor any established during the
/// flood; and the counters add up.
#[test]
fn syn_flood_under_contention_respects_max_and_spares_established() {
    const MAX: usize = 48;
    shuttle_pct(
        "syn_flood_under_contention_respects_max_and_spares_established",
        SCHEDULES,
        DEPTH,
        || {
            let (ct, _clock) = conntrack(MAX);
            let table = Arc::clone(ct.table());
            let before: Vec<_> = (0..4)
                .map(|p| establish(&table, addr(7, 0, 3000 + p), addr(8, 0, 443)))
                .collect();
            let establishers: Vec<_> = (0..2u8)
                .map(|i| {
                    let table = Arc::clone(&table);
                    thread::spawn(move || {
                        let mut done = Vec::new();
                        for p in 0..8 {
                            let (c, s) = (addr(3, i, 1000 + p), addr(4, i, 443));
                            let Ok(syn) = table.track(&tcp(c, s, F::SYN, 100, 0)) else {
                                continue; // refused while the table is full of flood
                            };
                            let Ok(_) = table.track(&tcp(s, c, F::SYN | F::ACK, 900, 101)) else {
                                continue; // early-dropped before the SYN-ACK: a new SYN
                            };
                            if let Ok(t) = table.track(&tcp(c, s, F::ACK, 101, 901)) {
                                if t.state == State::Tcp(TcpState::Established)
                                    && Arc::ptr_eq(&t.conn, &syn.conn)
                                {
                                    done.push(t.conn);
                                }
                            }
                        }
                        done
                    })
                })
                .collect();
            let flooders: Vec<_> = (0..2u8)
                .map(|i| {
                    let table = Arc::clone(&table);
                    thread::spawn(move || {
                        let mut refused = 0u64;
                        for p in 0..(MAX as u16 * 2) {
                            match table.track(&tcp(
                                addr(5, i, p),
                                addr(6, 0, 80),
                                F::SYN,
                                p.into(),
                                0,
                            )) {
                                Ok(_) => {}
                                Err(TrackError::TableFull { .. }) => refused += 1,
                                Err(e) => panic!("{e}"),
                            }
                            // Only a broken reservation (two threads both taking the last
                            // slot) fails this; what the table holds is checked at the end.
                            assert!(table.live() <= MAX, "the live count outgrew the maximum");
                        }
                        refused
                    })
                })
                .collect();
            ct.reaper().kick();
            let established: Vec<_> = establishers
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            let refused: u64 = flooders.into_iter().map(|t| t.join().unwrap()).sum();
            // `peek`, not `lookup`: nothing may be removed by the checking itself.
            for conn in before.iter().chain(&established) {
                let (found, _) = ct
                    .peek(&conn.original())
                    .expect("an established connection was evicted");
                assert!(Arc::ptr_eq(&found, conn));
            }
            // Counted in the buckets, and the live count, the counters and the contents agree.
            let audit = ct.audit().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                audit.connections <= MAX,
                "the table holds {} connections, more than its maximum {MAX}",
                audit.connections
            );
            let stats = ct.stats();
            assert!(stats.early_dropped > 0, "the flood never filled the table");
            assert!(stats.refused >= refused);
            drop(ct);
            assert_eq!(Arc::strong_count(&table), 1);
        },
    );
}
