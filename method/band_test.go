package method

import (
	"math"
	"testing"
)

// TestFirstNonFinite puts a NaN, +Inf or -Inf at every position of slices
// of lengths around the word and chunk sizes (with the largest finite
// values and subnormals elsewhere) and checks the index found.
func TestFirstNonFinite(t *testing.T) {
	bad := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0xFFFFFFFF), math.Float32frombits(0x7F800001)}
	for _, n := range []int{0, 1, 2, 3, 1023, 1024, 1025, 2049} {
		v := make([]float32, n)
		for i := range v {
			switch i % 4 {
			case 0:
				v[i] = math.MaxFloat32
			case 1:
				v[i] = -math.MaxFloat32
			case 2:
				v[i] = math.Float32frombits(1)
			}
		}
		if got := FirstNonFinite(v); got != -1 {
			t.Fatalf("n=%d finite: got %d", n, got)
		}
		for i := 0; i < n; i += 1 + i/7 {
			for _, b := range bad {
				keep := v[i]
				v[i] = b
				if got := FirstNonFinite(v); got != i {
					t.Fatalf("n=%d: %v at %d found at %d", n, b, i, got)
				}
				if i+1 < n { // a second one later does not hide the first
					k2 := v[n-1]
					v[n-1] = b
					if got := FirstNonFinite(v); got != i {
						t.Fatalf("n=%d: %v at %d and %d found at %d", n, b, i, n-1, got)
					}
					v[n-1] = k2
				}
				v[i] = keep
			}
		}
	}
}

func BenchmarkFirstNonFinite(b *testing.B) {
	v := make([]float32, 256*5632)
	for i := range v {
		v[i] = float32(i%1000) * 1e-3
	}
	b.SetBytes(int64(4 * len(v)))
	for b.Loop() {
		if FirstNonFinite(v) != -1 {
			b.Fatal("found one")
		}
	}
}

func nan() float64 { return math.NaN() }
