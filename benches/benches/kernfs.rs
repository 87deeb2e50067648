//! kernfs: what the dentry cache and the deferred DecRef cost and save, side by side.
//!
//! - `walk_16_deep`: `walk` of a 16-deep path of static directories, with the default cache
//!   (every dentry found in the tree) and with the cache off (every dentry rebuilt from its
//!   inode and dropped again, the seed's no-caching behaviour).
//! - `dynamic_lookup_churn`: `walk` cycling over 512 names of a dynamic directory whose
//!   children say keep, with a cache of 1000 (hits) and with the cache off (a new inode and
//!   dentry per walk, dropped through the deferred list).
//! - `open_close`: `open` + drop of a cached file three levels down (the close is an
//!   immediate DecRef).
//! - `decref`: one dentry-style DecRef that does not reach zero, immediately (take the
//!   filesystem lock for writing, decrement) against deferred (push on the list under its
//!   lock, take the list, then the same), on the same primitives kernfs uses.
//!
//!
//! After the criterion groups, under `cargo bench`, an interleaved pass (see
//! `refwatch_benches::interleaved`; `REFWATCH_BENCH_ROUNDS` rounds, default 30, 0 skips it)
//! runs each group's variants in alternating slots, and measures how two threads scale
//! (`kernfs/scaling_2t_1t`): `open`+close and `stat` of distinct files, each thread on files of
//! its own, every file held open elsewhere (so no close is the last), one thread alone against
//! two (the second a pinned helper), as throughput ratios.
//!
//! Run: `cargo bench -p refwatch-benches --bench kernfs -- --warm-up-time 1 --measurement-time 3`.

use criterion::{criterion_group, Criterion};
use refwatch::kernfs::testing::Proc;
use refwatch::kernfs::{File, Filesystem, Inodes, Options};
use refwatch::leak::{LeakMode, Registry};
use refwatch::refs::{RefCounter, Refs};
use refwatch::sync::{Arc, Mutex, RwLock};
use refwatch_benches::interleaved::{compare, repeat, rounds_from_env, Variant};
use refwatch_benches::{Clock, Cycle};
use std::hint::black_box;

fn options(cache_capacity: usize) -> Options {
    Options {
        cache_capacity,
        registry: Some(Arc::new(Registry::new(LeakMode::Off))),
    }
}

fn inodes() -> Inodes {
    Inodes::with_registry(&Arc::new(Registry::new(LeakMode::Off)))
}

fn deep_fs(cache_capacity: usize) -> (Filesystem, String) {
    let fs = Filesystem::with_options(inodes().dir(), options(cache_capacity)).unwrap();
    let mut path = String::new();
    for level in 0..16 {
        path.push_str(&format!("/d{level}"));
        fs.mkdir(&path).unwrap();
    }
    (fs, path)
}

fn walk_16_deep(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernfs/walk_16_deep");
    for (label, capacity) in [("cached", 1000), ("uncached", 0)] {
        let (fs, path) = deep_fs(capacity);
        group.bench_function(label, |b| {
            b.iter(|| black_box(fs.walk(black_box(&path)).unwrap()))
        });
    }
    group.finish();
}

fn dynamic_fs(cache_capacity: usize) -> Filesystem {
    // Every name's dentry is kept: the cache decides what lives.
    let root = Proc::new()
        .keep(|_| true)
        .contents(|_| Vec::new())
        .mount(&inodes());
    Filesystem::with_options(root, options(cache_capacity)).unwrap()
}

fn dynamic_lookup_churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernfs/dynamic_lookup_churn");
    let paths: Vec<String> = (0..512).map(|i| format!("/proc/{i}")).collect();
    for (label, capacity) in [("cache_1000", 1000), ("no_cache", 0)] {
        let fs = dynamic_fs(capacity);
        let mut i = 0;
        group.bench_function(label, |b| {
            b.iter(|| {
                i = (i + 1) % paths.len();
                black_box(fs.walk(&paths[i]).unwrap())
            })
        });
    }
    group.finish();
}

fn open_close(c: &mut Criterion) {
    let fs = Filesystem::with_options(inodes().dir(), options(1000)).unwrap();
    fs.mkdir("/a").unwrap();
    fs.mkdir("/a/b").unwrap();
    fs.create("/a/b/f").unwrap();
    c.bench_function("kernfs/open_close", |b| {
        b.iter(|| drop(black_box(fs.open("/a/b/f").unwrap())))
    });
}

struct Dentry;

/// A dentry-style reference and the primitives kernfs drops it with.
struct DecRef {
    fs_lock: RwLock<()>,
    deferred: Mutex<Vec<Arc<Refs<Dentry>>>>,
    refs: Arc<Refs<Dentry>>,
}

impl DecRef {
    fn new() -> Self {
        DecRef {
            fs_lock: RwLock::new(()),
            deferred: Mutex::new(Vec::new()),
            refs: Arc::new(Refs::new()),
        }
    }

    fn dec(&self, r: &Refs<Dentry>) {
        let _guard = self.fs_lock.write();
        r.dec_ref(|| panic!("the benchmark holds a reference: never destroyed"));
    }

    /// Take a reference, drop it at once under the filesystem lock.
    fn immediate(&self) {
        self.refs.inc_ref();
        self.dec(black_box(&self.refs));
    }

    /// Take a reference, push it on the deferred list, take the list, drop it.
    fn deferred(&self) {
        self.refs.inc_ref();
        self.deferred.lock().push(Arc::clone(&self.refs));
        let batch = std::mem::take(&mut *self.deferred.lock());
        for r in batch {
            self.dec(black_box(&r));
        }
    }
}

