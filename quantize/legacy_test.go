package quantize

import (
	"math"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func TestParityQ4_0(t *testing.T) { checkParity(t, gguf.TypeQ4_0) }
func TestParityQ4_1(t *testing.T) { checkParity(t, gguf.TypeQ4_1) }
func TestParityQ5_0(t *testing.T) { checkParity(t, gguf.TypeQ5_0) }
func TestParityQ5_1(t *testing.T) { checkParity(t, gguf.TypeQ5_1) }
func TestParityQ8_0(t *testing.T) { checkParity(t, gguf.TypeQ8_0) }

// TestParityPureGo runs the parity check of the types with a SIMD path with
// that path turned off, so both are checked against ggml.
func TestParityPureGo(t *testing.T) {
	if SIMD() == "go" {
		t.Skip("no SIMD path on this machine or build")
	}
	defer SetSIMD(SetSIMD(false))
	for _, typ := range []gguf.Type{gguf.TypeQ8_0, gguf.TypeQ4_0} {
		t.Run(typ.String(), func(t *testing.T) { checkParity(t, typ) })
	}
}

// TestSIMDNaNBlocks checks that blocks holding NaNs, which the SIMD encoders
// leave to the Go code, come out as ggml writes them, wherever they sit.
func TestSIMDNaNBlocks(t *testing.T) { withReferences(t, checkSIMDNaNBlocks) }

func checkSIMDNaNBlocks(t *testing.T, ref *reference) {
	src := genRows(genCases[0], 1, 32*40, 32, 5)
	for _, i := range []int{0, 33, 34, 35, 200, 32*40 - 1} {
		src[i] = float32(math.NaN())
	}
	for _, typ := range []gguf.Type{gguf.TypeQ8_0, gguf.TypeQ4_0} {
		ti, _ := typ.Info()
		want, err := ref.encoded(t, typ, src, 1, len(src))
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if err := Encode(typ, got, src); err != nil {
			t.Fatal(err)
		}
		if b := firstBlockDiff(got, want, ti.BlockBytes); b >= 0 {
			t.Fatalf("%s: block %d: ours %x, ggml %x", typ, b, got[b*ti.BlockBytes:(b+1)*ti.BlockBytes], want[b*ti.BlockBytes:(b+1)*ti.BlockBytes])
		}
	}
}

// pureGo runs f with the SIMD paths off (the pure-Go twins) and turns
// them back to what they were.
func pureGo(f func() error) error {
	defer SetSIMD(SetSIMD(false))
	return f()
}
