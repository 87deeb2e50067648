//! Unit tests of the filesystem's contract. Concurrency is the models' job (`models/`),
//! random operation sequences the proptests' (`proptests/tests/kernfs.rs`).

use super::testing::Proc;
use super::*;
use crate::leak::{LeakMode, Registry};
use crate::sync::Arc;

struct Setup {
    registry: Arc<Registry>,
    inodes: Inodes,
}

fn setup() -> Setup {
    let registry = Arc::new(Registry::new(LeakMode::Warn));
    let inodes = Inodes::with_registry(&registry);
    Setup { registry, inodes }
}

fn fs_with(s: &Setup, root: InodeRef, cache_capacity: usize) -> Filesystem {
    Filesystem::with_options(
        root,
        Options {
            cache_capacity,
            registry: Some(Arc::clone(&s.registry)),
        },
    )
    .unwrap()
}

/// The `/proc` fixture: every decimal name is a fresh file (kept as given) holding its name,
/// and `1` and `2` are listed.
fn proc(keep: bool) -> Proc {
    Proc::new().keep(move |_| keep).listed(&["1", "2"])
}

fn names(fs: &Filesystem, path: &str) -> Vec<String> {
    fs.readdir(path)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

#[test]
fn lookup_dentries_of_transient_inodes_live_only_for_the_operation() {
    let s = setup();
    let proc = proc(false);
    let lookups = proc.lookups();
    let root = proc.mount(&s.inodes);
    let fs = fs_with(&s, root, 8);
    for pid in 0..100 {
        assert_eq!(fs.stat(&format!("/proc/{pid}")).unwrap().kind, Kind::File);
        // Only the root: /proc/<pid> lived for the walk, and /proc (a dynamic directory,
        // keep() == false) with it.
        let stats = fs.stats();
        assert_eq!(stats.live_dentries, 1, "after /proc/{pid}: {stats:?}");
        assert_eq!(stats.cached_dentries, 0);
        assert_eq!(stats.deferred, 0);
    }
    assert_eq!(lookups.get(), 100);
    assert!(fs.stats().peak_live_dentries <= 3);
    // Only the directory inodes survive: the dynamic files died with their dentries.
    assert_eq!(s.inodes.live(), 2);
    assert_eq!(fs.check_tree(), Ok(1));
    drop(fs);
    assert!(s.registry.check().is_empty());
    assert_eq!(s.inodes.live(), 0);
}

#[test]
fn kept_dentries_are_cached_and_reused() {
    let s = setup();
    let proc = proc(true);
    let lookups = proc.lookups();
    let root = proc.mount(&s.inodes);
    let fs = fs_with(&s, root, 8);
    for _ in 0..10 {
        for pid in 0..5 {
            fs.stat(&format!("/proc/{pid}")).unwrap();
        }
    }
    assert_eq!(
        lookups.get(),
        5,
        "cached dentries are found again, not looked up"
    );
    let stats = fs.stats();
    // root, /proc (not cached itself, held by its cached children) and the five names.
    assert_eq!(stats.live_dentries, 1 + 1 + 5);
    assert_eq!(stats.cached_dentries, 5);
}

#[test]
fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
    let s = setup();
    let proc = proc(true);
    let lookups = proc.lookups();
    let root = proc.mount(&s.inodes);
    let fs = fs_with(&s, root, 4);
    for pid in 0..100 {
        fs.stat(&format!("/proc/{pid}")).unwrap();
        let stats = fs.stats();
        assert!(stats.cached_dentries <= 4);
        assert!(stats.live_dentries <= 1 + 1 + 4, "{stats:?}");
    }
    assert!(fs.stats().peak_live_dentries <= 4 + 3);
    // The most recent names are cached: looking them up again costs no lookup.
    let before = lookups.get();
    fs.stat("/proc/99").unwrap();
    fs.stat("/proc/98").unwrap();
    assert_eq!(lookups.get(), before);
    fs.stat("/proc/0").unwrap();
    assert_eq!(lookups.get(), before + 1, "/proc/0 was evicted");
    assert_eq!(fs.check_tree(), Ok(1 + 1 + 4));
}

