//go:build !amd64 || purego

package quantize

// kHaveAVX2 is false: this build has no K-quant assembly.
var kHaveAVX2 = false

func kDecQ4K64AVX2(y *[64]float32, q *[32]byte, d1, m1, d2, m2 float32) {
	panic("quantize: K-quant assembly not compiled in")
}
