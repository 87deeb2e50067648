//! loom models of kernfs's deferred DecRef, dentry cache and leak registration on tiny trees.
//!
//! Each model runs two or three actors on one filesystem — the main thread and one or two
//! spawned threads — then checks, after joining: no deadlock (loom fails the model if every
//! thread is blocked), no dead dentry left in a children map or in the cache (`check_tree`),
//! exactly the dentries, cached dentries and inodes the scenario predicts, every live dentry
//! in the tree once no file is open, an empty deferred list, and, after release, an empty
//! leak registry with no inode left (loom also fails the model if a `Track`ed dentry or inode,
//! or a loom `Arc`, is never freed). A double destruction panics in the registry
//! (`unregistered but not registered`) or in `Refs` (`dec_ref on an object with no
//! references`).
//!
//! Every operation takes dozens of lock and atomic steps, so two actors that each run a few
//! operations are beyond exhaustive search (unbounded runs did not finish in 5 minutes):
//! those models run with a preemption bound, chosen so that the model takes seconds and each
//! of its mutants in `models/mutants/` is still found with room to spare (the deepest needs
//! 2). The two models whose second actor does one or two small things run unbounded.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p refwatch-models --release --test loom_kernfs`
#![cfg(loom)]

use refwatch::kernfs::testing::Proc;
use refwatch::kernfs::{Error, File, Filesystem, InodeRef, Inodes, Kind, Options};
use refwatch::leak::{LeakMode, Registry};
use refwatch::sync::{thread, Arc};
use refwatch_models::loom_model;

/// The three-actor models: bound 3 takes ~3-10 s each, bound 4 ~20-60 s, unbounded does not
/// finish in 5 minutes (each operation is dozens of lock and atomic steps).
const BOUND: Option<usize> = Some(3);
/// The two-actor models: bound 4 takes ~6 s; unbounded does not finish in 5 minutes.
const BOUND_TWO_ACTORS: Option<usize> = Some(4);

struct Tree {
    registry: Arc<Registry>,
    inodes: Inodes,
    fs: Arc<Filesystem>,
}

