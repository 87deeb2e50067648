//! Sequences and their results: where a sequence came from, and what both sides said about
//! each of its packets.

use crate::compare::{Comparison, Observation};
use crate::notation::Step;
use std::fmt;

/// Where a sequence came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A scripted sequence, by name.
    Script(String),
    /// Generated sequence `index` of seed `seed`.
    Generated {
        /// The run's seed.
        seed: u64,
        /// The sequence's index.
        index: u64,
    },
    /// Given on the command line.
    Adhoc,
}

impl Origin {
    /// `scripted`, `generated` or `adhoc`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Script(_) => "scripted",
            Origin::Generated { .. } => "generated",
            Origin::Adhoc => "adhoc",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Script(name) => write!(f, "script {name}"),
            Origin::Generated { seed, index } => write!(f, "generated seed={seed} index={index}"),
            Origin::Adhoc => f.write_str("ad hoc"),
        }
    }
}

/// A sequence to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqInput {
    /// Where it came from.
    pub origin: Origin,
    /// Its steps.
    pub steps: Vec<Step>,
}

/// What both sides said about one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketResult {
    /// Index of the step in the sequence.
    pub step: usize,
    /// The kernel's state of the packet's flow before it (`NONE` if none).
    pub before: String,
    /// The kernel's observation.
    pub kernel: Observation,
    /// refwatch's observation.
    pub refwatch: Observation,
    /// The comparison.
    pub cmp: Comparison,
}

/// A sequence's results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqResult {
    /// The input.
    pub input: SeqInput,
    /// One result per packet step.
    pub packets: Vec<PacketResult>,
}
