//! Ordered children: a directory's entries, holding a reference on every child inode and
//! iterated in insertion order.
//!
//! This is the *inode tree* of seed 002: because the directory holds the child inodes, a
//! dentry can be dropped at any time and rebuilt from the inode by the next lookup.
//!
//! ```
//! # if refwatch::sync::MODEL_CHECKED { return Ok(()); } // primitives work only in a model
//! use refwatch::kernfs::{Inodes, OrderedChildren};
//!
//! let inodes = Inodes::new();
//! let children = OrderedChildren::new();
//! children.insert("b", inodes.file(Vec::new()))?;
//! children.insert("a", inodes.dir())?;
//! let mut names = Vec::new();
//! children.for_each(&mut |name, _| names.push(name.to_owned()));
//! assert_eq!(names, ["b", "a"]); // insertion order, not sorted
//! # Ok::<(), refwatch::kernfs::Error>(())
//! ```

use super::error::{Error, Result};
use super::inode::{InodeRef, Kind};
use crate::sync::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A directory's entries in insertion order, each holding one reference on its inode.
///
/// Protected by `inner`'s lock, an inode lock (after the filesystem and dentry children
/// locks in the lock order). No method holds it while an [`InodeRef`] is dropped: removed
/// references are returned to the caller, who drops them after the lock is released.
pub struct OrderedChildren {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// The next insertion sequence number.
    next: u64,
    /// Sequence number → entry: iteration order.
    order: BTreeMap<u64, (String, InodeRef)>,
    /// Name → sequence number.
    index: HashMap<String, u64>,
}

impl Entries {
    fn insert(&mut self, name: &str, inode: InodeRef) {
        let seq = self.next;
        self.next += 1;
        self.index.insert(name.to_owned(), seq);
        self.order.insert(seq, (name.to_owned(), inode));
    }

    /// Removes `name` if it names `expected`.
    fn remove(&mut self, name: &str, expected: &InodeRef) -> Result<InodeRef> {
        let seq = *self.index.get(name).ok_or(Error::NotFound)?;
        let (_, inode) = &self.order[&seq];
        if !InodeRef::ptr_eq(inode, expected) {
            return Err(Error::NotFound);
        }
        self.index.remove(name);
        let (_, inode) = self.order.remove(&seq).expect("index and order agree");
        Ok(inode)
    }
}

impl OrderedChildren {
    /// No entries.
    pub fn new() -> Self {
        OrderedChildren {
            inner: Mutex::new(Entries::default()),
        }
    }

    /// Adds `inode` (and the caller's reference on it) under `name`, last in order.
    pub fn insert(&self, name: &str, inode: InodeRef) -> Result<()> {
        let mut entries = self.inner.lock();
        if entries.index.contains_key(name) {
            drop(entries);
            drop(inode);
            return Err(Error::Exists);
        }
        entries.insert(name, inode);
        Ok(())
    }

    /// A new reference on the child called `name`.
    pub fn lookup(&self, name: &str) -> Result<InodeRef> {
        let entries = self.inner.lock();
        let seq = entries.index.get(name).ok_or(Error::NotFound)?;
        Ok(entries.order[seq].1.clone())
    }

    /// Removes `name` if it names `expected`, and returns the directory's reference on it.
    pub fn remove(&self, name: &str, expected: &InodeRef) -> Result<InodeRef> {
        self.inner.lock().remove(name, expected)
    }

    /// Moves `child` from `old` here to `new` in `dst` (last in its order), after removing
    /// `replaced` from `dst`. Checks everything first: on error nothing has changed.
    ///
    /// Preconditions: the filesystem lock is held for writing, so no other rename, insert
    /// or remove runs between the checks and the changes. The two locks are never held
    /// together.
    pub fn rename_into(
        &self,
        old: &str,
        new: &str,
        child: &InodeRef,
        dst: &OrderedChildren,
        replaced: Option<&InodeRef>,
    ) -> Result<()> {
        let same = std::ptr::eq(self, dst);
        {
            let entries = self.inner.lock();
            let seq = entries.index.get(old).ok_or(Error::NotFound)?;
            if !InodeRef::ptr_eq(&entries.order[seq].1, child) {
                return Err(Error::NotFound);
            }
        }
        {
            let entries = dst.inner.lock();
            match (entries.index.get(new), replaced) {
                (None, None) => {}
                (Some(seq), Some(r)) if InodeRef::ptr_eq(&entries.order[seq].1, r) => {}
                (Some(_), _) => return Err(Error::Exists),
                (None, Some(_)) => return Err(Error::NotFound),
            }
        }
        let victim = match replaced {
            Some(r) => Some(dst.inner.lock().remove(new, r)?),
            None => None,
        };
        let moved = self.inner.lock().remove(old, child)?;
        if same {
            self.inner.lock().insert(new, moved);
        } else {
            dst.inner.lock().insert(new, moved);
        }
        drop(victim);
        Ok(())
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.inner.lock().index.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each entry's name and kind, in insertion order.
    ///
    /// `f` runs with the lock held: it must not touch this directory.
    pub fn for_each(&self, f: &mut dyn FnMut(&str, Kind)) {
        let entries = self.inner.lock();
        for (name, inode) in entries.order.values() {
            f(name, inode.kind());
        }
    }

    /// Removes every entry and returns the references, for the caller to drop with the
    /// lock released (a directory's `destroy`).
    pub fn take_all(&self) -> Vec<InodeRef> {
        let entries = std::mem::take(&mut *self.inner.lock());
        entries
            .order
            .into_values()
            .map(|(_, inode)| inode)
            .collect()
    }
}

impl Default for OrderedChildren {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for OrderedChildren {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.inner.lock();
        f.debug_list()
            .entries(entries.order.values().map(|(name, _)| name))
            .finish()
    }
}