/// A filesystem on `root` (made by `inodes`) registering with `registry`.
fn mount(registry: Arc<Registry>, inodes: Inodes, root: InodeRef, cache_capacity: usize) -> Tree {
    let fs = Filesystem::with_options(
        root,
        Options {
            cache_capacity,
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

fn checked_inodes() -> (Arc<Registry>, Inodes) {
    let registry = Arc::new(Registry::new(LeakMode::Warn));
    let inodes = Inodes::with_registry(&registry);
    (registry, inodes)
}

/// `/d/f` and `/d/g` (static, kept) with no dentry cache, so a dentry lives only while an
/// operation or an open file holds it.
fn static_tree() -> Tree {
    let (registry, inodes) = checked_inodes();
    let root = inodes.dir();
    let d = inodes.dir();
    d.add_child("f", inodes.file(b"f".to_vec())).unwrap();
    d.add_child("g", inodes.file(b"g".to_vec())).unwrap();
    root.add_child("d", d).unwrap();
    mount(registry, inodes, root, 0)
}

/// `/proc/<n>` for n < 3 (the shared fixture): a dynamic directory (keep() == false) whose
/// children are fresh files with keep() == false, and a cache that could hold them all.
fn dynamic_tree() -> Tree {
    let (registry, inodes) = checked_inodes();
    let root = Proc::new().names_below(3).mount(&inodes);
    mount(registry, inodes, root, 8)
}

/// What a quiescent filesystem (no operation running, no file open) should hold.
struct Expect {
    /// Dentries in the tree, root included; with no file open, every live dentry.
    dentries: usize,
    /// Dentries the cache holds.
    cached: usize,
    /// Inodes alive (held by the inode tree and by dentries).
    inodes: usize,
}

/// The checks every model ends with, before release. Run it before any operation after the
/// join: an operation processes the deferred list, which would hide a DecRef left on it.
fn check_quiescent(tree: &Tree, expect: Expect) {
    let stats = tree.fs.stats();
    assert_eq!(stats.deferred, 0, "every deferred DecRef was processed");
    assert_eq!(
        tree.fs.check_tree(),
        Ok(expect.dentries),
        "the tree's invariants and size ({stats:?})"
    );
    assert_eq!(
        stats.live_dentries, expect.dentries,
        "no file is open: every live dentry is in the tree ({stats:?})"
    );
    assert_eq!(
        stats.cached_dentries, expect.cached,
        "the cache's size ({stats:?})"
    );
    assert_eq!(tree.inodes.live(), expect.inodes, "inodes alive");
}

/// The end of most models: the quiescent checks, then the release.
fn finish(tree: Tree, expect: Expect) {
    check_quiescent(&tree, expect);
    release(tree);
}

/// Releases the filesystem: every dentry and inode goes, and the registry ends empty.
fn release(tree: Tree) {
    let Tree {
        registry,
        inodes,
        fs,
    } = tree;
    let fs = Arc::try_unwrap(fs).expect("every thread let go of the filesystem");
    fs.release();
    assert_eq!(inodes.live(), 0, "release drops every inode");
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
        check_quiescent(
            &tree,
            Expect {
                dentries: 1,
                cached: 0,
                inodes: 3, // root, d, g
            },
        );
        assert_eq!(tree.fs.stat("/d/f"), Err(Error::NotFound));
        release(tree);
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
        check_quiescent(
            &tree,
            Expect {
                dentries: 1,
                cached: 0,
                inodes: 3, // root, d, and f's inode as g
            },
        );
        assert_eq!(tree.fs.stat("/d/g").unwrap().ino, ino);
        release(tree);
    });
}

/// The last close of `/d/f` (the dentry reaches zero, then `/d`, then nothing holds the
/// tree but the root) races a check of the tree from another thread: whenever the filesystem
/// lock is free, every dentry in a children map has a reference. A dentry's count drops to
/// zero only with the filesystem lock held, in the same critical section in which it leaves
/// the tree (dropping it first and locking only to destroy, mutant
/// `kernfs_dec_ref_outside_the_tree_lock`, leaves a dentry at zero in the tree for a moment;
/// any walk that took a reference on it then would panic in the counter, so this model's
/// other thread only looks). Two small actors: unbounded.
#[test]
fn last_close_races_a_check_of_the_tree() {
    loom_model("last_close_races_a_check_of_the_tree", None, || {
        let tree = static_tree();
        let file = tree.fs.open("/d/f").unwrap();
        let checker = {
            let fs = Arc::clone(&tree.fs);
            thread::spawn(move || {
                let in_tree = fs.check_tree().expect("no dentry at zero in the tree");
                // Root, d and f; root and d (f gone, its reference on d not yet
                // dropped); or the root alone.
                assert!((1..=3).contains(&in_tree), "{in_tree} dentries in the tree");
            })
        };
        drop(file);
        checker.join().unwrap();
        finish(
            tree,
            Expect {
                dentries: 1,
                cached: 0,
                inodes: 4, // root, d, f, g
            },
        );
    });
}

/// Two closes of `/d/f` race each other and a walk of the same name: each close drops its
/// reference by the lock-free fast path unless it is the last, and the last takes the
/// filesystem lock, destroys the dentry and takes it out of `/d`'s children. Whatever the
/// order, the dentry reaches zero once, under the lock: after the join it is gone from the
/// tree, and `/d` with it. (A fast path that checks the count and then subtracts lets both
/// closes take it to zero with nobody destroying, mutant `refs_dec_unless_last_check_then_sub`:
/// a dead dentry stays in the tree. The walker only looks, so it cannot trip over a dentry at
/// zero in the counter before the model's own check sees it.)
#[test]
fn closes_race_to_the_last_reference() {
    loom_model("closes_race_to_the_last_reference", BOUND, || {
        let tree = static_tree();
        let first = tree.fs.open("/d/f").unwrap();
        let second = tree.fs.open("/d/f").unwrap();
        let closer = thread::spawn(move || drop(first));
        let fs = Arc::clone(&tree.fs);
        let walker = thread::spawn(move || {
            assert_eq!(fs.stat("/d/f").unwrap().kind, Kind::File);
        });
        drop(second);
        closer.join().unwrap();
        walker.join().unwrap();
        finish(
            tree,
            Expect {
                dentries: 1,
                cached: 0,
                inodes: 4, // root, d, f, g
            },
        );
    });
}

/// The filesystem lock's shards: two readers on different shards each read a pair of
/// counters that a writer bumps one after the other, holding the lock for writing. Whatever
/// the interleaving, a reader sees both bumped or neither. (The counters are read with
/// updates that add nothing, so only a writer inside a reader's critical section can split a
/// pair: the mutant `sharded_lock_writer_skips_a_shard`, a writer that leaves the last shard
/// out, needs the reader on that shard preempted between its two reads.) Small: unbounded.
#[test]
fn sharded_lock_keeps_writers_out_of_every_shard() {
    use refwatch::sync::atomic::{AtomicUsize, Ordering};
    use refwatch::sync::ShardedRwLock;
    loom_model(
        "sharded_lock_keeps_writers_out_of_every_shard",
        None,
        || {
            let lock = Arc::new(ShardedRwLock::with_shards(2));
            let pair = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
            let readers: Vec<_> = (0..2)
                .map(|shard| {
                    let (lock, pair) = (Arc::clone(&lock), Arc::clone(&pair));
                    thread::spawn(move || {
                        let _guard = lock.read_shard(shard);
                        let first = pair.0.fetch_add(0, Ordering::Relaxed);
                        let second = pair.1.fetch_add(0, Ordering::Relaxed);
                        assert_eq!(first, second, "a writer ran inside shard {shard}'s reader");
                    })
                })
                .collect();
            {
                let _guard = lock.write();
                pair.0.fetch_add(1, Ordering::Relaxed);
                pair.1.fetch_add(1, Ordering::Relaxed);
            }
            for r in readers {
                r.join().unwrap();
            }
        },
    );
}

/// A walker looks up a transient name in a dynamic directory — its lookup dentries go on the
/// deferred list under the filesystem lock — while the main thread opens another, reads it
/// and closes it, processing the deferred list. Lookup dentries live only for their
/// operation (or as long as the open file), and none is cached: the cache could hold them
/// all, but their inodes say not to keep them.
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
            finish(
                tree,
                Expect {
                    dentries: 1,
                    cached: 0,
                    inodes: 2, // root, proc
                },
            );
        },
    );
}

