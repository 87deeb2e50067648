//! refwatch-oracle: the Linux kernel as the reference for refwatch's connection tracking.
//!
//! The `differential` binary drives the kernel's nf_conntrack and refwatch's
//! [`ConnTable`](refwatch::conntrack::ConnTable) side by side, packet by packet, and reports
//! where they disagree:
//!
//! - [`kernel`]: a private network namespace ([`netns`]) with two [`tun`] devices, IPv4
//!   forwarding between them and an nftables ruleset that turns conntrack on and drops what
//!   it marks invalid; [`procfs`] reads `/proc/net/nf_conntrack`, [`ctnetlink`] flushes it.
//! - [`refside`]: a fresh refwatch table per sequence on a manual clock.
//! - [`wire`] builds the packets (correct checksums), [`notation`] is the compact text form of
//!   sequences, [`script`] holds the hand-written ones and [`gen`] the seeded generator.
//! - [`runner`] feeds each packet to both sides; [`compare`] compares state, verdict, assured
//!   and timeout; [`report`] groups disagreements into patterns with minimal examples; and
//!   [`departures`] reads `DEPARTURES.md`, the disagreements refwatch keeps on purpose.

pub mod compare;
pub mod departures;
pub mod gen;
#[cfg(target_os = "linux")]
pub mod minimize;
pub mod notation;
pub mod options;
pub mod procfs;
pub mod refside;
pub mod report;
pub mod script;
pub mod sequence;
pub mod wire;

#[cfg(target_os = "linux")]
pub mod ctnetlink;
#[cfg(target_os = "linux")]
pub mod kernel;
#[cfg(target_os = "linux")]
pub mod netns;
#[cfg(target_os = "linux")]
pub mod runner;
#[cfg(target_os = "linux")]
pub mod tun;
