//! The table: a fixed array of locked buckets, each a list of tuples, reaped as it is walked.

use super::conn::{Conn, Hint, Invalid, Snapshot, State, UpdateError, Updated};
use super::hash::KeyedHash;
use super::packet::{Packet, ParseError};
use super::tcp::{TcpConfig, TcpIgnored};
use super::timeouts::Timeouts;
use super::tuple::{Direction, Tuple};
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Arc, Mutex, MutexGuard};
use crate::time::{Clock, CoarseClock, Instant};
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::time::Duration;

/// How the reaper paces itself (the seed's constants are the defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaperConfig {
    /// Each [`reap_unused`](ConnTable::reap_unused) call walks `buckets / fraction` buckets,
    /// and at least one. Default 128.
    pub fraction: usize,
    /// When more than this share (percent) of the tuples checked had expired, the next call
    /// comes after `min_interval`. Default 50.
    pub max_expired_pct: usize,
    /// The shortest interval, and the step by which the interval grows. Default 10 ms.
    pub min_interval: Duration,
    /// A full traversal takes at most about this long. Default 60 s.
    pub max_full_traversal: Duration,
}

impl ReaperConfig {
    /// The longest interval between two calls: `max_full_traversal / fraction`.
    pub fn max_interval(&self) -> Duration {
        let fraction = u32::try_from(self.fraction.max(1)).unwrap_or(u32::MAX);
        (self.max_full_traversal / fraction).max(self.min_interval)
    }
}

impl Default for ReaperConfig {
    fn default() -> Self {
        ReaperConfig {
            fraction: 128,
            max_expired_pct: 50,
            min_interval: Duration::from_millis(10),
            max_full_traversal: Duration::from_secs(60),
        }
    }
}

/// How a table is built.
///
/// The table's size follows Linux's rule, maximum = 4 × buckets, from whichever of the two is
/// given: set only `max_connections` and the bucket count follows it
/// (`next_power_of_two(ceil(max / 4))`, at most [`Config::MAX_DERIVED_BUCKETS`]); set only
/// `buckets` and the maximum is four per bucket; set both and both are used; set neither and
/// the table has 16,384 buckets for 65,536 connections. [`Config::sizes`] says what a
/// configuration resolves to.
///
/// ```
/// use refwatch::conntrack::Config;
///
/// assert_eq!(Config::default().sizes(), Ok((1 << 14, 65_536)));
/// let big = Config { max_connections: Some(1_000_000), ..Config::default() };
/// assert_eq!(big.sizes(), Ok((1 << 18, 1_000_000))); // ≤ 4 connections a bucket
/// assert_eq!(Config::with_buckets(64).sizes(), Ok((64, 256)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Number of buckets: a power of two between 1 and 2^31, fixed for the table's life.
    /// `None` (the default): four connections a bucket for `max_connections`.
    pub buckets: Option<usize>,
    /// Most connections at once. `None` (the default): four a bucket, or 65,536 when
    /// `buckets` is not given either.
    pub max_connections: Option<usize>,
    /// How many buckets, from the new connection's own, early drop looks in. Default 8
    /// (Linux's `NF_CT_EVICTION_RANGE`).
    pub early_drop_scan: usize,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// The TCP tracker's switches (Linux's `nf_conntrack_tcp_loose`, `_be_liberal`,
    /// `_max_retrans`, with Linux's defaults).
    pub tcp: TcpConfig,
    /// Reaper pacing.
    pub reaper: ReaperConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            buckets: None,
            max_connections: None,
            early_drop_scan: 8,
            timeouts: Timeouts::linux(),
            tcp: TcpConfig::default(),
            reaper: ReaperConfig::default(),
        }
    }
}

impl Config {
    /// The default maximum when neither size is given (Linux's 4 × 16,384).
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1 << 16;
    /// The largest bucket count a table can have.
    pub const MAX_BUCKETS: usize = 1 << 31;
    /// The largest bucket count derived from `max_connections` alone (2^24: 16M buckets, a
    /// gigabyte or so of bucket array); a larger table names its `buckets`.
    pub const MAX_DERIVED_BUCKETS: usize = 1 << 24;

    /// The default configuration with `buckets` buckets (and so four times as many
    /// connections at most, unless `max_connections` is set too).
    pub fn with_buckets(buckets: usize) -> Config {
        Config {
            buckets: Some(buckets),
            ..Config::default()
        }
    }

    /// The default configuration for at most `max` connections (and a bucket count that
    /// follows it).
    pub fn with_max_connections(max: usize) -> Config {
        Config {
            max_connections: Some(max),
            ..Config::default()
        }
    }

    /// What the configuration resolves to, `(buckets, max_connections)`, or why it is
    /// refused (the checks [`ConnTable`]'s constructors make, reaper settings aside).
    pub fn sizes(&self) -> Result<(usize, usize), ConfigError> {
        let buckets = match (self.buckets, self.max_connections) {
            (Some(0), _) => return Err(ConfigError::ZeroBuckets),
            (Some(n), _) if n > Config::MAX_BUCKETS => return Err(ConfigError::TooManyBuckets(n)),
            (Some(n), _) if !n.is_power_of_two() => {
                return Err(ConfigError::BucketsNotPowerOfTwo(n))
            }
            (Some(n), _) => n,
            (None, Some(0)) => return Err(ConfigError::ZeroMaxConnections),
            (None, Some(max)) => max
                .div_ceil(4)
                .min(Config::MAX_DERIVED_BUCKETS)
                .next_power_of_two(),
            (None, None) => Config::DEFAULT_MAX_CONNECTIONS / 4,
        };
        let max = match self.max_connections {
            Some(0) => return Err(ConfigError::ZeroMaxConnections),
            Some(max) => max,
            None => buckets
                .checked_mul(4)
                .ok_or(ConfigError::MaxOverflows { buckets })?,
        };
        Ok((buckets, max))
    }
}