/// Leak checking is turned off while the filesystem makes a file and its dentry (bug 1 of
/// issue 10). The filesystem and its inodes read the mode once, when they were made, so
/// everything they make registers whatever the mode is now, and everything registered is
/// unregistered when destroyed: before release, the registry holds exactly the live dentries
/// and inodes; after it, nothing. (Re-reading the mode at registration, mutant
/// `kernfs_register_rereads_mode`, leaves the new file unregistered, and its destruction
/// would panic in the registry with the filesystem lock held; the cache keeps the new
/// dentries alive, so the model sees the missing registrations first.) The other thread does
/// two things, so the model is small enough to run unbounded.
#[test]
fn leak_mode_change_keeps_the_registry_consistent() {
    loom_model(
        "leak_mode_change_keeps_the_registry_consistent",
        None,
        || {
            let (registry, inodes) = checked_inodes();
            let root = inodes.dir();
            root.add_child("d", inodes.dir()).unwrap();
            let tree = mount(registry, inodes, root, 4);
            // Turns checking off, then reads the registry while kernfs may still be
            // registering (without that read, nothing here would race with the main thread
            // but the mode, which the fixed code reads only before the spawn, and loom would
            // have one interleaving to explore).
            let toggler = {
                let registry = Arc::clone(&tree.registry);
                thread::spawn(move || {
                    registry.set_mode(LeakMode::Off);
                    registry.live_count()
                })
            };
            tree.fs.create("/d/x").unwrap();
            assert_eq!(tree.fs.stat("/d/x").unwrap().kind, Kind::File);
            let seen = toggler.join().unwrap();
            // Before the spawn: the root's dentry and inode, d's inode. Then the create
            // registers x's inode, d's dentry and x's dentry.
            assert!((3..=6).contains(&seen), "{seen} registered");
            let live = tree.fs.stats().live_dentries + tree.inodes.live();
            let registered = tree.registry.live_count();
            if registered != live {
                // Releasing would destroy an unregistered object and panic in the registry
                // while this assertion unwinds; keep the model's own failure the only one.
                std::mem::forget(tree);
                panic!("{registered} objects registered, {live} alive: the mode was read twice");
            }
            finish(
                tree,
                Expect {
                    dentries: 3, // root, d, x: all kept, d and x cached
                    cached: 2,
                    inodes: 3,
                },
            );
        },
    );
}

