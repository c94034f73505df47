package quantize

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/internal/ggmlref"
)

// kBenchTypes are the K-quant types benchmarked beside ggml's reference.
var kBenchTypes = []gguf.Type{gguf.TypeQ2_K, gguf.TypeQ3_K, gguf.TypeQ4_K, gguf.TypeQ5_K, gguf.TypeQ6_K}

// BenchmarkKQuants measures Encode, EncodeKeepZeros and Decode of each K-quant
// type on 16 rows of 4096 Gaussian values (SetBytes: 4 bytes per value), with
// ggml's ggml_quantize_chunk and to_float beside them when PHYSARIUM_LLAMA
// is set, and Q4_K/Q6_K Encode and Q4_K/Q5_K EncodeKeepZeros with the AVX2
// path off (go-nosimd) where it is on.
func BenchmarkKQuants(b *testing.B) {
	const nrows, ncols = 16, 4096
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]float32, nrows*ncols)
	for i := range src {
		src[i] = float32(r.NormFloat64() * 0.02)
	}
	lib, err := ggmlref.Load()
	if err != nil && !errors.Is(err, ggmlref.ErrNoLlama) && !errors.Is(err, ggmlref.ErrNoCgo) {
		b.Fatal(err)
	}
	for _, typ := range kBenchTypes {
		nb, _ := typ.RowBytes(uint64(len(src)))
		enc := make([]byte, nb)
		dec := make([]float32, len(src))
		if err := Encode(typ, enc, src); err != nil {
			b.Fatal(err)
		}
		b.Run(typ.String()+"/encode/go", func(b *testing.B) {
			b.SetBytes(int64(4 * len(src)))
			for b.Loop() {
				Encode(typ, enc, src)
			}
		})
		if typ == gguf.TypeQ4_K && simdEncodeQ4K.provided || typ == gguf.TypeQ6_K && simdEncodeQ6K.provided {
			// The same encoder with the AVX2 path off: the pure-Go code.
			b.Run(typ.String()+"/encode/go-nosimd", withoutSIMD(len(src), func() { Encode(typ, enc, src) }))
		}
		if lib != nil {
			b.Run(typ.String()+"/encode/ggml", func(b *testing.B) {
				b.SetBytes(int64(4 * len(src)))
				for b.Loop() {
					if err := lib.Quantize(typ, enc, src, nrows, ncols); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		if c := codecs[typ]; c.encodeKeepZeros != nil {
			pruned := make([]float32, len(src))
			copy(pruned, src)
			for i := range pruned {
				if r.IntN(4) == 0 {
					pruned[i] = 0
				}
			}
			b.Run(typ.String()+"/encodekeepzeros/go", func(b *testing.B) {
				b.SetBytes(int64(4 * len(src)))
				for b.Loop() {
					EncodeKeepZeros(typ, enc, pruned)
				}
			})
			if (typ == gguf.TypeQ4_K || typ == gguf.TypeQ5_K) && simdKeepZerosFit8x32.provided {
				b.Run(typ.String()+"/encodekeepzeros/go-nosimd", withoutSIMD(len(src), func() { EncodeKeepZeros(typ, enc, pruned) }))
			}
		}
		b.Run(typ.String()+"/decode/go", func(b *testing.B) {
			b.SetBytes(int64(4 * len(src)))
			for b.Loop() {
				Decode(typ, dec, enc)
			}
		})
		if lib != nil {
			b.Run(typ.String()+"/decode/ggml", func(b *testing.B) {
				b.SetBytes(int64(4 * len(src)))
				for b.Loop() {
					if err := lib.Dequantize(typ, dec, enc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// withoutSIMD is a benchmark of op on n values (4 bytes each) with the
// SIMD paths off: the pure-Go code.
func withoutSIMD(n int, op func()) func(*testing.B) {
	return func(b *testing.B) {
		was := SetSIMD(false)
		defer SetSIMD(was)
		b.SetBytes(int64(4 * n))
		for b.Loop() {
			op()
		}
	}
}
