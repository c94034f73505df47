package quantize

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func TestParityF32(t *testing.T)  { checkParity(t, gguf.TypeF32) }
func TestParityF16(t *testing.T)  { checkParity(t, gguf.TypeF16) }
func TestParityBF16(t *testing.T) { checkParity(t, gguf.TypeBF16) }

// TestHalfDecodeExhaustive decodes every one of the 65536 F16 and BF16 bit
// patterns (NaNs, infinities, subnormals, both zeros) with ours and ggml's.
func TestHalfDecodeExhaustive(t *testing.T) {
	lib := oracle(t)
	src := make([]byte, 2*65536)
	for i := range 65536 {
		binary.LittleEndian.PutUint16(src[2*i:], uint16(i))
	}
	for _, typ := range []gguf.Type{gguf.TypeF16, gguf.TypeBF16} {
		ti, _ := typ.Info()
		compareDecode(t, lib, typ, ti, src, nil)
	}
}

// TestHalfEncodeSpecial encodes the float32 values where conversions go
// wrong (every exponent with edge mantissas: ties, the largest values below
// overflow, subnormal boundaries, NaNs with payloads, infinities) plus many
// random bit patterns, and compares with ggml byte for byte.
func TestHalfEncodeSpecial(t *testing.T) {
	lib := oracle(t)
	var src []float32
	for e := uint32(0); e < 256; e++ {
		for _, m := range []uint32{0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x3FFF, 0x7FFF, 0x8000, 0x8001,
			0xFFFF, 0x10000, 0x400000, 0x400001, 0x7FE000, 0x7FEFFF, 0x7FF000, 0x7FFFFF} {
			b := e<<23 | m
			src = append(src, math.Float32frombits(b), math.Float32frombits(b|0x80000000))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1 << 16 {
		src = append(src, math.Float32frombits(r.Uint32()))
	}
	for _, typ := range []gguf.Type{gguf.TypeF16, gguf.TypeBF16, gguf.TypeF32} {
		ti, _ := typ.Info()
		want := make([]byte, len(src)*ti.BlockBytes)
		if err := lib.Quantize(typ, want, src, 1, len(src)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if err := Encode(typ, got, src); err != nil {
			t.Fatal(err)
		}
		if i := firstBlockDiff(got, want, ti.BlockBytes); i >= 0 {
			t.Fatalf("%s: %g (%08x) encodes to %x, ggml gives %x", typ, src[i], math.Float32bits(src[i]),
				got[i*ti.BlockBytes:(i+1)*ti.BlockBytes], want[i*ti.BlockBytes:(i+1)*ti.BlockBytes])
		}
	}
}
