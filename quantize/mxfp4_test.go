package quantize

import (
	"math"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func TestParityMXFP4(t *testing.T) { checkParity(t, gguf.TypeMXFP4) }

// TestMXFP4ExponentEdges checks the scale choice at every power of two and
// just below it (where log2f rounds up), from float32 subnormals to the
// largest finite value, against ggml.
func TestMXFP4ExponentEdges(t *testing.T) { withReferences(t, checkMXFP4ExponentEdges) }

func checkMXFP4ExponentEdges(t *testing.T, ref *reference) {
	var src []float32
	for e := -149; e <= 127; e++ {
		p := float32(math.Ldexp(1, e))
		for _, v := range []float32{p, math.Nextafter32(p, 0), math.Nextafter32(p, math.MaxFloat32),
			math.Float32frombits(math.Float32bits(p) - 16), math.Float32frombits(math.Float32bits(p) - 4096)} {
			block := make([]float32, 32)
			for j := range block {
				block[j] = v * float32(j%7-3) / 4
			}
			block[5] = v // the block's largest magnitude, exactly
			src = append(src, block...)
		}
	}
	src = append(src, make([]float32, 32)...)
	for j := range 32 {
		src = append(src, math.MaxFloat32*float32(j%5-2)/2)
	}
	want, err := ref.encoded(t, gguf.TypeMXFP4, src, 1, len(src))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if err := Encode(gguf.TypeMXFP4, got, src); err != nil {
		t.Fatal(err)
	}
	if b := firstBlockDiff(got, want, 17); b >= 0 {
		t.Fatalf("block %d: ours %x, ggml %x, input %v", b, got[b*17:b*17+17], want[b*17:b*17+17], src[b*32:b*32+32])
	}
}
