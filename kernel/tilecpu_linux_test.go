package kernel

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/internal/cpuclock"
)

var tileCPU = flag.Int("tilecpu", 0, "rounds of TestTileCPU (0: skip it)")

// TestTileCPU times one full 256x256 Gaussian tile (BenchmarkTile's) with
// the avx2 and avx512 paths in interleaved rounds, by the thread's own CPU
// clock, so that time spent waiting for a CPU on a busy machine does not
// count, and prints each path's range and best, and the ratio of the
// bests. It runs only with -tilecpu ROUNDS.
func TestTileCPU(t *testing.T) {
	if *tileCPU <= 0 {
		t.Skip("needs -tilecpu ROUNDS")
	}
	impls := []Impl{AVX2, AVX512}
	ts := []Tile{{W: genW(newRNG(7), gauss, 256, 256), Rows: 256, Cols: 256}}
	kernels := map[Impl]*Kernel{}
	for _, impl := range impls {
		if !Available(impl) {
			t.Skipf("%v not available", impl)
		}
		k, err := New(impl, DefaultParams())
		if err != nil {
			t.Fatal(err)
		}
		kernels[impl] = k
	}
	const tilesPerRound = 20
	lo, hi := map[Impl]time.Duration{}, map[Impl]time.Duration{}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range *tileCPU {
		for _, impl := range impls {
			start := cpuclock.Thread()
			for range tilesPerRound {
				if err := kernels[impl].Run(ts); err != nil {
					t.Fatal(err)
				}
			}
			per := (cpuclock.Thread() - start) / tilesPerRound
			if lo[impl] == 0 || per < lo[impl] {
				lo[impl] = per
			}
			hi[impl] = max(hi[impl], per)
		}
	}
	for _, impl := range impls {
		fmt.Fprintf(os.Stderr, "%v: %d-%d us of CPU per tile, best %d us (%d rounds of %d tiles)\n",
			impl, lo[impl].Microseconds(), hi[impl].Microseconds(), lo[impl].Microseconds(), *tileCPU, tilesPerRound)
	}
	fmt.Fprintf(os.Stderr, "avx2 best / avx512 best: %.2fx\n", float64(lo[AVX2])/float64(lo[AVX512]))
}
