//! The `/proc/<n>` fixture that refwatch's own tests, benches, proptests and models build
//! kernfs trees with: one definition instead of one per test suite.
//!
//! Compiled only for refwatch's unit tests and with the `testing` cargo feature, which the
//! workspace's test crates turn on through their dev-dependencies (`cargo test` builds it;
//! a normal build of refwatch, and any crate that depends on it without the feature, does
//! not). Not part of the public API: it may change with any release.
//!
//! Usage: `Proc::new().keep(|n| n % 2 == 0).mount(&inodes)` is a root directory holding
//! `/proc`, whose even names are kept by the dentry cache; `proc.lookups()` (taken before
//! `build` or `mount`) counts the lookups it answered.

use super::{Error, InodeRef, Inodes, Kind, RegularFile};
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::Arc;
use std::fmt;

type KeepFn = dyn Fn(u64) -> bool + Send + Sync;
type ContentsFn = dyn Fn(u64) -> Vec<u8> + Send + Sync;

/// A dynamic directory like `/proc`: every decimal name (below a limit, if one is set) is a
/// regular file (mode 0o444) made afresh by each lookup.
///
/// By default a file's dentry is not kept ([`Inode::keep`](super::Inode::keep) is false),
/// its contents are its name, any `u64` is a name, and the listing is empty.
pub struct Proc {
    keep: Box<KeepFn>,
    contents: Box<ContentsFn>,
    below: Option<u64>,
    listed: Vec<String>,
    lookups: Lookups,
}

impl Default for Proc {
    fn default() -> Self {
        Proc::new()
    }
}

impl fmt::Debug for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proc")
            .field("below", &self.below)
            .field("listed", &self.listed)
            .finish_non_exhaustive()
    }
}

impl Proc {
    /// The defaults above.
    pub fn new() -> Self {
        Proc {
            keep: Box::new(|_| false),
            contents: Box::new(|n| n.to_string().into_bytes()),
            below: None,
            listed: Vec::new(),
            lookups: Lookups(Arc::new(AtomicUsize::new(0))),
        }
    }

    /// Whether the dentry of `/proc/<n>` is kept (by the dentry cache) after the operation
    /// that made it.
    pub fn keep(mut self, keep: impl Fn(u64) -> bool + Send + Sync + 'static) -> Self {
        self.keep = Box::new(keep);
        self
    }

    /// What `/proc/<n>` contains.
    pub fn contents(mut self, contents: impl Fn(u64) -> Vec<u8> + Send + Sync + 'static) -> Self {
        self.contents = Box::new(contents);
        self
    }

    /// Only the names below `limit` exist; the others are [`Error::NotFound`].
    pub fn names_below(mut self, limit: u64) -> Self {
        self.below = Some(limit);
        self
    }

    /// What `readdir` lists (as files), in this order.
    pub fn listed(mut self, names: &[&str]) -> Self {
        self.listed = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// The count of successful lookups, shared with the directory once it is built.
    pub fn lookups(&self) -> Lookups {
        self.lookups.clone()
    }

    /// The directory, with its files made by `inodes`.
    pub fn build(self, inodes: &Inodes) -> InodeRef {
        let Proc {
            keep,
            contents,
            below,
            listed,
            lookups,
        } = self;
        let files = inodes.clone();
        inodes.dynamic_dir(
            move |name| {
                let n: u64 = name.parse().map_err(|_| Error::NotFound)?;
                if below.is_some_and(|limit| n >= limit) {
                    return Err(Error::NotFound);
                }
                lookups.0.fetch_add(1, Ordering::Relaxed);
                Ok(InodeRef::new(RegularFile::new(
                    files.base(Kind::File, 0o444).keep(keep(n)),
                    contents(n),
                )))
            },
            move |list| {
                for name in &listed {
                    list(name, Kind::File);
                }
            },
        )
    }

    /// A root directory (made by `inodes`) holding this directory as `proc`.
    pub fn mount(self, inodes: &Inodes) -> InodeRef {
        let root = inodes.dir();
        root.add_child("proc", self.build(inodes))
            .expect("a new directory has no `proc` yet");
        root
    }
}

/// How many lookups a [`Proc`] directory has answered with a file.
#[derive(Clone)]
pub struct Lookups(Arc<AtomicUsize>);

impl Lookups {
    /// The count so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Lookups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Lookups").field(&self.get()).finish()
    }
}