#[test]
fn an_inode_outlives_the_dentries_that_point_at_it() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 0);
    fs.mkdir("/d").unwrap();
    fs.create("/d/f").unwrap();
    // No cache: every dentry but the root is gone after each operation...
    assert_eq!(fs.stats().live_dentries, 1);
    // ...but the inodes are held by their directories.
    assert_eq!(s.inodes.live(), 3);
    let ino = fs.stat("/d/f").unwrap().ino;
    assert_eq!(fs.stats().live_dentries, 1);
    assert_eq!(
        fs.stat("/d/f").unwrap().ino,
        ino,
        "rebuilt from the same inode"
    );
}

#[test]
fn an_open_file_keeps_its_dentry_and_inode_past_unlink() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 0);
    fs.mkdir("/d").unwrap();
    fs.create("/d/f").unwrap();
    let file = fs.open("/d/f").unwrap();
    file.write(b"data").unwrap();
    assert_eq!(fs.stats().live_dentries, 3, "root, /d (held by /d/f), /d/f");
    fs.unlink("/d/f").unwrap();
    assert_eq!(fs.stat("/d/f"), Err(Error::NotFound));
    assert_eq!(names(&fs, "/d"), Vec::<String>::new());
    assert_eq!(file.read().unwrap(), b"data");
    assert_eq!(s.inodes.live(), 3);
    // A new file under the same name gets a new dentry; the old one is not in the tree.
    fs.create("/d/f").unwrap();
    assert_eq!(
        fs.check_tree(),
        Ok(2),
        "root and /d (held by the open file's dentry)"
    );
    file.close();
    assert_eq!(fs.stats().live_dentries, 1);
    assert_eq!(s.inodes.live(), 3, "root, /d and the new /d/f");
    assert_eq!(fs.open("/d/f").unwrap().read().unwrap(), b"");
}

#[test]
fn files_outlive_the_filesystem_and_release_on_close() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 16);
    fs.mkdir("/a").unwrap();
    fs.mkdir("/a/b").unwrap();
    fs.create("/a/b/c").unwrap();
    let file = fs.open("/a/b/c").unwrap();
    drop(fs);
    // The file holds /a/b/c, which holds /a/b, /a and the root, and their inodes.
    assert_eq!(s.registry.report().total, 4 + 4);
    assert_eq!(file.read().unwrap(), b"");
    drop(file);
    assert!(s.registry.check().is_empty());
    assert_eq!(s.inodes.live(), 0);
}

#[test]
fn release_with_leak_checking_leaves_the_registry_empty() {
    let registry = Arc::new(Registry::new(LeakMode::Panic));
    let inodes = Inodes::with_registry(&registry);
    let root = proc(true).mount(&inodes);
    let fs = Filesystem::with_options(
        root,
        Options {
            cache_capacity: 3,
            registry: Some(Arc::clone(&registry)),
        },
    )
    .unwrap();
    fs.mkdir("/x").unwrap();
    fs.create("/x/y").unwrap();
    fs.symlink("/x/y", "/x/z").unwrap();
    fs.link("/x/y", "/w").unwrap();
    for pid in 0..10 {
        fs.stat(&format!("/proc/{pid}")).unwrap();
    }
    let _open = fs.open("/proc/3").unwrap();
    assert!(registry.live_count() > 0);
    drop(_open);
    fs.release();
    assert!(registry.check().is_empty(), "{}", registry.report());
    assert_eq!(inodes.live(), 0);
}

#[test]
fn invalid_dentries_are_revalidated_by_lookup() {
    let s = setup();
    let proc = proc(true);
    let lookups = proc.lookups();
    let root = proc.mount(&s.inodes);
    let fs = fs_with(&s, root, 8);
    let first = fs.open("/proc/7").unwrap();
    let ino = first.stat().ino;
    fs.stat("/proc/7").unwrap();
    assert_eq!(lookups.get(), 1);
    first.dentry.inode().base().invalidate();
    let again = fs.stat("/proc/7").unwrap();
    assert_eq!(lookups.get(), 2, "looked up again");
    assert_ne!(
        again.ino, ino,
        "a new inode, while the open file keeps the old one"
    );
    assert_eq!(first.read().unwrap(), b"7");
    assert_eq!(fs.check_tree(), Ok(3));
    drop(first);
    // The stale dentry died when its last holder let go; the new one is untouched.
    assert_eq!(fs.stat("/proc/7").unwrap().ino, again.ino);
    assert_eq!(lookups.get(), 2);
    assert_eq!(fs.stats().live_dentries, 3);
}

