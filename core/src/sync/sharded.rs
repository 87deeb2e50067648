//! A reader-writer lock whose readers write no shared cache line: one `RwLock` per shard,
//! readers take their thread's shard, writers take every shard.

use super::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::fmt;

/// A reader-writer lock for read-mostly data, in the manner of Linux's `percpu_rw_semaphore`
/// (and the "big reader" locks before it): one [`RwLock`] per shard; a reader locks only its
/// own thread's shard, a writer locks all of them, in index order.
///
/// A plain `RwLock` counts its readers in one word, which every reader writes: two cores
/// that only read still pass that cache line back and forth. Here readers on different
/// threads usually touch different shards (each padded to its own cache line), and a writer
/// pays one lock per shard. It guards no data of its own (`()`): it orders whatever the
/// caller protects with it, as kernfs's filesystem lock does.
///
/// Exclusion: a writer holds every shard, and a reader holds one, so a writer and a reader
/// never hold the lock at once, whichever shard the reader took. Deadlock freedom: every
/// writer takes the shards in ascending order and a reader takes one, so no cycle of waits
/// forms. As with `RwLock`, a thread must not take the lock again while it holds it.
///
/// The loom model `loom_kernfs::sharded_lock_keeps_writers_out_of_every_shard` checks the
/// exclusion with readers on different shards; the mutant `sharded_lock_writer_skips_a_shard`
/// (a writer that leaves the last shard out) fails it.
///
/// ```
/// # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
/// use refwatch::sync::ShardedRwLock;
///
/// let lock = ShardedRwLock::with_shards(4);
/// {
///     let _a = lock.read();
///     let _b = lock.read_shard(3); // another reader, on another shard
/// }
/// let _w = lock.write(); // every shard
/// assert_eq!(lock.shards(), 4);
/// ```
pub struct ShardedRwLock {
    shards: Box<[Padded<RwLock<()>>]>,
}

/// Keeps each shard on cache lines of its own (128 bytes: adjacent-line prefetch on x86).
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// A reader's hold on one shard of a [`ShardedRwLock`].
#[must_use = "the lock is released when the guard is dropped"]
pub struct ShardedReadGuard<'a> {
    _guard: RwLockReadGuard<'a, ()>,
}

/// A writer's hold on every shard of a [`ShardedRwLock`].
#[must_use = "the lock is released when the guard is dropped"]
pub struct ShardedWriteGuard<'a> {
    _guards: Vec<RwLockWriteGuard<'a, ()>>,
}

impl ShardedRwLock {
    /// A lock with one shard per available core, rounded up to a power of two (at most 64;
    /// two in a model, so that the models see readers on different shards).
    pub fn new() -> Self {
        Self::with_shards(default_shards())
    }

    /// A lock with `shards` shards (at least one: zero is taken as one).
    pub fn with_shards(shards: usize) -> Self {
        let shards = (0..shards.max(1)).map(|_| Padded::default()).collect();
        ShardedRwLock { shards }
    }

    /// How many shards the lock has.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Locks the calling thread's shard for reading.
    pub fn read(&self) -> ShardedReadGuard<'_> {
        self.read_shard(thread_shard())
    }

    /// Locks shard `i` (modulo the number of shards) for reading: any shard excludes every
    /// writer. For tests and models that place readers on chosen shards.
    pub fn read_shard(&self, i: usize) -> ShardedReadGuard<'_> {
        ShardedReadGuard {
            _guard: self.shards[i % self.shards.len()].0.read(),
        }
    }

    /// Locks every shard for writing, in ascending order.
    pub fn write(&self) -> ShardedWriteGuard<'_> {
        ShardedWriteGuard {
            _guards: self.shards.iter().map(|s| s.0.write()).collect(),
        }
    }
}

impl Default for ShardedRwLock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ShardedRwLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedRwLock")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl fmt::Debug for ShardedReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShardedReadGuard")
    }
}

impl fmt::Debug for ShardedWriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedWriteGuard")
            .field("shards", &self._guards.len())
            .finish()
    }
}

#[cfg(not(any(loom, shuttle)))]
fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .next_power_of_two()
        .min(64)
}

#[cfg(any(loom, shuttle))]
fn default_shards() -> usize {
    2
}

/// The calling thread's shard hint: threads are numbered in the order they first take a
/// sharded lock, so two threads land on different shards until there are more threads than
/// shards.
#[cfg(not(any(loom, shuttle)))]
fn thread_shard() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|s| *s)
}

/// Under a model checker, as outside: model threads are numbered in the order they first
/// take a sharded lock, by the checker's thread-locals and a counter reset for every
/// execution (the model threads share one OS thread, and their ids are not the same from one
/// execution to the next, which the checker would see as non-determinism).
#[cfg(any(loom, shuttle))]
fn thread_shard() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    super::lazy_static! {
        static ref NEXT: AtomicUsize = AtomicUsize::new(0);
    }
    #[cfg(loom)]
    loom::thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    #[cfg(shuttle)]
    shuttle::thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|s| *s)
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn every_shard_is_a_cache_line_of_its_own() {
        assert!(std::mem::align_of::<Padded<RwLock<()>>>() >= 128);
        let lock = ShardedRwLock::with_shards(3);
        let a = &lock.shards[0] as *const _ as usize;
        let b = &lock.shards[1] as *const _ as usize;
        assert!(b - a >= 128);
    }

    #[test]
    fn zero_shards_is_one() {
        assert_eq!(ShardedRwLock::with_shards(0).shards(), 1);
        assert!(ShardedRwLock::new().shards().is_power_of_two());
    }

    #[test]
    fn a_writer_waits_for_a_reader_on_any_shard() {
        let lock = ShardedRwLock::with_shards(4);
        for shard in 0..4 {
            let reader = lock.read_shard(shard);
            assert!(
                lock.shards[shard].0 .0.try_write().is_err(),
                "the reader holds shard {shard}"
            );
            drop(reader);
            let writer = lock.write();
            assert!(lock.shards.iter().all(|s| s.0 .0.try_read().is_err()));
            drop(writer);
        }
    }

    #[test]
    fn threads_spread_over_the_shards() {
        let lock = ShardedRwLock::with_shards(64);
        let shards: std::collections::HashSet<usize> = (0..8)
            .map(|_| std::thread::spawn(|| thread_shard() % 64))
            .map(|t| t.join().unwrap())
            .collect();
        assert!(
            shards.len() >= 2,
            "8 new threads on {} shard(s)",
            shards.len()
        );
        drop(lock);
    }
}
