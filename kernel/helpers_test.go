package kernel

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// Tile generators for the tests, seeded and deterministic.

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

type dist int

const (
	gauss dist = iota
	laplace
	student3
)

func (d dist) String() string { return [...]string{"gaussian", "laplace", "student-t3"}[d] }

func sample(rng *rand.Rand, d dist) float32 {
	switch d {
	case laplace:
		u := rng.Float64() - 0.5
		s := 1.0
		if u < 0 {
			s = -1
		}
		return float32(-s * math.Log(1-2*math.Abs(u)))
	case student3:
		z := rng.NormFloat64()
		c := 0.0
		for k := 0; k < 3; k++ {
			g := rng.NormFloat64()
			c += g * g
		}
		return float32(z / math.Sqrt(c/3))
	}
	return float32(rng.NormFloat64())
}

// genW returns rows x cols weights of distribution d, row-major.
func genW(rng *rand.Rand, d dist, rows, cols int) []float32 {
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = sample(rng, d)
	}
	return w
}

func killFrac(ts []Tile) (killed, weights int) {
	for _, t := range ts {
		killed += t.Stats.Killed
		weights += t.Stats.Weights
	}
	return
}

// rowScaled returns a Gaussian tile whose row o is scaled by 2^u, u uniform
// in [-3, 3]: rows of very different scales.
func rowScaled(rng *rand.Rand, rows, cols int) []float32 {
	w := genW(rng, gauss, rows, cols)
	for o := 0; o < rows; o++ {
		s := float32(math.Exp2(6*rng.Float64() - 3))
		for i := 0; i < cols; i++ {
			w[o*cols+i] *= s
		}
	}
	return w
}

// magnitudeOverlap returns the fraction of the tile's kills that global
// magnitude pruning of the same count (smallest |w|, ties by index) also kills.
func magnitudeOverlap(t *Tile) float64 {
	n := t.Rows * t.Cols
	idx := make([]int, 0, n)
	for o := 0; o < t.Rows; o++ {
		for i := 0; i < t.Cols; i++ {
			if t.W[o*t.stride()+i] != 0 {
				idx = append(idx, o*t.Cols+i)
			}
		}
	}
	w := func(x int) float32 { return abs32(t.W[(x/t.Cols)*t.stride()+x%t.Cols]) }
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(w(a), w(b)) })
	mag := make([]bool, n)
	for _, x := range idx[:t.Stats.Killed] {
		mag[x] = true
	}
	both := 0
	for x, m := range t.Mask {
		if m == 1 && mag[x] {
			both++
		}
	}
	if t.Stats.Killed == 0 {
		return 1
	}
	return float64(both) / float64(t.Stats.Killed)
}
