//! Acceptance: walking 1,000,000 distinct names in a dynamic directory leaves memory flat.
//!
//! Every lookup makes a dentry and an inode. Half the names say keep (the dentry cache keeps
//! them, and evicts the least recently used), half do not (the dentry lives only for the
//! walk, seed 002's fix). The live dentry count must never exceed the cache capacity plus
//! the depth of the tree — the dentries one walk holds, root included (`/`, `/proc`,
//! `/proc/<n>`: 3) — and after release the leak registry must be empty.
#![cfg(not(any(loom, shuttle)))]

use refwatch::kernfs::testing::Proc;
use refwatch::kernfs::{Filesystem, Inodes, Kind, Options, DEFAULT_CACHE_CAPACITY};
use refwatch::leak::{LeakMode, Registry};
use std::sync::Arc;
use std::time::Instant;

const NAMES: u64 = 1_000_000;
/// Dentries on the path of one walk, root included.
const DEPTH: usize = 3;

#[test]
fn a_million_dynamic_names_keep_live_dentries_bounded() {
    let registry = Arc::new(Registry::new(LeakMode::Panic));
    let inodes = Inodes::with_registry(&registry);
    let root = Proc::new()
        .keep(|n| n % 2 == 0)
        .contents(|_| Vec::new())
        .mount(&inodes);
    let fs = Filesystem::with_options(
        root,
        Options {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            registry: Some(Arc::clone(&registry)),
        },
    )
    .unwrap();
    let bound = DEFAULT_CACHE_CAPACITY + DEPTH;

    let start = Instant::now();
    let mut path = String::with_capacity(16);
    for n in 0..NAMES {
        path.clear();
        path.push_str("/proc/");
        path.push_str(&n.to_string());
        assert_eq!(fs.walk(&path).map(|s| s.kind), Ok(Kind::File));
        if n % 100_000 == 0 {
            let stats = fs.stats();
            assert!(stats.live_dentries <= bound, "after {n} names: {stats:?}");
            assert_eq!(stats.deferred, 0);
        }
    }
    let elapsed = start.elapsed();

    let stats = fs.stats();
    // `peak_live_dentries` is a high-water mark updated at every dentry creation, so this
    // is "never exceeded", not "not exceeded at the end".
    assert!(stats.peak_live_dentries <= bound, "{stats:?}");
    // The cache is full and in use (the bound is not met by caching nothing).
    assert_eq!(stats.cached_dentries, DEFAULT_CACHE_CAPACITY);
    // root + /proc + the cached names: flat, whatever the number of names walked.
    assert_eq!(stats.live_dentries, 2 + DEFAULT_CACHE_CAPACITY);
    assert_eq!(inodes.live(), 2 + DEFAULT_CACHE_CAPACITY);
    eprintln!(
        "kernfs: walked {NAMES} names in {elapsed:.2?} ({:.0} ns/walk); peak live dentries {} (bound {bound})",
        elapsed.as_nanos() as f64 / NAMES as f64,
        stats.peak_live_dentries
    );

    fs.release();
    assert_eq!(inodes.live(), 0);
    assert!(registry.check().is_empty());
}
