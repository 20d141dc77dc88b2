#!/usr/bin/env bash
# Runs each fuzz target for FUZZTIME seconds, then merges what reached new code into the kept
# corpus Tests/FuzzCorpus/<target>/ (which `make test` replays). Called by `make fuzz` after the
# build; run from the repository's root. Exits non-zero, with the input kept, on a finding.
set -euo pipefail

time=${FUZZTIME:-60}
maxlen=${FUZZMAXLEN:-4096}
bin=${FUZZBIN:-Fuzz/.build/release}
work=${FUZZWORK:-Fuzz/.build/work}
targets=${*:-csv spec params}

bytes() { cat "$1"/* 2>/dev/null | wc -c; }

rm -f "$work"/*.log
mkdir -p "$work/findings"
for t in $targets; do
    kept=Tests/FuzzCorpus/$t new=$work/$t log=$work/$t.log
    rm -rf "$new" && mkdir -p "$new"
    before=$(ls "$kept" | wc -l)
    echo "fuzz-$t: $time s, starting from $before kept inputs (log: $log)"
    # New inputs go to the first folder; the kept corpus is read only.
    if ! "$bin/fuzz-$t" "$new" "$kept" -dict="Fuzz/$t.dict" -max_len="$maxlen" -max_total_time="$time" \
            -timeout=10 -print_final_stats=1 -artifact_prefix="$work/findings/$t-" >"$log" 2>&1; then
        grep -v '^    ' "$log" | tail -25
        echo "make fuzz: fuzz-$t found a problem; the input is in $work/findings/ (full output: $log)" >&2
        exit 1
    fi
    awk '/^stat::number_of_executed_units/ {n = $2} /^stat::average_exec_per_sec/ {r = $2} /^Done [0-9]+ runs in/ {s = $5}
         END {printf "  %d executions in %d s (%d/s), no crash\n", n, s, r}' "$log"
    # Edges only (-use_counters=0): one input per newly reached branch, which keeps the corpus small.
    if ! "$bin/fuzz-$t" -merge=1 -use_counters=0 "$kept" "$new" >"$log.merge" 2>&1; then
        tail -5 "$log.merge"
        exit 1
    fi
    after=$(ls "$kept" | wc -l)
    echo "  kept corpus: $after inputs ($((after - before)) new), $(bytes "$kept") bytes"
done
awk '/^stat::number_of_executed_units/ {n += $2} /^Done [0-9]+ runs in/ {s += $5}
     END {printf "make fuzz: %d executions in %d s over all targets, no crash\n", n, s}' "$work"/*.log
