package quantize

import "github.com/physarium/physarium-gguf/quantize/internal/kasm"

// kHaveAVX2 selects the AVX2 assembly K-quant decoders (never in purego
// builds or off amd64: see package kasm).
var kHaveAVX2 = kasm.HasAVX2

// kDecQ4K64AVX2 decodes one 64-value pair of Q4_K sub-blocks (assembly).
func kDecQ4K64AVX2(y *[64]float32, q *[32]byte, d1, m1, d2, m2 float32) {
	kasm.DecQ4K64AVX2(y, q, d1, m1, d2, m2)
}

// The AVX2 C reference encoders (kquants_avx2.c; set from the CPU's
// features when cgo is available, nil otherwise; SetSIMD(false) turns them
// off). They write the same bytes as the Go encoders and return how many
// blocks they wrote: all of them, or the index of a block holding a NaN or
// an infinity, which the Go code then encodes.
var (
	kEncQ4KSIMD func(dst []byte, src []float32) int
	kEncQ6KSIMD func(dst []byte, src []float32) int
)

// kKZFit45SIMD is kKeepZerosFit for the formats of 8 sub-blocks of 32
// (Q4_K, Q5_K) in AVX2 C (kquants_keepzeros_avx2.c): the same result, bit
// for bit; nil where cgo or AVX2 is not available.
var kKZFit45SIMD func(f *kKZFormat, x []float32, r *kKZResult) bool

// kEncodeSIMD runs a K-quant SIMD encoder over dst/src, handing the blocks
// it leaves one at a time to the Go block encoder.
func kEncodeSIMD(dst []byte, src []float32, bb int, simd func([]byte, []float32) int, block func([]byte, []float32)) {
	for len(src) >= kQK && len(dst) >= bb {
		n := simd(dst, src)
		if n*kQK >= len(src) || (n+1)*bb > len(dst) {
			return
		}
		block(dst[n*bb:(n+1)*bb], src[n*kQK:(n+1)*kQK])
		dst, src = dst[(n+1)*bb:], src[(n+1)*kQK:]
	}
}
