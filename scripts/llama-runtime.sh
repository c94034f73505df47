#!/usr/bin/env bash
# llama-runtime.sh [CACHE_DIR]
#
# Installs the real llama.cpp used by the tests and eval (--llama-lib
# CACHE_DIR/lib) and builds llama.cpp's own tools against it. The prebuilt libraries come from the npm packages
# node-llama-cpp and @node-llama-cpp/linux-x64 (pinned below); the exact
# llama.cpp source they were built from ships inside node-llama-cpp as a git
# bundle. Layout of CACHE_DIR
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/physarium-gguf/llama):
#
#   lib/  symlink to the prebuilt libggml-base.so, libggml.v0.4.0.so,
#         libggml-cpu-*.so, libllama.v0.4.0.so
#   src/  clone of the bundled llama.cpp source (headers: src/include,
#         src/ggml/include)
#   bin/  llama-imatrix: llama.cpp's own tools/imatrix/imatrix.cpp from src/,
#         compiled with g++ and linked against the shipped libllama-common.so
#         (plus tools/llamacpp/shim/cpu_backend.c, which loads the CPU backend
#         from lib/; RUNPATH $ORIGIN/../lib), and llama-perplexity from
#         tools/perplexity/ the same way (the referee for the perplexity that
#         the project's own binding, package llamacpp, computes in process),
#         and llama-quantize from tools/quantize/ (it must take calibrate's
#         output as --imatrix)
#
# Idempotent: a stamp keyed on the package versions, this script and a hash
# of the C shim makes a second run return at once. Progress goes to stderr; the last
# (and only) line on stdout is PHYSARIUM_LLAMA=<absolute cache dir>, so
#   eval "$(scripts/llama-runtime.sh)"; export PHYSARIUM_LLAMA
# or
#   export "$(scripts/llama-runtime.sh | tail -n1)"
# sets up the environment the Go tests look for.
#
# Needs: node + npm (network access to the npm registry on first run), git,
# gcc, g++, sha256sum, Linux x86-64.
set -euo pipefail

NLC_VERSION=3.21.1
LIBDIR_REL=node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
BUNDLE_REL=node_modules/node-llama-cpp/llama/gitRelease.bundle

say() { printf 'llama-runtime: %s\n' "$*" >&2; }
die() {
	printf 'llama-runtime: error: %s\n' "$*" >&2
	exit 1
}

[ $# -le 1 ] || die "usage: $0 [CACHE_DIR]"

case "$(uname -s)/$(uname -m)" in
Linux/x86_64) ;;
*) die "only Linux x86-64 is supported (the prebuilt libraries are @node-llama-cpp/linux-x64), this is $(uname -s)/$(uname -m)" ;;
esac

for tool in node npm git gcc g++ sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found in PATH; install it (Debian: apt-get install nodejs npm git gcc g++ coreutils)"
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
toolsrc=$(cd "$here/../tools/llamacpp" 2>/dev/null && pwd) || die "C sources not found at $here/../tools/llamacpp"

cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/physarium-gguf/llama}
mkdir -p "$cache" || die "cannot create cache dir $cache"
cache=$(cd "$cache" && pwd -P)

# One installer at a time per cache dir (tests in several packages may race).
if command -v flock >/dev/null 2>&1; then
	exec 9>"$cache/.lock"
	flock 9 || die "cannot lock $cache/.lock"
fi

shim="$toolsrc/shim/cpu_backend.c"
[ -f "$shim" ] || die "missing $shim"

gcc_version=$(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion)
stamp_want=$(
	{
		echo "node-llama-cpp=$NLC_VERSION linux-x64=$NLC_VERSION gcc=$gcc_version"
		sha256sum "$0" | cut -d' ' -f1
		for f in "$shim"; do
			printf '%s ' "$(basename "$f")"
			sha256sum "$f" | cut -d' ' -f1
		done
	} | sha256sum | cut -d' ' -f1
)
stamp_file="$cache/.physarium-stamp"

