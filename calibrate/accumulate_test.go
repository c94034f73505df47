package calibrate

import (
	"math"
	"testing"

	"github.com/physarium/physarium-gguf/imatrix"
)

// TestGramKernel: the blocked, tiled, threaded Gram, in Go and in AVX2 C
// where the machine has it, equals the plain
// triple loop bit for bit (same summation order) for widths that are and
// are not multiples of the block, whatever the thread count, and the
// moments equal their definitions.
func TestGramKernel(t *testing.T) {
	t.Logf("AVX2 kernel available: %v", haveAVX2)
	for _, n := range []int{1, 3, 4, 7, 64, 133, 300} {
		tokens := 3000/n + 5
		rows := make([]float64, tokens*n)
		for i := range rows {
			rows[i] = math.Sin(float64(i)*0.37+float64(n)) * math.Exp(math.Cos(float64(i)))
		}
		want := make([]float64, imatrix.PackedLen(n))
		for r := 0; r < tokens; r++ {
			x := rows[r*n : (r+1)*n]
			for i := range n {
				for j := 0; j <= i; j++ {
					want[imatrix.PackedIndex(i, j)] += x[i] * x[j]
				}
			}
		}
		for _, c := range []struct {
			simd    bool
			threads int
		}{{false, 1}, {false, 3}, {true, 1}, {true, 2}, {true, 8}} {
			threads := c.threads
			prev := SetSIMD(c.simd)
			a := newAcc(n, 2)
			// A reused arena holds the previous pass's values: startGram clears it.
			arena := make([]float64, 2*imatrix.PackedLen(n)+5)
			for i := range arena {
				arena[i] = math.NaN()
			}
			a.startGram(arena)
			a.startMoments()
			// Two calls, the second with the rest, as two graph evaluations.
			half := tokens / 2 * n
			a.addGram(1, rows[:half], threads)
			a.addGram(1, rows[half:], threads)
			a.addMoments(1, rows)
			SetSIMD(prev)
			got := a.g[imatrix.PackedLen(n):]
			for k := range want {
				if got[k] != want[k] {
					t.Fatalf("n %d threads %d simd %v: G[%d] %v, plain loop %v", n, threads, c.simd, k, got[k], want[k])
				}
			}
			for k, v := range a.g[:imatrix.PackedLen(n)] {
				if v != 0 {
					t.Fatalf("n %d: matrix 0 touched at %d", n, k)
				}
			}
			if a.gcount[1] != float64(tokens) || a.count[1] != float64(tokens) || a.gcount[0] != 0 {
				t.Fatalf("n %d: counts %v %v", n, a.gcount, a.count)
			}
			for j := range n {
				var s, ab, sq float64
				for r := 0; r < tokens; r++ {
					v := rows[r*n+j]
					s, ab, sq = s+v, ab+math.Abs(v), sq+v*v
				}
				if a.sum[n+j] != s || a.abs[n+j] != ab || a.sq[n+j] != sq || a.sq[n+j] != got[imatrix.PackedIndex(j, j)] {
					t.Fatalf("n %d channel %d: moments %v %v %v, want %v %v %v", n, j, a.sum[n+j], a.abs[n+j], a.sq[n+j], s, ab, sq)
				}
			}
		}
	}
}
