# Sourced by the scripts/bench-*.sh scripts, from the repository's root:
# their work directory, the binary they time and the models they generate.

# bench_setup WORKDIR: sets work to WORKDIR, or to a new temporary
# directory removed on exit when WORKDIR is empty, and builds the binary
# into it as $bin.
bench_setup() {
	work=${1:-}
	if [ -z "$work" ]; then
		work=$(mktemp -d)
		trap 'rm -rf "$work"' EXIT
	fi
	mkdir -p "$work"
	bin=$work/physarium-gguf
	go build -o "$bin" .
}

# gen NAME TYPE LAYERS: a generated model of LAYERS layers of n_embd 2048
# and n_ff 5632 (51.4 M projection weights each) in $work, kept when it is
# already there.
gen() {
	[ -f "$work/$1" ] || "$bin" testmodel --embd 2048 --ff 5632 --heads 16 --layers "$3" --type "$2" "$work/$1" >&2
}
