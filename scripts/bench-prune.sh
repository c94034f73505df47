#!/usr/bin/env bash
# Reproduces the README's prune speed and memory tables.
#
#   scripts/bench-prune.sh [WORKDIR]
#
# Generates F16 and Q4_K models of about 1 GB (and F16 models of 0.5 GB and
# 2 GB for memory), then for each 1 GB model, with one worker thread and
# with one per CPU, times a plain copy, the kernel alone, decoding +
# re-encoding alone and the whole prune with the same threads (go test
# ./prune -run TestStages), and measures the peak RSS of
# `physarium-gguf prune` on the 0.5 GB and 2 GB models. Needs about 8 GB of
# free disk in WORKDIR (default: a new temporary directory, removed after).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bench_setup "${1:-}"

gen f16-1g.gguf f16 10
gen q4k-1g.gguf q4_k 35
gen f16-05g.gguf f16 5
gen f16-2g.gguf f16 20

echo "## prune beside its stages alone (same threads: one, and one per CPU)"
first=1
for m in f16-1g.gguf q4k-1g.gguf; do
	for threads in 1 "$(nproc)"; do
		go test ./prune -v -run '^TestStages$' -count 1 -timeout 2h -stages.model "$work/$m" -stages.threads "$threads" 2>&1 |
			grep '^|' | { if [ $first = 1 ]; then cat; else tail -n 1; fi; }
		first=0
	done
done

echo
echo "## peak memory of physarium-gguf prune (default threads)"
echo "| model | size | peak RSS |"
echo "|---|---|---|"
for m in f16-05g.gguf f16-2g.gguf; do
	rss=$( { /usr/bin/time -f '%M' "$bin" prune --quiet --force "$work/$m" "$work/out.gguf" >/dev/null; } 2>&1 | tail -n 1)
	size=$(stat -c %s "$work/$m")
	awk -v m="$m" -v s="$size" -v r="$rss" 'BEGIN { printf "| %s | %.2f GB | %d MB |\n", m, s / 1e9, r / 1024 }'
	rm -f "$work/out.gguf"
done
