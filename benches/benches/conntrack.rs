//! Conntrack benchmarks: refwatch's bucketed table against the design the seed replaced (one
//! `Mutex<HashMap>` of tuples) and against `dashmap`, plus lookup latency by table size, the
//! reaper's cost, and memory per connection.
//!
//! Run (short measurements: the machine is shared):
//! `cargo bench -p refwatch-benches --bench conntrack -- --warm-up-time 1 --measurement-time 3`
//!
//! Under `cargo bench`, two groups also run an interleaved pass on the tables they built (see
//! `refwatch_benches::interleaved`; `REFWATCH_BENCH_ROUNDS` rounds, default 30, 0 skips it):
//! - `conntrack_track_hit`: every design's hit path in alternating slots, one thread and two
//!   (the measured thread on the first half of the flows, a pinned helper on the second), as
//!   ratios to dashmap.
//! - `conntrack_lookup`: each table size's lookups in alternating slots with a pointer chase
//!   over a buffer as large as the table (`refwatch_benches::chase`): lookup cost in units of
//!   the machine's dependent random read at that size.
//!
//! Every design does the same work per packet: read the clock (the same [`CoarseClock`],
//! `ConnTable::new`'s default, one load a reading), find the tuple (both
//! directions are keys), then update the connection's state and last use under the
//! connection's own lock. The peers do not reap, check expiry or bound their size, so the
//! comparison favours them.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use refwatch::conntrack::{Config, ConnTable, Direction, Packet, TcpFlags, TcpSegment, Tuple};
use refwatch::time::{Clock, CoarseClock, Instant};
use refwatch_benches::chase::Chase;
use refwatch_benches::interleaved::{compare, rounds_from_env, Variant};
use refwatch_benches::{Clock as BenchClock, Cycle};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Memory accounting: a counting allocator, active only while measuring memory.
// ---------------------------------------------------------------------------------------------

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counter is bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded as is; `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATED.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns what it returned with the bytes it left allocated (single-threaded:
/// every thread's allocations count while it runs).
fn counted<R>(f: impl FnOnce() -> R) -> (R, usize) {
    COUNTING.store(true, Ordering::SeqCst);
    let before = ALLOCATED.load(Ordering::SeqCst);
    let result = f();
    let bytes = ALLOCATED.load(Ordering::SeqCst) - before;
    COUNTING.store(false, Ordering::SeqCst);
    (result, bytes.max(0) as usize)
}

// ---------------------------------------------------------------------------------------------
// Flows and the peer designs
// ---------------------------------------------------------------------------------------------

/// The `i`th distinct UDP flow (client to server).
fn flow(i: usize) -> (SocketAddr, SocketAddr) {
    let i = i as u32;
    let client = SocketAddr::from((
        [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
        40000 + (i >> 24) as u16,
    ));
    (client, SocketAddr::from(([192, 168, 0, 1], 53)))
}

fn packet(i: usize, forward: bool) -> Packet {
    let (c, s) = flow(i);
    if forward {
        Packet::udp(c, s).unwrap()
    } else {
        Packet::udp(s, c).unwrap()
    }
}

#[derive(Debug)]
struct PeerState {
    replied: bool,
    last_used: Instant,
}

#[derive(Debug)]
struct PeerConn {
    #[allow(dead_code)]
    original: Tuple,
    state: Mutex<PeerState>,
}

impl PeerConn {
    fn new(original: Tuple, now: Instant) -> Arc<PeerConn> {
        Arc::new(PeerConn {
            original,
            state: Mutex::new(PeerState {
                replied: false,
                last_used: now,
            }),
        })
    }

    fn update(&self, dir: Direction, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap();
        if dir == Direction::Reply {
            s.replied = true;
        }
        s.last_used = now;
        s.replied
    }
}

trait Tracker: Sync {
    /// Tracks `pkt`; returns whether the connection is replied.
    fn track(&self, pkt: &Packet) -> bool;
}

impl Tracker for ConnTable {
    fn track(&self, pkt: &Packet) -> bool {
        ConnTable::track(self, pkt)
            .map(|t| t.assured)
            .unwrap_or(false)
    }
}

/// The seed's previous design: one lock around one map of tuples.
struct MutexMap {
    map: Mutex<HashMap<Tuple, (Arc<PeerConn>, Direction)>>,
    clock: CoarseClock,
}

impl MutexMap {
    fn new() -> Self {
        MutexMap {
            map: Mutex::new(HashMap::new()),
            clock: CoarseClock::new(),
        }
    }
}

impl Tracker for MutexMap {
    fn track(&self, pkt: &Packet) -> bool {
        let now = self.clock.now();
        let t = *pkt.tuple();
        let (conn, dir) = {
            let mut map = self.map.lock().unwrap();
            match map.get(&t) {
                Some((c, d)) => (Arc::clone(c), *d),
                None => {
                    let c = PeerConn::new(t, now);
                    map.insert(t, (Arc::clone(&c), Direction::Original));
                    map.insert(t.reply(), (Arc::clone(&c), Direction::Reply));
                    (c, Direction::Original)
                }
            }
        };
        conn.update(dir, now)
    }
}

/// A sharded concurrent map.
struct Dash {
    map: DashMap<Tuple, (Arc<PeerConn>, Direction)>,
    clock: CoarseClock,
}

impl Dash {
    fn new() -> Self {
        Dash {
            map: DashMap::new(),
            clock: CoarseClock::new(),
        }
    }
}

impl Tracker for Dash {
    fn track(&self, pkt: &Packet) -> bool {
        let now = self.clock.now();
        let t = *pkt.tuple();
        let found = self.map.get(&t).map(|e| (Arc::clone(&e.0), e.1));
        let (conn, dir) = match found {
            Some(f) => f,
            None => {
                let c = PeerConn::new(t, now);
                self.map
                    .insert(t.reply(), (Arc::clone(&c), Direction::Reply));
                let entry = self
                    .map
                    .entry(t)
                    .or_insert((Arc::clone(&c), Direction::Original));
                (Arc::clone(&entry.0), entry.1)
            }
        };
        conn.update(dir, now)
    }
}

/// A table for at most `max` connections, with `buckets` buckets (`None`: the count follows
/// the maximum, four connections a bucket).
fn refwatch_table(buckets: Option<usize>, max: usize) -> ConnTable {
    ConnTable::new(Config {
        buckets,
        max_connections: Some(max),
        ..Config::default()
    })
    .unwrap()
}

/// Runs `iters` packets split over `threads` threads, and returns the wall time from a
/// common start to the last finish. Thread `k` cycles through the `k`th contiguous chunk of
/// `packets`, so threads work on disjoint flows (no connection is shared between them).
fn run_threads<T: Tracker>(
    tracker: &T,
    packets: &[Packet],
    threads: usize,
    iters: u64,
) -> Duration {
    let per_thread = iters / threads as u64;
    let chunk = packets.len() / threads;
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let barrier = &barrier;
                let mine = &packets[k * chunk..(k + 1) * chunk];
                s.spawn(move || {
                    barrier.wait();
                    let start = std::time::Instant::now();
                    let mut i = 0;
                    for _ in 0..per_thread {
                        black_box(tracker.track(&mine[i]));
                        i += 1;
                        if i == mine.len() {
                            i = 0;
                        }
                    }
                    start.elapsed()
                })
            })
            .collect();
        barrier.wait();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

// ---------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------

const HIT_FLOWS: usize = 10_000;

/// An established TCP flow `i` (client ISN 1000, server ISN 9000) and the two pure ACKs that
/// hit it afterwards: each one runs the tracker's whole window check.
fn tcp_flow(table: &ConnTable, i: usize) -> [Packet; 2] {
    let (c, s) = flow(i);
    let seg = |from, to, flags, seq, ack| {
        Packet::tcp(from, to, TcpSegment::new(flags, seq, ack)).unwrap()
    };
    for p in [
        seg(c, s, TcpFlags::SYN, 1000, 0),
        seg(s, c, TcpFlags::SYN | TcpFlags::ACK, 9000, 1001),
        seg(c, s, TcpFlags::ACK, 1001, 9001),
    ] {
        table.track(&p).unwrap();
    }
    [
        seg(c, s, TcpFlags::ACK, 1001, 9001),
        seg(s, c, TcpFlags::ACK, 9001, 1001),
    ]
}

/// The tables of `conntrack_track_hit`, every flow in them, and the packets that hit them.
struct Hits {
    /// Both directions of every UDP flow; each thread takes its own half of the flows.
    packets: Vec<Packet>,
    refwatch: ConnTable,
    mutex: MutexMap,
    dash: Dash,
    /// The same flows in TCP, established: the TCP tracker's cost on the hit path.
    tcp_packets: Vec<Packet>,
    tcp_table: ConnTable,
}

fn hits() -> Hits {
    let packets: Vec<Packet> = (0..HIT_FLOWS)
        .flat_map(|i| [packet(i, true), packet(i, false)])
        .collect();
    let refwatch = refwatch_table(Some(1 << 14), 1 << 20);
    let mutex = MutexMap::new();
    let dash = Dash::new();
    for p in &packets {
        Tracker::track(&refwatch, p);
        mutex.track(p);
        dash.track(p);
    }
    let tcp_table = refwatch_table(Some(1 << 14), 1 << 20);
    let tcp_packets: Vec<Packet> = (0..HIT_FLOWS)
        .flat_map(|i| tcp_flow(&tcp_table, i))
        .collect();
    Hits {
        packets,
        refwatch,
        mutex,
        dash,
        tcp_packets,
        tcp_table,
    }
}

fn track_hits(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_track_hit");
    g.throughput(Throughput::Elements(1));
    let h = hits();
    for threads in [1, 2] {
        g.bench_with_input(BenchmarkId::new("refwatch", threads), &threads, |b, &t| {
            b.iter_custom(|iters| run_threads(&h.refwatch, &h.packets, t, iters))
        });
        g.bench_with_input(
            BenchmarkId::new("refwatch_tcp", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| run_threads(&h.tcp_table, &h.tcp_packets, t, iters)),
        );
        g.bench_with_input(
            BenchmarkId::new("mutex_hashmap", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| run_threads(&h.mutex, &h.packets, t, iters)),
        );
        g.bench_with_input(BenchmarkId::new("dashmap", threads), &threads, |b, &t| {
            b.iter_custom(|iters| run_threads(&h.dash, &h.packets, t, iters))
        });
    }
    g.finish();
    if let Some(rounds) = rounds_from_env() {
        interleaved_hits(&h, rounds);
    }
}

/// A slot's work: `n` packets of `packets` through `tracker`, resuming where the last ended.
type Slot<'a> = Box<dyn Fn(u64) + Sync + 'a>;

/// A design's two slot runs: the first half of the flows (the measured thread's) and the
/// second (the helper's, in the two-thread slots), so that no connection is shared.
fn halves<'a, T: Tracker>(tracker: &'a T, packets: &'a [Packet]) -> [Slot<'a>; 2] {
    // Both directions of a flow are adjacent: an even split keeps flows whole.
    let (a, b) = packets.split_at(packets.len() / 4 * 2);
    [a, b].map(|mine| -> Slot<'a> {
        let cycle = Cycle::new(mine);
        Box::new(move |n| {
            cycle.run(n, |p| {
                black_box(tracker.track(p));
            })
        })
    })
}

/// The hit path of every design in alternating slots, alone and beside a helper on the other
/// half of the flows; ratios to dashmap.
fn interleaved_hits(h: &Hits, rounds: usize) {
    let clock = BenchClock::from_env();
    let designs = [
        ("refwatch", halves(&h.refwatch, &h.packets)),
        ("refwatch_tcp", halves(&h.tcp_table, &h.tcp_packets)),
        ("mutex_hashmap", halves(&h.mutex, &h.packets)),
        ("dashmap", halves(&h.dash, &h.packets)),
    ];
    let one: Vec<Variant<'_>> = designs
        .iter()
        .map(|(name, [mine, _])| Variant::alone(name, &**mine))
        .collect();
    let two: Vec<Variant<'_>> = designs
        .iter()
        .map(|(name, [mine, theirs])| Variant::beside(name, &**mine, &**theirs))
        .collect();
    let c = compare("conntrack_track_hit/1", clock, &one, rounds, 1 << 15);
    println!("{}", c.table(&["dashmap"]));
    for design in ["refwatch", "refwatch_tcp"] {
        let label = format!("{design} / dashmap, 1 thread");
        println!(
            "{}",
            c.target_line(&label, c.ratio(design, "dashmap"), "<= 0.4")
        );
    }
    println!();
    let c = compare("conntrack_track_hit/2", clock, &two, rounds, 1 << 15);
    println!("{}", c.table(&["dashmap"]));
    let label = "refwatch / dashmap throughput, 2 threads";
    let ratio = c.throughput_ratio("refwatch", "dashmap");
    println!("{}\n", c.target_line(label, ratio, "none: reported"));
}

fn track_new_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_track_new");
    g.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        // A fresh table per sample: every packet opens a flow never seen before. refwatch's
        // table is sized like a deployment would size it for that many flows (Linux's
        // default: four connections per bucket); the peers grow as they go.
        fn fresh<T: Tracker>(make: impl Fn(usize) -> T, threads: usize, iters: u64) -> Duration {
            let tracker = make(iters as usize);
            let packets: Vec<Packet> = (0..iters as usize).map(|i| packet(i, true)).collect();
            let elapsed = run_threads(&tracker, &packets, threads, iters);
            drop(tracker);
            elapsed
        }
        let sized = |n: usize| {
            refwatch_table(
                Some((n / 4).next_power_of_two().clamp(1 << 10, 1 << 22)),
                n + 16,
            )
        };
        g.bench_with_input(BenchmarkId::new("refwatch", threads), &threads, |b, &t| {
            b.iter_custom(|iters| fresh(sized, t, iters))
        });
        g.bench_with_input(
            BenchmarkId::new("mutex_hashmap", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| fresh(|_| MutexMap::new(), t, iters)),
        );
        g.bench_with_input(BenchmarkId::new("dashmap", threads), &threads, |b, &t| {
            b.iter_custom(|iters| fresh(|_| Dash::new(), t, iters))
        });
    }
    g.finish();
}

/// A table of `n` connections with `buckets` buckets (`None`: the default, which follows the
/// table's maximum, `2n`).
fn filled_table(n: usize, buckets: Option<usize>) -> ConnTable {
    let table = refwatch_table(buckets, n * 2);
    for i in 0..n {
        ConnTable::track(&table, &packet(i, true)).unwrap();
    }
    table
}

/// The tuples of [`filled_table`]`(n, _)` in a shuffled order (so that large tables pay their
/// cache misses).
fn shuffled_tuples(n: usize) -> Vec<Tuple> {
    let mut order: Vec<usize> = (0..n).collect();
    // A fixed permutation (multiplicative hashing), no RNG dependency.
    order.sort_by_key(|&i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    order
        .into_iter()
        .map(|i| *packet(i, true).tuple())
        .collect()
}

/// `conntrack_lookup`'s cases: label, connections, buckets (`None`: the default bucket count,
/// which follows the maximum of `2n`: 2^19 for 1M). `1M_16K_buckets` is the default before
/// the bucket count followed the maximum.
const LOOKUP_CASES: [(&str, usize, Option<usize>); 5] = [
    ("1K", 1_000, Some(1 << 10)),
    ("100K", 100_000, Some(1 << 17)),
    ("1M", 1_000_000, Some(1 << 20)),
    ("1M_default_buckets", 1_000_000, None),
    ("1M_16K_buckets", 1_000_000, Some(1 << 14)),
];

fn lookup_latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_lookup");
    let rounds = rounds_from_env();
    for (label, n, buckets) in LOOKUP_CASES {
        // Each table is built once, for criterion and the interleaved pass: 1M takes seconds.
        let (table, bytes) = counted(|| filled_table(n, buckets));
        let tuples = shuffled_tuples(n);
        let mut i = 0;
        g.bench_function(label, |b| {
            b.iter(|| {
                i = (i + 1) % tuples.len();
                black_box(table.lookup(&tuples[i]).is_some())
            })
        });
        if let Some(rounds) = rounds {
            interleaved_lookups(label, &table, &tuples, bytes, rounds);
        }
    }
    g.finish();
}

/// The same lookups as criterion's, in alternating slots with a pointer chase over a buffer of
/// the table's size (`bytes`, as the counting allocator saw it).
fn interleaved_lookups(
    label: &str,
    table: &ConnTable,
    tuples: &[Tuple],
    bytes: usize,
    rounds: usize,
) {
    let chase = Chase::with_bytes(bytes, 0x5eed_cafe);
    let cycle = Cycle::new(tuples);
    let lookup = |n| {
        cycle.run(n, |t| {
            black_box(table.lookup(t).is_some());
        })
    };
    let read = |n| chase.run(n);
    let variants = [
        Variant::alone("lookup", &lookup),
        Variant::alone("pointer_chase", &read),
    ];
    let title = format!(
        "conntrack_lookup/{label} (table {:.1} MiB, chase over {:.1} MiB)",
        bytes as f64 / (1 << 20) as f64,
        chase.bytes() as f64 / (1 << 20) as f64
    );
    let c = compare(&title, BenchClock::from_env(), &variants, rounds, 1 << 14);
    println!("{}", c.table(&["pointer_chase"]));
    let ratio = c.ratio("lookup", "pointer_chase");
    let label = "lookup in dependent random reads";
    println!("{}\n", c.target_line(label, ratio, "none: reported"));
}

fn reaping(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_reap_unused");
    g.sample_size(10);
    {
        let table = filled_table(100_000, Some(1 << 14));
        let mut start = 0;
        g.bench_function("one_call_16K_buckets_100K_conns", |b| {
            b.iter(|| {
                let (next, interval) = table.reap_unused(start, Duration::from_millis(10));
                start = next;
                black_box(interval)
            })
        });
    }
    {
        let table = filled_table(1_000_000, Some(1 << 20));
        let calls = table.config().reaper.fraction;
        g.bench_function("full_traversal_1M_conns", |b| {
            b.iter(|| {
                let mut start = 0;
                for _ in 0..calls {
                    start = table.reap_unused(start, Duration::from_millis(10)).0;
                }
                black_box(start)
            })
        });
    }
    g.finish();
}

/// Not a timing: bytes allocated per connection, printed once.
fn memory(_: &mut Criterion) {
    const N: usize = 1 << 18;
    for (label, buckets) in [
        ("full at the default load, 4 per bucket", N / 4),
        ("one per bucket", N.next_power_of_two()),
    ] {
        let (table, bytes) = counted(|| {
            let table = refwatch_table(Some(buckets), N);
            for i in 0..N {
                ConnTable::track(&table, &packet(i, true)).unwrap();
            }
            table
        });
        println!(
            "conntrack_memory/{label}: {:.1} bytes per connection ({N} connections, table included)",
            bytes as f64 / N as f64
        );
        drop(table);
    }
}

criterion_group!(
    benches,
    memory,
    track_hits,
    track_new_flows,
    lookup_latency,
    reaping
);
criterion_main!(benches);
