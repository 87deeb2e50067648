#!/usr/bin/env bash
# Compares a criterion bench between two commits in one run: builds the bench at both, then
# runs them alternately (old, new, old, new, ...) ROUNDS times with short measurements and
# prints each run's median estimate and, per benchmark, the median of the per-round ratios
# new/old (a slow stretch of a shared machine slows both sides of a round alike).
#
#   benches/scripts/compare-commits.sh OLD_REV NEW_REV BENCH FILTER [ROUNDS]
#   e.g. benches/scripts/compare-commits.sh 0ccb7da HEAD conntrack conntrack_track_hit/refwatch 5
#
# The bench file of NEW_REV is used for both builds, so a benchmark added in NEW_REV measures
# OLD_REV's library too (it must only use API that both have).
set -euo pipefail
old=$1 new=$2 bench=$3 filter=$4 rounds=${5:-5}
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/old" >/dev/null 2>&1 || true; git -C "$root" worktree remove --force "$work/new" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
declare -A exe
for side in old new; do
  rev=${!side}
  git -C "$root" worktree add --detach -q "$work/$side" "$rev"
  git -C "$root" show "$new:benches/benches/$bench.rs" > "$work/$side/benches/benches/$bench.rs"
  exe[$side]=$(cd "$work/$side" && CARGO_TARGET_DIR="$root/target/compare-$side" \
    cargo bench -p refwatch-benches --bench "$bench" --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
done
for r in $(seq 1 "$rounds"); do
  for side in old new; do
    "${exe[$side]}" --bench "$filter" --warm-up-time 1 --measurement-time 2 --noplot 2>/dev/null \
      | awk -v side="$side" -v round="$r" '
          /^[a-z_]+\/[a-z_]+\/[0-9]+/ { name=$1 }
          /time:/ { v=$5; u=$6; if (u=="us"||u=="µs") v*=1000; if (u=="ms") v*=1e6;
                    print side, round, name, v }'
  done
done | python3 -c '
import statistics, sys
t = {}
for line in sys.stdin:
    side, rnd, name, v = line.split()
    t.setdefault(name, {}).setdefault(int(rnd), {})[side] = float(v)
print("%-40s %10s %10s %8s" % ("benchmark (ns/packet, median)", "old", "new", "new/old"))
for name, rounds in sorted(t.items()):
    pairs = [r for r in rounds.values() if "old" in r and "new" in r]
    q = sorted(r["new"] / r["old"] for r in pairs)
    old = statistics.median(r["old"] for r in pairs)
    new = statistics.median(r["new"] for r in pairs)
    print(f"{name:40} {old:10.1f} {new:10.1f} {statistics.median(q):8.3f}"
          f"   ({len(pairs)} rounds, ratios {q[0]:.3f}..{q[-1]:.3f})")
'