/// Why a [`Config`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A bucket count of zero.
    ZeroBuckets,
    /// A bucket count that is not a power of two.
    BucketsNotPowerOfTwo(usize),
    /// A bucket count above [`Config::MAX_BUCKETS`].
    TooManyBuckets(usize),
    /// Four connections a bucket overflow `usize` (a 32-bit target with over 2^30 buckets
    /// and no `max_connections`).
    MaxOverflows {
        /// The bucket count.
        buckets: usize,
    },
    /// A maximum of zero connections.
    ZeroMaxConnections,
    /// A reaper fraction of zero.
    ZeroFraction,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroBuckets => f.write_str(
                "a bucket count of 0: give at least 1, or leave `buckets` unset to follow the maximum",
            ),
            ConfigError::BucketsNotPowerOfTwo(n) => write!(
                f,
                "bucket count {n} is not a power of two (try {})",
                n.checked_next_power_of_two().unwrap_or(Config::MAX_BUCKETS)
            ),
            ConfigError::TooManyBuckets(n) => {
                write!(f, "bucket count {n} is above the limit of 2^31")
            }
            ConfigError::MaxOverflows { buckets } => write!(
                f,
                "{buckets} buckets at four connections each overflow this target: set `max_connections`"
            ),
            ConfigError::ZeroMaxConnections => {
                f.write_str("the maximum number of connections must be at least 1")
            }
            ConfigError::ZeroFraction => f.write_str("the reaper fraction must be at least 1"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why [`track`](ConnTable::track) did not track a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackError {
    /// The bytes are not a packet the tracker follows ([`track_bytes`](ConnTable::track_bytes)).
    Malformed(ParseError),
    /// The tracker rejected the packet; nothing changed.
    Invalid(Invalid),
    /// The table holds its maximum and nothing could be reaped or early-dropped.
    TableFull {
        /// The maximum.
        max: usize,
    },
}

impl fmt::Display for TrackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackError::Malformed(e) => write!(f, "malformed packet: {e}"),
            TrackError::Invalid(e) => write!(f, "{e}"),
            TrackError::TableFull { max } => write!(
                f,
                "connection table full ({max} connections, none expired or evictable): packet refused"
            ),
        }
    }
}

impl std::error::Error for TrackError {}

/// What [`track`](ConnTable::track) did with a packet.
#[derive(Clone, Debug)]
pub struct Tracked {
    /// The packet's connection.
    pub conn: Arc<Conn>,
    /// Which way the packet travels on it.
    pub dir: Direction,
    /// The connection's state after the packet.
    pub state: State,
    /// Whether the connection is assured after the packet.
    pub assured: bool,
    /// Whether this packet created the connection.
    pub created: bool,
    /// Set when the tracker let the packet through without moving the connection or
    /// refreshing its timeout (Linux's "ignored" TCP segments), with the reason.
    pub ignored: Option<TcpIgnored>,
    /// Whether the packet ended the connection and the table removed it (as Linux does for a
    /// RST before any reply). `conn` stays readable.
    pub removed: bool,
    /// Whether the packet set the connection's deadline anew (a new connection, or an accepted
    /// packet). Ignored packets, a SYN retransmitted before any reply and a packet that
    /// removed the connection leave it as it was, as in Linux.
    pub refreshed: bool,
}

/// Counters of a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections in the table now.
    pub live: usize,
    /// Connections ever created.
    pub created: u64,
    /// Connections removed because they expired.
    pub reaped: u64,
    /// Connections evicted to make room.
    pub early_dropped: u64,
    /// Connections the tracker ended: a RST before any reply, or a SYN reopening a closed
    /// connection (the old one is counted here, the new one in `created`).
    pub closed: u64,
    /// Packets refused because the table was full.
    pub refused: u64,
    /// Packets the tracker rejected.
    pub invalid: u64,
}

/// What a quiescent table holds, from [`audit`](ConnTable::audit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Tuples in all buckets.
    pub tuples: usize,
    /// Distinct connections.
    pub connections: usize,
    /// Connections expired at the clock's current time.
    pub expired: usize,
}

