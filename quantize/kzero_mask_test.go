package quantize

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestKilledMasksMatchGo checks ZeroKilled and MeasureKilled, on every
// path, against their plain definitions, and the paths against each other
// bit for bit: random values (some ±0), masks whose non-zero bytes are not
// only 1, read-back values that are ±0 or not, at lengths around the
// 8-element steps and one long chunk.
func TestKilledMasksMatchGo(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	lengths := []int{4096, 4099}
	for n := 0; n <= 40; n++ {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		before, got, mask := make([]float32, n), make([]float32, n), make([]byte, n)
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
		// The plain definitions.
		var wantKilled, wantWas, wantExact uint64
		var wantMax float32
		var sums [8]float64
		for i, m := range mask {
			if m == 0 {
				d := float64(got[i]) - float64(before[i])
				sums[i%8] += float64(d * d)
				continue
			}
			wantKilled++
			if before[i] == 0 {
				wantWas++
			}
			if got[i] == 0 {
				wantExact++
			}
			wantMax = max(wantMax, float32(math.Abs(float64(got[i]))))
		}
		want := KilledStats{Killed: wantKilled, ExactZero: wantExact, MaxKilledAbs: wantMax, SurvivorSq: combineSums(&sums)}
		for _, simd := range []bool{false, true} {
			was := SetSIMD(simd)
			vals := make([]float32, n)
			killed, wasZero := ZeroKilled(vals, before, mask)
			s := MeasureKilled(got, before, mask)
			SetSIMD(was)
			if killed != wantKilled || wasZero != wantWas {
				t.Fatalf("n=%d simd=%v: ZeroKilled says %d killed, %d were zero; want %d, %d", n, simd, killed, wasZero, wantKilled, wantWas)
			}
			for i, m := range mask {
				w := before[i]
				if m != 0 {
					w = 0
				}
				if math.Float32bits(vals[i]) != math.Float32bits(w) {
					t.Fatalf("n=%d simd=%v: vals[%d] = %v, want %v", n, simd, i, vals[i], w)
				}
			}
			if s.Killed != want.Killed || s.ExactZero != want.ExactZero ||
				math.Float32bits(s.MaxKilledAbs) != math.Float32bits(want.MaxKilledAbs) ||
				math.Float64bits(s.SurvivorSq) != math.Float64bits(want.SurvivorSq) {
				t.Fatalf("n=%d simd=%v: MeasureKilled = %+v, want %+v", n, simd, s, want)
			}
		}
	}
}
