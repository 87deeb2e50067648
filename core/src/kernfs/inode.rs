//! Inodes: the [`Inode`] trait, the counted [`InodeRef`], and ready-made inodes.
//!
//! An inode is the file itself; a dentry is a name for it. Inodes have their own reference
//! count, independent of any dentry's: a [`StaticDir`] holds a reference on every child inode
//! (the *inode tree*), so an inode outlives the dentries that point at it and a dentry can be
//! dropped and rebuilt from the inode by the next lookup. Inodes never see the dentry tree.
//!
//! ```
//! # if refwatch::sync::MODEL_CHECKED { return Ok(()); } // primitives work only in a model
//! use refwatch::kernfs::{Inodes, Kind};
//!
//! let inodes = Inodes::new();
//! let root = inodes.dir();
//! root.add_child("motd", inodes.file(b"hello".to_vec()))?;
//! let motd = root.lookup("motd")?; // a new counted reference
//! assert_eq!(motd.kind(), Kind::File);
//! assert_eq!(motd.read()?, b"hello");
//! assert_eq!(motd.ref_count(), 2); // the directory's and ours
//! # Ok::<(), refwatch::kernfs::Error>(())
//! ```

use super::error::{Error, Result};
use super::ordered::OrderedChildren;
use crate::leak::{CheckedObject, Registry};
use crate::refs::{RefCounter, Refs};
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::{arc_from_box, Arc, Mutex, Track};
use std::any::type_name;
use std::fmt;
use std::ops::Deref;

/// What kind of file an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A directory: its entries are found with [`Inode::lookup`].
    Dir,
    /// A regular file with bytes.
    File,
    /// A symbolic link. kernfs never follows one during a walk.
    Symlink,
}

/// What `stat` reports about an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stat {
    /// The kind of file.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// The inode number: equal for two names of one inode (hard links).
    pub ino: u64,
    /// Bytes in a regular file, bytes of the target of a symlink, 0 for a directory.
    pub size: u64,
}

/// One directory entry, as `readdir` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dirent {
    /// The entry's name.
    pub name: String,
    /// The kind of file it names.
    pub kind: Kind,
}

/// Makes inodes that report to one leak registry and one live-inode counter.
///
/// Cloning is cheap and shares both; every ready-made directory keeps the `Inodes` its
/// base was made with, and makes its new children with it.
#[derive(Clone)]
pub struct Inodes {
    /// Where new inodes register, if leak checking was on when this was made.
    registry: Option<Arc<Registry>>,
    /// Inodes made by this factory (or its clones) and not yet destroyed.
    live: Arc<AtomicUsize>,
}

impl fmt::Debug for Inodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inodes")
            .field("registered", &self.registry.is_some())
            .field("live", &self.live())
            .finish()
    }
}

impl Default for Inodes {
    fn default() -> Self {
        Inodes::new()
    }
}

impl Inodes {
    /// Inodes that register with [`Registry::global`] (when its mode is not off).
    pub fn new() -> Self {
        Inodes::with_registry(&Registry::global())
    }

