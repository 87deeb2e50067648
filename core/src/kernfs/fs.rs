//! The filesystem: the dentry tree, its operations, deferred DecRef and release.
//!
//! # Deferred DecRef (seed 002)
//!
//! Dropping a dentry's last reference edits the tree (the dentry leaves its parent's
//! children), so it takes the filesystem lock for writing. An operation that holds the
//! filesystem lock cannot do that, so every reference it drops — the reference of a lookup
//! dentry whose inode does not say keep, an entry the cache evicted, a parent left by a
//! rename — goes on the *deferred list*, and the operation processes the list once it has
//! released the filesystem lock. Processing takes the list out under the list's lock and
//! releases that lock before the first DecRef: a DecRef takes the filesystem lock, and
//! threads holding the filesystem lock push onto the list.
//!
//! At zero, a dentry leaves its parent's children (in the same critical section: while the
//! filesystem lock is held, every dentry in a children map is alive) and drops its inode
//! reference; its reference on its parent is dropped only after every lock is released,
//! and so on up the tree.

use super::cache::Lru;
use super::dentry::{Dentry, RegisteredDentry, DENTRY_TYPE};
use super::error::{Error, Result};
use super::inode::{arc_id, stat_of, Dirent, Inode, InodeRef, Kind, Stat};
use super::path::{components, parent_and_name};
use crate::leak::Registry;
use crate::refs::RefCounter;
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Arc, Mutex, ShardedReadGuard, ShardedRwLock, ShardedWriteGuard};
use std::collections::HashMap;
use std::fmt;

/// The default capacity of the dentry cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 1000;

/// How a [`Filesystem`] is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// How many dentries the cache keeps alive with nothing else referring to them
    /// ([`DEFAULT_CACHE_CAPACITY`] by default; 0 turns the cache off).
    pub cache_capacity: usize,
    /// Where dentries register for leak checking ([`Registry::global`] when `None`). Its
    /// mode is read once, by [`Filesystem::with_options`]: if checking is on then, every
    /// dentry of the filesystem registers (and unregisters when destroyed) even after
    /// checking is turned off, so the registry never loses track of one.
    pub registry: Option<Arc<Registry>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            registry: None,
        }
    }
}

/// Counts of the filesystem's dentries (for tests, models and monitoring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Dentries not yet destroyed, in the tree or not.
    pub live_dentries: usize,
    /// The most `live_dentries` has been since creation or [`Filesystem::reset_peak`].
    pub peak_live_dentries: usize,
    /// Dentries the cache holds a reference on.
    pub cached_dentries: usize,
    /// The cache's capacity.
    pub cache_capacity: usize,
    /// References waiting on the deferred list.
    pub deferred: usize,
}

/// A kernfs filesystem: a tree of dentries over a tree of inodes, with deferred DecRef and
/// a bounded dentry cache.
///
/// All paths start at the root. Symlinks are never followed (a symlink in the middle of a
/// path is [`Error::NotDir`]); `..` goes to the parent, and above the root is an error.
///
/// # Lock order
///
/// 1. the filesystem lock (`mu`, a [`ShardedRwLock`]): read by walks and lookups (each on
///    its thread's shard), written by operations that change the tree and by dentry
///    destruction;
/// 2. a dentry's children lock (one at a time, except rename, which holds the filesystem
///    lock for writing);
/// 3. the dentry cache lock;
/// 4. inode locks (one at a time);
/// 5. the deferred list lock.
///
/// A dentry's location lock and the leak registry's locks are leaves: nothing is taken
/// while they are held. A dentry's DecRef takes the filesystem lock, so it is never called
/// with any of these held: under the filesystem lock, references go on the deferred list.
///
/// # Release
///
/// Dropping the filesystem (or [`release`](Filesystem::release)) empties the cache and drops
/// the root; every dentry no open [`File`] holds is destroyed, then every inode only the
/// tree held. With leak checking on, the registry then holds nothing.
///
/// ```
/// # if refwatch::sync::MODEL_CHECKED { return Ok(()); } // primitives work only in a model
/// use refwatch::kernfs::{Error, Filesystem, Inodes, Kind};
///
/// let inodes = Inodes::new();
/// let fs = Filesystem::new(inodes.dir())?;
/// fs.mkdir("/etc")?;
/// fs.create("/etc/hosts")?;
/// let file = fs.open("/etc/hosts")?;
/// file.write(b"127.0.0.1 localhost")?;
/// fs.unlink("/etc/hosts")?;             // the open file keeps its dentry and inode
/// assert_eq!(file.read()?, b"127.0.0.1 localhost");
/// drop(file);                           // last reference: dentry and inode destroyed
/// assert_eq!(fs.stat("/etc/hosts"), Err(Error::NotFound));
/// assert_eq!(fs.stat("/etc")?.kind, Kind::Dir);
/// assert_eq!(fs.stat("/.."), Err(Error::InvalidName));
/// drop(fs);
/// assert_eq!(inodes.live(), 0);
/// # Ok::<(), Error>(())
/// ```
pub struct Filesystem {
    inner: Arc<FsInner>,
}

