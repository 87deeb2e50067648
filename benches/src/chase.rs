//! A pointer chase: the machine's own cost of a dependent random read, the unit in which the
//! conntrack bench reports lookups.
//!
//! A table lookup at a million connections costs mostly cache and TLB misses, so its time in
//! nanoseconds says more about the machine than about the table. Timing, in the same run, a
//! chain of reads `i = buf[i]` over a buffer as large as the table (each read's address
//! depends on the previous one, so the misses cannot overlap) gives the price of one miss at
//! that size; a lookup's time over it counts the misses a lookup pays.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A buffer of indices forming one random cycle through all of its slots, and where the chase
/// stands in it.
#[derive(Debug)]
pub struct Chase {
    next: Vec<usize>,
    at: AtomicUsize,
}

impl Chase {
    /// A chase over `bytes` bytes (at least two slots), its cycle drawn from `seed`.
    ///
    /// One cycle (Sattolo's algorithm), not any permutation: a random permutation has short
    /// cycles, and a chase caught in one would read a few cached lines forever.
    pub fn with_bytes(bytes: usize, seed: u64) -> Chase {
        let len = (bytes / size_of::<usize>()).max(2);
        let mut next: Vec<usize> = (0..len).collect();
        let mut rng = XorShift(seed | 1);
        for i in (1..len).rev() {
            let j = rng.below(i);
            next.swap(i, j);
        }
        Chase {
            next,
            at: AtomicUsize::new(0),
        }
    }

    /// The buffer's size in bytes.
    pub fn bytes(&self) -> usize {
        self.next.len() * size_of::<usize>()
    }

    /// Follows `n` links from where the last call stopped.
    #[inline]
    pub fn run(&self, n: u64) {
        let mut i = self.at.load(Ordering::Relaxed);
        for _ in 0..n {
            i = self.next[i];
        }
        self.at.store(black_box(i), Ordering::Relaxed);
    }
}

/// Marsaglia's xorshift64: enough randomness for a shuffle, and no dependency.
struct XorShift(u64);

impl XorShift {
    /// A number in `0..bound` (`bound` ≥ 1; the modulo bias is irrelevant here).
    fn below(&mut self, bound: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chase_visits_every_slot_once_per_lap() {
        let chase = Chase::with_bytes(1000 * size_of::<usize>(), 42);
        let mut seen = vec![false; 1000];
        let mut i = 0;
        for _ in 0..1000 {
            assert!(!seen[i], "slot {i} visited twice in one lap");
            seen[i] = true;
            i = chase.next[i];
        }
        assert_eq!(i, 0, "one lap ends where it began");
        chase.run(1000);
        assert_eq!(chase.at.load(Ordering::Relaxed), 0);
        assert_eq!(chase.bytes(), 8000);
    }
}
