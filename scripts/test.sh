#!/usr/bin/env bash
# Runs every test of physarium-gguf: installs the real llama.cpp runtime the
# tests use (scripts/llama-runtime.sh), then gofmt, go vet, the test suite
# (with the race detector where there is concurrency), the cgo-free build and
# kernel tests, and the fuzzers. Each step prints its wall and CPU time.
set -euo pipefail
cd "$(dirname "$0")/.."

# children_cpu sets cpu to the user+sys CPU seconds of the child processes
# waited for so far (the second line of bash's times). times runs in this
# shell, not in a command substitution, whose own children it would count.
cpu_file=$(mktemp)
children_cpu() {
	times >"$cpu_file"
	cpu=$(awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] } printf "%.0f", n }' "$cpu_file")
}

trap 'rm -f "$cpu_file" "${plain_log:-}"' EXIT
step_start=$SECONDS
step_cpu=0
step_name=
# step prints the wall and CPU time of the previous step (CPU: user+sys of
# its processes, the figure that stays comparable on a shared machine) and
# the name of the next one.
step() {
	children_cpu
	if [ -n "$step_name" ]; then
		printf '== %s: %d s (CPU %d s)\n' "$step_name" $((SECONDS - step_start)) $((cpu - step_cpu)) >&2
	fi
	step_name=$*
	step_start=$SECONDS
	step_cpu=$cpu
	printf '\n== %s\n' "$*" >&2
}

step "llama.cpp runtime (node-llama-cpp@3.21.1)"
runtime_line=$(bash scripts/llama-runtime.sh | tail -n 1)
case "$runtime_line" in
PHYSARIUM_LLAMA=*) export "$runtime_line" ;;
*) echo "scripts/llama-runtime.sh did not print PHYSARIUM_LLAMA=...: $runtime_line" >&2; exit 1 ;;
esac
echo "PHYSARIUM_LLAMA=$PHYSARIUM_LLAMA" >&2

step "go mod download"
go mod download

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

step "go vet"
go vet ./...

# The race detector watches the code of every package that starts
# goroutines (the pipeline, the writer, the codecs' searches, calibrate,
# eval): those run with -race. The packages listed in sequential have no
# such code of their own; under -race their tests spent about 5 times the
# CPU (audit's TestMethodsMirrorPrune/f32: 26 against 5 CPU-seconds)
# watching single-goroutine code, and the concurrent code they call is
# raced by its own package's tests. cli is one of them: it starts no
# goroutine, its progress bars' mpb goroutines run only on a terminal, and
# the callbacks it hands prune, calibrate and eval are called from one
# goroutine, which those packages' tests check under -race with a callback
# set. They run without -race, beside the race run. A new package is raced
# unless it is added here.
sequential=(. ./audit ./cli ./errata ./imatrix ./testmodels ./testmodels/llamacpp)
mapfile -t raced < <(go list ./... | grep -vxF -f <(go list "${sequential[@]}"))
step "go test (sequential packages, in the background) and go test -race (${#raced[@]} packages)"
plain_log=$(mktemp)
go test -timeout 40m "${sequential[@]}" >"$plain_log" 2>&1 &
plain_pid=$!
race_status=0
go test -race -timeout 40m "${raced[@]}" || race_status=$?
plain_status=0
wait "$plain_pid" || plain_status=$?
echo "-- go test ${sequential[*]} (without -race):" >&2
cat "$plain_log"
if [ "$race_status" != 0 ] || [ "$plain_status" != 0 ]; then
	echo "go test failed: -race run exit $race_status, sequential run exit $plain_status" >&2
	exit 1
fi

step "CGO_ENABLED=0 build and pure-Go tests"
CGO_ENABLED=0 go build ./...
CGO_ENABLED=0 go test -timeout 20m ./kernel/ ./quantize/ ./gguf/
go test -tags purego -timeout 20m ./kernel/

# The fuzzers, each for a bounded time (FUZZTIME, default 20s: the run is a
# regression check on every submission, starting from the committed seeds;
# a fuzzing campaign sets FUZZTIME=10m or more). Each entry is
# pkg:FuzzName; a listed fuzzer that does not exist fails the run ("no fuzz
# tests to fuzz" or no match). Go minimizes every input that widens
# coverage before the worker that found it fuzzes on, for up to
# -fuzzminimizetime (60s by default: one multi-kilobyte input found early
# stalled FuzzPrune at 0 execs/s for the whole run). A short run gains
# nothing from smaller corpus entries, so FUZZMINIMIZETIME defaults to 0s:
# every second goes to new inputs. Over 20 s each, with a fresh cache, 5s
# against 0s found 6 against 371 new inputs for FuzzPrune (559 against
# 54,688 executions), 19 against 164 for FuzzOpen, 17 against 184 for
# FuzzLoad and 83 against 187 for FuzzDecode. A failing input is kept and
# reported unminimized; a campaign may set FUZZMINIMIZETIME=1m.
fuzzers=(
	gguf:FuzzOpen
	imatrix:FuzzLoad
	quantize:FuzzDecode
	prune:FuzzPrune
)
for entry in "${fuzzers[@]}"; do
	pkg=${entry%%:*} name=${entry#*:}
	step "fuzz $pkg $name (${FUZZTIME:-20s}, minimize ${FUZZMINIMIZETIME:-0s})"
	# Capture the list first: grep -q would stop reading early, and under
	# pipefail the writer's SIGPIPE would fail the check.
	listed=$(go test -list "^${name}\$" "./$pkg/")
	if ! grep -qx "$name" <<<"$listed"; then
		echo "fuzzer $entry does not exist" >&2
		exit 1
	fi
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME:-20s}" \
		-fuzzminimizetime "${FUZZMINIMIZETIME:-0s}" "./$pkg/"
done
step "done"
