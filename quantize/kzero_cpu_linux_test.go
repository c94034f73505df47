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

var keepZerosCPU = flag.Int("kzcpu", 0, "rounds of TestKeepZerosCPU (0: skip it)")

// TestKeepZerosCPU measures the zero-preserving encoders of Q4_K and Q5_K
// (EncodeKeepZeros, with the SIMD path where there is one, and in Go) on
// BenchmarkKQuants's data, 16 rows of 4096 Gaussian values with a quarter
// of them zeroed, in interleaved rounds timed by the thread's own CPU
// clock, so that waiting for a CPU on a busy machine does not count; it
// prints the best rate of each, in million values per second of one
// core. It runs only with -kzcpu ROUNDS.
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
	for range *keepZerosCPU {
		for _, v := range variants {
			nb, _ := v.typ.RowBytes(uint64(len(src)))
			dst := make([]byte, nb)
			was := SetSIMD(v.simd)
			start := cpuclock.Thread()
			if err := EncodeKeepZeros(v.typ, dst, src); err != nil {
				t.Fatal(err)
			}
			took := cpuclock.Thread() - start
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
		fmt.Fprintf(os.Stderr, "%v keep-zeros (%s): %.1f M values/s per core (best of %d)\n",
			v.typ, path, float64(len(src))/best[v].Seconds()/1e6, *keepZerosCPU)
	}
}
