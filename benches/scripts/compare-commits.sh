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
done | awk '
  { t[$1,$2,$3]=$4; names[$3]=1; if ($2>n) n=$2 }
  END {
    printf "%-40s %12s %12s %8s\n", "benchmark (ns/packet, median)", "old", "new", "new/old"
    for (b in names) {
      m=0
      for (r=1; r<=n; r++) if ((("old",r,b) in t) && (("new",r,b) in t)) { m++; q[m]=t["new",r,b]/t["old",r,b]; o[m]=t["old",r,b]; w[m]=t["new",r,b] }
      asort(q); asort(o); asort(w); k=int((m+1)/2)
      printf "%-40s %12.1f %12.1f %8.3f   (%d rounds, ratios %.3f..%.3f)\n", b, o[k], w[k], q[k], m, q[1], q[m]
    }
  }'