/// A broken table invariant found by [`audit`](ConnTable::audit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditError {
    /// A tuple sits in a bucket its hash does not name.
    WrongBucket {
        /// The tuple.
        tuple: Tuple,
        /// Where it is.
        bucket: usize,
    },
    /// A connection has one tuple in the table but not the other (or one twice).
    HalfPresent {
        /// The connection's original tuple.
        original: Tuple,
        /// Entries for its original tuple.
        originals: usize,
        /// Entries for its reply tuple.
        replies: usize,
    },
    /// Two connections in the table, neither expired, share a tuple (in either direction):
    /// two live connections for one flow.
    Duplicate {
        /// The shared tuple.
        tuple: Tuple,
    },
    /// An entry's deadline hint is after its connection's deadline: a walk would skip the
    /// connection past its expiry.
    HintAfterDeadline {
        /// The entry's tuple.
        tuple: Tuple,
        /// The hint.
        hint: Instant,
        /// The connection's deadline.
        deadline: Instant,
    },
    /// The counters disagree with the contents.
    Counts {
        /// `live` as counted.
        live: usize,
        /// Connections found.
        connections: usize,
        /// `created - reaped - early_dropped - closed`.
        net: u64,
    },
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::WrongBucket { tuple, bucket } => {
                write!(f, "tuple {tuple} is in bucket {bucket}, not the one its hash names")
            }
            AuditError::HalfPresent {
                original,
                originals,
                replies,
            } => write!(
                f,
                "connection {original} has {originals} original and {replies} reply tuples in the table (want 1 and 1)"
            ),
            AuditError::Duplicate { tuple } => {
                write!(f, "tuple {tuple} belongs to two unexpired connections")
            }
            AuditError::HintAfterDeadline {
                tuple,
                hint,
                deadline,
            } => write!(
                f,
                "tuple {tuple}'s deadline hint {hint} is after its connection's deadline {deadline}"
            ),
            AuditError::Counts {
                live,
                connections,
                net,
            } => write!(
                f,
                "live counter {live}, {connections} connections in the table, created-reaped-dropped-closed {net}"
            ),
        }
    }
}

impl std::error::Error for AuditError {}

/// One tuple in a bucket: the connection, which of its tuples this is, and what a walk
/// needs to pass it by without reading the connection. 16 bytes: four to a cache line.
/// Protected by the bucket's lock.
#[derive(Debug)]
struct Entry {
    conn: Arc<Conn>,
    /// A lower bound of `conn`'s deadline (see [`Conn`]: computed under its lock as
    /// `min(deadline, seen + shortest timeout)`, it stays a lower bound whatever later
    /// packets do, even those that shorten the deadline). While the walk's `now` is not
    /// after it, the connection has not expired, and a walk that does not match the
    /// fingerprint passes the entry by without touching the connection.
    hint: Hint,
    /// High 31 bits of the tuple's hash (most mismatches are rejected without reading
    /// `conn`'s tuple), and in the low bit the direction of this tuple.
    tag: u32,
}

impl Entry {
    fn new(conn: Arc<Conn>, hint: Hint, fingerprint: u32, dir: Direction) -> Entry {
        Entry {
            conn,
            hint,
            tag: fingerprint | dir.index() as u32,
        }
    }

    /// Which of its connection's tuples this is.
    #[inline(always)]
    fn dir(&self) -> Direction {
        if self.tag & 1 == 0 {
            Direction::Original
        } else {
            Direction::Reply
        }
    }

    /// Whether the entry's fingerprint is `fingerprint` (from [`ConnTable::hash`]).
    #[inline(always)]
    fn matches(&self, fingerprint: u32) -> bool {
        self.tag & !1 == fingerprint
    }
}

/// Counters kept per bucket, under the bucket lock (no shared cache line on the hot path).
#[derive(Debug, Default)]
struct BucketStats {
    /// Connections whose original tuple is in this bucket, created / reaped / dropped.
    created: u64,
    reaped: u64,
    early_dropped: u64,
    closed: u64,
    /// Rejected packets whose tuple hashes here.
    invalid: u64,
}

#[derive(Debug, Default)]
struct BucketInner {
    entries: Vec<Entry>,
    stats: BucketStats,
}

/// Why a connection leaves the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    Reaped,
    EarlyDropped,
    Closed,
}

/// A slot of the table's `live` count, reserved for a connection about to be created. It is
/// given back when dropped — the flow turned out to exist, the tracker refused the packet, or
/// a panic (from the clock, say) unwound through the creation — unless the new connection
/// [`fill`](Slot::fill)s it.
#[must_use]
struct Slot<'a>(&'a AtomicUsize);

impl Slot<'_> {
    /// The new connection is in the table: the slot is its own now.
    fn fill(self) {
        std::mem::forget(self);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The two bucket locks of a connection, taken in ascending index order.
struct Pair<'a> {
    lo: usize,
    lo_guard: MutexGuard<'a, BucketInner>,
    hi_guard: Option<MutexGuard<'a, BucketInner>>,
}

impl Pair<'_> {
    /// Preconditions: `i` is one of the two locked buckets.
    fn get(&mut self, i: usize) -> &mut BucketInner {
        if i == self.lo {
            &mut self.lo_guard
        } else {
            self.hi_guard.as_deref_mut().unwrap_or(&mut self.lo_guard)
        }
    }
}

