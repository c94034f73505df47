#!/usr/bin/env bash
# ollama-check.sh [--testmodel] [PRUNED.gguf]
# ollama-check.sh --build-only
#
# Checks that a GGUF written by `physarium-gguf prune` runs in Ollama:
#
#  1. Builds ollama v0.17.4 from the Go module proxy with
#       go install github.com/ollama/ollama@v0.17.4
#     into ${XDG_CACHE_HOME:-$HOME/.cache}/physarium-gguf/ollama/bin. Module
#     zips drop every vendor/ folder, so ollama's copy of llama.cpp loses
#     llama/llama.cpp/vendor (nlohmann/json.hpp for common/, stb and miniaudio
#     for tools/mtmd/); CGO_CPPFLAGS points at the vendor/ folder of the
#     llama.cpp source that scripts/llama-runtime.sh unpacks from the npm
#     bundle. Skipped when the binary of that version is already there
#     (`go version -m` names the module version). A cold build took 8.4 minutes
#     (wall) on 2 cores shared with other work; most of it is cgo C/C++.
#     --build-only stops here (.ci/run builds ollama at low priority while
#     the tests run, and checks once they pass).
#  2. Without PRUNED.gguf: prunes ../shared/models/stories260K.gguf (relative
#     to the repo root; a real model, so the text that comes back is real
#     text), or, when that file is missing or --testmodel is given, a random
#     f16 model from `physarium-gguf testmodel`.
#  3. Serves ollama on 127.0.0.1 only (port picked by the kernel), with its
#     models and its home in a temporary folder, runs `ollama create` from a
#     Modelfile whose FROM is the pruned file, sends one raw, greedy
#     POST /api/generate and checks that non-blank text comes back. It prints
#     that text; on any failure it prints the tail of the server log and
#     exits non-zero. The server and the temporary folder are removed on exit.
#
# Needs: go (also looked for in /usr/local/go/bin), gcc, g++, curl, node (for
# JSON), and what scripts/llama-runtime.sh needs. As root with CI=true,
# missing gcc/g++/curl/node are installed with apt-get.
set -euo pipefail

OLLAMA_VERSION=0.17.4
OLLAMA_MODULE=github.com/ollama/ollama
MODEL_NAME=physarium-check
PROMPT="Once upon a time"

say() { printf 'ollama-check: %s\n' "$*" >&2; }
die() {
	printf 'ollama-check: error: %s\n' "$*" >&2
	exit 1
}

usage="usage: $0 [--testmodel] [PRUNED.gguf] | --build-only"
use_testmodel=0
build_only=0
pruned_arg=
while [ $# -gt 0 ]; do
	case "$1" in
	--testmodel) use_testmodel=1 ;;
	--build-only) build_only=1 ;;
	-h | --help)
		echo "$usage"
		exit 0
		;;
	-*) die "$usage" ;;
	*)
		[ -z "$pruned_arg" ] || die "$usage"
		pruned_arg=$1
		;;
	esac
	shift
done
if [ -n "$pruned_arg" ]; then
	[ "$use_testmodel" = 0 ] || die "--testmodel and PRUNED.gguf exclude each other"
	[ -f "$pruned_arg" ] || die "no such file: $pruned_arg"
	pruned_arg=$(cd "$(dirname "$pruned_arg")" && pwd -P)/$(basename "$pruned_arg")
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

# --- tools -------------------------------------------------------------------
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH=$PATH:/usr/local/go/bin
fi
command -v go >/dev/null 2>&1 || die "'go' not found in PATH (Go 1.24 or newer is needed to build ollama $OLLAMA_VERSION)"
need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v node >/dev/null 2>&1 || need+=(nodejs)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && [ "${CI:-}" = true ]; then
		say "installing: ${need[*]}"
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
	else
		die "missing tools; install them first (Debian: apt-get install ${need[*]})"
	fi
fi

