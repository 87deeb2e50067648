//! shuttle runs of kernfs at a scale loom cannot explore: four threads doing random walks,
//! opens, closes, creates, renames, unlinks and checks of the tree on a deeper tree with a
//! small dentry cache and a dynamic directory, under PCT and random schedules.
//!
//! After every execution: no dead dentry in the tree or the cache, every live dentry is in
//! the tree (no file is open any more), the deferred list is empty, the cache still works
//! (walking as many kept names as it holds fills it with them, and walking them again costs
//! no lookup), and release leaves no inode and an empty leak registry.
//!
//! Run: `RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle cargo test -p refwatch-models --release --test shuttle_kernfs`
#![cfg(shuttle)]

use refwatch::kernfs::testing::{Lookups, Proc};
use refwatch::kernfs::{Error, File, Filesystem, Inodes, Kind, Options};
use refwatch::leak::{LeakMode, Registry};
use refwatch::sync::{thread, Arc};
use refwatch_models::shuttle_pct;

const THREADS: usize = 4;
const OPS: usize = 50;
/// Schedules per scheduler (PCT, then random).
const SCHEDULES: usize = 1000;
/// PCT bug depth: the number of priority changes per execution.
const DEPTH: usize = 3;
const CACHE: usize = 4;

/// A small deterministic generator: each thread's operations differ, the schedule varies.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

const DIRS: [&str; 4] = ["/a", "/a/b", "/a/b/c", "/a/b/c/d"];
const NAMES: [&str; 3] = ["x", "y", "z"];

/// The tree: `/proc` (the shared fixture; even names are kept), the directories of `DIRS`
/// and a file `f` in each. Returns the count of `/proc` lookups too.
fn tree(registry: &Arc<Registry>) -> (Inodes, Filesystem, Lookups) {
    let inodes = Inodes::with_registry(registry);
    let proc = Proc::new().keep(|n| n % 2 == 0);
    let lookups = proc.lookups();
    let root = proc.mount(&inodes);
    let fs = Filesystem::with_options(
        root,
        Options {
            cache_capacity: CACHE,
            registry: Some(Arc::clone(registry)),
        },
    )
    .unwrap();
    for dir in DIRS {
        fs.mkdir(dir).unwrap();
        fs.create(&format!("{dir}/f")).unwrap();
    }
    (inodes, fs, lookups)
}

/// One random operation; errors that a race can cause (a name created or removed by another
/// thread) are expected, anything else fails the run.
fn random_op(fs: &Filesystem, rng: &mut XorShift, open: &mut Vec<File>) {
    let dir = DIRS[rng.below(DIRS.len())];
    let name = NAMES[rng.below(NAMES.len())];
    let path = format!("{dir}/{name}");
    let racy = |r: Result<(), Error>| match r {
        Ok(()) | Err(Error::NotFound | Error::Exists | Error::IsDir | Error::NotDir) => {}
        Err(e) => panic!("{path}: unexpected {e}"),
    };
    match rng.below(10) {
        0 => racy(fs.create(&path)),
        1 => racy(fs.unlink(&path)),
        2 => {
            let to = format!("{}/{}", DIRS[rng.below(DIRS.len())], NAMES[rng.below(3)]);
            racy(fs.rename(&path, &to))
        }
        3 => match fs.open(&path) {
            Ok(f) => open.push(f),
            Err(Error::NotFound) => {}
            Err(e) => panic!("open {path}: {e}"),
        },
        4 if !open.is_empty() => {
            let i = rng.below(open.len());
            let f = open.swap_remove(i);
            let _ = f.read();
            f.close();
        }
        5 => {
            let pid = rng.below(6);
            assert_eq!(fs.stat(&format!("/proc/{pid}")).unwrap().kind, Kind::File);
        }
        6 => {
            let f = fs.open(&format!("{dir}/f")).unwrap();
            assert_eq!(f.stat().kind, Kind::File);
            open.push(f);
        }
        7 => {
            assert_eq!(fs.stat(&format!("{dir}/..")).unwrap().kind, Kind::Dir);
        }
        8 => {
            let entries = fs.readdir(dir).unwrap();
            assert!(entries.iter().any(|e| e.name == "f"));
        }
        // The tree's invariants hold whenever the filesystem lock is free: no dentry at
        // zero in a children map (before some walk takes a reference on one and the counter
        // panics), every child points back at its parent, every cached dentry is alive.
        _ => {
            fs.check_tree().expect("tree invariants between operations");
        }
    }
}

#[test]
fn random_walkers_on_a_deep_tree() {
    shuttle_pct("random_walkers_on_a_deep_tree", SCHEDULES, DEPTH, || {
        let registry = Arc::new(Registry::new(LeakMode::Warn));
        let (inodes, fs, lookups) = tree(&registry);
        let fs = Arc::new(fs);
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let fs = Arc::clone(&fs);
                thread::spawn(move || {
                    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x2545_f491));
                    let mut open = Vec::new();
                    for _ in 0..OPS {
                        random_op(&fs, &mut rng, &mut open);
                    }
                    drop(open);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let in_tree = fs.check_tree().expect("tree invariants");
        let stats = fs.stats();
        assert_eq!(stats.deferred, 0, "{stats:?}");
        assert_eq!(
            stats.live_dentries, in_tree,
            "no file is open: every live dentry is in the tree ({stats:?})"
        );
        // The cache after the run: walking CACHE kept names fills it with exactly them (the
        // directory /proc says not to keep its own dentry), and walking them again finds
        // every one cached, with no new lookup. (Checking `cached <= CACHE` could not fail:
        // the LRU enforces it by construction.)
        let kept: Vec<String> = (0..CACHE)
            .map(|i| format!("/proc/{}", 100 + 2 * i))
            .collect();
        for path in &kept {
            assert_eq!(fs.stat(path).unwrap().kind, Kind::File);
        }
        let before = lookups.get();
        for path in kept.iter().rev() {
            assert_eq!(fs.stat(path).unwrap().kind, Kind::File);
        }
        let stats = fs.stats();
        assert_eq!(
            lookups.get(),
            before,
            "a kept name just walked was not cached ({stats:?})"
        );
        assert_eq!(stats.cached_dentries, CACHE, "{stats:?}");
        assert_eq!(
            stats.live_dentries,
            fs.check_tree().expect("tree invariants")
        );
        let fs = Arc::try_unwrap(fs).expect("threads let go");
        fs.release();
        assert_eq!(inodes.live(), 0);
        let report = registry.report();
        assert!(report.is_empty(), "{report}");
    });
}