/// The connection table: `track` a packet, `lookup` a tuple, `reap_unused` a slice of the
/// table at a time.
///
/// ```
/// # if refwatch::sync::MODEL_CHECKED { return; } // primitives work only in a model
/// use refwatch::conntrack::{Config, ConnTable, Direction, Packet, State, UdpState};
/// use refwatch::time::ManualClock;
///
/// let table = ConnTable::with_clock(Config::with_buckets(64), ManualClock::new()).unwrap();
/// let a = "10.0.0.1:5000".parse().unwrap();
/// let b = "10.0.0.2:53".parse().unwrap();
/// let first = table.track(&Packet::udp(a, b).unwrap()).unwrap();
/// assert!(first.created);
/// let answer = table.track(&Packet::udp(b, a).unwrap()).unwrap();
/// assert_eq!(answer.dir, Direction::Reply);
/// assert_eq!(answer.state, State::Udp(UdpState::Replied));
/// assert_eq!(table.stats().live, 1);
/// ```
///
/// # Structure and invariants
///
/// `buckets` is a power-of-two array fixed at construction (its size follows the maximum:
/// see [`Config`]); a tuple lives in the bucket its keyed hash names (per-table random key:
/// [`KeyedHash`] by default, so flows cannot be chosen offline to collide; what that does
/// and does not protect against is on [`KeyedHash`]). Each bucket's mutex protects its list
/// of entries and its counters. An entry is 16 bytes: the connection, its direction, a
/// fingerprint of the tuple's hash and a *deadline hint*, so that a walk touches no
/// connection but one whose fingerprint matches or whose hint says it may have expired.
/// A connection owns two tuples, one per direction, in (possibly) two buckets:
/// - both tuples are inserted together and removed together, each time with both bucket locks
///   held: no one ever sees a connection with one tuple in the table;
/// - a lookup never returns a connection that has expired by its `now`;
/// - at most one unexpired connection exists per tuple (creation re-checks under both locks);
/// - a connection found expired stays expired, and its last use never moves back in time;
///   its deadline moves earlier only when a packet enters a state with a shorter timeout,
///   never because a packet decided with a stale clock reading (decisions under the
///   connection's lock never go back in time: see [`Conn`]);
/// - an entry's deadline hint is never after its connection's deadline: it is computed
///   under the connection's lock from the deadline and the latest decision time, and set
///   under the entry's bucket lock (see [`Conn`] for why no later packet can move the
///   deadline below it), so a walk that trusts it never passes by an expired connection;
/// - `live` counts connections in the table, and never exceeds `max`.
///
/// There is no table-wide lock: the bucket array is immutable, so nothing on a packet path
/// locks more than the buckets it touches (the seed's table-wide `RWMutex`, and its recursive
/// `RLock` in `bucket()`, which deadlocks behind a waiting writer, are gone).
///
/// # Lock order
///
/// 1. Bucket locks, in ascending index order, at most two at once. A thread holding bucket
///    `i` never waits for bucket `j < i`: to remove a connection whose other tuple is in a
///    lower bucket it first releases `i`, then locks both in order and checks again.
/// 2. A connection's own lock ([`Conn`]), only while holding at least one bucket lock of
///    that connection (or none at all); no lock is ever taken while holding it.
///
/// # Where the seed went wrong, and what refwatch does
///
/// - The seed's `reapTupleLocked`, meeting an expired tuple whose reply lives in a lower
///   bucket, reports it as reaped but leaves both tuples in place until the lower bucket is
///   walked (a new connection for the same flow is then created next to the stale one, and
///   the reaper's counts are wrong). refwatch collects such connections during the walk and,
///   after releasing the bucket, locks both buckets in order and removes both tuples, counting
///   the connection once, when it is really gone.
/// - The seed's `reapUnused` walks `len(buckets)/128` buckets: none at all below 128 buckets.
///   refwatch walks at least one.
/// - refwatch's own first version read the clock once per packet, before any lock, and
///   decided with that time under the locks: a delayed packet could set a connection's last
///   use and deadline back (and, after that, revive one that another thread had judged
///   expired and replaced: two live connections for one flow). A connection now records the
///   latest time a decision about it was made at, and no later decision goes back before it.
pub struct ConnTable<C = CoarseClock, S = KeyedHash> {
    buckets: Box<[Mutex<BucketInner>]>,
    mask: usize,
    hasher: S,
    clock: C,
    config: Config,
    max: usize,
    /// `config.timeouts.shortest()`: what the deadline hints are computed with.
    shortest: Duration,
    /// Connections in the table (and slots reserved by creations in progress).
    live: AtomicUsize,
    /// Packets refused because the table was full (rare: no bucket holds it).
    refused: AtomicU64,
}

impl<C, S> fmt::Debug for ConnTable<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTable")
            .field("buckets", &self.buckets.len())
            .field("max", &self.max)
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ConnTable {
    /// A table on the coarse clock ([`CoarseClock::new`]: 1 ms ticks, one load a reading,
    /// shared ticker thread) with a random hash key. Expiry is then decided in whole ticks,
    /// as Linux's conntrack decides it in jiffies (see [`Timeouts`]); for the precise clock,
    /// [`with_clock`](ConnTable::with_clock) and [`MonotonicClock`](crate::time::MonotonicClock).
    ///
    /// # Panics
    ///
    /// If the clock's ticker thread has to be started and cannot be (see [`CoarseClock::new`]).
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        ConnTable::with_clock_and_hasher(config, CoarseClock::new(), KeyedHash::new())
    }
}

impl<C: Clock> ConnTable<C> {
    /// A table on `clock` with a random hash key.
    pub fn with_clock(config: Config, clock: C) -> Result<Self, ConfigError> {
        ConnTable::with_clock_and_hasher(config, clock, KeyedHash::new())
    }
}

