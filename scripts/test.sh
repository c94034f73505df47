#!/usr/bin/env bash
# Runs every test of physarium-gguf: installs the real llama.cpp runtime the
# tests use (scripts/llama-runtime.sh), then gofmt, go vet, the race-enabled
# test suite, and the cgo-free build and kernel tests.
set -euo pipefail
cd "$(dirname "$0")/.."

step_start=$SECONDS
step_name=
# step prints the time of the previous step and the name of the next one.
step() {
	if [ -n "$step_name" ]; then
		printf '== %s: %d s\n' "$step_name" $((SECONDS - step_start)) >&2
	fi
	step_name=$*
	step_start=$SECONDS
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

step "go test -race"
go test -race -timeout 40m ./...

step "CGO_ENABLED=0 build and pure-Go tests"
CGO_ENABLED=0 go build ./...
CGO_ENABLED=0 go test -timeout 20m ./kernel/ ./quantize/ ./gguf/
go test -tags purego -timeout 20m ./kernel/

# The fuzzers, each for a bounded time (FUZZTIME, default 60s). Each entry is
# pkg:FuzzName; a listed fuzzer that does not exist fails the run ("no fuzz
# tests to fuzz" or no match). Every input that widens coverage is minimized
# before the worker that found it fuzzes on, for up to -fuzzminimizetime
# (Go's default is 60s, the whole run: one multi-kilobyte input found early
# stalled FuzzPrune at 0 execs/s for the rest of it); FUZZMINIMIZETIME
# (default 5s) bounds that, so the time goes to new inputs.
fuzzers=(
	gguf:FuzzOpen
	imatrix:FuzzLoad
	quantize:FuzzDecode
	prune:FuzzPrune
)
for entry in "${fuzzers[@]}"; do
	pkg=${entry%%:*} name=${entry#*:}
	step "fuzz $pkg $name (${FUZZTIME:-60s}, minimize ${FUZZMINIMIZETIME:-5s})"
	# Capture the list first: grep -q would stop reading early, and under
	# pipefail the writer's SIGPIPE would fail the check.
	listed=$(go test -list "^${name}\$" "./$pkg/")
	if ! grep -qx "$name" <<<"$listed"; then
		echo "fuzzer $entry does not exist" >&2
		exit 1
	fi
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME:-60s}" \
		-fuzzminimizetime "${FUZZMINIMIZETIME:-5s}" "./$pkg/"
done
step "done"
