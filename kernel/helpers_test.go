package kernel

import (
	"math"
	"math/rand/v2"
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
