package quantize

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/quantize/internal/iqasm"
)

// iqSearchValues returns n values of kind k: ordinary, spanning many
// magnitudes, extreme (near the float32 limits, some infinite, some NaN),
// or with zeros.
func iqSearchValues(r *rand.Rand, n, k int) []float32 {
	v := make([]float32, n)
	for i := range v {
		switch k {
		case 0:
			v[i] = float32(math.Abs(r.NormFloat64()) * 2)
		case 1:
			v[i] = float32(math.Exp(r.NormFloat64() * 10))
		case 2:
			v[i] = []float32{math.MaxFloat32, 1e-45, 3e38, float32(math.Inf(1)), float32(math.NaN()), 0, 1}[r.IntN(7)]
		default:
			if r.IntN(2) == 0 {
				v[i] = float32(r.Float64())
			}
		}
	}
	return v
}

// sameFloat reports whether a and b have the same bits, or are both NaN.
func sameFloat(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

// TestIQNeighbourSIMD holds the assembly neighbour search to its Go twin
// on every neighbour list of the six grids: the same distance bits for
// every candidate and the same chosen entry, with ordinary, wide-ranging,
// extreme and zero-holding values, weights and scales.
func TestIQNeighbourSIMD(t *testing.T) {
	if !iqasm.HasAVX2 {
		t.Skip("no AVX2 assembly in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(7, 19))
	for _, s := range iqSearches {
		s.tables()
		for li, list := range s.nbrs {
			k := li % 4
			x := iqSearchValues(r, 8, k)
			w := iqSearchValues(r, 8, (li/4)%4)
			scale := iqSearchValues(r, 1, k)[0]
			got, want := bestNeighbourLanes(s.dims, s.gridF, list, x, w, scale), 0
			if s.dims == 8 {
				want = bestNeighbour8(s.gridF, list, (*[8]float32)(x), (*[8]float32)(w), scale)
			} else {
				want = bestNeighbour4(s.gridF, list, (*[4]float32)(x), (*[4]float32)(w), scale)
			}
			if got != want {
				t.Fatalf("grid of %d entries, list %d: assembly chose %d, Go %d (x %v w %v scale %v)", len(s.grid), li, got, want, x, w, scale)
			}
			// Every distance, bit for bit, against the Go loop's sum.
			for n := 0; n < len(list); n += 8 {
				var idx [8]uint16
				var d [8]float32
				m := padLanes(&idx, list[n:])
				if s.dims == 8 {
					iqasm.Dist8x8AVX2(&d, &s.gridF[0], &idx, (*[8]float32)(x), (*[8]float32)(w), scale)
				} else {
					iqasm.Dist4x8AVX2(&d, &s.gridF[0], &idx, (*[4]float32)(x), (*[4]float32)(w), scale)
				}
				for c := 0; c < m; c++ {
					q := s.gridF[s.dims*int(idx[c]):]
					var sum float32
					for i := 0; i < s.dims; i++ {
						e := float32(scale*q[i]) - x[i]
						sum += float32(float32(w[i]*e) * e)
					}
					if !sameFloat(d[c], sum) {
						t.Fatalf("grid of %d entries, list %d, candidate %d: assembly %v, Go %v", len(s.grid), li, n+c, d[c], sum)
					}
				}
			}
		}
	}
}

// TestIQEncodeSIMD encodes the same rows with the SIMD paths on and off:
// every i-quant grid type, with and without importance weights, ordinary,
// heavy-tailed, zero-holding and extreme values; the bytes must agree.
func TestIQEncodeSIMD(t *testing.T) {
	if !iqasm.HasAVX2 {
		t.Skip("no AVX2 assembly in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(3, 5))
	const n = 4 * 256
	rows := map[string][]float32{}
	for _, kind := range []string{"normal", "student", "zeros", "extreme"} {
		x := make([]float32, n)
		for i := range x {
			switch kind {
			case "normal":
				x[i] = float32(r.NormFloat64())
			case "student":
				x[i] = float32(r.NormFloat64() / math.Sqrt(r.ExpFloat64()+1e-3))
			case "zeros":
				if r.IntN(3) == 0 {
					x[i] = float32(r.NormFloat64())
				}
			case "extreme":
				x[i] = float32(r.NormFloat64() * 1e30)
			}
		}
		rows[kind] = x
	}
	qw := make([]float32, n)
	for i := range qw {
		qw[i] = float32(r.ExpFloat64())
	}
	for _, typ := range iqGridTypes {
		ti, _ := typ.Info()
		for kind, x := range rows {
			for _, w := range [][]float32{nil, qw} {
				if w == nil && NeedsWeights(typ) {
					continue
				}
				encode := func(simd bool) []byte {
					was := SetSIMD(simd)
					defer SetSIMD(was)
					dst := make([]byte, n/ti.BlockSize*ti.BlockBytes)
					if err := EncodeWeighted(typ, dst, x, w); err != nil {
						t.Fatal(err)
					}
					return dst
				}
				if a, b := encode(true), encode(false); !bytes.Equal(a, b) {
					t.Errorf("%s %s (weights %v): the SIMD and Go encodings differ", typ, kind, w != nil)
				}
			}
		}
	}
}
