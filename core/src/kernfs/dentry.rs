//! Dentries: named, counted pointers to inodes, forming a tree that only the filesystem edits.
//!
//! A dentry holds one reference on its inode and one on its parent; an open file holds one
//! on its dentry; the dentry cache holds one on each dentry it keeps. The memory of a dentry
//! is an `Arc` (so that nothing dangles), but its *life* is its [`Refs`] count: at zero the
//! filesystem takes it out of its parent's children, drops its inode reference and — after
//! releasing every lock — its parent reference (see [`super::fs`]).

use super::inode::{arc_id, Inode, InodeRef, Kind};
use crate::leak::CheckedObject;
use crate::refs::{RefCounter, Refs};
use crate::sync::{Arc, Mutex, Track};
use std::collections::HashMap;
use std::fmt;

/// The registry name of a dentry.
pub(crate) const DENTRY_TYPE: &str = "refwatch::kernfs::Dentry";

/// A named pointer to an inode.
///
/// Lock order (see [`super::Filesystem`]): the filesystem lock, then `children`, then the
/// dentry cache lock, then inode locks, then the deferred list lock. `location` is a leaf:
/// nothing is locked while it is held.
pub(crate) struct Dentry {
    pub(crate) refs: Refs<Dentry>,
    /// Holds one counted reference on the inode from creation until the dentry is
    /// destroyed, when [`Dentry::release_inode`] gives it back. The `Arc` itself (memory)
    /// lives as long as the dentry's memory.
    inode: Arc<dyn Inode>,
    /// Immutable copy of `inode.kind()`.
    kind: Kind,
    /// Parent and name. Written only with the filesystem lock held for writing (rename,
    /// destruction), so readers holding the filesystem lock see a stable value.
    location: Mutex<Location>,
    /// Child dentries by name: the dentry tree. Every child here holds a reference on this
    /// dentry, and while the filesystem lock is held every child here is alive (refs > 0):
    /// a dentry leaves this map in the same critical section in which it reaches zero.
    pub(crate) children: Mutex<HashMap<String, Arc<Dentry>>>,
    /// Under loom, a dentry that is never freed fails the model.
    _track: Track<()>,
}

pub(crate) struct Location {
    /// `None` for the root, and for a destroyed dentry (whose parent reference was dropped).
    pub(crate) parent: Option<Arc<Dentry>>,
    pub(crate) name: String,
}

impl Dentry {
    /// A dentry with one reference (the caller's), owning the caller's reference on `inode`.
    pub(crate) fn new(inode: InodeRef, parent: Option<Arc<Dentry>>, name: &str) -> Arc<Dentry> {
        let kind = inode.kind();
        Arc::new(Dentry {
            refs: Refs::new(),
            inode: inode.into_arc(),
            kind,
            location: Mutex::new(Location {
                parent,
                name: name.to_owned(),
            }),
            children: Mutex::new(HashMap::new()),
            _track: Track::new(()),
        })
    }

    pub(crate) fn inode(&self) -> &dyn Inode {
        &*self.inode
    }

    /// A new counted reference on the inode.
    ///
    /// Preconditions: the dentry is alive (the caller holds a reference or the filesystem lock).
    pub(crate) fn inode_ref(&self) -> InodeRef {
        InodeRef::clone_arc(&self.inode)
    }

    pub(crate) fn ino(&self) -> u64 {
        arc_id(&self.inode) as u64
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// The parent (`None` for the root).
    ///
    /// Preconditions: the filesystem lock is held, so no rename moves the dentry meanwhile.
    pub(crate) fn parent(&self) -> Option<Arc<Dentry>> {
        self.location.lock().parent.clone()
    }

    pub(crate) fn name(&self) -> String {
        self.location.lock().name.clone()
    }

    pub(crate) fn location(&self) -> crate::sync::MutexGuard<'_, Location> {
        self.location.lock()
    }

    /// Drops the dentry's reference on its inode.
    ///
    /// Preconditions: called once, by the destructor of the dentry.
    pub(crate) fn release_inode(&self) {
        drop(InodeRef::from_arc(Arc::clone(&self.inode)));
    }
}

impl fmt::Debug for Dentry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dentry")
            .field("name", &self.name())
            .field("kind", &self.kind)
            .field("refs", &self.refs.read_refs())
            .finish()
    }
}

/// What the leak registry keeps of a live dentry.
pub(crate) struct RegisteredDentry(pub(crate) Arc<Dentry>);

impl CheckedObject for RegisteredDentry {
    fn id(&self) -> usize {
        arc_id(&self.0)
    }
    fn ref_type(&self) -> &'static str {
        DENTRY_TYPE
    }
    fn leak_message(&self) -> String {
        format!(
            "[{DENTRY_TYPE} {:#x}] {:?} ({:?}) with {} references instead of 0",
            self.id(),
            self.0.name(),
            self.0.kind,
            self.0.refs.read_refs()
        )
    }
}
