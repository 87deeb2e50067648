//! loom models of kernfs's deferred DecRef on a tiny tree.
//!
//! Each model runs three actors on one filesystem — the main thread and two spawned threads
//! — then checks, after joining: no deadlock (loom fails the model if every thread is
//! blocked), no dead dentry left in a children map or in the cache (`check_tree`), the
//! dentry and inode counts the scenario predicts, an empty deferred list, and, after release,
//! an empty leak registry with no inode left (loom also fails the model if a `Track`ed
//! dentry or inode, or a loom `Arc`, is never freed). A double destruction panics in the
//! registry (`unregistered but not registered`) or in `Refs` (`dec_ref on an object with no
//! references`).
//!
//! Every operation takes dozens of lock and atomic steps, so even two actors are beyond
//! exhaustive search (unbounded runs did not finish in 5 minutes): each model runs with a
//! preemption bound, 3 for three actors and 4 for two, chosen so that the suite takes
//! seconds and every mutant in `models/mutants/kernfs_*.patch` is still found.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p refwatch-models --release --test loom_kernfs`
#![cfg(loom)]

use refwatch::kernfs::{Error, Filesystem, InodeRef, Inodes, Kind, Options, RegularFile};
use refwatch::leak::{LeakMode, Registry};
use refwatch::sync::{thread, Arc};
use refwatch_models::loom_model;

/// The three-actor models: bound 3 takes ~3 s each, bound 4 ~20-40 s, unbounded does not
/// finish in 5 minutes (each operation is dozens of lock and atomic steps).
const BOUND: Option<usize> = Some(3);
/// The two-actor model: bound 4 takes ~6 s; unbounded does not finish in 5 minutes.
const BOUND_TWO_ACTORS: Option<usize> = Some(4);

struct Tree {
    registry: Arc<Registry>,
    inodes: Inodes,
    fs: Arc<Filesystem>,
}

/// `/d/f` and `/d/g` (static, kept) with no dentry cache, so a dentry lives only while an
/// operation or an open file holds it.
fn static_tree() -> Tree {
    let registry = Arc::new(Registry::new(LeakMode::Warn));
    let inodes = Inodes::with_registry(&registry);
    let root = inodes.dir();
    let d = inodes.dir();
    d.add_child("f", inodes.file(b"f".to_vec())).unwrap();
    d.add_child("g", inodes.file(b"g".to_vec())).unwrap();
    root.add_child("d", d).unwrap();
    let fs = Filesystem::with_options(
        root,
        Options {
            cache_capacity: 0,
            registry: Some(Arc::clone(&registry)),
        },
    )
    .unwrap();
    Tree {
        registry,
        inodes,
        fs: Arc::new(fs),
    }
}

/// `/proc/<n>`: a dynamic directory (keep() == false) whose children are fresh files with
/// keep() == false, and a cache that could hold them all — nothing may be cached.
fn dynamic_tree() -> Tree {
    let registry = Arc::new(Registry::new(LeakMode::Warn));
    let inodes = Inodes::with_registry(&registry);
    let root = inodes.dir();
    let files = inodes.clone();
    root.add_child(
        "proc",
        inodes.dynamic_dir(
            move |name| match name {
                "1" | "2" => Ok(InodeRef::new(RegularFile::new(
                    files.base(Kind::File, 0o444).keep(false),
                    name.as_bytes().to_vec(),
                ))),
                _ => Err(Error::NotFound),
            },
            |_| {},
        ),
    )
    .unwrap();
    let fs = Filesystem::with_options(
        root,
        Options {
            cache_capacity: 8,
            registry: Some(Arc::clone(&registry)),
        },
    )
    .unwrap();
    Tree {
        registry,
        inodes,
        fs: Arc::new(fs),
    }
}

/// The checks every model ends with; `inodes` is how many inodes the tree should hold.
fn check_quiescent_and_release(tree: Tree, inodes: usize) {
    let Tree {
        registry,
        inodes: made,
        fs,
    } = tree;
    assert_eq!(fs.check_tree(), Ok(1), "only the root is left in the tree");
    let stats = fs.stats();
    assert_eq!(stats.live_dentries, 1, "only the root is alive: {stats:?}");
    assert_eq!(stats.deferred, 0, "every deferred DecRef was processed");
    assert_eq!(stats.cached_dentries, 0);
    assert_eq!(made.live(), inodes, "inodes held by the inode tree");
    let fs = Arc::try_unwrap(fs).expect("every thread let go of the filesystem");
    fs.release();
    assert_eq!(made.live(), 0, "release drops every inode");
    let report = registry.report();
    assert!(report.is_empty(), "{report}");
}

/// The last close of `/d/f` (the dentry reaches zero, leaves `/d`, then drops `/d`, which
/// reaches zero and drops the root) races a lookup of `/d/g` under the same parent and an
/// unlink of `/d/f`.
#[test]
fn last_close_races_lookup_and_unlink() {
    loom_model("last_close_races_lookup_and_unlink", BOUND, || {
        let tree = static_tree();
        let file = tree.fs.open("/d/f").unwrap();
        let closer = thread::spawn(move || {
            assert_eq!(file.read().unwrap(), b"f", "open files outlive unlink");
            drop(file);
        });
        let fs = Arc::clone(&tree.fs);
        let walker = thread::spawn(move || {
            assert_eq!(fs.stat("/d/g").unwrap().kind, Kind::File);
        });
        tree.fs.unlink("/d/f").unwrap();
        closer.join().unwrap();
        walker.join().unwrap();
        assert_eq!(tree.fs.stat("/d/f"), Err(Error::NotFound));
        check_quiescent_and_release(tree, 3); // root, d, g
    });
}

/// The last close of `/d/f` races a walk that opens and closes `/d/f` (before or after it
/// moves) and a rename of `/d/f` over `/d/g`.
#[test]
fn last_close_races_walk_and_rename() {
    loom_model("last_close_races_walk_and_rename", BOUND, || {
        let tree = static_tree();
        let file = tree.fs.open("/d/f").unwrap();
        let ino = file.stat().ino;
        let closer = thread::spawn(move || drop(file));
        let fs = Arc::clone(&tree.fs);
        let walker = thread::spawn(move || match fs.open("/d/f") {
            Ok(f) => assert_eq!(f.stat().ino, ino),
            Err(e) => assert_eq!(e, Error::NotFound, "renamed away first"),
        });
        tree.fs.rename("/d/f", "/d/g").unwrap();
        closer.join().unwrap();
        walker.join().unwrap();
        assert_eq!(tree.fs.stat("/d/g").unwrap().ino, ino);
        check_quiescent_and_release(tree, 3); // root, d, and f's inode as g
    });
}

/// A walker looks up a transient name in a dynamic directory — its lookup dentries go on the
/// deferred list under the filesystem lock — while the main thread opens another, reads it
/// and closes it, processing the deferred list. Lookup dentries live only for their
/// operation (or as long as the open file).
#[test]
fn dynamic_lookups_are_dropped_after_the_operation() {
    loom_model(
        "dynamic_lookups_are_dropped_after_the_operation",
        BOUND_TWO_ACTORS,
        || {
            let tree = dynamic_tree();
            let fs = Arc::clone(&tree.fs);
            let walker = thread::spawn(move || {
                assert_eq!(fs.stat("/proc/1").unwrap().kind, Kind::File);
            });
            let file = tree.fs.open("/proc/2").unwrap();
            assert_eq!(file.read().unwrap(), b"2");
            drop(file);
            walker.join().unwrap();
            check_quiescent_and_release(tree, 2); // root, proc
        },
    );
}