/// `/d/f` (a static file) open, and its inode replaced in the directory and invalidated —
/// as when a `/proc/<pid>` is reused — while the file is closed and another thread opens the
/// name. The opener gets the old file (looked up before the invalidation) or the new one; a
/// lookup that finds the stale dentry takes it out of the tree and makes a new one, which
/// must keep its place when the old one is destroyed later (seed 002's delete-by-name,
/// mutant `kernfs_destroy_removes_by_name`, takes the new one out).
#[test]
fn invalidate_races_lookup_and_close() {
    loom_model("invalidate_races_lookup_and_close", BOUND, || {
        let (registry, inodes) = checked_inodes();
        let root = inodes.dir();
        let d = inodes.dir();
        let f = inodes.file(b"old".to_vec());
        d.add_child("f", f.clone()).unwrap();
        root.add_child("d", d.clone()).unwrap();
        let tree = mount(registry, inodes, root, 0);
        let file = tree.fs.open("/d/f").unwrap();
        let closer = thread::spawn(move || {
            assert_eq!(file.read().unwrap(), b"old");
            drop(file);
        });
        let opener = {
            let fs = Arc::clone(&tree.fs);
            // NotFound: the name was looked up between the replacement's two steps.
            thread::spawn(move || match fs.open("/d/f") {
                Ok(f) => Some(f),
                Err(e) => {
                    assert_eq!(e, Error::NotFound);
                    None
                }
            })
        };
        // The owner of the inode tree replaces f, then says the old one is stale.
        let new = tree.inodes.file(b"new".to_vec());
        d.unlink("f", &f).unwrap();
        d.new_link("f", &new).map(drop).unwrap();
        f.base().invalidate();
        drop((d, f, new));
        closer.join().unwrap();
        let opened = opener.join().unwrap();
        if let Some(opened) = opened {
            let contents = opened.read().unwrap();
            assert!(contents == b"new" || contents == b"old", "{contents:?}");
            // The opener's dentry is in the tree: the new one, or the old one (stale, but no
            // lookup has found it since the invalidation). Root, d, f.
            let stats = tree.fs.stats();
            assert_eq!(
                tree.fs.check_tree(),
                Ok(3),
                "the opener's dentry lost its place ({stats:?})"
            );
            assert_eq!(stats.live_dentries, 3, "{stats:?}");
        }
        check_quiescent(
            &tree,
            Expect {
                dentries: 1,
                cached: 0,
                inodes: 3, // root, d, the new f: the old one died with its last dentry
            },
        );
        let again = tree.fs.open("/d/f").unwrap();
        assert_eq!(
            again.read().unwrap(),
            b"new",
            "the stale dentry is looked up again"
        );
        drop(again);
        finish(
            tree,
            Expect {
                dentries: 1,
                cached: 0,
                inodes: 3,
            },
        );
    });
}

/// The empty directory `/d/e`, open, is removed while the open directory is closed and
/// another thread makes `/d/e` again and opens it. The new directory must keep its place in
/// the tree when the old one is destroyed (mutant `kernfs_destroy_removes_by_name` takes it
/// out), the old one's inode goes with its last dentry, and the parent goes when its last
/// child does.
#[test]
fn rmdir_races_mkdir_and_close() {
    loom_model("rmdir_races_mkdir_and_close", BOUND, || {
        let (registry, inodes) = checked_inodes();
        let root = inodes.dir();
        let d = inodes.dir();
        // Held until the end, so that no new inode can take its address (its inode number).
        let old_e = inodes.dir();
        d.add_child("e", old_e.clone()).unwrap();
        root.add_child("d", d).unwrap();
        let tree = mount(registry, inodes, root, 0);
        let dir = tree.fs.open("/d/e").unwrap();
        let old = old_e.ino();
        let closer = thread::spawn(move || {
            assert_eq!(dir.readdir().unwrap(), Vec::new());
            drop(dir);
        });
        let maker = {
            let fs = Arc::clone(&tree.fs);
            thread::spawn(move || {
                match fs.mkdir("/d/e") {
                    Ok(()) | Err(Error::Exists) => {}
                    Err(e) => panic!("mkdir /d/e: {e}"),
                }
                fs.open("/d/e").ok()
            })
        };
        match tree.fs.rmdir("/d/e") {
            Ok(()) | Err(Error::NotFound) => {}
            Err(e) => panic!("rmdir /d/e: {e}"),
        }
        closer.join().unwrap();
        let opened = maker.join().unwrap();
        let in_tree = tree.fs.check_tree().expect("tree invariants");
        let stats = tree.fs.stats();
        match &opened {
            // The maker's open found the new directory, which is in the tree.
            Some(f) if f.stat().ino != old => {
                assert_eq!(in_tree, 3, "the new /d/e lost its place ({stats:?})");
                assert_eq!(stats.live_dentries, 3, "{stats:?}");
            }
            // The maker opened the old directory before it was removed: it holds a dentry
            // outside the tree (and, through it, /d in the tree).
            Some(_) => {
                assert_eq!(in_tree, 2, "{stats:?}");
                assert_eq!(stats.live_dentries, 3, "{stats:?}");
            }
            // The maker's mkdir came first (Exists), the removal before its open.
            None => assert_eq!(in_tree, 1, "{stats:?}"),
        }
        let exists = opened.as_ref().is_some_and(|f| f.stat().ino != old);
        drop((opened, old_e));
        check_quiescent(
            &tree,
            Expect {
                dentries: 1,
                cached: 0,
                inodes: if exists { 3 } else { 2 }, // root, d, and the new e
            },
        );
        assert_eq!(tree.fs.stat("/d/e").is_ok(), exists);
        release(tree);
    });
}