    /// Inodes that register with `registry` (when its mode is not off). The mode is read
    /// once, here: if checking is on, every inode made by these `Inodes` (and their clones)
    /// registers, and unregisters when destroyed, even after checking is turned off.
    pub fn with_registry(registry: &Arc<Registry>) -> Self {
        Inodes {
            registry: registry.enabled().then(|| Arc::clone(registry)),
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The number of inodes made here that are not destroyed yet.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// The common part of a new inode of `kind` with permission bits `mode`, for inodes of
    /// your own; wrap the inode with [`InodeRef::new`].
    pub fn base(&self, kind: Kind, mode: u32) -> InodeBase {
        InodeBase {
            refs: Refs::new(),
            kind,
            mode,
            keep: true,
            valid: AtomicBool::new(true),
            owner: self.clone(),
            _track: Track::new(()),
        }
    }

    /// An empty [`StaticDir`] (mode 0o755).
    pub fn dir(&self) -> InodeRef {
        InodeRef::new(StaticDir::new(self.base(Kind::Dir, 0o755)))
    }

    /// A [`RegularFile`] holding `data` (mode 0o644).
    pub fn file(&self, data: Vec<u8>) -> InodeRef {
        InodeRef::new(RegularFile::new(self.base(Kind::File, 0o644), data))
    }

    /// A [`Symlink`] to `target` (mode 0o777).
    pub fn symlink(&self, target: &str) -> InodeRef {
        InodeRef::new(Symlink::new(self.base(Kind::Symlink, 0o777), target))
    }

    /// A [`DynamicDir`] (mode 0o555, `keep() == false`) whose children `lookup` computes and
    /// `list` enumerates.
    pub fn dynamic_dir(
        &self,
        lookup: impl Fn(&str) -> Result<InodeRef> + Send + Sync + 'static,
        list: impl Fn(&mut dyn FnMut(&str, Kind)) + Send + Sync + 'static,
    ) -> InodeRef {
        InodeRef::new(DynamicDir::new(
            self.base(Kind::Dir, 0o555).keep(false),
            lookup,
            list,
        ))
    }
}

/// What every inode embeds: its reference count, kind, mode, `keep`/`valid` flags and the
/// [`Inodes`] it reports its life to.
///
/// The count starts at one: the reference that [`InodeRef::new`] hands back.
pub struct InodeBase {
    refs: Refs<dyn Inode>,
    kind: Kind,
    mode: u32,
    /// See [`Inode::keep`]. Immutable.
    keep: bool,
    /// See [`Inode::valid`]. Goes from true to false once, through [`InodeBase::invalidate`].
    valid: AtomicBool,
    owner: Inodes,
    /// Under loom, a leaked inode (a missing `dec_ref`) fails the model.
    _track: Track<()>,
}

impl InodeBase {
    /// Sets what [`Inode::keep`] returns (true by default).
    pub fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// Makes [`Inode::valid`] return false from now on: the next lookup through a dentry
    /// that points here drops that dentry from the tree and asks the directory again.
    pub fn invalidate(&self) {
        self.valid.store(false, Ordering::Release);
    }

    /// The [`Inodes`] this inode was made with (to make children with).
    pub fn inodes(&self) -> &Inodes {
        &self.owner
    }
}

impl fmt::Debug for InodeBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InodeBase")
            .field("kind", &self.kind)
            .field("mode", &format_args!("{:#o}", self.mode))
            .field("refs", &self.refs.read_refs())
            .field("keep", &self.keep)
            .finish()
    }
}

/// An inode: a file, directory or symlink, with its own reference count.
///
/// The trait is object safe; the filesystem holds inodes as `dyn Inode` through
/// [`InodeRef`]. Implement [`base`](Inode::base) and the operations your kind supports; the
/// others default to the right error.
///
/// # Locks
/// Inode methods are called with the filesystem lock held (and, for `lookup`, the parent
/// dentry's children lock), so an inode's own locks come after those in the lock order (see
/// [`super::Filesystem`]). An inode method must not call back into the filesystem, and must
/// not hold its own lock while it drops an [`InodeRef`] (that may destroy another inode).
pub trait Inode: Send + Sync + 'static {
    /// The embedded reference count and attributes.
    fn base(&self) -> &InodeBase;

    /// The kind of file.
    fn kind(&self) -> Kind {
        self.base().kind
    }

    /// The permission bits.
    fn mode(&self) -> u32 {
        self.base().mode
    }

    /// Whether a dentry made by [`lookup`](Inode::lookup) for this inode should stay in the
    /// dentry tree (through the dentry cache) after the operation that made it. When false
    /// the dentry lives only as long as the operation, or as whoever took a reference on it.
    fn keep(&self) -> bool {
        self.base().keep
    }

    /// Whether dentries pointing here are still good. When false, the next lookup of the
    /// name drops the dentry from the tree and asks the directory again.
    fn valid(&self) -> bool {
        self.base().valid.load(Ordering::Acquire)
    }

    /// The child called `name`, with a new reference whose ownership passes to the caller
    /// (the filesystem gives it to the new dentry).
    fn lookup(&self, _name: &str) -> Result<InodeRef> {
        Err(Error::NotDir)
    }

    /// Calls `f` with each entry, in the directory's order.
    fn iter_dirents(&self, _f: &mut dyn FnMut(&str, Kind)) -> Result<()> {
        Err(Error::NotDir)
    }

    /// Whether the directory has any entry.
    fn has_children(&self) -> bool {
        false
    }

    /// Makes an empty regular file called `name`; returns it with a reference for the caller.
    fn new_file(&self, _name: &str) -> Result<InodeRef> {
        Err(refusal(self.kind()))
    }

    /// Makes an empty directory called `name`; returns it with a reference for the caller.
    fn new_dir(&self, _name: &str) -> Result<InodeRef> {
        Err(refusal(self.kind()))
    }

    /// Makes a symlink called `name` to `target`; returns it with a reference for the caller.
    fn new_symlink(&self, _name: &str, _target: &str) -> Result<InodeRef> {
        Err(refusal(self.kind()))
    }

    /// Adds `target` under `name` (a hard link, or a child when building a tree); returns it
    /// with a new reference for the caller.
    fn new_link(&self, _name: &str, _target: &InodeRef) -> Result<InodeRef> {
        Err(refusal(self.kind()))
    }

    /// Removes the non-directory `child` called `name`.
    fn unlink(&self, _name: &str, _child: &InodeRef) -> Result<()> {
        Err(refusal(self.kind()))
    }

    /// Removes the empty directory `child` called `name`.
    fn rmdir(&self, _name: &str, _child: &InodeRef) -> Result<()> {
        Err(refusal(self.kind()))
    }

    /// Moves `child` from `old` here to `new` in `dst`, first removing `replaced` (the inode
    /// already called `new` in `dst`, checked by the caller) if any. Either everything
    /// happens or nothing does.
    ///
    /// Preconditions: the filesystem lock is held for writing (renames are serialised).
    fn rename(
        &self,
        _old: &str,
        _new: &str,
        _child: &InodeRef,
        _dst: &InodeRef,
        _replaced: Option<&InodeRef>,
    ) -> Result<()> {
        Err(refusal(self.kind()))
    }

    /// This directory's ordered children, if it keeps them in [`OrderedChildren`] (which is
    /// how [`StaticDir::rename`](Inode::rename) moves an inode into another directory).
    fn ordered_children(&self) -> Option<&OrderedChildren> {
        None
    }

    /// A regular file's bytes.
    fn read(&self) -> Result<Vec<u8>> {
        Err(match self.kind() {
            Kind::Dir => Error::IsDir,
            _ => Error::Invalid,
        })
    }

    /// Replaces a regular file's bytes.
    fn write(&self, _data: &[u8]) -> Result<()> {
        Err(match self.kind() {
            Kind::Dir => Error::IsDir,
            _ => Error::Invalid,
        })
    }

    /// A symlink's target.
    fn readlink(&self) -> Result<String> {
        Err(Error::Invalid)
    }

    /// See [`Stat::size`].
    fn size(&self) -> u64 {
        0
    }

    /// Ends the inode's life: called exactly once, when its last reference is dropped.
    /// Directories drop their references on their children here.
    fn destroy(&self) {}
}