/// The state shared by the filesystem and its open files.
struct FsInner {
    /// The filesystem lock. Protects the shape of the dentry tree: a dentry's parent and
    /// name, and its membership of its parent's children (with that children lock).
    /// Sharded: a walk locks only its thread's shard, so walks on different cores write no
    /// common reader count; a writer (a change to the tree, a dentry's last DecRef) locks
    /// every shard.
    mu: ShardedRwLock,
    /// Immutable. The filesystem holds one reference on it until release.
    root: Arc<Dentry>,
    /// Holds one reference on each cached dentry.
    cache: Mutex<Lru<Arc<Dentry>>>,
    /// Each entry is one reference to drop once no kernfs lock is held.
    deferred: Mutex<Vec<Arc<Dentry>>>,
    /// The deferred list's length, written only with the list's lock held, so that an
    /// operation that deferred nothing leaves without taking that lock (see
    /// [`FsInner::process_deferred`]).
    deferred_len: AtomicUsize,
    /// Where dentries register, if leak checking was on at creation. Read once: every
    /// dentry of the filesystem registers and unregisters on that reading, whatever the
    /// registry's mode is later.
    registry: Option<Arc<Registry>>,
    live: AtomicUsize,
    peak: AtomicUsize,
}

/// Proof that the filesystem lock is held, for reading or writing.
enum FsGuard<'a> {
    Read(#[allow(dead_code)] ShardedReadGuard<'a>),
    Write(#[allow(dead_code)] ShardedWriteGuard<'a>),
}

impl FsGuard<'_> {
    fn is_write(&self) -> bool {
        matches!(self, FsGuard::Write(_))
    }
}