impl<C: Clock, S: BuildHasher> ConnTable<C, S> {
    /// A table on `clock` hashing with `hasher` (models use a fixed key to be deterministic;
    /// production wants a random key: [`KeyedHash::new`], the default, or std's
    /// `RandomState`).
    pub fn with_clock_and_hasher(config: Config, clock: C, hasher: S) -> Result<Self, ConfigError> {
        let (n, max) = config.sizes()?;
        if config.reaper.fraction == 0 {
            return Err(ConfigError::ZeroFraction);
        }
        let buckets = (0..n).map(|_| Mutex::new(BucketInner::default())).collect();
        Ok(ConnTable {
            buckets,
            mask: n - 1,
            hasher,
            clock,
            config,
            max,
            shortest: config.timeouts.shortest(),
            live: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The table's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Most connections at once.
    pub fn max_connections(&self) -> usize {
        self.max
    }

    /// Number of buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// `t`'s bucket and fingerprint (the hash's high 31 bits; the low bit is left clear
    /// for the entry's direction).
    #[inline]
    fn hash(&self, t: &Tuple) -> (usize, u32) {
        let h = self.hasher.hash_one(t);
        ((h as usize) & self.mask, (h >> 32) as u32 & !1)
    }

    /// The bucket `t` lives in.
    pub fn bucket_of(&self, t: &Tuple) -> usize {
        self.hash(t).0
    }

    /// Locks buckets `a` and `b` (the same or not) in ascending index order.
    fn lock_pair(&self, a: usize, b: usize) -> Pair<'_> {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let lo_guard = self.buckets[lo].lock();
        let hi_guard = (hi != lo).then(|| self.buckets[hi].lock());
        Pair {
            lo,
            lo_guard,
            hi_guard,
        }
    }

    /// Walks one bucket's entries for `t`, collecting connections found expired. Returns
    /// the index of the first match not found expired.
    ///
    /// An entry whose deadline hint is not before `now` has not expired: it is passed by
    /// without touching its connection unless its fingerprint matches. One whose hint is
    /// before `now` is [`refresh`](Self::refresh_locked)ed.
    ///
    /// Preconditions: the bucket holding `entries` is locked.
    fn find_locked(
        &self,
        entries: &mut [Entry],
        t: &Tuple,
        fingerprint: u32,
        now: Instant,
        stale: &mut Vec<Arc<Conn>>,
    ) -> Option<usize> {
        for (i, e) in entries.iter_mut().enumerate() {
            if !self.refresh_locked(e, now, stale) {
                continue;
            }
            if e.matches(fingerprint) && e.conn.tuple(e.dir()) == *t {
                return Some(i);
            }
        }
        None
    }

    /// Whether `e`'s connection is alive at `now`: `true` at once while `now` is not after
    /// the entry's deadline hint; otherwise the connection decides under its own lock, and
    /// either the entry gets a new hint or the connection goes to `stale` (`false`).
    ///
    /// Preconditions: the bucket holding `e` is locked.
    #[inline(always)]
    fn refresh_locked(&self, e: &mut Entry, now: Instant, stale: &mut Vec<Arc<Conn>>) -> bool {
        if now.as_nanos() <= e.hint.nanos() {
            return true;
        }
        match e.conn.hint_locked(now, self.shortest) {
            Some(hint) => {
                e.hint = hint;
                true
            }
            None => {
                stale.push(Arc::clone(&e.conn));
                false
            }
        }
    }

    /// Tracks one packet: finds its connection (reaping expired tuples met on the way) or
    /// creates it, updates its state and last use, and says what happened. This is the call
    /// a packet path makes; it takes no table-wide lock.
    pub fn track(&self, pkt: &Packet) -> Result<Tracked, TrackError> {
        // Read before any lock: other threads may act on later readings before this packet
        // takes its locks, so decisions under a connection's lock never go back in time from
        // the latest one made (see `Conn`).
        let now = self.clock.now();
        let t = *pkt.tuple();
        let (b, fp) = self.hash(&t);
        let mut stale = Vec::new();
        let mut ended = None;
        let fast = {
            let mut guard = self.buckets[b].lock();
            let bucket = &mut *guard;
            let mut result = None;
            if let Some(i) = self.find_locked(&mut bucket.entries, &t, fp, now, &mut stale) {
                let e = &mut bucket.entries[i];
                let dir = e.dir();
                let outcome =
                    e.conn
                        .update(dir, pkt, now, &self.config, self.shortest, &mut e.hint);
                match found(&e.conn, dir, outcome) {
                    Found::Done(r) => {
                        if r.is_err() {
                            bucket.stats.invalid += 1;
                        }
                        result = Some(r);
                    }
                    Found::Remove(tracked) => {
                        ended = Some(Arc::clone(&e.conn));
                        result = Some(Ok(tracked));
                    }
                    Found::Reopen => ended = Some(Arc::clone(&e.conn)),
                    Found::Expired => stale.push(Arc::clone(&e.conn)),
                }
            }
            result.or_else(|| match Conn::check_opener(pkt, &self.config) {
                Err(inv) => {
                    bucket.stats.invalid += 1;
                    Some(Err(TrackError::Invalid(inv)))
                }
                Ok(()) => None,
            })
        };
        if let Some(conn) = ended {
            self.remove_if(&conn, Removal::Closed, |_| true);
        }
        self.reap_stale(stale, now);
        match fast {
            Some(result) => result,
            None => self.create(pkt, b, fp, now),
        }
    }

    /// Parses `bytes` and [`track`](ConnTable::track)s the packet.
    pub fn track_bytes(&self, bytes: &[u8]) -> Result<Tracked, TrackError> {
        let pkt = Packet::parse(bytes).map_err(TrackError::Malformed)?;
        self.track(&pkt)
    }

    /// The slow path of `track`: the flow was not found (or only expired). Reserves a slot,
    /// locks both buckets in order, looks again (another thread may have created the flow,
    /// in either direction, meanwhile) and inserts both tuples.
    fn create(&self, pkt: &Packet, b: usize, fp: u32, now: Instant) -> Result<Tracked, TrackError> {
        let t = *pkt.tuple();
        let slot = self.reserve(b, now)?;
        let reply = t.reply();
        let (r, rfp) = self.hash(&reply);
        let mut stale = Vec::new();
        let result = {
            let mut pair = self.lock_pair(b, r);
            let mut existing = None;
            for e in pair.get(b).entries.iter_mut() {
                let dir = e.dir();
                if e.matches(fp) && e.conn.tuple(dir) == t {
                    let outcome =
                        e.conn
                            .update(dir, pkt, now, &self.config, self.shortest, &mut e.hint);
                    match found(&e.conn, dir, outcome) {
                        Found::Expired => {
                            stale.push(Arc::clone(&e.conn));
                            continue;
                        }
                        other => {
                            existing = Some((Arc::clone(&e.conn), other));
                            break;
                        }
                    }
                }
            }
            // Another thread created the flow meanwhile: the packet was its update. A
            // connection the update ended leaves here, under both of its bucket locks (its
            // tuples are `t`, in `b`, and `t.reply()`, in `r`).
            // Unless a new connection fills the reserved slot, it is released on return.
            let done = match existing {
                // The packet opens a new connection below, in the reserved slot.
                Some((conn, Found::Reopen)) => {
                    self.remove_locked(&mut pair, &conn);
                    None
                }
                Some((conn, Found::Remove(tracked))) => {
                    self.remove_locked(&mut pair, &conn);
                    Some(Ok(tracked))
                }
                Some((_, Found::Done(result))) => {
                    if result.is_err() {
                        pair.get(b).stats.invalid += 1;
                    }
                    Some(result)
                }
                Some((_, Found::Expired)) | None => None,
            };
            match done {
                Some(result) => result,
                None => {
                    match Conn::new(pkt, [b as u32, r as u32], now, &self.config, self.shortest) {
                        Ok((conn, snap, hint)) => {
                            slot.fill();
                            let conn = Arc::new(conn);
                            let orig = pair.get(b);
                            orig.entries.push(Entry::new(
                                Arc::clone(&conn),
                                hint,
                                fp,
                                Direction::Original,
                            ));
                            orig.stats.created += 1;
                            pair.get(r).entries.push(Entry::new(
                                Arc::clone(&conn),
                                hint,
                                rfp,
                                Direction::Reply,
                            ));
                            Ok(tracked(&conn, Direction::Original, snap, true))
                        }
                        Err(inv) => {
                            pair.get(b).stats.invalid += 1;
                            Err(TrackError::Invalid(inv))
                        }
                    }
                }
            }
        };
        self.reap_stale(stale, now);
        result
    }

    /// Takes one slot of `live` if there is one.
    fn try_reserve(&self) -> Option<Slot<'_>> {
        let max = self.max;
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(&self.live))
    }