/// The error of a directory operation an inode does not implement: a directory refuses it
/// (`EPERM`), anything else is not a directory (`ENOTDIR`).
fn refusal(kind: Kind) -> Error {
    if kind == Kind::Dir {
        Error::NotPermitted
    } else {
        Error::NotDir
    }
}

/// One counted reference on an inode: clone adds a reference, drop removes one, and the
/// last drop destroys the inode (and unregisters it from the leak registry).
pub struct InodeRef {
    /// `None` only transiently, inside [`InodeRef::into_arc`].
    inode: Option<Arc<dyn Inode>>,
}

/// What the leak registry keeps of a live inode.
struct RegisteredInode {
    inode: Arc<dyn Inode>,
    type_name: &'static str,
}

impl CheckedObject for RegisteredInode {
    fn id(&self) -> usize {
        arc_id(&self.inode)
    }
    fn ref_type(&self) -> &'static str {
        self.type_name
    }
    fn leak_message(&self) -> String {
        format!(
            "[{} {:#x}] {:?} inode with {} references instead of 0",
            self.type_name,
            self.id(),
            self.inode.kind(),
            self.inode.base().refs.read_refs()
        )
    }
}

/// How an inode is named when it leaves the registry (it registers under its concrete type).
const INODE_TYPE: &str = "refwatch::kernfs::Inode";

pub(crate) fn arc_id<T: ?Sized>(arc: &Arc<T>) -> usize {
    Arc::as_ptr(arc) as *const () as usize
}

impl InodeRef {
    /// Wraps a new inode, taking over the reference its [`InodeBase`] was made with, and
    /// registers it with its [`Inodes`]' leak registry.
    pub fn new<I: Inode>(inode: I) -> InodeRef {
        let inode: Arc<dyn Inode> = arc_from_box(Box::new(inode) as Box<dyn Inode>);
        let base = inode.base();
        base.owner.live.fetch_add(1, Ordering::Relaxed);
        if let Some(registry) = &base.owner.registry {
            // Whatever the mode is now: `Inodes` read it once, and the inode unregisters on
            // that reading when it is destroyed.
            registry.register_always(RegisteredInode {
                inode: Arc::clone(&inode),
                type_name: type_name::<I>(),
            });
        }
        InodeRef { inode: Some(inode) }
    }

