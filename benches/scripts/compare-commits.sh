#!/usr/bin/env bash
# Compares a criterion bench between two commits in one run: builds the bench at both, then
# runs them alternately (old, new, old, new, ...) ROUNDS times with short measurements and
# prints each run's median estimate and, per benchmark, the median of the per-round ratios
# new/old (a slow stretch of a shared machine slows both sides of a round alike).
#
#   benches/scripts/compare-commits.sh OLD_REV NEW_REV BENCH FILTER [ROUNDS]
#   e.g. benches/scripts/compare-commits.sh 0ccb7da HEAD conntrack conntrack_track_hit/refwatch 5
#
# The bench file and benches/src of NEW_REV are used for both builds, so a benchmark added in
# NEW_REV measures OLD_REV's library too (it must only use API that both have).
set -euo pipefail
# criterion runs only: the bench's own interleaved pass (see benches/src/interleaved.rs) is off.
export REFWATCH_BENCH_ROUNDS=0
old=$1 new=$2 bench=$3 filter=$4 rounds=${5:-5}
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/old" >/dev/null 2>&1 || true; git -C "$root" worktree remove --force "$work/new" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
declare -A exe
for side in old new; do
  rev=${!side}
  git -C "$root" worktree add --detach -q "$work/$side" "$rev"
  git -C "$root" show "$new:benches/benches/$bench.rs" > "$work/$side/benches/benches/$bench.rs"
  # The bench's shared helpers too (they use std only, not refwatch).
  rm -rf "$work/$side/benches/src"
  git -C "$root" archive "$new" benches/src | tar -x -C "$work/$side"
  exe[$side]=$(cd "$work/$side" && CARGO_TARGET_DIR="$root/target/compare-$side" \
    cargo bench -p refwatch-benches --bench "$bench" --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
done
for r in $(seq 1 "$rounds"); do
  for side in old new; do
    "${exe[$side]}" --bench "$filter" --warm-up-time 1 --measurement-time 2 --noplot 2>/dev/null \
      | sed "s/^/$side $r /"
  done
done | python3 -c '
import re, statistics, sys
unit = {"ps": 1e-3, "ns": 1.0, "us": 1e3, "\u00b5s": 1e3, "ms": 1e6, "s": 1e9}
t, name = {}, None
for line in sys.stdin:
    side, rnd, rest = line.rstrip("\n").split(" ", 2)
    m = re.match(r"(\S+/\S+)", rest)
    if m and not rest.startswith(" "):
        name = m.group(1)
    m = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) ", rest)
    if m and name and m.group(2) in unit:
        t.setdefault(name, {}).setdefault(int(rnd), {})[side] = float(m.group(1)) * unit[m.group(2)]
print("%-40s %10s %10s %8s" % ("benchmark (ns/packet, median)", "old", "new", "new/old"))
for name, rounds in sorted(t.items()):
    pairs = [r for r in rounds.values() if "old" in r and "new" in r]
    q = sorted(r["new"] / r["old"] for r in pairs)
    old = statistics.median(r["old"] for r in pairs)
    new = statistics.median(r["new"] for r in pairs)
    print("%-40s %10.1f %10.1f %8.3f   (%d rounds, ratios %.3f..%.3f)"
          % (name, old, new, statistics.median(q), len(pairs), q[0], q[-1]))
'