# --- llama.cpp source (for the vendor/ headers) --------------------------------
runtime_line=$(bash "$here/llama-runtime.sh" | tail -n 1) || die "scripts/llama-runtime.sh failed"
case "$runtime_line" in
PHYSARIUM_LLAMA=/*) llama=${runtime_line#PHYSARIUM_LLAMA=} ;;
*) die "scripts/llama-runtime.sh did not print PHYSARIUM_LLAMA=...: $runtime_line" ;;
esac
vendor=$llama/src/vendor
for h in nlohmann/json.hpp nlohmann/json_fwd.hpp stb/stb_image.h miniaudio/miniaudio.h; do
	[ -f "$vendor/$h" ] || die "missing $vendor/$h (the llama.cpp source from the npm bundle)"
done

# --- 1. build ollama -----------------------------------------------------------
cache=${XDG_CACHE_HOME:-$HOME/.cache}/physarium-gguf/ollama
mkdir -p "$cache/bin" || die "cannot create $cache/bin"
ollama=$cache/bin/ollama

built_version() {
	[ -x "$ollama" ] || return 0
	go version -m "$ollama" 2>/dev/null | awk -v m="$OLLAMA_MODULE" '$1 == "mod" && $2 == m { print $3 }'
}

if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache/.lock"
	flock 9 || die "cannot lock $cache/.lock"
fi
if [ "$(built_version)" = "v$OLLAMA_VERSION" ]; then
	say "ollama v$OLLAMA_VERSION already built: $ollama"
else
	say "building ollama v$OLLAMA_VERSION (go install, cgo; 8 to 11 minutes cold on 2 cores)"
	tmpbin=$(mktemp -d "$cache/bin.tmp.XXXXXX")
	t0=$(date +%s)
	# Outside any module (cd to the cache), so the project's go.mod/go.work
	# play no part; GOFLAGS is cleared so -mod=... from the caller cannot break
	# `go install pkg@version`.
	# -O1 without -g (cgo's default is -O2 -g): 374 against 485 CPU-seconds
	# for a cold build here, and the check runs a 260K-parameter model.
	if ! (cd "$cache" && GOWORK=off GOFLAGS= GOBIN="$tmpbin" CGO_ENABLED=1 \
		CGO_CPPFLAGS="${CGO_CPPFLAGS:+$CGO_CPPFLAGS }-I$vendor" \
		CGO_CFLAGS="${CGO_CFLAGS:--O1}" CGO_CXXFLAGS="${CGO_CXXFLAGS:--O1}" \
		go install -ldflags "-X $OLLAMA_MODULE/version.Version=$OLLAMA_VERSION -X $OLLAMA_MODULE/server.mode=release" \
		"$OLLAMA_MODULE@v$OLLAMA_VERSION" >&2); then
		rm -rf "$tmpbin"
		die "go install $OLLAMA_MODULE@v$OLLAMA_VERSION failed (CGO_CPPFLAGS=-I$vendor)"
	fi
	mv -f "$tmpbin/ollama" "$ollama"
	rm -rf "$tmpbin"
	say "built $ollama in $(($(date +%s) - t0)) s"
fi
exec 9>&-
[ "$(built_version)" = "v$OLLAMA_VERSION" ] || die "$ollama is not v$OLLAMA_VERSION after the build"
if [ "$build_only" = 1 ]; then
	[ "$use_testmodel" = 0 ] && [ -z "$pruned_arg" ] || die "$usage"
	exit 0
fi

# --- temp dir, cleanup ------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/physarium-ollama.XXXXXX")
server_pid=
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		# The server runs in its own process group (setsid), with its runner.
		kill -TERM -- "-$server_pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL -- "-$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log=$work/server.log
fail() {
	printf 'ollama-check: FAIL: %s\n' "$*" >&2
	if [ -s "$log" ]; then
		echo "---- last 40 lines of the ollama server log ($log) ----" >&2
		tail -n 40 "$log" >&2
		echo "----" >&2
	fi
	exit 1
}

# --- 2. the pruned model ----------------------------------------------------------
if [ -n "$pruned_arg" ]; then
	pruned=$pruned_arg
else
	say "building physarium-gguf"
	(cd "$root" && go build -o "$work/physarium-gguf" .) || die "go build of physarium-gguf failed"
	stories=$root/../shared/models/stories260K.gguf
	if [ "$use_testmodel" = 0 ] && [ -f "$stories" ]; then
		src=$stories
	else
		src=$work/m.gguf
		"$work/physarium-gguf" testmodel --type f16 "$src" >&2 || die "physarium-gguf testmodel failed"
	fi
	pruned=$work/p.gguf
	say "pruning $src"
	"$work/physarium-gguf" prune "$src" "$pruned" >"$work/prune.txt" 2>&1 || {
		cat "$work/prune.txt" >&2
		die "physarium-gguf prune failed"
	}
	grep -E '^(killed|exact zeros):' "$work/prune.txt" >&2 || true
fi
say "model: $pruned"

# --- 3. serve, create, generate -----------------------------------------------------
mkdir -p "$work/models" "$work/home"
# HOME is the temp dir so the server's key pair and history go there, not to
# the user's ~/.ollama. Port 0: the kernel picks a free loopback port and the
# server logs it.
HOME=$work/home OLLAMA_HOST=127.0.0.1:0 OLLAMA_MODELS=$work/models OLLAMA_NO_CLOUD=1 \
	OLLAMA_NOPRUNE=1 OLLAMA_KEEP_ALIVE=5m OLLAMA_NUM_PARALLEL=1 OLLAMA_MAX_LOADED_MODELS=1 \
	setsid "$ollama" serve </dev/null >"$log" 2>&1 &
server_pid=$!

addr=
for _ in $(seq 1 120); do # 60 s
	kill -0 "$server_pid" 2>/dev/null || fail "ollama serve exited early"
	addr=$(sed -n 's/.*Listening on \(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
	if [ -n "$addr" ] && curl -fsS --max-time 5 "http://$addr/api/version" >"$work/version.json" 2>/dev/null; then
		break
	fi
	addr=
	sleep 0.5
done
[ -n "$addr" ] || fail "ollama serve did not answer on 127.0.0.1 within 60 s"
say "ollama serve answers on http://$addr: $(cat "$work/version.json")"

cat >"$work/Modelfile" <<EOF
FROM $pruned
TEMPLATE "{{ .Prompt }}"
PARAMETER num_ctx 256
EOF
say "ollama create $MODEL_NAME"
HOME=$work/home OLLAMA_HOST=$addr timeout 180 "$ollama" create "$MODEL_NAME" -f "$work/Modelfile" \
	</dev/null >"$work/create.log" 2>&1 || {
	cat "$work/create.log" >&2
	fail "ollama create failed"
}

request=$(node -e '
const [model, prompt] = process.argv.slice(1);
process.stdout.write(JSON.stringify({model, prompt, stream: false, raw: true,
  options: {num_predict: 32, temperature: 0, seed: 1}}));' "$MODEL_NAME" "$PROMPT")
say "POST /api/generate $request"
code=$(curl -sS --max-time 300 -o "$work/generate.json" -w '%{http_code}' \
	-H 'Content-Type: application/json' -d "$request" "http://$addr/api/generate") ||
	fail "POST /api/generate did not complete"
[ "$code" = 200 ] || fail "POST /api/generate answered HTTP $code: $(head -c 2000 "$work/generate.json")"

# Prints the generated text; fails unless the answer is done and has
# non-blank text.
node -e '
const fs = require("fs");
let r;
try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); }
catch (e) { console.error("response is not JSON: " + e.message); process.exit(1); }
if (r.error) { console.error("server error: " + r.error); process.exit(1); }
if (r.done !== true) { console.error("response not done: " + JSON.stringify(r)); process.exit(1); }
if (typeof r.response !== "string" || r.response.trim() === "") {
  console.error("empty response text: " + JSON.stringify(r)); process.exit(1);
}
console.error(`ollama-check: ${r.eval_count} tokens generated, done_reason=${r.done_reason}`);
process.stdout.write(r.response + "\n");' "$work/generate.json" >"$work/text.txt" ||
	fail "bad /api/generate answer"

printf 'ollama v%s generated from "%s":\n%s%s\n' "$OLLAMA_VERSION" "$PROMPT" "$PROMPT" "$(cat "$work/text.txt")"
say "OK"