fn decref(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernfs/decref");
    let d = DecRef::new();
    group.bench_function("immediate", |b| b.iter(|| d.immediate()));
    group.bench_function("deferred", |b| b.iter(|| d.deferred()));
    group.finish();
}

criterion_group!(
    benches,
    walk_16_deep,
    dynamic_lookup_churn,
    open_close,
    decref
);
// ---------------------------------------------------------------------------------------------
// Interleaved comparisons
// ---------------------------------------------------------------------------------------------

/// Files per thread in the scaling pass: few enough that the cache (1000) keeps them all.
const FILES_PER_THREAD: usize = 128;

/// A filesystem with a directory of files per thread, every file held open.
struct DistinctFiles {
    fs: Filesystem,
    /// `paths[k]`: thread `k`'s files.
    paths: [Vec<String>; 2],
    /// One open file per path: the bench's closes never drop the last reference.
    _held: Vec<File>,
}

fn distinct_files() -> DistinctFiles {
    let fs = Filesystem::with_options(inodes().dir(), options(1000)).unwrap();
    let paths = [0, 1].map(|k| {
        fs.mkdir(&format!("/t{k}")).unwrap();
        let paths: Vec<String> = (0..FILES_PER_THREAD)
            .map(|i| format!("/t{k}/f{i}"))
            .collect();
        paths.iter().for_each(|p| fs.create(p).unwrap());
        paths
    });
    let held = paths
        .iter()
        .flatten()
        .map(|p| fs.open(p).unwrap())
        .collect();
    DistinctFiles {
        fs,
        paths,
        _held: held,
    }
}

/// A slot's work: `op` on the next `n` of `paths`, round and round.
fn on_paths<'a>(paths: &'a [String], op: impl Fn(&str) + Sync + 'a) -> impl Fn(u64) + Sync + 'a {
    let cycle = Cycle::new(paths);
    move |n| cycle.run(n, |p| op(p))
}

/// `walk` of the next `n` of `paths`.
fn walks<'a>(fs: &'a Filesystem, paths: &'a [String]) -> impl Fn(u64) + Sync + 'a {
    on_paths(paths, move |p| {
        black_box(fs.walk(p).unwrap());
    })
}

/// `open`+close and `stat` of distinct files: one thread against two, throughput.
fn interleaved_scaling(clock: Clock, rounds: usize) {
    let d = distinct_files();
    let fs = &d.fs;
    let open_close = |p: &str| drop(black_box(fs.open(p).unwrap()));
    let stat = |p: &str| {
        black_box(fs.stat(p).unwrap());
    };
    let [mine, theirs] = &d.paths;
    let (open_mine, open_theirs) = (on_paths(mine, open_close), on_paths(theirs, open_close));
    let (stat_mine, stat_theirs) = (on_paths(mine, stat), on_paths(theirs, stat));
    let variants = [
        Variant::alone("open_close_1t", &open_mine),
        Variant::beside("open_close_2t", &open_mine, &open_theirs),
        Variant::alone("stat_1t", &stat_mine),
        Variant::beside("stat_2t", &stat_mine, &stat_theirs),
    ];
    let c = compare("kernfs/scaling_2t_1t", clock, &variants, rounds, 1 << 14);
    println!("{}", c.table(&[]));
    for (op, target) in [("open_close", ">= 1.7"), ("stat", ">= 1.8")] {
        let (two, one) = (format!("{op}_2t"), format!("{op}_1t"));
        let label = format!("{op} of distinct files, throughput 2 threads / 1 thread");
        println!(
            "{}",
            c.target_line(&label, c.throughput_ratio(&two, &one), target)
        );
    }
    println!();
}

/// The criterion groups' variants, in alternating slots.
fn interleaved_groups(clock: Clock, rounds: usize) {
    let (cached, path) = deep_fs(1000);
    let (uncached, _) = deep_fs(0);
    let walk = |fs: &Filesystem| {
        black_box(fs.walk(black_box(&path)).unwrap());
    };
    let (walk_cached, walk_uncached) = (repeat(|| walk(&cached)), repeat(|| walk(&uncached)));
    let deep = [
        Variant::alone("cached", &walk_cached),
        Variant::alone("uncached", &walk_uncached),
    ];
    let c = compare("kernfs/walk_16_deep", clock, &deep, rounds, 1 << 12);
    println!("{}", c.table(&["cached"]));

    let paths: Vec<String> = (0..512).map(|i| format!("/proc/{i}")).collect();
    let (hits, misses) = (dynamic_fs(1000), dynamic_fs(0));
    let (churn_hits, churn_misses) = (walks(&hits, &paths), walks(&misses, &paths));
    let dynamic = [
        Variant::alone("cache_1000", &churn_hits),
        Variant::alone("no_cache", &churn_misses),
    ];
    let c = compare(
        "kernfs/dynamic_lookup_churn",
        clock,
        &dynamic,
        rounds,
        1 << 14,
    );
    println!("{}", c.table(&["cache_1000"]));

    let d = DecRef::new();
    let (immediate, deferred) = (repeat(|| d.immediate()), repeat(|| d.deferred()));
    let decrefs = [
        Variant::alone("immediate", &immediate),
        Variant::alone("deferred", &deferred),
    ];
    let c = compare("kernfs/decref", clock, &decrefs, rounds, 1 << 18);
    println!("{}", c.table(&["immediate"]));
}

fn main() {
    benches();
    if let Some(rounds) = rounds_from_env() {
        let clock = Clock::from_env();
        interleaved_groups(clock, rounds);
        interleaved_scaling(clock, rounds);
    }
    Criterion::default().configure_from_args().final_summary();
}