impl FsInner {
    /// Runs `op` with the filesystem lock held for reading, then releases it and processes
    /// the deferred list.
    fn with_read<R>(&self, op: impl FnOnce(&FsGuard<'_>) -> R) -> R {
        let guard = FsGuard::Read(self.mu.read());
        let result = op(&guard);
        drop(guard);
        self.process_deferred();
        result
    }

    /// As [`FsInner::with_read`], holding the lock for writing.
    fn with_write<R>(&self, op: impl FnOnce(&FsGuard<'_>) -> R) -> R {
        let guard = FsGuard::Write(self.mu.write());
        let result = op(&guard);
        drop(guard);
        self.process_deferred();
        result
    }

    /// Queues one reference on `d` to be dropped by [`FsInner::process_deferred`].
    ///
    /// May be called with any kernfs lock held (the deferred list lock is last in the order).
    fn defer_dec_ref(&self, d: Arc<Dentry>) {
        let mut list = self.deferred.lock();
        list.push(d);
        self.deferred_len.store(list.len(), Ordering::Relaxed);
    }

    /// Drops every queued reference.
    ///
    /// An operation that deferred nothing, with nothing queued by others, takes no lock here:
    /// it reads the list's length first. That reading cannot miss this thread's own entries:
    /// it comes after this thread's own store of the length (program order, so coherence
    /// gives that store or a later one), and every later store was made under the list's
    /// lock by a thread that pushed (non-zero) or took the whole list, this thread's entries
    /// with it, to drop them itself. Entries of other threads are theirs to process, as they
    /// always were. Both stores are made under the lock: a store of zero made after the lock
    /// is released could overwrite the length of a push made in between, and that entry
    /// would wait on the list for the next operation (mutant
    /// `kernfs_deferred_len_cleared_after_unlock`).
    ///
    /// Preconditions: the caller holds no kernfs lock.
    fn process_deferred(&self) {
        if self.deferred_len.load(Ordering::Relaxed) == 0 {
            return;
        }
        // The list's lock is released at the end of this block, before any DecRef (seed
        // 002's fix): a DecRef takes the filesystem lock, and threads holding the filesystem
        // lock wait for the list's lock to push onto it.
        let batch = {
            let mut list = self.deferred.lock();
            self.deferred_len.store(0, Ordering::Relaxed);
            std::mem::take(&mut *list)
        };
        for d in batch {
            self.dec_ref(d);
        }
    }

    /// Drops one reference on `d`. At zero, `d` is destroyed and then its parent reference
    /// is dropped, with every lock released in between, and so on up the tree.
    ///
    /// A reference that is not the last is dropped without any kernfs lock (Linux's `dput`
    /// fast path on `lockref`): [`RefCounter::dec_ref_unless_last`] never takes the count to
    /// zero, so a dentry still reaches zero only under the filesystem lock held for writing,
    /// in the same critical section in which it leaves its parent's children, and a lookup
    /// holding the filesystem lock still finds only live dentries there. The models
    /// `loom_kernfs::closes_race_to_the_last_reference` and `loom_refs::fast_decs_race_*`
    /// check the fast path racing the last close.
    ///
    /// Preconditions: the caller holds no kernfs lock (under the filesystem lock, use
    /// [`FsInner::defer_dec_ref`]).
    fn dec_ref(&self, d: Arc<Dentry>) {
        let mut next = Some(d);
        while let Some(d) = next.take() {
            if d.refs.dec_ref_unless_last() {
                return;
            }
            let guard = FsGuard::Write(self.mu.write());
            d.refs.dec_ref(|| next = self.destroy(&guard, &d));
            drop(guard);
            // `next` is the destroyed dentry's parent: its reference is dropped on the next
            // turn, now that every lock is released.
        }
    }

    /// Ends `d`'s life: it leaves its parent's children, drops its inode reference and
    /// leaves the leak registry. Returns its parent, whose reference the caller drops once
    /// every lock is released.
    ///
    /// Preconditions: the filesystem lock is held for writing; `d` has just reached zero.
    fn destroy(&self, guard: &FsGuard<'_>, d: &Arc<Dentry>) -> Option<Arc<Dentry>> {
        assert!(
            guard.is_write(),
            "kernfs: Dentry destroyed without the filesystem lock held for writing"
        );
        let (parent, name) = {
            let mut location = d.location();
            (location.parent.take(), location.name.clone())
        };
        if let Some(parent) = &parent {
            let mut children = parent.children.lock();
            // It may have left already (unlinked, renamed over, invalidated), and a new
            // dentry may have taken its name since.
            if children.get(&name).is_some_and(|c| Arc::ptr_eq(c, d)) {
                children.remove(&name);
            }
        }
        d.release_inode();
        if let Some(registry) = &self.registry {
            registry.unregister(arc_id(d), DENTRY_TYPE);
        }
        self.live.fetch_sub(1, Ordering::Relaxed);
        parent
    }

    /// The dentry at `comps`, walked from the root. It is alive while the lock is held;
    /// take a reference to keep it longer.
    ///
    /// Preconditions: the filesystem lock is held.
    fn resolve(&self, guard: &FsGuard<'_>, comps: &[&str]) -> Result<Arc<Dentry>> {
        // `None` is the root, borrowed: the walk does not write the root's `Arc` count,
        // which every walk on every core would otherwise share.
        let mut d: Option<Arc<Dentry>> = None;
        for &c in comps {
            let cur = d.as_ref().unwrap_or(&self.root);
            if !cur.is_dir() {
                return Err(Error::NotDir);
            }
            match c {
                "." => {}
                ".." => d = Some(cur.parent().ok_or(Error::InvalidName)?),
                name => d = Some(self.child(guard, cur, name)?),
            }
        }
        Ok(d.unwrap_or_else(|| Arc::clone(&self.root)))
    }

    /// The child dentry `name` of the directory `parent`: the one in the tree if its inode is
    /// still valid, else a new one for the inode the directory's lookup returns.
    ///
    /// Preconditions: the filesystem lock is held; `parent` is a directory in the tree.
    fn child(&self, _guard: &FsGuard<'_>, parent: &Arc<Dentry>, name: &str) -> Result<Arc<Dentry>> {
        let mut children = parent.children.lock();
        if let Some(c) = children.get(name) {
            if c.inode().valid() {
                let c = Arc::clone(c);
                drop(children);
                // A touch is a hint: when another walk holds the cache's lock, skip it rather
                // than wait (a contended std mutex parks the thread, two system calls). The
                // name then moves up the LRU on its next uncontended walk; with no contention
                // the order is exact LRU.
                if let Some(mut cache) = self.cache.try_lock() {
                    cache.touch(arc_id(&c));
                }
                return Ok(c);
            }
            // Revalidate: the stale dentry leaves the tree (and the cache); whoever still
            // holds it keeps it until they let go.
            let stale = children.remove(name).expect("found just above");
            if let Some(cached) = self.cache.lock().remove(arc_id(&stale)) {
                self.defer_dec_ref(cached);
            }
        }
        let inode = parent.inode().lookup(name)?;
        let child = self.attach(parent, &mut children, name, inode);
        self.keep_or_defer(&child);
        drop(children);
        Ok(child)
    }

    /// A new dentry for `inode` under `name` in `parent`, holding one reference that the
    /// caller must pass to [`FsInner::keep_or_defer`].
    ///
    /// Preconditions: the filesystem lock is held; `children` is `parent`'s, locked, and
    /// has no `name`.
    fn attach(
        &self,
        parent: &Arc<Dentry>,
        children: &mut HashMap<String, Arc<Dentry>>,
        name: &str,
        inode: InodeRef,
    ) -> Arc<Dentry> {
        parent.refs.inc_ref(); // the child's reference on its parent
        let child = Dentry::new(inode, Some(Arc::clone(parent)), name);
        children.insert(name.to_owned(), Arc::clone(&child));
        if let Some(registry) = &self.registry {
            // Whatever the mode is now: the filesystem read it once, when it was made, and
            // `destroy` unregisters on that reading (re-reading it here is bug 1 of issue 10).
            registry.register_always(RegisteredDentry(Arc::clone(&child)));
        }
        let live = self.live.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(live, Ordering::Relaxed);
        child
    }

    /// Gives the reference of a dentry this operation made to the cache, when its inode
    /// says keep, or to the deferred list: then the dentry lives only as long as the
    /// operation, unless someone took a reference meanwhile.
    ///
    /// Preconditions: the children lock of `d`'s parent is held, as it was when `d` was
    /// attached. A walk that finds `d` stale (its inode invalidated since) takes it out of
    /// the tree and out of the cache under that lock; were `d` cached after the lock was
    /// released, a stale dentry could be cached outside the tree, alive with no file open
    /// (the loom model `invalidate_races_cached_lookups`). The cache lock comes after the
    /// children locks in the lock order.
    fn keep_or_defer(&self, d: &Arc<Dentry>) {
        let d = Arc::clone(d);
        if d.inode().keep() {
            let evicted = self.cache.lock().insert(arc_id(&d), d);
            if let Some(evicted) = evicted {
                self.defer_dec_ref(evicted);
            }
        } else {
            self.defer_dec_ref(d);
        }
    }

    /// Takes `child` out of `parent`'s children and out of the cache (its name is gone).
    ///
    /// Preconditions: the filesystem lock is held for writing.
    fn detach(&self, guard: &FsGuard<'_>, parent: &Dentry, name: &str, child: &Arc<Dentry>) {
        debug_assert!(guard.is_write());
        {
            let mut children = parent.children.lock();
            if children.get(name).is_some_and(|c| Arc::ptr_eq(c, child)) {
                children.remove(name);
            }
        }
        let cached = self.cache.lock().remove(arc_id(child));
        if let Some(cached) = cached {
            self.defer_dec_ref(cached);
        }
    }

    /// Moves `child` from `old` in `from` to `new` in `to`, moving its parent reference.
    ///
    /// Preconditions: the filesystem lock is held for writing; `new` is free in `to`.
    fn move_dentry(
        &self,
        guard: &FsGuard<'_>,
        child: &Arc<Dentry>,
        (from, old): (&Arc<Dentry>, &str),
        (to, new): (&Arc<Dentry>, &str),
    ) {
        assert!(
            guard.is_write(),
            "kernfs: rename without the filesystem lock held for writing"
        );
        {
            let mut children = from.children.lock();
            if children.get(old).is_some_and(|c| Arc::ptr_eq(c, child)) {
                children.remove(old);
            }
        }
        to.children.lock().insert(new.to_owned(), Arc::clone(child));
        let old_parent = {
            let mut location = child.location();
            location.name = new.to_owned();
            if Arc::ptr_eq(from, to) {
                None
            } else {
                to.refs.inc_ref();
                location.parent.replace(Arc::clone(to))
            }
        };
        if let Some(old_parent) = old_parent {
            self.defer_dec_ref(old_parent);
        }
    }

    /// Drops the cache's references and the root's.
    ///
    /// Preconditions: the caller holds no kernfs lock; no operation runs concurrently.
    fn release(&self) {
        let cached = self.cache.lock().drain();
        for d in cached {
            self.dec_ref(d);
        }
        self.process_deferred();
        self.dec_ref(Arc::clone(&self.root));
    }
}

impl Filesystem {
    /// A filesystem whose root is the directory `root`, with [`Options::default`].
    pub fn new(root: InodeRef) -> Result<Filesystem> {
        Filesystem::with_options(root, Options::default())
    }

    /// A filesystem whose root is the directory `root`.
    ///
    /// # Errors
    /// [`Error::NotDir`] when `root` is not a directory.
    pub fn with_options(root: InodeRef, options: Options) -> Result<Filesystem> {
        if root.kind() != Kind::Dir {
            return Err(Error::NotDir);
        }
        let registry = options.registry.unwrap_or_else(Registry::global);
        // The one reading of the mode: it decides for every dentry of this filesystem.
        let registry = registry.enabled().then_some(registry);
        let root = Dentry::new(root, None, "");
        if let Some(registry) = &registry {
            registry.register_always(RegisteredDentry(Arc::clone(&root)));
        }
        Ok(Filesystem {
            inner: Arc::new(FsInner {
                mu: ShardedRwLock::new(),
                root,
                cache: Mutex::new(Lru::new(options.cache_capacity)),
                deferred: Mutex::new(Vec::new()),
                deferred_len: AtomicUsize::new(0),
                registry,
                live: AtomicUsize::new(1),
                peak: AtomicUsize::new(1),
            }),
        })
    }

    /// Walks `path` and reports what it names, making and dropping lookup dentries on the way.
    pub fn walk(&self, path: &str) -> Result<Stat> {
        let comps = components(path)?;
        self.inner.with_read(|guard| {
            let d = self.inner.resolve(guard, &comps)?;
            Ok(stat_of(d.inode(), d.ino()))
        })
    }

    /// What `path` names: kind, mode, inode number, size.
    pub fn stat(&self, path: &str) -> Result<Stat> {
        self.walk(path)
    }

    /// Opens `path` (any kind of file). The [`File`] holds a reference on the dentry until
    /// it is dropped or closed, so the dentry and its inode outlive an unlink.
    pub fn open(&self, path: &str) -> Result<File> {
        let comps = components(path)?;
        self.inner.with_read(|guard| {
            let d = self.inner.resolve(guard, &comps)?;
            d.refs.inc_ref();
            Ok(File {
                fs: Arc::clone(&self.inner),
                dentry: d,
            })
        })
    }

    /// The entries of the directory `path`, in the directory's order.
    pub fn readdir(&self, path: &str) -> Result<Vec<Dirent>> {
        let comps = components(path)?;
        self.inner.with_read(|guard| {
            let d = self.inner.resolve(guard, &comps)?;
            read_dir(d.inode())
        })
    }

    /// The target of the symlink `path`.
    pub fn readlink(&self, path: &str) -> Result<String> {
        let comps = components(path)?;
        self.inner.with_read(|guard| {
            let d = self.inner.resolve(guard, &comps)?;
            d.inode().readlink()
        })
    }

    /// Makes the directory `path`.
    pub fn mkdir(&self, path: &str) -> Result<()> {
        self.make(path, |dir, name| dir.new_dir(name))
    }

    /// Makes the empty regular file `path`.
    pub fn create(&self, path: &str) -> Result<()> {
        self.make(path, |dir, name| dir.new_file(name))
    }

    /// Makes `path` a symlink to `target` (any non-empty string without NUL; never followed).
    pub fn symlink(&self, target: &str, path: &str) -> Result<()> {
        if target.is_empty() || target.contains('\0') {
            return Err(Error::InvalidName);
        }
        self.make(path, |dir, name| dir.new_symlink(name, target))
    }

    /// Makes `new` another name of the non-directory `existing`.
    pub fn link(&self, existing: &str, new: &str) -> Result<()> {
        let comps = components(existing)?;
        let (dir, name) = parent_and_name(new)?.ok_or(Error::Exists)?;
        self.inner.with_write(|guard| {
            let target = self.inner.resolve(guard, &comps)?;
            if target.is_dir() {
                return Err(Error::NotPermitted);
            }
            let target = target.inode_ref();
            self.make_locked(guard, &dir, name, |d, name| d.new_link(name, &target))
        })
    }

    /// Removes the non-directory `path`. Open files keep it until they are closed.
    pub fn unlink(&self, path: &str) -> Result<()> {
        let (dir, name) = parent_and_name(path)?.ok_or(Error::IsDir)?;
        self.inner.with_write(|guard| {
            let parent = self.resolve_dir(guard, &dir)?;
            let child = self.inner.child(guard, &parent, name)?;
            if child.is_dir() {
                return Err(Error::IsDir);
            }
            parent.inode().unlink(name, &child.inode_ref())?;
            self.inner.detach(guard, &parent, name, &child);
            Ok(())
        })
    }

    /// Removes the empty directory `path`.
    pub fn rmdir(&self, path: &str) -> Result<()> {
        let (dir, name) = parent_and_name(path)?.ok_or(Error::Busy)?;
        self.inner.with_write(|guard| {
            let parent = self.resolve_dir(guard, &dir)?;
            let child = self.inner.child(guard, &parent, name)?;
            if !child.is_dir() {
                return Err(Error::NotDir);
            }
            if child.inode().has_children() {
                return Err(Error::NotEmpty);
            }
            parent.inode().rmdir(name, &child.inode_ref())?;
            self.inner.detach(guard, &parent, name, &child);
            Ok(())
        })
    }

    /// Renames `old` to `new`, replacing `new` if it exists and may be replaced (a
    /// non-directory by a non-directory, an empty directory by a directory).
    pub fn rename(&self, old: &str, new: &str) -> Result<()> {
        let (old_dir, old_name) = parent_and_name(old)?.ok_or(Error::Busy)?;
        let (new_dir, new_name) = parent_and_name(new)?.ok_or(Error::Busy)?;
        self.inner.with_write(|guard| {
            let from = self.resolve_dir(guard, &old_dir)?;
            let child = self.inner.child(guard, &from, old_name)?;
            let to = self.resolve_dir(guard, &new_dir)?;
            if child.is_dir() {
                let mut up = Some(Arc::clone(&to));
                while let Some(d) = up {
                    if Arc::ptr_eq(&d, &child) {
                        return Err(Error::IntoOwnSubtree);
                    }
                    up = d.parent();
                }
            }
            if Arc::ptr_eq(&from, &to) && old_name == new_name {
                return Ok(());
            }
            let victim = match self.inner.child(guard, &to, new_name) {
                Ok(v) => Some(v),
                Err(Error::NotFound) => None,
                Err(e) => return Err(e),
            };
            if let Some(v) = &victim {
                if v.ino() == child.ino() {
                    return Ok(()); // two names of one inode: POSIX says do nothing
                }
                match (child.is_dir(), v.is_dir()) {
                    (true, false) => return Err(Error::NotDir),
                    (false, true) => return Err(Error::IsDir),
                    (true, true) if v.inode().has_children() => return Err(Error::NotEmpty),
                    _ => {}
                }
            }
            let replaced = victim.as_ref().map(|v| v.inode_ref());
            from.inode().rename(
                old_name,
                new_name,
                &child.inode_ref(),
                &to.inode_ref(),
                replaced.as_ref(),
            )?;
            if let Some(v) = &victim {
                self.inner.detach(guard, &to, new_name, v);
            }
            self.inner
                .move_dentry(guard, &child, (&from, old_name), (&to, new_name));
            Ok(())
        })
    }

    /// Counts of dentries.
    pub fn stats(&self) -> Stats {
        let (cached_dentries, cache_capacity) = {
            let cache = self.inner.cache.lock();
            (cache.len(), cache.capacity())
        };
        Stats {
            live_dentries: self.inner.live.load(Ordering::Relaxed),
            peak_live_dentries: self.inner.peak.load(Ordering::Relaxed),
            cached_dentries,
            cache_capacity,
            deferred: self.inner.deferred.lock().len(),
        }
    }

    /// Restarts [`Stats::peak_live_dentries`] from the current count.
    pub fn reset_peak(&self) {
        let live = self.inner.live.load(Ordering::Relaxed);
        self.inner.peak.store(live, Ordering::Relaxed);
    }

    /// Checks the dentry tree's invariants and returns how many dentries it holds (root
    /// included): every dentry in a children map is alive (not at zero, not destroyed),
    /// knows its parent and its name, and is a directory if it has children; every cached
    /// dentry is alive. For tests and models: it takes the filesystem lock for writing.
    pub fn check_tree(&self) -> std::result::Result<usize, String> {
        let _guard = self.inner.mu.write();
        let mut count = 0;
        let mut stack = vec![Arc::clone(&self.inner.root)];
        while let Some(d) = stack.pop() {
            count += 1;
            if d.refs.read_refs() == 0 || d.refs.is_destroyed() {
                return Err(format!("dead dentry {d:?} in the tree"));
            }
            let children = d.children.lock();
            if !d.is_dir() && !children.is_empty() {
                return Err(format!("non-directory {d:?} has children"));
            }
            for (name, c) in children.iter() {
                let location = c.location();
                if !location.parent.as_ref().is_some_and(|p| Arc::ptr_eq(p, &d)) {
                    return Err(format!("{name:?} does not point back at its parent"));
                }
                if location.name != *name {
                    return Err(format!("{name:?} is called {:?}", location.name));
                }
                drop(location);
                stack.push(Arc::clone(c));
            }
        }
        for d in self.inner.cache.lock().values() {
            if d.refs.read_refs() == 0 || d.refs.is_destroyed() {
                return Err(format!("dead dentry {d:?} in the cache"));
            }
        }
        Ok(count)
    }

    /// Drops the root and everything reachable from it (as dropping the filesystem does).
    pub fn release(self) {
        drop(self);
    }

    /// The directory at `comps`.
    ///
    /// Preconditions: the filesystem lock is held.
    fn resolve_dir(&self, guard: &FsGuard<'_>, comps: &[&str]) -> Result<Arc<Dentry>> {
        let d = self.inner.resolve(guard, comps)?;
        if !d.is_dir() {
            return Err(Error::NotDir);
        }
        Ok(d)
    }

    fn make(
        &self,
        path: &str,
        make: impl FnOnce(&dyn Inode, &str) -> Result<InodeRef>,
    ) -> Result<()> {
        let (dir, name) = parent_and_name(path)?.ok_or(Error::Exists)?;
        self.inner
            .with_write(|guard| self.make_locked(guard, &dir, name, make))
    }

    /// Makes `name` in the directory at `dir` with `make`, and a dentry for it.
    ///
    /// Preconditions: the filesystem lock is held for writing.
    fn make_locked(
        &self,
        guard: &FsGuard<'_>,
        dir: &[&str],
        name: &str,
        make: impl FnOnce(&dyn Inode, &str) -> Result<InodeRef>,
    ) -> Result<()> {
        debug_assert!(guard.is_write());
        let parent = self.resolve_dir(guard, dir)?;
        match self.inner.child(guard, &parent, name) {
            Ok(_) => return Err(Error::Exists),
            Err(Error::NotFound) => {}
            Err(e) => return Err(e),
        }
        let inode = make(parent.inode(), name)?;
        let mut children = parent.children.lock();
        let child = self.inner.attach(&parent, &mut children, name, inode);
        self.inner.keep_or_defer(&child);
        drop(children);
        Ok(())
    }
}

fn read_dir(inode: &dyn Inode) -> Result<Vec<Dirent>> {
    let mut entries = Vec::new();
    inode.iter_dirents(&mut |name, kind| {
        entries.push(Dirent {
            name: name.to_owned(),
            kind,
        })
    })?;
    Ok(entries)
}

impl Drop for Filesystem {
    fn drop(&mut self) {
        self.inner.release();
    }
}

impl fmt::Debug for Filesystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filesystem")
            .field("stats", &self.stats())
            .finish()
    }
}

/// An open file: one reference on its dentry, dropped when the file is dropped or closed.
///
/// An open file keeps its dentry, the dentry's ancestors and its inode alive, even after
/// the name is unlinked or the filesystem released.
pub struct File {
    fs: Arc<FsInner>,
    pub(super) dentry: Arc<Dentry>,
}

impl File {
    /// What the file is.
    pub fn stat(&self) -> Stat {
        stat_of(self.dentry.inode(), self.dentry.ino())
    }

    /// A regular file's bytes.
    pub fn read(&self) -> Result<Vec<u8>> {
        self.dentry.inode().read()
    }

    /// Replaces a regular file's bytes.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.dentry.inode().write(data)
    }

    /// A directory's entries.
    pub fn readdir(&self) -> Result<Vec<Dirent>> {
        read_dir(self.dentry.inode())
    }

    /// A symlink's target.
    pub fn readlink(&self) -> Result<String> {
        self.dentry.inode().readlink()
    }

    /// Closes the file (as dropping it does).
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // No kernfs lock is held here: the DecRef is immediate, not deferred.
        self.fs.dec_ref(Arc::clone(&self.dentry));
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("dentry", &self.dentry)
            .finish()
    }
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Filesystem>();
    is::<File>();
    is::<InodeRef>();
}
