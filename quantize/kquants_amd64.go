//go:build !purego

package quantize

import "golang.org/x/sys/cpu"

// kHaveAVX2 selects the AVX2 assembly K-quant decoders.
var kHaveAVX2 = cpu.X86.HasAVX2

// kDecQ4K64AVX2 decodes one 64-value pair of Q4_K sub-blocks (assembly).
//
//go:noescape
func kDecQ4K64AVX2(y *[64]float32, q *[32]byte, d1, m1, d2, m2 float32)