#[test]
fn readdir_lists_in_insertion_order() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 4);
    for name in ["zeta", "alpha", "mid"] {
        fs.create(&format!("/{name}")).unwrap();
    }
    fs.mkdir("/dir").unwrap();
    assert_eq!(names(&fs, "/"), ["zeta", "alpha", "mid", "dir"]);
    fs.rename("/zeta", "/omega").unwrap();
    assert_eq!(names(&fs, "/"), ["alpha", "mid", "dir", "omega"]);
    let kinds: Vec<Kind> = fs
        .readdir("/")
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [Kind::File, Kind::File, Kind::Dir, Kind::File]);
    assert_eq!(fs.readdir("/alpha"), Err(Error::NotDir));
}

#[test]
fn hard_links_share_an_inode() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 4);
    fs.create("/a").unwrap();
    fs.mkdir("/d").unwrap();
    fs.link("/a", "/d/b").unwrap();
    assert_eq!(fs.stat("/a").unwrap().ino, fs.stat("/d/b").unwrap().ino);
    fs.open("/a").unwrap().write(b"shared").unwrap();
    fs.unlink("/a").unwrap();
    assert_eq!(fs.open("/d/b").unwrap().read().unwrap(), b"shared");
    assert_eq!(fs.link("/d", "/e"), Err(Error::NotPermitted));
    assert_eq!(fs.link("/d/b", "/d/b"), Err(Error::Exists));
    // Renaming one name of an inode onto another name of it does nothing.
    fs.link("/d/b", "/c").unwrap();
    fs.rename("/c", "/d/b").unwrap();
    assert_eq!(names(&fs, "/"), ["d", "c"]);
}

#[test]
fn symlinks_are_never_followed() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 4);
    fs.mkdir("/dir").unwrap();
    fs.symlink("/dir", "/link").unwrap();
    assert_eq!(fs.readlink("/link").unwrap(), "/dir");
    assert_eq!(fs.stat("/link").unwrap().kind, Kind::Symlink);
    assert_eq!(fs.stat("/link").unwrap().size, 4);
    assert_eq!(fs.stat("/link/x"), Err(Error::NotDir));
    assert_eq!(fs.readlink("/dir"), Err(Error::Invalid));
    assert_eq!(fs.symlink("", "/l2"), Err(Error::InvalidName));
    assert_eq!(fs.open("/link").unwrap().read(), Err(Error::Invalid));
}

#[test]
fn dot_and_dotdot_walk_the_tree() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 4);
    fs.mkdir("/a").unwrap();
    fs.mkdir("/a/b").unwrap();
    fs.create("/f").unwrap();
    let a = fs.stat("/a").unwrap().ino;
    assert_eq!(fs.stat("/a/b/..").unwrap().ino, a);
    assert_eq!(fs.stat("/a/./b/../.").unwrap().ino, a);
    assert_eq!(fs.stat("a/b/../../f").unwrap().kind, Kind::File);
    assert_eq!(fs.stat("/.."), Err(Error::InvalidName));
    assert_eq!(fs.stat("/a/../.."), Err(Error::InvalidName));
    assert_eq!(fs.stat("/f/.."), Err(Error::NotDir));
    assert_eq!(fs.stat("/f/."), Err(Error::NotDir));
}

