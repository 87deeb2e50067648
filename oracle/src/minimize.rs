//! Shrinking examples: drop steps from a pattern's example while its last packet still shows
//! the same pattern (same field, packet class, kernel state before, and both values), re-run
//! against both sides each time. Chunks first (halves, quarters, …), then single steps.

use crate::compare::PatternKey;
use crate::notation::Step;
use crate::report::{keys_of, Example};
use crate::runner::{HarnessError, Runner};
use crate::sequence::{Origin, SeqInput};

/// Whether running `steps` shows `key` at its last packet; with the observations if so.
fn shows(
    runner: &mut Runner,
    steps: &[Step],
    key: &PatternKey,
) -> Result<Option<Example>, HarnessError> {
    let input = SeqInput {
        origin: Origin::Adhoc,
        steps: steps.to_vec(),
    };
    let r = runner.run(&input)?;
    let Some(last) = r.packets.last() else {
        return Ok(None);
    };
    if last.step + 1 != steps.len() {
        return Ok(None);
    }
    let hit = keys_of(&steps[last.step], last).contains(key);
    Ok(hit.then(|| Example {
        origin: Origin::Adhoc,
        steps: steps.to_vec(),
        minimized_from: None,
        kernel: last.kernel.clone(),
        refwatch: last.refwatch.clone(),
    }))
}

/// The smallest sub-sequence of `example.steps` (keeping its last step) found to show
/// `key`, or `None` when nothing could be dropped. Examples with `+Ns` waits are left alone
/// (each re-run would wait).
pub fn minimize(
    runner: &mut Runner,
    example: &Example,
    key: &PatternKey,
) -> Result<Option<Example>, HarnessError> {
    if example.steps.len() <= 1 || example.steps.iter().any(|s| matches!(s, Step::Wait(_))) {
        return Ok(None);
    }
    let mut best: Option<Example> = None;
    let mut steps = example.steps.clone();
    let mut chunk = (steps.len() - 1).div_ceil(2).max(1);
    loop {
        let mut progress = false;
        let mut start = 0;
        // Never drop the last step: it is the disagreeing packet.
        while start + 1 < steps.len() {
            let end = (start + chunk).min(steps.len() - 1);
            let mut candidate = steps[..start].to_vec();
            candidate.extend_from_slice(&steps[end..]);
            if let Some(found) = shows(runner, &candidate, key)? {
                steps = candidate;
                best = Some(found);
                progress = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !progress {
            break;
        }
        if !progress {
            chunk = chunk.div_ceil(2);
        }
    }
    Ok(best.map(|mut e| {
        e.origin = example.origin.clone();
        e.minimized_from = Some(example.steps.len());
        e
    }))
}