    fn arc(&self) -> &Arc<dyn Inode> {
        self.inode
            .as_ref()
            .expect("refwatch::kernfs::InodeRef used after into_arc")
    }

    /// Whether two references point at the same inode.
    pub fn ptr_eq(a: &InodeRef, b: &InodeRef) -> bool {
        Arc::ptr_eq(a.arc(), b.arc())
    }

    /// The inode number (stable while the inode is alive; two names of one inode share it).
    pub fn ino(&self) -> u64 {
        arc_id(self.arc()) as u64
    }

    /// The number of references (racy: for diagnostics and tests).
    pub fn ref_count(&self) -> u64 {
        self.base().refs.read_refs()
    }

    /// `stat` of this inode.
    pub fn stat(&self) -> Stat {
        stat_of(&**self.arc(), self.ino())
    }

    /// Adds `child` under `name` in this directory (building a tree before mounting it);
    /// the directory takes over the reference.
    pub fn add_child(&self, name: &str, child: InodeRef) -> Result<()> {
        super::path::check_name(name)?;
        self.new_link(name, &child).map(drop)
    }

    /// Gives up this reference without dropping it: the caller now owns it and must hand it
    /// back to [`InodeRef::from_arc`] exactly once (a dentry does, when it is destroyed).
    pub(crate) fn into_arc(mut self) -> Arc<dyn Inode> {
        self.inode
            .take()
            .expect("refwatch::kernfs::InodeRef used after into_arc")
    }

    /// Takes back a reference given up by [`InodeRef::into_arc`].
    pub(crate) fn from_arc(inode: Arc<dyn Inode>) -> InodeRef {
        InodeRef { inode: Some(inode) }
    }

    /// A new reference on an inode the caller holds a reference on.
    pub(crate) fn clone_arc(inode: &Arc<dyn Inode>) -> InodeRef {
        inode.base().refs.inc_ref();
        InodeRef {
            inode: Some(Arc::clone(inode)),
        }
    }
}

pub(crate) fn stat_of(inode: &dyn Inode, ino: u64) -> Stat {
    Stat {
        kind: inode.kind(),
        mode: inode.mode(),
        ino,
        size: inode.size(),
    }
}

impl Deref for InodeRef {
    type Target = dyn Inode;

    fn deref(&self) -> &(dyn Inode + 'static) {
        &**self.arc()
    }
}

impl Clone for InodeRef {
    fn clone(&self) -> Self {
        InodeRef::clone_arc(self.arc())
    }
}

impl Drop for InodeRef {
    fn drop(&mut self) {
        let Some(inode) = self.inode.take() else {
            return;
        };
        let base = inode.base();
        base.refs.dec_ref(|| {
            inode.destroy();
            if let Some(registry) = &base.owner.registry {
                registry.unregister(arc_id(&inode), INODE_TYPE);
            }
            base.owner.live.fetch_sub(1, Ordering::Release);
        });
    }
}