/// Every mutating operation on a bad path fails and leaves the tree as it was.
#[test]
fn bad_paths_are_errors_and_change_nothing() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 4);
    fs.mkdir("/d").unwrap();
    fs.create("/d/f").unwrap();
    fs.mkdir("/e").unwrap();
    fs.create("/e/g").unwrap();
    let snapshot = |fs: &Filesystem| {
        (
            names(fs, "/"),
            names(fs, "/d"),
            names(fs, "/e"),
            fs.stat("/d/f").unwrap().ino,
        )
    };
    let before = snapshot(&fs);
    let long = "n".repeat(NAME_MAX + 1);
    let cases: Vec<(Result<()>, Error)> = vec![
        (fs.mkdir(""), Error::Exists),
        (fs.mkdir("/"), Error::Exists),
        (fs.mkdir("/d"), Error::Exists),
        (fs.mkdir("/d//x"), Error::InvalidName),
        (fs.mkdir("/d/x/"), Error::InvalidName),
        (fs.mkdir("/d/\0"), Error::InvalidName),
        (fs.mkdir("/d/."), Error::InvalidName),
        (fs.mkdir("/d/.."), Error::InvalidName),
        (fs.mkdir("/../x"), Error::InvalidName),
        (fs.mkdir(&format!("/d/{long}")), Error::NameTooLong),
        (fs.mkdir("/nope/x"), Error::NotFound),
        (fs.mkdir("/d/f/x"), Error::NotDir),
        (fs.create("/d/f"), Error::Exists),
        (fs.create("/d"), Error::Exists),
        (fs.unlink("/"), Error::IsDir),
        (fs.unlink("/d"), Error::IsDir),
        (fs.unlink("/d/nope"), Error::NotFound),
        (fs.unlink("/d/f/.."), Error::InvalidName),
        (fs.rmdir("/"), Error::Busy),
        (fs.rmdir("/d"), Error::NotEmpty),
        (fs.rmdir("/d/f"), Error::NotDir),
        (fs.rmdir("/nope"), Error::NotFound),
        (fs.rename("/", "/x"), Error::Busy),
        (fs.rename("/d", "/"), Error::Busy),
        (fs.rename("/d", "/d/x"), Error::IntoOwnSubtree),
        (fs.rename("/d", "/d/../d/y"), Error::IntoOwnSubtree),
        (fs.rename("/d", "/e"), Error::NotEmpty),
        (fs.rename("/d", "/e/g"), Error::NotDir),
        (fs.rename("/d/f", "/e"), Error::IsDir),
        (fs.rename("/nope", "/x"), Error::NotFound),
        (fs.rename("/d/f", "/nope/x"), Error::NotFound),
        (fs.rename("/d/f", "/d/f/x"), Error::NotDir),
        (fs.link("/d/f", "/e/g"), Error::Exists),
        (fs.link("/nope", "/x"), Error::NotFound),
        (fs.symlink("a\0b", "/x"), Error::InvalidName),
    ];
    for (i, (got, want)) in cases.into_iter().enumerate() {
        assert_eq!(got, Err(want), "case {i}");
    }
    assert_eq!(snapshot(&fs), before);
    assert_eq!(fs.check_tree().map(|n| n >= 1), Ok(true));
}

#[test]
fn rename_moves_names_and_open_files_follow() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 8);
    fs.mkdir("/a").unwrap();
    fs.mkdir("/b").unwrap();
    fs.create("/a/f").unwrap();
    let file = fs.open("/a/f").unwrap();
    file.write(b"x").unwrap();
    fs.rename("/a/f", "/b/g").unwrap();
    assert_eq!(fs.stat("/a/f"), Err(Error::NotFound));
    assert_eq!(fs.open("/b/g").unwrap().read().unwrap(), b"x");
    assert_eq!(file.stat().ino, fs.stat("/b/g").unwrap().ino);
    // Replace a file, then an empty directory.
    fs.create("/a/h").unwrap();
    fs.rename("/b/g", "/a/h").unwrap();
    assert_eq!(names(&fs, "/a"), ["h"]);
    assert_eq!(names(&fs, "/b"), Vec::<String>::new());
    fs.mkdir("/a/sub").unwrap();
    fs.rename("/b", "/a/sub").unwrap();
    assert_eq!(names(&fs, "/"), ["a"]);
    assert_eq!(fs.stat("/a/sub").unwrap().kind, Kind::Dir);
    // A directory moves with its subtree.
    fs.create("/a/sub/deep").unwrap();
    fs.rename("/a/sub", "/top").unwrap();
    assert_eq!(fs.stat("/top/deep").unwrap().kind, Kind::File);
    assert_eq!(fs.stat("/top/..").unwrap().ino, fs.stat("/").unwrap().ino);
    // Same name: nothing happens.
    fs.rename("/top", "/top").unwrap();
    assert!(fs.check_tree().is_ok());
    drop(file);
    drop(fs);
    assert!(s.registry.check().is_empty());
    assert_eq!(s.inodes.live(), 0);
}

