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
//! Run: `cargo bench -p refwatch-benches --bench kernfs -- --warm-up-time 1 --measurement-time 3`.

use criterion::{criterion_group, criterion_main, Criterion};
use refwatch::kernfs::testing::Proc;
use refwatch::kernfs::{Filesystem, Inodes, Options};
use refwatch::leak::{LeakMode, Registry};
use refwatch::refs::{RefCounter, Refs};
use refwatch::sync::{Arc, Mutex, RwLock};
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

fn decref(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernfs/decref");
    let fs_lock = RwLock::new(());
    let deferred: Mutex<Vec<Arc<Refs<Dentry>>>> = Mutex::new(Vec::new());
    let refs = Arc::new(Refs::<Dentry>::new());
    let dec = |r: &Refs<Dentry>| {
        let _guard = fs_lock.write();
        r.dec_ref(|| panic!("the benchmark holds a reference: never destroyed"));
    };
    group.bench_function("immediate", |b| {
        b.iter(|| {
            refs.inc_ref();
            dec(black_box(&refs));
        })
    });
    group.bench_function("deferred", |b| {
        b.iter(|| {
            refs.inc_ref();
            deferred.lock().push(Arc::clone(&refs));
            let batch = std::mem::take(&mut *deferred.lock());
            for r in batch {
                dec(black_box(&r));
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    walk_16_deep,
    dynamic_lookup_churn,
    open_close,
    decref
);
criterion_main!(benches);
