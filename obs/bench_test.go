package obs

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
)

// benchGram is a positive-definite Gram of n inputs: A A^T + n I for a
// random A, built without simulating tokens.
func benchGram(n int) []float64 {
	rng := rand.New(rand.NewPCG(uint64(n), 3))
	k := 64
	a := make([]float64, n*k)
	for i := range a {
		a[i] = rng.NormFloat64()
	}
	g := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			v := dot(a[i*k:(i+1)*k], a[j*k:(j+1)*k])
			g[i*n+j], g[j*n+i] = v, v
		}
		g[i*n+i] += float64(n)
	}
	return g
}

// BenchmarkFactor times NewFactor (Cholesky and triangular inverse);
// SetBytes counts one byte per Gram element.
func BenchmarkFactor(b *testing.B) {
	for _, n := range []int{512, 1024, 2048} {
		g := benchGram(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n * n))
			for b.Loop() {
				if _, err := NewFactor(g, n, 1, 0.01); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPrune times SparseGPT at 50 % on 256 rows (one band); SetBytes
// counts one byte per weight.
func BenchmarkPrune(b *testing.B) {
	for _, n := range []int{1024, 2048} {
		f, err := NewFactor(benchGram(n), n, 1, 0.01)
		if err != nil {
			b.Fatal(err)
		}
		rows := 256
		rng := rand.New(rand.NewPCG(1, 1))
		w0 := make([]float64, rows*n)
		for i := range w0 {
			w0[i] = rng.NormFloat64()
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(rows * n))
			for b.Loop() {
				w := slices.Clone(w0)
				if _, err := Prune(w, rows, f, Options{Sparsity: 0.5}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSparseGPTMatrix times what prune's sparsegpt does for one
// target matrix of a 2048/5632 model (attn_q, ffn_up, ffn_down shapes:
// rows x n): the factor of its input, then SparseGPT at 50 % band by band
// (256 rows, one worker) with the two output-error sums per band. It
// reports the process's CPU seconds per matrix beside the wall time (the
// machine may be shared).
func BenchmarkSparseGPTMatrix(b *testing.B) {
	for _, sh := range []struct{ rows, n int }{{2048, 2048}, {5632, 2048}, {2048, 5632}} {
		b.Run(fmt.Sprintf("%dx%d", sh.rows, sh.n), func(b *testing.B) {
			g := benchGram(sh.n)
			rng := rand.New(rand.NewPCG(2, 2))
			w0 := make([]float64, 256*sh.n)
			for i := range w0 {
				w0[i] = rng.NormFloat64()
			}
			zero := make([]float64, len(w0))
			var cpu0 float64
			for i := 0; b.Loop(); i++ {
				if i == 0 {
					cpu0 = cpuSeconds()
				}
				f, err := NewFactor(g, sh.n, 1, 0.01)
				if err != nil {
					b.Fatal(err)
				}
				for r := 0; r < sh.rows; r += 256 {
					w := slices.Clone(w0)
					if _, err := Prune(w, 256, f, Options{Sparsity: 0.5}); err != nil {
						b.Fatal(err)
					}
					OutputError(w0, w, 256, g, sh.n)
					OutputError(w0, zero, 256, g, sh.n)
				}
			}
			b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
		})
	}
}

// cpuSeconds is the process's user plus system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