#[test]
fn dynamic_directories_refuse_changes() {
    let s = setup();
    let root = proc(false).mount(&s.inodes);
    let fs = fs_with(&s, root, 8);
    assert_eq!(fs.mkdir("/proc/x"), Err(Error::NotPermitted));
    assert_eq!(fs.create("/proc/x"), Err(Error::NotPermitted));
    assert_eq!(fs.create("/proc/1"), Err(Error::Exists));
    assert_eq!(fs.unlink("/proc/1"), Err(Error::NotPermitted));
    assert_eq!(fs.rename("/proc/1", "/one"), Err(Error::NotPermitted));
    fs.create("/f").unwrap();
    assert_eq!(fs.rename("/f", "/proc/f"), Err(Error::NotPermitted));
    assert_eq!(fs.rmdir("/proc"), Err(Error::NotEmpty));
    assert_eq!(names(&fs, "/proc"), ["1", "2"]);
    assert_eq!(fs.stat("/proc/abc"), Err(Error::NotFound));
    assert!(fs.check_tree().is_ok());
    assert_eq!(fs.stats().deferred, 0);
}

#[test]
fn rmdir_and_recreate() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 8);
    fs.mkdir("/d").unwrap();
    let held = fs.open("/d").unwrap();
    fs.rmdir("/d").unwrap();
    assert_eq!(fs.stat("/d"), Err(Error::NotFound));
    fs.mkdir("/d").unwrap();
    assert_ne!(held.stat().ino, fs.stat("/d").unwrap().ino);
    assert_eq!(held.readdir().unwrap(), Vec::new());
    drop(held);
    assert_eq!(fs.check_tree(), Ok(2));
}

#[test]
fn a_non_directory_root_is_refused() {
    let s = setup();
    let err = Filesystem::new(s.inodes.file(Vec::new())).unwrap_err();
    assert_eq!(err, Error::NotDir);
    assert_eq!(s.inodes.live(), 0);
}

#[test]
fn errors_have_errnos_and_messages() {
    assert_eq!(Error::NotEmpty.errno(), 39);
    assert_eq!(Error::IntoOwnSubtree.errno(), 22);
    assert!(Error::Busy.to_string().contains("EBUSY"));
    assert!(Error::NameTooLong.to_string().contains("too long"));
}

#[test]
fn the_leak_report_names_a_leaked_inode() {
    let s = setup();
    let leaked = s.inodes.file(b"x".to_vec());
    let report = s.registry.report();
    assert_eq!(
        report.by_type.get(std::any::type_name::<RegularFile>()),
        Some(&1)
    );
    assert!(
        report.messages[0].contains("File inode with 1 references"),
        "{report}"
    );
    drop(leaked);
    assert!(s.registry.report().is_empty());
}

/// A filesystem and its inodes read the leak mode once, when they are made: turning checking
/// off on a live filesystem must not leave a dentry or an inode that is unregistered when it
/// is destroyed without having been registered (the handle's bug, found again in kernfs).
#[test]
fn leak_checking_turned_off_on_a_live_filesystem_keeps_the_registry_consistent() {
    let s = setup();
    let fs = fs_with(&s, s.inodes.dir(), 0);
    fs.mkdir("/d").unwrap();
    s.registry.set_mode(LeakMode::Off);
    // A new inode and a new dentry, made with checking off; with no cache, the dentry is
    // destroyed as soon as the operation ends, and looking the name up again makes another.
    fs.create("/d/f").unwrap();
    assert_eq!(fs.stat("/d/f").unwrap().kind, Kind::File);
    let open = fs.open("/d/f").unwrap();
    // Everything this filesystem and these inodes made is registered: they decided once.
    assert_eq!(
        s.registry.live_count(),
        fs.stats().live_dentries + s.inodes.live(),
        "{}",
        s.registry.report()
    );
    drop(open);
    fs.unlink("/d/f").unwrap();
    drop(fs);
    assert_eq!(s.inodes.live(), 0);
    assert!(s.registry.report().is_empty(), "{}", s.registry.report());
}
