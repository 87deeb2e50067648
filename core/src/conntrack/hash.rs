//! The table's hash: a keyed multiply-fold over a tuple's machine words, with a random key
//! per table.
//!
//! A [`Tuple`](super::Tuple) hashes as two 64-bit words (IPv4: both addresses in one, ports,
//! protocol and family in the other) or five (IPv6): its `Hash` writes whole words, so any
//! [`BuildHasher`] sees a few `write_u64` calls rather than a dozen small fields.
//! [`KeyedHash`] folds those words two at a time: each pair costs one 64×64→128-bit
//! multiply whose halves are xored together (a *folded multiply*), and a last multiply
//! spreads the result over all 64 bits. An IPv4 tuple costs two multiplies, an IPv6 one four.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// The 128-bit product of `a` and `b`, its two halves xored: every output bit depends on
/// every input bit of both (unless one of them is zero).
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// A random per-table key for [`KeyedHasher`]: the table's default [`BuildHasher`].
///
/// ```
/// use refwatch::conntrack::{KeyedHash, Tuple};
/// use std::hash::BuildHasher;
///
/// let t = Tuple::udp("10.0.0.1:5000".parse().unwrap(), "10.0.0.2:53".parse().unwrap()).unwrap();
/// let key = KeyedHash::new();
/// assert_eq!(key.hash_one(t), key.hash_one(t)); // one key, one hash
/// let fixed = KeyedHash::with_keys([1, 2, 3, 4]);
/// assert_eq!(fixed.hash_one(t), KeyedHash::with_keys([1, 2, 3, 4]).hash_one(t));
/// ```
///
/// Invariant: the key is chosen once and never changes, so a tuple's bucket is fixed for
/// the table's life.
///
/// # Flooding: what the random key buys, and what it does not
///
/// Every [`KeyedHash::new`] (and so every table built with the default hasher) draws a fresh
/// 256-bit key from std's [`RandomState`] (seeded from the operating system's randomness).
/// Each word is xored with key material before it is multiplied, so which bucket a tuple
/// lands in depends on the key: someone who sends packets cannot compute offline a set of
/// flows that share a bucket, and a set that collides in one table (one process, one
/// restart) is scattered in the next — which is what keeps chains short under a flood of
/// chosen flows (a chain walk is linear, so a flood of flows in one bucket would make every
/// packet of that bucket cost the whole chain).
///
/// What it does *not* buy: this is not a cryptographic function and nothing here is proved
/// (SipHash, std's default, is a PRF under standard assumptions; this construction is not).
/// An attacker who can measure timing per flow may learn which of their flows collide and,
/// with enough probes, narrow the key; known structural weaknesses of folded multiplies (an
/// input word equal to its key word zeroes a product) are out of reach only as long as the
/// key is secret. The key also does not limit how many flows there are — a flood of
/// *distinct* flows fills the table evenly, and the maximum and early drop bound that — and a
/// table built with a fixed key ([`KeyedHash::with_keys`], or a `BuildHasherDefault` as the
/// models use) has none of this protection. A deployment that needs a proven bound passes
/// [`RandomState`] to
/// [`with_clock_and_hasher`](crate::conntrack::ConnTable::with_clock_and_hasher): the tuple's word-wise
/// `Hash` makes SipHash cheaper too.
#[derive(Clone, Copy)]
pub struct KeyedHash {
    keys: [u64; 4],
}

impl KeyedHash {
    /// A fresh random key, drawn through std's [`RandomState`].
    pub fn new() -> KeyedHash {
        let seed = RandomState::new();
        KeyedHash {
            keys: [0u64, 1, 2, 3].map(|i| seed.hash_one(i)),
        }
    }

    /// A fixed key: deterministic hashing, for tests and models. No flooding protection.
    pub fn with_keys(keys: [u64; 4]) -> KeyedHash {
        KeyedHash { keys }
    }
}

impl Default for KeyedHash {
    /// A fresh random key, as [`KeyedHash::new`].
    fn default() -> Self {
        KeyedHash::new()
    }
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never print it.
        f.write_str("KeyedHash { .. }")
    }
}

