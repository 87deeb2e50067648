//! The dentry cache: a bounded LRU that holds one reference on each dentry it keeps, so
//! that repeated lookups of kept names find their dentry instead of rebuilding it.
//!
//! Seed 002 stopped caching lookup dentries altogether (every one lived only for its
//! operation) and announced an LRU on top; this is it. The cache never drops a reference
//! itself: inserting into a full cache *returns* the evicted entry, and the filesystem puts
//! its reference on the deferred list, because eviction happens with the filesystem lock held.

use std::collections::{BTreeMap, HashMap};

/// A least-recently-used set of values keyed by a stable id, holding at most `capacity`.
///
/// Not synchronised: the filesystem keeps it behind its cache lock, which comes after the
/// dentry children locks and before the deferred-list lock in the lock order.
#[derive(Debug)]
pub(crate) struct Lru<T> {
    capacity: usize,
    /// The next use stamp; larger is more recent.
    clock: u64,
    /// id → use stamp.
    stamps: HashMap<usize, u64>,
    /// use stamp → (id, value), oldest first.
    order: BTreeMap<u64, (usize, T)>,
}

impl<T> Lru<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Lru {
            capacity,
            clock: 0,
            stamps: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.stamps.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Adds `value` as the most recently used. Returns what no longer fits: the least
    /// recently used entry, `value` itself when the capacity is zero, or `value` again if
    /// `id` was already cached (the cache holds one reference per id).
    pub(crate) fn insert(&mut self, id: usize, value: T) -> Option<T> {
        if self.capacity == 0 {
            return Some(value);
        }
        if self.stamps.contains_key(&id) {
            self.touch(id);
            return Some(value);
        }
        let evicted = if self.stamps.len() >= self.capacity {
            let (_, (old_id, old)) = self.order.pop_first().expect("a full cache is not empty");
            self.stamps.remove(&old_id);
            Some(old)
        } else {
            None
        };
        let stamp = self.tick();
        self.stamps.insert(id, stamp);
        self.order.insert(stamp, (id, value));
        evicted
    }

    /// Marks `id` as the most recently used; returns whether it is cached.
    pub(crate) fn touch(&mut self, id: usize) -> bool {
        let Some(&old) = self.stamps.get(&id) else {
            return false;
        };
        if old == self.clock {
            return true; // already the most recent
        }
        let stamp = self.tick();
        let entry = self.order.remove(&old).expect("stamps and order agree");
        self.order.insert(stamp, entry);
        self.stamps.insert(id, stamp);
        true
    }

    /// Takes `id` out of the cache, with its value.
    pub(crate) fn remove(&mut self, id: usize) -> Option<T> {
        let stamp = self.stamps.remove(&id)?;
        self.order.remove(&stamp).map(|(_, v)| v)
    }

    /// Takes everything out, oldest first.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.stamps.clear();
        std::mem::take(&mut self.order)
            .into_values()
            .map(|(_, v)| v)
            .collect()
    }

    /// The values, oldest first.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.order.values().map(|(_, v)| v)
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        assert_eq!(lru.insert(1, "a"), None);
        assert_eq!(lru.insert(2, "b"), None);
        assert!(lru.touch(1));
        assert_eq!(lru.insert(3, "c"), Some("b"), "2 was used least recently");
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.values().copied().collect::<Vec<_>>(), ["a", "c"]);
        assert!(!lru.touch(2));
    }

    #[test]
    fn zero_capacity_hands_every_value_back() {
        let mut lru = Lru::new(0);
        assert_eq!(lru.insert(1, "a"), Some("a"));
        assert_eq!(lru.len(), 0);
    }

    #[test]
    fn inserting_a_cached_id_returns_the_extra_value() {
        let mut lru = Lru::new(4);
        assert_eq!(lru.insert(1, "a"), None);
        assert_eq!(lru.insert(1, "a2"), Some("a2"));
        assert_eq!(lru.len(), 1);
    }

    #[test]
    fn remove_and_drain_empty_it() {
        let mut lru = Lru::new(3);
        lru.insert(1, 10);
        lru.insert(2, 20);
        lru.insert(3, 30);
        assert_eq!(lru.remove(2), Some(20));
        assert_eq!(lru.remove(2), None);
        assert_eq!(lru.insert(4, 40), None, "room after a removal");
        assert_eq!(lru.drain(), [10, 30, 40]);
        assert_eq!(lru.len(), 0);
        assert!(!lru.touch(1));
    }
}