    /// Reserves a slot for a new connection hashing to bucket `b`: when the table is full,
    /// reaps the expired connections of `b` and the next buckets, then early-drops
    /// connections that are not assured (or are closing) there, before refusing.
    fn reserve(&self, b: usize, now: Instant) -> Result<Slot<'_>, TrackError> {
        if let Some(slot) = self.try_reserve() {
            return Ok(slot);
        }
        let scan = self.config.early_drop_scan.clamp(1, self.buckets.len());
        for k in 0..scan {
            self.reap_bucket((b + k) & self.mask, now);
        }
        if let Some(slot) = self.try_reserve() {
            return Ok(slot);
        }
        for k in 0..scan {
            let i = (b + k) & self.mask;
            let victims: Vec<Arc<Conn>> = {
                let guard = self.buckets[i].lock();
                guard
                    .entries
                    .iter()
                    .filter(|e| e.conn.evictable())
                    .map(|e| Arc::clone(&e.conn))
                    .collect()
            };
            for victim in victims {
                if self.remove_if(&victim, Removal::EarlyDropped, |c| c.evictable()) {
                    if let Some(slot) = self.try_reserve() {
                        return Ok(slot);
                    }
                }
            }
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(TrackError::TableFull { max: self.max })
    }

    /// Removes `conn` — both tuples — if it is still in the table and `keep_going` holds once
    /// both its bucket locks are taken (in ascending order). Returns whether it removed it.
    ///
    /// Preconditions: the caller holds no bucket lock.
    fn remove_if(&self, conn: &Arc<Conn>, why: Removal, check: impl Fn(&Conn) -> bool) -> bool {
        let (o, r) = (
            conn.bucket(Direction::Original),
            conn.bucket(Direction::Reply),
        );
        let mut pair = self.lock_pair(o, r);
        let position = |b: &BucketInner, dir: Direction| {
            b.entries
                .iter()
                .position(|e| e.dir() == dir && Arc::ptr_eq(&e.conn, conn))
        };
        let Some(oi) = position(pair.get(o), Direction::Original) else {
            return false; // someone else removed it first
        };
        if !check(conn) {
            return false;
        }
        pair.get(o).entries.swap_remove(oi);
        if let Some(ri) = position(pair.get(r), Direction::Reply) {
            pair.get(r).entries.swap_remove(ri);
        }
        let stats = &mut pair.get(o).stats;
        match why {
            Removal::Reaped => stats.reaped += 1,
            Removal::EarlyDropped => stats.early_dropped += 1,
            Removal::Closed => stats.closed += 1,
        }
        self.live.fetch_sub(1, Ordering::AcqRel);
        true
    }