impl fmt::Debug for InodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inode {
            Some(inode) => f
                .debug_struct("InodeRef")
                .field("ino", &format_args!("{:#x}", arc_id(inode)))
                .field("base", inode.base())
                .finish(),
            None => f.write_str("InodeRef(<moved>)"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ready-made inodes
// ---------------------------------------------------------------------------------------------

/// A regular file with bytes.
///
/// Protected by `data`'s lock (an inode lock): the contents.
#[derive(Debug)]
pub struct RegularFile {
    base: InodeBase,
    data: Mutex<Vec<u8>>,
}

impl RegularFile {
    /// A file holding `data`.
    pub fn new(base: InodeBase, data: Vec<u8>) -> Self {
        RegularFile {
            base,
            data: Mutex::new(data),
        }
    }
}

impl Inode for RegularFile {
    fn base(&self) -> &InodeBase {
        &self.base
    }
    fn read(&self) -> Result<Vec<u8>> {
        Ok(self.data.lock().clone())
    }
    fn write(&self, data: &[u8]) -> Result<()> {
        let mut contents = self.data.lock();
        contents.clear();
        contents.extend_from_slice(data);
        Ok(())
    }
    fn size(&self) -> u64 {
        self.data.lock().len() as u64
    }
}

/// A symbolic link: a target path, never followed by kernfs.
#[derive(Debug)]
pub struct Symlink {
    base: InodeBase,
    target: String,
}

impl Symlink {
    /// A symlink to `target`.
    pub fn new(base: InodeBase, target: &str) -> Self {
        Symlink {
            base,
            target: target.to_owned(),
        }
    }
}

impl Inode for Symlink {
    fn base(&self) -> &InodeBase {
        &self.base
    }
    fn readlink(&self) -> Result<String> {
        Ok(self.target.clone())
    }
    fn size(&self) -> u64 {
        self.target.len() as u64
    }
}

/// A directory whose entries are stored: an [`OrderedChildren`] holding a reference on every
/// child inode, iterated in insertion order. New entries are made with the directory's
/// [`Inodes`].
#[derive(Debug)]
pub struct StaticDir {
    base: InodeBase,
    children: OrderedChildren,
}

impl StaticDir {
    /// An empty directory.
    pub fn new(base: InodeBase) -> Self {
        StaticDir {
            base,
            children: OrderedChildren::new(),
        }
    }

    fn add(&self, name: &str, inode: InodeRef) -> Result<InodeRef> {
        self.children.insert(name, inode.clone())?;
        Ok(inode)
    }
}

impl Inode for StaticDir {
    fn base(&self) -> &InodeBase {
        &self.base
    }
    fn lookup(&self, name: &str) -> Result<InodeRef> {
        self.children.lookup(name)
    }
    fn iter_dirents(&self, f: &mut dyn FnMut(&str, Kind)) -> Result<()> {
        self.children.for_each(f);
        Ok(())
    }
    fn has_children(&self) -> bool {
        !self.children.is_empty()
    }
    fn new_file(&self, name: &str) -> Result<InodeRef> {
        self.add(name, self.base.owner.file(Vec::new()))
    }
    fn new_dir(&self, name: &str) -> Result<InodeRef> {
        self.add(name, self.base.owner.dir())
    }
    fn new_symlink(&self, name: &str, target: &str) -> Result<InodeRef> {
        self.add(name, self.base.owner.symlink(target))
    }
    fn new_link(&self, name: &str, target: &InodeRef) -> Result<InodeRef> {
        self.add(name, target.clone())
    }
    fn unlink(&self, name: &str, child: &InodeRef) -> Result<()> {
        if child.kind() == Kind::Dir {
            return Err(Error::IsDir);
        }
        drop(self.children.remove(name, child)?);
        Ok(())
    }
    fn rmdir(&self, name: &str, child: &InodeRef) -> Result<()> {
        if child.kind() != Kind::Dir {
            return Err(Error::NotDir);
        }
        if child.has_children() {
            return Err(Error::NotEmpty);
        }
        drop(self.children.remove(name, child)?);
        Ok(())
    }
    fn rename(
        &self,
        old: &str,
        new: &str,
        child: &InodeRef,
        dst: &InodeRef,
        replaced: Option<&InodeRef>,
    ) -> Result<()> {
        let dst_children = dst.ordered_children().ok_or(Error::NotPermitted)?;
        self.children
            .rename_into(old, new, child, dst_children, replaced)
    }
    fn ordered_children(&self) -> Option<&OrderedChildren> {
        Some(&self.children)
    }
    fn destroy(&self) {
        // Taken out under the lock, dropped outside it: dropping may destroy the children.
        drop(self.children.take_all());
    }
}

type LookupFn = dyn Fn(&str) -> Result<InodeRef> + Send + Sync;
type ListFn = dyn Fn(&mut dyn FnMut(&str, Kind)) + Send + Sync;

/// A directory whose children are computed on every lookup, like `/proc/<pid>`: nothing is
/// stored, so `keep()` is false by default and no entry can be created or removed.
pub struct DynamicDir {
    base: InodeBase,
    lookup: Box<LookupFn>,
    list: Box<ListFn>,
}

impl fmt::Debug for DynamicDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicDir")
            .field("base", &self.base)
            .finish()
    }
}

impl DynamicDir {
    /// A directory whose child `name` is `lookup(name)` and whose listing is `list`.
    pub fn new(
        base: InodeBase,
        lookup: impl Fn(&str) -> Result<InodeRef> + Send + Sync + 'static,
        list: impl Fn(&mut dyn FnMut(&str, Kind)) + Send + Sync + 'static,
    ) -> Self {
        DynamicDir {
            base,
            lookup: Box::new(lookup),
            list: Box::new(list),
        }
    }
}

impl Inode for DynamicDir {
    fn base(&self) -> &InodeBase {
        &self.base
    }
    fn lookup(&self, name: &str) -> Result<InodeRef> {
        (self.lookup)(name)
    }
    fn iter_dirents(&self, f: &mut dyn FnMut(&str, Kind)) -> Result<()> {
        (self.list)(f);
        Ok(())
    }
    fn has_children(&self) -> bool {
        let mut any = false;
        (self.list)(&mut |_, _| any = true);
        any
    }
}