/// `/d/f` gets a second name `/d/h` (a hard link) while `/d/f` is unlinked, its open file
/// closed, and another thread opens `/d/h`. Whatever the order, the inode lives exactly as
/// long as a name or an open file holds it, and an open `/d/h` reads the file.
#[test]
fn link_races_unlink_and_close() {
    loom_model("link_races_unlink_and_close", BOUND, || {
        let tree = static_tree();
        let file = tree.fs.open("/d/f").unwrap();
        let closer = thread::spawn(move || {
            assert_eq!(file.read().unwrap(), b"f");
            drop(file);
        });
        let linker = {
            let fs = Arc::clone(&tree.fs);
            thread::spawn(move || match fs.link("/d/f", "/d/h") {
                Ok(()) => {
                    let h: File = fs.open("/d/h").unwrap();
                    assert_eq!(h.read().unwrap(), b"f");
                    true
                }
                Err(e) => {
                    assert_eq!(e, Error::NotFound, "unlinked first");
                    false
                }
            })
        };
        tree.fs.unlink("/d/f").unwrap();
        closer.join().unwrap();
        let linked = linker.join().unwrap();
        check_quiescent(
            &tree,
            Expect {
                dentries: 1,
                cached: 0,
                inodes: if linked { 4 } else { 3 }, // root, d, g, and f's inode as h
            },
        );
        assert_eq!(tree.fs.stat("/d/h").is_ok(), linked);
        assert_eq!(tree.fs.stat("/d/f"), Err(Error::NotFound));
        release(tree);
    });
}

/// The directory `/a/d`, with `/a/d/f` open, moves to `/b/d` while the file is closed and
/// another thread walks `/a/d/f` or `/b/d/f`. The moved directory's dentry changes parent:
/// its reference on `/a` is dropped after the rename's lock is released, and `/a` and `/b`
/// live exactly as long as a child dentry holds them.
#[test]
fn directory_rename_races_lookup_and_close() {
    loom_model("directory_rename_races_lookup_and_close", BOUND, || {
        let (registry, inodes) = checked_inodes();
        let root = inodes.dir();
        let (a, b, d) = (inodes.dir(), inodes.dir(), inodes.dir());
        d.add_child("f", inodes.file(b"f".to_vec())).unwrap();
        a.add_child("d", d).unwrap();
        root.add_child("a", a).unwrap();
        root.add_child("b", b).unwrap();
        let tree = mount(registry, inodes, root, 0);
        let file = tree.fs.open("/a/d/f").unwrap();
        let ino = file.stat().ino;
        let closer = thread::spawn(move || drop(file));
        let walker = {
            let fs = Arc::clone(&tree.fs);
            thread::spawn(move || {
                let before = fs.stat("/a/d/f").map(|s| s.ino);
                let after = fs.stat("/b/d/f").map(|s| s.ino);
                match (before, after) {
                    (Ok(i), Err(Error::NotFound)) | (Err(Error::NotFound), Ok(i)) => {
                        assert_eq!(i, ino)
                    }
                    (Ok(i), Ok(j)) => assert_eq!((i, j), (ino, ino), "moved in between"),
                    other => panic!("/a/d/f then /b/d/f: {other:?}"),
                }
            })
        };
        tree.fs.rename("/a/d", "/b/d").unwrap();
        closer.join().unwrap();
        walker.join().unwrap();
        check_quiescent(
            &tree,
            Expect {
                dentries: 1,
                cached: 0,
                inodes: 5, // root, a, b, d, f
            },
        );
        assert_eq!(tree.fs.stat("/b/d/f").unwrap().ino, ino);
        assert_eq!(tree.fs.stat("/a/d"), Err(Error::NotFound));
        release(tree);
    });
}