    /// Removes `conn`'s two tuples while the caller holds both of its bucket locks, counting
    /// it as closed by the tracker.
    ///
    /// Preconditions: `pair` holds the buckets of both of `conn`'s tuples, and `conn` is in
    /// the table.
    fn remove_locked(&self, pair: &mut Pair<'_>, conn: &Arc<Conn>) {
        for dir in [Direction::Original, Direction::Reply] {
            let bucket = pair.get(conn.bucket(dir));
            if let Some(i) = bucket
                .entries
                .iter()
                .position(|e| e.dir() == dir && Arc::ptr_eq(&e.conn, conn))
            {
                bucket.entries.swap_remove(i);
            }
        }
        pair.get(conn.bucket(Direction::Original)).stats.closed += 1;
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// Removes the connections in `stale` that are expired at `now`, or at the latest time a
    /// decision about them was made at (one found expired stays expired: see `Conn`). Returns
    /// how many it removed.
    ///
    /// Preconditions: the caller holds no bucket lock.
    fn reap_stale(&self, stale: Vec<Arc<Conn>>, now: Instant) -> usize {
        if stale.is_empty() {
            return 0; // the common case: skips the iterator's set-up and drop (a hit's 5%)
        }
        let mut removed = 0;
        for conn in stale {
            if self.remove_if(&conn, Removal::Reaped, |c| c.expired_locked(now)) {
                removed += 1;
            }
        }
        removed
    }

    /// Walks bucket `i`, removing every connection with a tuple there that has expired by
    /// `now` (reading only the connections whose deadline hint is before `now`). Returns
    /// (tuples checked, tuples found expired).
    fn reap_bucket(&self, i: usize, now: Instant) -> (usize, usize) {
        let (checked, stale) = {
            let mut guard = self.buckets[i].lock();
            let mut stale = Vec::new();
            for e in guard.entries.iter_mut() {
                self.refresh_locked(e, now, &mut stale);
            }
            (guard.entries.len(), stale)
        };
        let expired = stale.len();
        self.reap_stale(stale, now);
        (checked, expired)
    }

    /// Finds the connection of `t` without touching its state, reaping expired tuples met on
    /// the way. Never returns a connection expired by its `now` (or by a later time at which
    /// another thread already found it expired); [`peek`](ConnTable::peek) is the same
    /// without the reaping.
    pub fn lookup(&self, t: &Tuple) -> Option<(Arc<Conn>, Direction)> {
        let now = self.clock.now();
        let (b, fp) = self.hash(t);
        let mut stale = Vec::new();
        let found = {
            let mut guard = self.buckets[b].lock();
            let mut from = 0;
            loop {
                match self.find_locked(&mut guard.entries[from..], t, fp, now, &mut stale) {
                    Some(i) => {
                        let e = &mut guard.entries[from + i];
                        // Confirm under the connection's lock: the hint says the deadline
                        // is not before it, but another thread may already have decided
                        // at a later time than this lookup's `now` (see `Conn`).
                        if let Some(hint) = e.conn.hint_locked(now, self.shortest) {
                            // Written only when it moves: lookups on other cores then leave
                            // the entry's cache line clean.
                            if e.hint != hint {
                                e.hint = hint;
                            }
                            break Some((Arc::clone(&e.conn), e.dir()));
                        }
                        stale.push(Arc::clone(&e.conn));
                        from += i + 1;
                    }
                    None => break None,
                }
            }
        };
        self.reap_stale(stale, now);
        found
    }

    /// Finds the connection of `t`, as [`lookup`](ConnTable::lookup) does, but removes
    /// nothing: expired tuples it meets stay where they are, for the reaper or a packet path
    /// to remove. For observing a table without disturbing it (diagnostics, tests of the
    /// reaper). Takes `t`'s bucket lock, then the lock of each connection that matches.
    pub fn peek(&self, t: &Tuple) -> Option<(Arc<Conn>, Direction)> {
        let now = self.clock.now();
        let (b, fp) = self.hash(t);
        let guard = self.buckets[b].lock();
        guard
            .entries
            .iter()
            .filter(|e| e.matches(fp) && e.conn.tuple(e.dir()) == *t)
            .find(|e| !e.conn.expired_locked(now))
            .map(|e| (Arc::clone(&e.conn), e.dir()))
    }

    /// One step of incremental garbage collection: walks `buckets / fraction` buckets (at
    /// least one) from `start`, removing expired connections, and returns where to start next
    /// and how long to wait before the next call.
    ///
    /// The interval adapts as in the seed: if more than `max_expired_pct` percent of the
    /// tuples checked had expired, the table is stale and the next call comes after
    /// `min_interval`; otherwise the interval grows by `min_interval`, up to `max_interval`
    /// (`max_full_traversal / fraction`), which bounds a full traversal.
    pub fn reap_unused(&self, start: usize, prev_interval: Duration) -> (usize, Duration) {
        let rc = &self.config.reaper;
        let n = self.buckets.len();
        let per_call = (n / rc.fraction).max(1);
        let now = self.clock.now();
        let (mut checked, mut expired) = (0, 0);
        for k in 0..per_call {
            let (c, e) = self.reap_bucket((start + k) & self.mask, now);
            checked += c;
            expired += e;
        }
        let next = (start + per_call) & self.mask;
        let expired_pct = (expired * 100).checked_div(checked).unwrap_or(0);
        if expired_pct > rc.max_expired_pct {
            return (next, rc.min_interval);
        }
        let interval = prev_interval.saturating_add(rc.min_interval);
        (next, interval.min(rc.max_interval()))
    }

    /// Connections in the table now (one atomic load; [`stats`](ConnTable::stats) has the rest).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// The counters. Locks each bucket in turn (one at a time): exact when the table is
    /// quiescent, a close estimate otherwise.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            live: self.live.load(Ordering::Acquire),
            refused: self.refused.load(Ordering::Relaxed),
            ..Stats::default()
        };
        for bucket in self.buckets.iter() {
            let b = bucket.lock();
            s.created += b.stats.created;
            s.reaped += b.stats.reaped;
            s.early_dropped += b.stats.early_dropped;
            s.closed += b.stats.closed;
            s.invalid += b.stats.invalid;
        }
        s
    }

    /// Checks every invariant the table keeps: each tuple in the bucket its hash names, each
    /// connection with exactly its two tuples, no tuple shared by two unexpired connections,
    /// no entry's deadline hint after its connection's deadline, counters matching the
    /// contents. Meaningful when no other thread uses the table (the
    /// buckets are locked one at a time). Changes nothing: expired connections stay.
    pub fn audit(&self) -> Result<Audit, AuditError> {
        let now = self.clock.now();
        let mut seen: HashMap<*const Conn, (Arc<Conn>, usize, usize)> = HashMap::new();
        let mut owners: HashMap<Tuple, *const Conn> = HashMap::new();
        let mut tuples = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            let b = bucket.lock();
            for e in &b.entries {
                tuples += 1;
                let tuple = e.conn.tuple(e.dir());
                if self.bucket_of(&tuple) != i || e.conn.bucket(e.dir()) != i {
                    return Err(AuditError::WrongBucket { tuple, bucket: i });
                }
                if e.hint.nanos() > e.conn.deadline().as_nanos() {
                    return Err(AuditError::HintAfterDeadline {
                        tuple,
                        hint: Instant::from_nanos(e.hint.nanos()),
                        deadline: e.conn.deadline(),
                    });
                }
                if !e.conn.expired_at(now)
                    && *owners.entry(tuple).or_insert(Arc::as_ptr(&e.conn)) != Arc::as_ptr(&e.conn)
                {
                    return Err(AuditError::Duplicate { tuple });
                }
                let slot = seen
                    .entry(Arc::as_ptr(&e.conn))
                    .or_insert_with(|| (Arc::clone(&e.conn), 0, 0));
                match e.dir() {
                    Direction::Original => slot.1 += 1,
                    Direction::Reply => slot.2 += 1,
                }
            }
        }
        let mut expired = 0;
        for (conn, originals, replies) in seen.values() {
            if (*originals, *replies) != (1, 1) {
                return Err(AuditError::HalfPresent {
                    original: conn.original(),
                    originals: *originals,
                    replies: *replies,
                });
            }
            if conn.expired_at(now) {
                expired += 1;
            }
        }
        let stats = self.stats();
        let net = stats
            .created
            .wrapping_sub(stats.reaped)
            .wrapping_sub(stats.early_dropped)
            .wrapping_sub(stats.closed);
        if stats.live != seen.len() || net != seen.len() as u64 {
            return Err(AuditError::Counts {
                live: stats.live,
                connections: seen.len(),
                net,
            });
        }
        Ok(Audit {
            tuples,
            connections: seen.len(),
            expired,
        })
    }
}