finish() {
	printf 'PHYSARIUM_LLAMA=%s\n' "$cache"
	exit 0
}

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_want" ] &&
	[ -e "$cache/lib/libllama.v0.4.0.so" ] && [ -f "$cache/src/include/llama.h" ]; then
	ok=1
	[ -x "$cache/bin/llama-imatrix" ] || ok=0
	[ -x "$cache/bin/llama-perplexity" ] || ok=0
	[ -x "$cache/bin/llama-quantize" ] || ok=0
	if [ "$ok" = 1 ]; then
		say "up to date in $cache"
		finish
	fi
fi
rm -f "$stamp_file"

# 1. The npm packages (prebuilt libraries + the source bundle).
installed_version() {
	node -e 'try{process.stdout.write(require(process.argv[1]).version)}catch(e){}' "$cache/$1/package.json" 2>/dev/null || true
}
if [ "$(installed_version node_modules/node-llama-cpp)" != "$NLC_VERSION" ] ||
	[ "$(installed_version node_modules/@node-llama-cpp/linux-x64)" != "$NLC_VERSION" ] ||
	[ ! -f "$cache/$BUNDLE_REL" ] || [ ! -f "$cache/$LIBDIR_REL/libllama.v0.4.0.so" ]; then
	say "installing node-llama-cpp@$NLC_VERSION and @node-llama-cpp/linux-x64@$NLC_VERSION into $cache (about 80 MB)"
	[ -f "$cache/package.json" ] || echo '{}' >"$cache/package.json"
	(cd "$cache" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm i -E --omit=optional --no-audit --no-fund \
		"node-llama-cpp@$NLC_VERSION" "@node-llama-cpp/linux-x64@$NLC_VERSION" >&2) ||
		die "npm install failed in $cache"
fi
[ -f "$cache/$LIBDIR_REL/libllama.v0.4.0.so" ] || die "npm install did not provide $cache/$LIBDIR_REL/libllama.v0.4.0.so"
[ -f "$cache/$BUNDLE_REL" ] || die "npm install did not provide $cache/$BUNDLE_REL"

# 2. lib -> the prebuilt libraries.
if [ "$(readlink "$cache/lib" 2>/dev/null || true)" != "$LIBDIR_REL" ]; then
	rm -rf "$cache/lib"
	ln -s "$LIBDIR_REL" "$cache/lib"
fi

# 3. src -> the exact llama.cpp source of those libraries.
bundle_head=$(git bundle list-heads "$cache/$BUNDLE_REL" | awk 'NR==1{print $1}')
[ -n "$bundle_head" ] || die "cannot read the git bundle $cache/$BUNDLE_REL"
src_head=$(git -C "$cache/src" rev-parse HEAD 2>/dev/null || true)
if [ "$src_head" != "$bundle_head" ] || [ ! -f "$cache/src/include/llama.h" ]; then
	say "unpacking the llama.cpp source ($bundle_head) into $cache/src"
	rm -rf "$cache/src.tmp"
	git -c advice.detachedHead=false clone -q "$cache/$BUNDLE_REL" "$cache/src.tmp" >&2 || die "git clone of $cache/$BUNDLE_REL failed"
	rm -rf "$cache/src"
	mv "$cache/src.tmp" "$cache/src"
fi
[ -f "$cache/src/include/llama.h" ] && [ -f "$cache/src/ggml/include/ggml.h" ] ||
	die "llama.cpp headers missing under $cache/src"

# 4. bin -> llama.cpp's tools (package llamacpp computes the project's own
#    perplexity in process; no C tool of ours is built any more).
mkdir -p "$cache/bin"

# 5. llama.cpp's llama-imatrix, against the shipped libllama-common.so (built
#    from this same source, so the common_params layout matches).
say "compiling llama-imatrix (about 10 s)"
[ -f "$cache/lib/libllama-common.so" ] || die "missing $cache/lib/libllama-common.so"
gcc -O2 -std=c11 -Wall -Wextra -I"$cache/src/ggml/include" -c "$shim" -o "$cache/bin/cpu_backend.o" >&2 ||
	die "compiling $shim failed"
