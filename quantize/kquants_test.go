package quantize

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func TestParityQ2_K(t *testing.T) { checkParity(t, gguf.TypeQ2_K) }
func TestParityQ3_K(t *testing.T) { checkParity(t, gguf.TypeQ3_K) }
func TestParityQ4_K(t *testing.T) { checkParity(t, gguf.TypeQ4_K) }
func TestParityQ5_K(t *testing.T) { checkParity(t, gguf.TypeQ5_K) }
func TestParityQ6_K(t *testing.T) { checkParity(t, gguf.TypeQ6_K) }

// TestDecodeQ4KPaths compares the assembly and pure-Go Q4_K decoders bit
// for bit on random blocks, with guard values after the output.
func TestDecodeQ4KPaths(t *testing.T) {
	if !kHaveAVX2 {
		t.Skip("no AVX2 path in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(3, 4))
	const nb = 512
	src := make([]byte, nb*kQ4KBytes)
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	want := make([]float32, nb*kQK+8)
	got := make([]float32, nb*kQK+8)
	for i := nb * kQK; i < len(got); i++ {
		want[i], got[i] = 12345, 12345
	}
	decodeQ4KGo(want[:nb*kQK], src)
	decodeQ4KAVX2(got[:nb*kQK], src)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("value %d: avx2 %v (%08x), go %v (%08x)", i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}