/// The dentry cache with room for two, and three kept dentries to hold (`/d`, `/d/a`,
/// `/d/b`): two threads walk `/d/a` at once while the main thread opens `/d/b`, so an entry
/// is evicted while other operations may be using it. The open succeeds and reads the file;
/// afterwards the cache is full — exactly two entries, alive — and every live dentry is in
/// the tree.
#[test]
fn cache_eviction_races_lookups() {
    loom_model("cache_eviction_races_lookups", BOUND, || {
        let (registry, inodes) = checked_inodes();
        let root = inodes.dir();
        let d = inodes.dir();
        d.add_child("a", inodes.file(b"a".to_vec())).unwrap();
        d.add_child("b", inodes.file(b"b".to_vec())).unwrap();
        root.add_child("d", d).unwrap();
        let tree = mount(registry, inodes, root, 2);
        let walkers: Vec<_> = (0..2)
            .map(|_| {
                let fs = Arc::clone(&tree.fs);
                thread::spawn(move || assert_eq!(fs.stat("/d/a").unwrap().kind, Kind::File))
            })
            .collect();
        let b = tree.fs.open("/d/b").expect("open of a name that exists");
        assert_eq!(b.read().unwrap(), b"b");
        drop(b);
        for w in walkers {
            w.join().unwrap();
        }
        let stats = tree.fs.stats();
        let in_tree = tree.fs.check_tree().expect("tree invariants");
        assert_eq!(stats.deferred, 0, "{stats:?}");
        assert_eq!(stats.cached_dentries, 2, "the cache is full ({stats:?})");
        assert_eq!(
            stats.live_dentries, in_tree,
            "every live dentry is in the tree ({stats:?})"
        );
        // The cache holds /d/a and /d/b (then /d lives as their parent) or /d and one of them.
        assert!(in_tree == 3 || in_tree == 4, "{stats:?}");
        release(tree);
    });
}

/// Two walks of the kept `/d/f`, with a cache, race the invalidation of its inode. A walk
/// that finds the dentry stale takes it out of the tree and out of the cache, and makes a new
/// one; the walk that made the old one must not cache it after that (it did, found by this
/// model: the dentry was cached after the children lock was released, mutant
/// `kernfs_cache_after_children_unlock`). Afterwards every live dentry is in the tree.
#[test]
fn invalidate_races_cached_lookups() {
    loom_model("invalidate_races_cached_lookups", BOUND, || {
        let (registry, inodes) = checked_inodes();
        let root = inodes.dir();
        let d = inodes.dir();
        let f = inodes.file(b"f".to_vec());
        d.add_child("f", f.clone()).unwrap();
        root.add_child("d", d).unwrap();
        let tree = mount(registry, inodes, root, 4);
        let walkers: Vec<_> = (0..2)
            .map(|_| {
                let fs = Arc::clone(&tree.fs);
                thread::spawn(move || assert_eq!(fs.stat("/d/f").unwrap().kind, Kind::File))
            })
            .collect();
        f.base().invalidate();
        for w in walkers {
            w.join().unwrap();
        }
        drop(f);
        let stats = tree.fs.stats();
        let in_tree = tree.fs.check_tree().expect("tree invariants");
        assert_eq!(
            stats.live_dentries, in_tree,
            "no file is open: every live dentry is in the tree ({stats:?})"
        );
        // Root, d and one dentry for f, all cached but the root: the walks after the
        // invalidation each replaced the one before.
        assert_eq!(in_tree, 3, "{stats:?}");
        assert_eq!(stats.cached_dentries, 2, "{stats:?}");
        assert_eq!(stats.deferred, 0, "{stats:?}");
        release(tree);
    });
}