impl BuildHasher for KeyedHash {
    type Hasher = KeyedHasher;

    #[inline]
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher {
            acc: self.keys[2],
            pending: 0,
            odd: false,
            keys: self.keys,
        }
    }
}

/// The hasher of [`KeyedHash`]: words are taken two at a time, each pair folded into the
/// accumulator with one multiply; `finish` folds a last odd word and mixes once more.
#[derive(Clone)]
pub struct KeyedHasher {
    acc: u64,
    /// A word waiting for its pair (when `odd`).
    pending: u64,
    odd: bool,
    keys: [u64; 4],
}

impl std::fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHasher { .. }")
    }
}

impl KeyedHasher {
    #[inline(always)]
    fn pair(&mut self, a: u64, b: u64) {
        self.acc = fold(self.acc ^ a ^ self.keys[0], b ^ self.keys[1]);
    }
}

impl Hasher for KeyedHasher {
    #[inline(always)]
    fn write_u64(&mut self, w: u64) {
        if self.odd {
            self.pair(self.pending, w);
            self.odd = false;
        } else {
            self.pending = w;
            self.odd = true;
        }
    }

    /// Bytes (for types other than [`Tuple`](super::Tuple)): eight at a time as words, the
    /// tail padded, then the length, so that inputs that differ only by trailing zeros differ.
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.write_u64(u64::from_le_bytes(word));
        }
        self.write_u64(bytes.len() as u64);
    }

    #[inline(always)]
    fn finish(&self) -> u64 {
        let mut acc = self.acc;
        if self.odd {
            acc = fold(acc ^ self.pending ^ self.keys[0], self.keys[3]);
        }
        fold(acc ^ self.keys[3], self.keys[2] ^ 0x9e37_79b9_7f4a_7c15)
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use crate::conntrack::Tuple;
    use std::hash::Hash;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    const BUCKETS: usize = 4096;

    /// Tuples a flood would use: everything the same but the source port; or the source
    /// address counting up; or both on a grid; or IPv6 sources counting in their low bits.
    fn adversarial() -> Vec<(&'static str, Vec<Tuple>)> {
        let dst = SocketAddr::from(([192, 0, 2, 1], 80));
        let ports = (0..=u16::MAX)
            .map(|p| Tuple::tcp(SocketAddr::from(([10, 0, 0, 1], p)), dst).unwrap())
            .collect();
        let addrs = (0..65536u32)
            .map(|i| {
                let src = Ipv4Addr::from(0x0a00_0000 + i);
                Tuple::udp(SocketAddr::from((src, 5353)), dst).unwrap()
            })
            .collect();
        let grid = (0..256u32)
            .flat_map(|i| {
                (0..256u16).map(move |p| {
                    let src = Ipv4Addr::from(0x0a00_0000 + i);
                    Tuple::tcp(SocketAddr::from((src, 40000 + p)), dst).unwrap()
                })
            })
            .collect();
        let v6dst = SocketAddr::from((Ipv6Addr::LOCALHOST, 443));
        let v6 = (0..65536u128)
            .map(|i| {
                let src = Ipv6Addr::from(0x2001_0db8_u128 << 96 | i);
                Tuple::tcp(SocketAddr::from((src, 40000)), v6dst).unwrap()
            })
            .collect();
        vec![
            ("sequential ports", ports),
            ("sequential addresses", addrs),
            ("address x port grid", grid),
            ("sequential IPv6 addresses", v6),
        ]
    }

    /// Pearson's chi-square of the bucket counts against a uniform spread, and the longest
    /// chain.
    fn spread(tuples: &[Tuple], hash: impl Fn(&Tuple) -> u64) -> (f64, usize) {
        let mut counts = vec![0usize; BUCKETS];
        for t in tuples {
            counts[(hash(t) as usize) & (BUCKETS - 1)] += 1;
        }
        let mean = tuples.len() as f64 / BUCKETS as f64;
        let chi2 = counts
            .iter()
            .map(|&c| (c as f64 - mean).powi(2) / mean)
            .sum();
        (chi2, counts.into_iter().max().unwrap_or(0))
    }

    /// Bounds for 65,536 tuples in 4,096 buckets (16 a bucket on average): a uniform hash
    /// gives a chi-square of 4,095 ± 91 (its degrees of freedom, ± sqrt(2·df)); the bound is
    /// 8 standard deviations above. The longest of 4,096 Poisson(16) chains is about 30; the
    /// bound is 48.
    fn acceptable((chi2, longest): (f64, usize)) -> bool {
        chi2 < 4095.0 + 8.0 * 90.5 && longest <= 48
    }

    #[test]
    fn adversarially_similar_tuples_spread_evenly_over_the_buckets() {
        for _ in 0..4 {
            let key = KeyedHash::new();
            for (name, tuples) in adversarial() {
                let s = spread(&tuples, |t| key.hash_one(t));
                assert!(
                    acceptable(s),
                    "{name}: chi-square {:.0}, longest chain {}",
                    s.0,
                    s.1
                );
            }
        }
    }

    /// The same bounds reject a weak hash: a key xored into the tuple's words and folded
    /// together without a multiply, or a single multiply whose low bits see only the low
    /// bits of its input. Shows the test above can fail.
    #[test]
    fn the_spread_bounds_reject_a_weak_hash() {
        struct Words(Vec<u64>);
        impl Hasher for Words {
            fn write_u64(&mut self, w: u64) {
                self.0.push(w);
            }
            fn write(&mut self, _: &[u8]) {
                unreachable!("a tuple writes words")
            }
            fn finish(&self) -> u64 {
                0
            }
        }
        let words = |t: &Tuple| {
            let mut w = Words(Vec::new());
            t.hash(&mut w);
            w.0
        };
        let key = 0x5bd1_e995_1234_5677u64;
        let xor = |t: &Tuple| words(t).iter().fold(key, |acc, w| acc ^ w.rotate_left(17));
        let mul = |t: &Tuple| {
            words(t)
                .iter()
                .fold(key, |acc, w| (acc ^ w).wrapping_mul(key | 1))
        };
        for (weak, name) in [(&xor as &dyn Fn(&Tuple) -> u64, "xor"), (&mul, "multiply")] {
            let rejected = adversarial()
                .iter()
                .filter(|(_, tuples)| !acceptable(spread(tuples, weak)))
                .count();
            assert!(rejected > 0, "the bounds accept the weak {name} hash");
        }
    }

    #[test]
    fn two_tables_lay_the_same_tuples_out_differently() {
        let (a, b) = (KeyedHash::new(), KeyedHash::new());
        let (_, tuples) = &adversarial()[0];
        let same = tuples
            .iter()
            .filter(|t| {
                (a.hash_one(t) as usize) & (BUCKETS - 1) == (b.hash_one(t) as usize) & (BUCKETS - 1)
            })
            .count();
        // Independent layouts agree on 1 tuple in 4,096: 16 expected, 64 is 12 sigma away.
        assert!(
            same < 64,
            "{same} of {} tuples in the same bucket",
            tuples.len()
        );
        assert_ne!(format!("{a:?}"), "", "debug prints");
        assert!(
            !format!("{a:?}").contains(&a.keys[0].to_string()),
            "the key leaked"
        );
    }

    #[test]
    fn a_fixed_key_hashes_deterministically_and_bytes_hash_with_their_length() {
        let k = KeyedHash::with_keys([1, 2, 3, 4]);
        let t = Tuple::udp("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap()).unwrap();
        assert_eq!(
            k.hash_one(t),
            KeyedHash::with_keys([1, 2, 3, 4]).hash_one(t)
        );
        assert_ne!(
            k.hash_one(t),
            KeyedHash::with_keys([1, 2, 3, 5]).hash_one(t)
        );
        assert_ne!(k.hash_one(t), k.hash_one(t.reply()));
        assert_ne!(
            k.hash_one([0u8; 3].as_slice()),
            k.hash_one([0u8; 4].as_slice())
        );
        assert_ne!(k.hash_one("abcdefghi"), k.hash_one("abcdefghj"));
    }
}
