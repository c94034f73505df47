package quantize

import (
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/ggmlref"
)

// iqBenchValues is the number of values each benchmark iteration handles.
const iqBenchValues = 64 * 256

// iqBenchLib returns ggml for the side-by-side sub-benchmarks, or nil.
func iqBenchLib() *ggmlref.Lib {
	l, err := ggmlref.Load()
	if err != nil {
		return nil
	}
	return l
}

func iqBenchInput() []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, iqBenchValues)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// BenchmarkIQDecode decodes iqBenchValues values of each IQ type; SetBytes
// counts 4 bytes per decoded float32.
func BenchmarkIQDecode(b *testing.B) {
	lib := iqBenchLib()
	for _, typ := range iqAllTypes {
		ti, _ := typ.Info()
		src := make([]byte, iqBenchValues/ti.BlockSize*ti.BlockBytes)
		r := rand.New(rand.NewPCG(3, 4))
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		for i := 0; i < len(src); i += ti.BlockBytes {
			// finite scales: keep the fp16 exponent below 0x1f
			if typ == gguf.TypeIQ1_M {
				src[i+55] &= 0x3f
			} else {
				src[i+1] &= 0x3f
			}
		}
		dst := make([]float32, iqBenchValues)
		b.Run(typ.String()+"/go", func(b *testing.B) {
			b.SetBytes(4 * iqBenchValues)
			for b.Loop() {
				if err := Decode(typ, dst, src); err != nil {
					b.Fatal(err)
				}
			}
		})
		if lib != nil {
			b.Run(typ.String()+"/ggml", func(b *testing.B) {
				b.SetBytes(4 * iqBenchValues)
				for b.Loop() {
					if err := lib.Dequantize(typ, dst, src); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkIQEncode encodes iqBenchValues normal values to IQ4_NL and
// IQ4_XS; SetBytes counts 4 bytes per input float32. The ggml side is
// ggml_quantize_chunk over 64 rows of 256.
func BenchmarkIQEncode(b *testing.B) {
	lib := iqBenchLib()
	x := iqBenchInput()
	for _, typ := range []gguf.Type{gguf.TypeIQ4_NL, gguf.TypeIQ4_XS} {
		ti, _ := typ.Info()
		dst := make([]byte, iqBenchValues/ti.BlockSize*ti.BlockBytes)
		b.Run(typ.String()+"/go", func(b *testing.B) {
			b.SetBytes(4 * iqBenchValues)
			for b.Loop() {
				if err := Encode(typ, dst, x); err != nil {
					b.Fatal(err)
				}
			}
		})
		if lib != nil {
			b.Run(typ.String()+"/ggml", func(b *testing.B) {
				b.SetBytes(4 * iqBenchValues)
				for b.Loop() {
					if err := lib.Quantize(typ, dst, x, 64, 256); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