fn tracked(conn: &Arc<Conn>, dir: Direction, snap: Snapshot, created: bool) -> Tracked {
    Tracked {
        conn: Arc::clone(conn),
        dir,
        state: snap.state,
        assured: snap.assured,
        created,
        ignored: None,
        removed: false,
        refreshed: true,
    }
}

/// What one update of a found connection means for `track`.
enum Found {
    /// Done: the packet's result.
    Done(Result<Tracked, TrackError>),
    /// Done, and the connection must leave the table (both tuples) once the lock is released.
    Remove(Tracked),
    /// The connection must leave the table and the packet open a new one.
    Reopen,
    /// The connection had expired.
    Expired,
}

/// Classifies the outcome of `conn.update` for a packet travelling in `dir`.
fn found(conn: &Arc<Conn>, dir: Direction, outcome: Result<Updated, UpdateError>) -> Found {
    match outcome {
        Ok(Updated::Accepted(snap, refreshed)) => Found::Done(Ok(Tracked {
            refreshed,
            ..tracked(conn, dir, snap, false)
        })),
        Ok(Updated::Ignored(snap, why)) => Found::Done(Ok(Tracked {
            ignored: Some(why),
            refreshed: false,
            ..tracked(conn, dir, snap, false)
        })),
        Ok(Updated::Killed(snap)) => Found::Remove(Tracked {
            removed: true,
            refreshed: false,
            ..tracked(conn, dir, snap, false)
        }),
        Ok(Updated::Reopen) => Found::Reopen,
        Err(UpdateError::Invalid(inv)) => Found::Done(Err(TrackError::Invalid(inv))),
        Err(UpdateError::Expired) => Found::Expired,
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::Entry;

    #[test]
    fn an_entry_fits_in_16_bytes() {
        assert!(
            std::mem::size_of::<Entry>() <= 16,
            "{} bytes",
            std::mem::size_of::<Entry>()
        );
    }
}
