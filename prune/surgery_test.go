package prune

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestZeroKillsAndMeasure compares zeroKills and bandStats.measure with
// their plain definitions on random values (some ±0) and masks whose
// non-zero bytes are not only 1, at lengths around the 8-byte words.
func TestZeroKillsAndMeasure(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for n := 0; n <= 70; n++ {
		before := make([]float32, n)
		got := make([]float32, n)
		mask := make([]byte, n)
		for i := range before {
			before[i] = float32(r.NormFloat64())
			switch r.IntN(10) {
			case 0:
				before[i] = 0
			case 1:
				before[i] = float32(math.Copysign(0, -1))
			}
			got[i] = before[i] + float32(r.NormFloat64()*0.01)
			if r.IntN(3) == 0 {
				mask[i] = []byte{1, 2, 0x80, 0xff}[r.IntN(4)]
				got[i] = []float32{0, float32(math.Copysign(0, -1)), 0.5, -3}[r.IntN(4)]
			}
		}
		vals := make([]float32, n)
		killed, bad := zeroKills(vals, before, mask)
		var wantKilled, wantBad, wantExact, wantN uint64
		var wantSq, wantMax float64
		for i, m := range mask {
			want := before[i]
			if m != 0 {
				want = 0
				wantKilled++
				if before[i] == 0 {
					wantBad++
				}
				if got[i] == 0 {
					wantExact++
				}
				wantMax = max(wantMax, math.Abs(float64(got[i])))
			} else {
				d := float64(got[i]) - float64(before[i])
				wantSq += d * d
				wantN++
			}
			if math.Float32bits(vals[i]) != math.Float32bits(want) {
				t.Fatalf("n=%d: vals[%d] = %v, want %v", n, i, vals[i], want)
			}
		}
		if killed != wantKilled || bad != wantBad {
			t.Fatalf("n=%d: zeroKills says %d killed, %d bad; want %d, %d", n, killed, bad, wantKilled, wantBad)
		}
		var st bandStats
		st.measure(got, before, mask)
		if st.exactZero != wantExact || st.survivorN != wantN || st.maxKilledAbs != wantMax ||
			math.Abs(st.survivorSq-wantSq) > 1e-12*wantSq {
			t.Fatalf("n=%d: measure gives exact %d, survivors %d, max %v, sq %v; want %d, %d, %v, %v",
				n, st.exactZero, st.survivorN, st.maxKilledAbs, st.survivorSq, wantExact, wantN, wantMax, wantSq)
		}
	}
}

func BenchmarkMeasure(b *testing.B) {
	const n = 4096
	r := rand.New(rand.NewPCG(1, 2))
	before, got, mask := make([]float32, n), make([]float32, n), make([]byte, n)
	for i := range before {
		before[i] = float32(r.NormFloat64())
		got[i] = before[i] * 1.01
		if r.IntN(5) == 0 {
			mask[i], got[i] = 1, 0
		}
	}
	b.SetBytes(n * 4)
	var st bandStats
	for b.Loop() {
		st.measure(got, before, mask)
	}
}

func BenchmarkZeroKills(b *testing.B) {
	const n = 4096
	r := rand.New(rand.NewPCG(1, 2))
	before, vals, mask := make([]float32, n), make([]float32, n), make([]byte, n)
	for i := range before {
		before[i] = float32(r.NormFloat64())
		if r.IntN(5) == 0 {
			mask[i] = 1
		}
	}
	b.SetBytes(n * 4)
	for b.Loop() {
		zeroKills(vals, before, mask)
	}
}
