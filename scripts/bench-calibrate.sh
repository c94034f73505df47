#!/usr/bin/env bash
# Reproduces the README's calibrate speed and memory figures.
#
#   scripts/bench-calibrate.sh speed [ROUNDS]
#   scripts/bench-calibrate.sh memory [WORKDIR]
#
# speed: on stories260K over tinystories_valid_calib.txt, 80 chunks of 128
# tokens, 2 threads, runs in turn, ROUNDS times (default 4), llama.cpp's
# own llama-imatrix (--no-ppl), calibrate, calibrate --gram (one pass: the
# model's Grams take 825 KiB) and calibrate --gram --max-memory 170K (one
# layer's Grams, 169 KiB, per pass: five passes),
# each a process timed by /usr/bin/time from start to written file (model
# loading and tokenizing included). Alternating the runs spreads the load
# of a shared machine over all four. Prints every run, then per run kind
# the medians of tokens/s (wall clock) and of CPU milliseconds (user + sys)
# per 1000 tokens, and the CPU ratio to llama-imatrix.
#
# memory: generates a 1.04 GB F32 model (5 layers, n_embd 2048, n_ff 5632)
# in WORKDIR (default: a new temporary directory, removed after) and prints
# calibrate's peak RSS over 2 chunks of 128 tokens, 2 threads, without the
# Gram, with it by default (one layer per pass: a layer's Grams take 169
# MiB) and with it in one pass (--max-memory 1G), and checks
# that the last two wrote the same bytes.
#
# Needs PHYSARIUM_LLAMA (scripts/llama-runtime.sh) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PHYSARIUM_LLAMA:?run: export \"\$(scripts/llama-runtime.sh | tail -n1)\"}"
mode=${1:-speed}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$tmp/physarium-gguf
go build -o "$bin" .
lib=$PHYSARIUM_LLAMA/lib
text=../shared/models/tinystories_valid_calib.txt
stories=../shared/models/stories260K.gguf

# timed CMD...: runs CMD under GNU time and sets wall, user, sys (seconds)
# and rss (peak, KB).
timed() {
	/usr/bin/time -f 'TIME %e %U %S %M' "$@" >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; exit 1; }
	read -r _ wall user sys rss < <(grep '^TIME ' "$tmp/log" | tail -n 1)
}

case $mode in
speed)
	rounds=${2:-4}
	ctx=128 chunks=80 threads=2
	tokens=$((ctx * chunks))
	echo "run kind, round: wall s, user s, sys s ($tokens tokens each)"
	for r in $(seq "$rounds"); do
		for kind in llama-imatrix calibrate calibrate-gram calibrate-gram-per-layer; do
			out=$tmp/$kind.gguf
			cal=("$bin" calibrate --quiet --force --llama-lib "$lib" --text "$text" --ctx $ctx --chunks $chunks --threads $threads)
			case $kind in
			llama-imatrix) cmd=("$PHYSARIUM_LLAMA/bin/llama-imatrix" -m "$stories" -f "$text" -c $ctx --chunks $chunks
				-t $threads -tb $threads --no-ppl -o "$out") ;;
			calibrate) cmd=("${cal[@]}" "$stories" "$out") ;;
			calibrate-gram) cmd=("${cal[@]}" --gram "$stories" "$out") ;;
			calibrate-gram-per-layer) cmd=("${cal[@]}" --gram --max-memory 170K "$stories" "$out") ;;
			esac
			timed "${cmd[@]}"
			echo "$kind $r: $wall $user $sys" | tee -a "$tmp/runs"
		done
	done
	cmp "$tmp/calibrate-gram.gguf" "$tmp/calibrate-gram-per-layer.gguf"
	echo
	echo "| run | tokens/s (median wall) | CPU ms / 1000 tokens (median) | CPU / llama-imatrix |"
	echo "|---|---:|---:|---:|"
	median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
	ref=
	for kind in llama-imatrix calibrate calibrate-gram calibrate-gram-per-layer; do
		tps=$(awk -v k="$kind" -v n=$tokens '$1 == k {print n / $3}' "$tmp/runs" | median)
		cpu=$(awk -v k="$kind" -v n=$tokens '$1 == k {print ($4 + $5) * 1e6 / n}' "$tmp/runs" | median)
		ref=${ref:-$cpu}
		awk -v k="$kind" -v t="$tps" -v c="$cpu" -v r="$ref" 'BEGIN {printf "| %s | %.0f | %.1f | %.2f |\n", k, t, c, c / r}'
	done
	;;
memory)
	work=${2:-}
	if [ -n "$work" ]; then
		mkdir -p "$work"
	else
		work=$tmp
	fi
	model=$work/calibrate-1g.gguf
	[ -f "$model" ] || "$bin" testmodel --layers 5 --embd 2048 --ff 5632 --heads 16 --kv-heads 16 "$model" >&2
	echo "| run | peak RSS MB | wall s | user s | sys s |"
	echo "|---|---:|---:|---:|---:|"
	for kind in none gram gram-1pass; do
		case $kind in
		none) flags=() ;;
		gram) flags=(--gram) ;;
		gram-1pass) flags=(--gram --max-memory 1G) ;;
		esac
		timed "$bin" calibrate --quiet --force --llama-lib "$lib" --text "$text" \
			--ctx 128 --chunks 2 --threads 2 "${flags[@]}" "$model" "$tmp/$kind.gguf"
		echo "| $kind | $((rss / 1024)) | $wall | $user | $sys |"
	done
	cmp "$tmp/gram.gguf" "$tmp/gram-1pass.gguf"
	;;
*)
	echo "usage: $0 speed [ROUNDS] | memory [WORKDIR]" >&2
	exit 2
	;;
esac
