package quantize

import "github.com/physarium/physarium-gguf/quantize/internal/kasm"

// The SIMD paths of the K-quants. The decoder is Go assembly (package kasm:
// never in purego builds or off amd64); the encoders and the keep-zeros fit
// are AVX2 C (kquants_avx2.c, kquants_keepzeros_avx2.c, provided by
// kquants_avx2_cgo.go when cgo is available).
var (
	// simdDecodeQ4K is decodeQ4KGo with the inner loops in assembly.
	simdDecodeQ4K simdRoutine[func(dst []float32, src []byte)]
	// simdEncodeQ4K and simdEncodeQ6K write the same bytes as the Go
	// encoders and return how many blocks they wrote: all of them, or the
	// index of a block holding a NaN or an infinity, which the Go code then
	// encodes.
	simdEncodeQ4K simdRoutine[func(dst []byte, src []float32) int]
	simdEncodeQ6K simdRoutine[func(dst []byte, src []float32) int]
	// simdKeepZerosFit8x32 is kKeepZerosFitGo for the formats of 8
	// sub-blocks of 32 values (Q4_K, Q5_K): the same result, bit for bit.
	simdKeepZerosFit8x32 simdRoutine[func(f *kKZFormat, x []float32, r *kKZResult) bool]
	// simdEncodeKeepZeros8x32 is encodeQ4KKeepZeros (format kKZQ4K) or
	// encodeQ5KKeepZeros (kKZQ5K), search and packing in C, one call for
	// many blocks: it writes the same bytes and returns how many blocks it
	// wrote, all of them or the index of one that holds no zero or whose
	// search fails (a NaN or an infinity), which the Go code then encodes.
	simdEncodeKeepZeros8x32 simdRoutine[func(f *kKZFormat, dst []byte, src []float32) int]
)

func init() {
	if kasm.HasAVX2 {
		simdDecodeQ4K.provide("avx2", decodeQ4KAVX2)
	}
}

// kDecQ4K64AVX2 decodes one 64-value pair of Q4_K sub-blocks (assembly).
func kDecQ4K64AVX2(y *[64]float32, q *[32]byte, d1, m1, d2, m2 float32) {
	kasm.DecQ4K64AVX2(y, q, d1, m1, d2, m2)
}

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
