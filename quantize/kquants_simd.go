package quantize

import "github.com/physarium/physarium-gguf/quantize/internal/kasm"

// kHaveAVX2 selects the AVX2 assembly K-quant decoders (never in purego
// builds or off amd64: see package kasm).
var kHaveAVX2 = kasm.HasAVX2

// kDecQ4K64AVX2 decodes one 64-value pair of Q4_K sub-blocks (assembly).
func kDecQ4K64AVX2(y *[64]float32, q *[32]byte, d1, m1, d2, m2 float32) {
	kasm.DecQ4K64AVX2(y, q, d1, m1, d2, m2)
}
