//! Seeded pseudo-randomness (SplitMix64), the payload streams built from it, and the hash
//! both ends of a connection use to check what they received.

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state advanced by a constant and mixed.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform value in `[0, 1)` (53 bits of precision).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seed derived from the run's seed and a label, so that independent streams differ.
pub fn derive(seed: u64, label: u64) -> u64 {
    SplitMix64::new(seed ^ label.wrapping_mul(0xd6e8_feb8_6659_fd93)).next_u64()
}

/// The pseudo-random byte stream of one direction of one connection. A reader regenerates
/// the same stream to check, byte by byte, what arrived.
#[derive(Clone, Debug)]
pub struct Stream {
    rng: SplitMix64,
    /// Bytes of the last generated word not yet handed out.
    spare: [u8; 8],
    spare_len: usize,
}

impl Stream {
    /// The stream labelled `label` of the run seeded with `seed`.
    pub fn new(seed: u64, label: u64) -> Stream {
        Stream {
            rng: SplitMix64::new(derive(seed, label)),
            spare: [0; 8],
            spare_len: 0,
        }
    }

    /// Writes the next `buf.len()` bytes of the stream into `buf`.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut at = 0;
        while at < buf.len() {
            if self.spare_len == 0 {
                self.spare = self.rng.next_u64().to_le_bytes();
                self.spare_len = 8;
            }
            let take = self.spare_len.min(buf.len() - at);
            let from = 8 - self.spare_len;
            buf[at..at + take].copy_from_slice(&self.spare[from..from + take]);
            self.spare_len -= take;
            at += take;
        }
    }
}

/// FNV-1a, 64 bits: the running hash of a byte stream.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn value(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_the_same_whatever_the_chunking() {
        let mut whole = vec![0u8; 1000];
        Stream::new(7, 3).fill(&mut whole);
        let mut pieces = vec![0u8; 1000];
        let mut s = Stream::new(7, 3);
        let mut at = 0;
        for n in [1, 7, 8, 9, 100, 3, 872] {
            s.fill(&mut pieces[at..at + n]);
            at += n;
        }
        assert_eq!(whole, pieces);
        let mut other = vec![0u8; 1000];
        Stream::new(7, 4).fill(&mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn next_f64_is_in_the_unit_interval() {
        let mut r = SplitMix64::new(1);
        for _ in 0..1000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
