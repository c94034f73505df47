#!/usr/bin/env bash
# Reproduces the README's table of prune beside llama-quantize.
#
#   PHYSARIUM_LLAMA=DIR scripts/bench-peer.sh [WORKDIR]
#
# Generates F16, Q8_0 and Q4_K models of about 1 GB (n_embd 2048, n_ff 5632)
# and, with one thread and with one per CPU, times on each of them, in one
# run: a plain copy of the file (cp, then sync of the copy), llama-quantize
# re-encoding every tensor of the file to a sibling type (F16 -> Q8_0,
# Q8_0 -> Q4_0, Q4_K -> Q5_K, --pure --allow-requantize, the same threads)
# and `physarium-gguf prune` (v1, natural mode, the same threads), each as
# wall time and CPU-seconds (user + system, /usr/bin/time). Prune's own
# report (--report, cpu_seconds) gives the CPU time of the kernel inside
# the run, read from the worker threads' clocks, so the rest (reading,
# hashing, decoding, surgery, writing) is the total minus that, and the
# CPU time of the input's sha256 (physarium.source), read from the hashing
# thread's clock, the largest part of the rest of an F16 prune. Then it
# checks the speed goals and runs the F16 model's stages alone with one
# worker (go test ./prune -run TestStages) for the kernel alone.
#
# PHYSARIUM_LLAMA is a runtime made by scripts/llama-runtime.sh. Needs
# about 7 GB of free disk in WORKDIR (default: a new temporary directory,
# removed after); the models are reused when WORKDIR already holds them.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PHYSARIUM_LLAMA:?set PHYSARIUM_LLAMA to a runtime made by scripts/llama-runtime.sh}"
quantize=$PHYSARIUM_LLAMA/bin/llama-quantize
. scripts/bench-lib.sh
bench_setup "${1:-}"

gen f16-1g.gguf f16 10
gen q8_0-1g.gguf q8_0 19
gen q4k-1g.gguf q4_k 35

# timed OUT CMD...: runs CMD and appends "wall cpu" (seconds) to OUT.
timed() {
	local out=$1
	shift
	/usr/bin/time -f '%e %U %S' -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" || {
		cat "$work/stderr.txt" >&2
		return 1
	}
	awk '{ printf "%.2f %.2f\n", $1, $2 + $3 }' "$work/time.txt" >"$out"
}
cell() { awk '{ printf "%.2f s (%.2f)", $1, $2 }' "$1"; }
field() { awk -v i="$2" '{ print $i }' "$1"; }

goals=$work/goals.txt
: >"$goals"
echo "## prune beside llama-quantize and a plain copy (wall time, CPU-seconds in brackets)"
echo "| model | size | threads | plain copy | llama-quantize | to | prune | kernel inside prune (CPU) | hash inside prune (CPU) | rest / kernel (CPU) | prune / llama-quantize (CPU) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for spec in f16-1g.gguf:Q8_0 q8_0-1g.gguf:Q4_0 q4k-1g.gguf:Q5_K; do
	m=${spec%%:*}
	sibling=${spec##*:}
	in=$work/$m
	size=$(stat -c %s "$in")
	for threads in 1 "$(nproc)"; do
		sync
		timed "$work/cp.txt" sh -c 'cp "$1" "$2" && sync "$2"' sh "$in" "$work/copy.gguf"
		rm -f "$work/copy.gguf"
		timed "$work/q.txt" "$quantize" --pure --allow-requantize "$in" "$work/quant.gguf" "$sibling" "$threads"
		sync "$work/quant.gguf"
		rm -f "$work/quant.gguf"
		timed "$work/p.txt" "$bin" prune --quiet --force --threads "$threads" --report "$work/report.json" "$in" "$work/pruned.gguf"
		rm -f "$work/pruned.gguf"
		kernel=$(node -e 'const r = require(process.argv[1]); console.log(r.cpu_seconds.decide.toFixed(2))' "$work/report.json")
		hash=$(node -e 'const r = require(process.argv[1]); console.log(r.cpu_seconds.hash.toFixed(2))' "$work/report.json")
		awk -v m="$m" -v s="$size" -v t="$threads" -v to="$sibling" -v k="$kernel" -v h="$hash" \
			-v cp="$(cell "$work/cp.txt")" -v q="$(cell "$work/q.txt")" -v p="$(cell "$work/p.txt")" \
			-v pc="$(field "$work/p.txt" 2)" -v qc="$(field "$work/q.txt" 2)" \
			'BEGIN { printf "| %s | %.2f GB | %d | %s | %s | %s | %s | %.2f s | %.2f s | %.2f | %.2f |\n", m, s / 1e9, t, cp, q, to, p, k, h, (pc - k) / k, pc / qc }'
		echo "$m $threads $(field "$work/p.txt" 2) $kernel $(field "$work/q.txt" 2) $hash" >>"$goals"
	done
done

echo
echo "## the F16 model's stages alone, one worker"
go test ./prune -v -run '^TestStages$' -count 1 -timeout 1h -stages.model "$work/f16-1g.gguf" -stages.threads 1 2>&1 | grep '^|' | tee "$work/stages.txt"

echo
echo "## goals"
awk -v n="$(nproc)" '
	function verdict(ok) { return ok ? "met" : "MISSED" }
	$1 == "q4k-1g.gguf" && $2 == n { r = $3 / $5; printf "- prune of Q4_K <= 0.4x llama-quantize Q4_K -> Q5_K (CPU, %d threads): %.2fx, %s\n", n, r, verdict(r <= 0.4) }
	$1 == "f16-1g.gguf" && $2 == n { r = ($3 - $4) / $4; printf "- F16, everything but the kernel <= 35 %% of the kernel (CPU, %d threads): %.0f %%, %s (the hash alone %.0f %%)\n", n, 100 * r, verdict(r <= 0.35), 100 * $6 / $4 }
	$1 == "f16-1g.gguf" && $2 == 1 { r = $3 / $4; printf "- F16, prune within 1.3x of its kernel (CPU, 1 thread): %.2fx, %s\n", r, verdict(r <= 1.3) }
' "$goals"
# The stages row: prune (column 10) over the kernel alone (column 8), wall.
awk -F'|' 'NR == 3 { k = $8 + 0; p = $10 + 0; r = p / k; printf "- F16, prune within 1.3x of the kernel alone (wall, 1 worker, TestStages): %.2fx, %s\n", r, (r <= 1.3 ? "met" : "MISSED") }' "$work/stages.txt"
