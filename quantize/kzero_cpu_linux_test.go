package quantize

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/cpuclock"
)

var (
	keepZerosCPU  = flag.Int("kzcpu", 0, "rounds of TestKeepZerosCPU (0: skip it)")
	keepZerosReps = flag.Int("kzcpu.reps", 8, "passes over the data in each round of TestKeepZerosCPU")
)

// TestKeepZerosCPU measures the zero-preserving encoders of Q4_K and Q5_K
// (EncodeKeepZeros, with the SIMD path where there is one, and in Go) on
// BenchmarkKQuants's data, 16 rows of 4096 Gaussian values with a quarter
// of them zeroed, in interleaved rounds timed by the thread's own CPU
// clock, so that waiting for a CPU on a busy machine does not count; it
// prints the best rate of each, in million values per second of one
// core. It runs only with -kzcpu ROUNDS.
//
// Each round of a variant makes -kzcpu.reps passes over the data (by
// default 8, 524,288 values: one band of 256 rows of 2048, which prune
// re-encodes in one stretch), since the first blocks after another
// variant ran are slower: with one pass a round (0.6 ms for the Q4_K SIMD
// path), that path measured about 97 M values/s against 115 M in long
// runs.
func TestKeepZerosCPU(t *testing.T) {
	if *keepZerosCPU <= 0 {
		t.Skip("needs -kzcpu ROUNDS")
	}
	const nrows, ncols = 16, 4096
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]float32, nrows*ncols)
	for i := range src {
		src[i] = float32(r.NormFloat64() * 0.02)
	}
	for i := range src {
		if r.IntN(4) == 0 {
			src[i] = 0
		}
	}
	types := []gguf.Type{gguf.TypeQ4_K, gguf.TypeQ5_K}
	type variant struct {
		typ  gguf.Type
		simd bool
	}
	var variants []variant
	for _, typ := range types {
		if simdKeepZerosFit8x32.provided {
			variants = append(variants, variant{typ, true})
		}
		variants = append(variants, variant{typ, false})
	}
	best := map[variant]time.Duration{}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Each variant's output is allocated once, so that no round counts
	// the page faults of fresh memory.
	dsts := map[variant][]byte{}
	for _, v := range variants {
		nb, _ := v.typ.RowBytes(uint64(len(src)))
		dsts[v] = make([]byte, nb)
	}
	for range *keepZerosCPU {
		for _, v := range variants {
			dst := dsts[v]
			was := SetSIMD(v.simd)
			start := cpuclock.Thread()
			for range *keepZerosReps {
				if err := EncodeKeepZeros(v.typ, dst, src); err != nil {
					t.Fatal(err)
				}
			}
			took := (cpuclock.Thread() - start) / time.Duration(*keepZerosReps)
			SetSIMD(was)
			if best[v] == 0 || took < best[v] {
				best[v] = took
			}
		}
	}
	for _, v := range variants {
		path := "go"
		if v.simd {
			path = "simd"
		}
		fmt.Fprintf(os.Stderr, "%v keep-zeros (%s): %.1f M values/s per core (best of %d rounds, %d passes each)\n",
			v.typ, path, float64(len(src))/best[v].Seconds()/1e6, *keepZerosCPU, *keepZerosReps)
	}
}
