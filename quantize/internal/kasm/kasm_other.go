//go:build !amd64 || purego

package kasm

// HasAVX2 is false: this build has no K-quant assembly.
var HasAVX2 = false

// DecQ4K64AVX2 is not compiled in this build; HasAVX2 is false, so it is
// never called.
func DecQ4K64AVX2(y *[64]float32, q *[32]byte, d1, m1, d2, m2 float32) {
	panic("kasm: K-quant assembly not compiled in")
}
