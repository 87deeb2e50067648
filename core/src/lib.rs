//! refwatch: gVisor's lifetime machinery, rebuilt in Rust and model-checked.
//!
//! - [`refs`]: [`Refs`](refs::Refs), gVisor's 8-byte reference count with a speculative
//!   `try_inc_ref` (and without gVisor's leak), and [`StickyRefs`](refs::StickyRefs), a
//!   one-`fetch_add` alternative; [`handle`] puts a safe RAII layer on top.
//! - [`leak`]: the deterministic live-object registry and its [`LeakReport`](leak::LeakReport).
//! - [`sync`]: the shim that switches every primitive to loom (`--cfg loom`) or shuttle
//!   (`--cfg shuttle`), so that the code that ships is the code that is checked.
//! - [`conntrack`]: connection tracking in a bucketed table with incremental reaping
//!   ([`ConnTable`](conntrack::ConnTable), [`ConnTrack`](conntrack::ConnTrack)).
//! - [`time`]: the injected [`Clock`](time::Clock).
//! - [`kernfs`]: a dentry/inode tree with deferred DecRef and a bounded dentry cache.
//!
//! ```
//! # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
//! use refwatch::handle::Counted;
//!
//! let a = Counted::<Vec<u8>>::new(vec![1, 2, 3]);
//! let weak = Counted::downgrade(&a);
//! assert_eq!(weak.upgrade().map(|h| h.len()), Some(3));
//! drop(a);
//! assert!(weak.upgrade().is_none());
//! ```
#![warn(missing_docs)]

pub mod conntrack;
pub mod handle;
pub mod kernfs;
pub mod leak;
pub mod refs;
pub mod sync;
pub mod time;

/// The README's examples, compiled and run as doctests so that they stay true (not in a
/// model-checked build, where they could only run inside a model: see `build.rs`).
#[cfg(all(doctest, not(refwatch_model_checked)))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
