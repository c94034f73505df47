//go:build !amd64 || purego

// Package iqasm holds the Go-assembly neighbour search of the IQ grid
// encoders; this build has none.
package iqasm

// HasAVX2 is false: this build has no IQ assembly.
var HasAVX2 = false

// Dist8x8AVX2 is not compiled in this build; HasAVX2 is false, so it is
// never called.
func Dist8x8AVX2(out *[8]float32, grid *float32, idx *[8]uint16, x, w *[8]float32, scale float32) {
	panic("iqasm: IQ assembly not compiled in")
}

// Dist4x8AVX2 is not compiled in this build; HasAVX2 is false, so it is
// never called.
func Dist4x8AVX2(out *[8]float32, grid *float32, idx *[8]uint16, x, w *[4]float32, scale float32) {
	panic("iqasm: IQ assembly not compiled in")
}
