//! A kernfs-style dentry/inode tree with deferred DecRef and a bounded dentry cache (seed 002).
//!
//! Inodes are the files; dentries are the names the filesystem has looked up. The two have
//! independent reference counts:
//!
//! - a directory inode ([`StaticDir`], on [`OrderedChildren`]) holds a reference on every
//!   child inode, so inodes outlive the dentries that point at them;
//! - a dentry holds a reference on its inode and on its parent dentry; an open [`File`]
//!   holds one on its dentry; the dentry cache holds one on each dentry it keeps;
//! - a dentry made by a lookup lives only for the operation unless its inode says
//!   [`keep`](Inode::keep) (then the bounded LRU cache keeps it) or someone took a reference,
//!   so walking a million names in a [`DynamicDir`] leaves memory flat;
//! - at zero references a dentry leaves its parent's children and drops its inode reference;
//!   its parent reference is dropped after every lock is released; references dropped while
//!   the filesystem lock is held are deferred until it is released.
//!
//! The lock order — filesystem lock, dentry children lock, dentry cache lock, inode locks,
//! deferred list lock — is documented on [`Filesystem`].
//!
//! ```
//! # if refwatch::sync::MODEL_CHECKED { return Ok(()); } // primitives work only in a model
//! use refwatch::kernfs::{Filesystem, Inodes, Kind, Options};
//!
//! let inodes = Inodes::new();
//! let root = inodes.dir();
//! let files = inodes.clone();
//! // /proc-like: any decimal name is a file whose contents are the name doubled.
//! root.add_child("proc", inodes.dynamic_dir(
//!     move |name| {
//!         let n: u64 = name.parse().map_err(|_| refwatch::kernfs::Error::NotFound)?;
//!         Ok(files.file((n * 2).to_string().into_bytes()))
//!     },
//!     |_list| {},
//! ))?;
//! let fs = Filesystem::with_options(root, Options { cache_capacity: 16, ..Options::default() })?;
//! for pid in 0..10_000 {
//!     assert_eq!(fs.stat(&format!("/proc/{pid}"))?.kind, Kind::File);
//! }
//! assert!(fs.stats().peak_live_dentries <= 16 + 3, "bounded by the cache, not by the walk");
//! assert_eq!(fs.open("/proc/21")?.read()?, b"42");
//! drop(fs);
//! assert_eq!(inodes.live(), 0);
//! # Ok::<(), refwatch::kernfs::Error>(())
//! ```

mod cache;
mod dentry;
mod error;
mod fs;
mod inode;
mod ordered;
mod path;

pub use error::{Error, Result};
pub use fs::{File, Filesystem, Options, Stats, DEFAULT_CACHE_CAPACITY};
pub use inode::{
    Dirent, DynamicDir, Inode, InodeBase, InodeRef, Inodes, Kind, RegularFile, Stat, StaticDir,
    Symlink,
};
pub use ordered::OrderedChildren;
pub use path::{NAME_MAX, PATH_MAX};

/// The `/proc/<n>` fixture of refwatch's own tests, benches, proptests and models: only for
/// unit tests and with the `testing` feature (see the module).
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests;
