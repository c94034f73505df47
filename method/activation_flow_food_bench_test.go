package method

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/obs"
)

// BenchmarkFullFood times the full v2 food of one n x n matrix from its
// Gram: the damped inverse Hessian's factor (obs.NewFactor: Cholesky and
// triangular inverse), its diagonal (InverseDiagonal) and phi
// (FoodScales). SetBytes counts one byte per Gram element.
//
//	go test ./method -run '^$' -bench FullFood/4096 -benchtime 1x
func BenchmarkFullFood(b *testing.B) {
	for _, n := range []int{512, 4096} {
		rng := rand.New(rand.NewPCG(uint64(n), 5))
		g := make([]float64, n*n)
		for i := range n {
			for j := range i {
				v := rng.NormFloat64()
				g[i*n+j], g[j*n+i] = v, v
			}
			g[i*n+i] = 4 * float64(n) // diagonally dominant: positive definite
		}
		mo := &imatrix.Moments{Width: n, Mats: 1, Count: []float64{1000}, Abs: make([]float64, n), Sq: make([]float64, n)}
		for j := range n {
			mo.Abs[j], mo.Sq[j] = 800+float64(j%7), 1000+float64(j%11)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n * n))
			for b.Loop() {
				f, err := obs.NewFactor(g, n, 1000, DefaultDamp)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := FoodScales(mo, 0, Diagonals{Inverse: InverseDiagonal(f)}, DefaultFactors); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