g++ -O2 -std=c++17 -I"$cache/src/common" -I"$cache/src/include" -I"$cache/src/ggml/include" \
	"$cache/src/tools/imatrix/imatrix.cpp" "$cache/bin/cpu_backend.o" -o "$cache/bin/llama-imatrix.tmp" \
	"$cache/lib/libllama-common.so" "$cache/lib/libllama.v0.4.0.so" "$cache/lib/libggml.v0.4.0.so" \
	"$cache/lib/libggml-base.so" -Wl,-rpath,'$ORIGIN/../lib' -Wl,--enable-new-dtags -pthread -ldl >&2 ||
	die "compiling $cache/src/tools/imatrix/imatrix.cpp failed"
mv "$cache/bin/llama-imatrix.tmp" "$cache/bin/llama-imatrix"

# 5b. llama.cpp's own llama-perplexity, built the same way: the referee for
#     every perplexity figure the project computes.
say "compiling llama-perplexity (about 10 s)"
g++ -O2 -std=c++17 -I"$cache/src/common" -I"$cache/src/include" -I"$cache/src/ggml/include" \
	"$cache/src/tools/perplexity/main.cpp" "$cache/src/tools/perplexity/perplexity.cpp" "$cache/bin/cpu_backend.o" \
	-o "$cache/bin/llama-perplexity.tmp" \
	"$cache/lib/libllama-common.so" "$cache/lib/libllama.v0.4.0.so" "$cache/lib/libggml.v0.4.0.so" \
	"$cache/lib/libggml-base.so" -Wl,-rpath,'$ORIGIN/../lib' -Wl,--enable-new-dtags -pthread -ldl >&2 ||
	die "compiling $cache/src/tools/perplexity/perplexity.cpp failed"
rm -f "$cache/bin/cpu_backend.o"
mv "$cache/bin/llama-perplexity.tmp" "$cache/bin/llama-perplexity"

# 5c. llama.cpp's own llama-quantize, built the same way: it must accept
#     calibrate's output as --imatrix.
say "compiling llama-quantize (about 10 s)"
gcc -O2 -std=c11 -Wall -Wextra -I"$cache/src/ggml/include" -c "$shim" -o "$cache/bin/cpu_backend_q.o" >&2 ||
	die "compiling $shim failed"
g++ -O2 -std=c++17 -I"$cache/src/common" -I"$cache/src/include" -I"$cache/src/ggml/include" -I"$cache/src/tools/quantize" \
	"$cache/src/tools/quantize/main.cpp" "$cache/src/tools/quantize/quantize.cpp" "$cache/bin/cpu_backend_q.o" \
	-o "$cache/bin/llama-quantize.tmp" \
	"$cache/lib/libllama-common.so" "$cache/lib/libllama.v0.4.0.so" "$cache/lib/libggml.v0.4.0.so" \
	"$cache/lib/libggml-base.so" -Wl,-rpath,'$ORIGIN/../lib' -Wl,--enable-new-dtags -pthread -ldl >&2 ||
	die "compiling $cache/src/tools/quantize/quantize.cpp failed"
rm -f "$cache/bin/cpu_backend_q.o"
mv "$cache/bin/llama-quantize.tmp" "$cache/bin/llama-quantize"
case "$("$cache/bin/llama-quantize" --help 2>&1 || true)" in
*usage:*) ;;
*) die "$cache/bin/llama-quantize does not run" ;;
esac

# 6. Smoke test: the tools start and find their libraries.
"$cache/bin/llama-imatrix" --version >/dev/null 2>&1 || die "$cache/bin/llama-imatrix does not run"
"$cache/bin/llama-perplexity" --version >/dev/null 2>&1 || die "$cache/bin/llama-perplexity does not run"

echo "$stamp_want" >"$stamp_file"
say "ready in $cache"
finish
