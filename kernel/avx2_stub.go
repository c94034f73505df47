//go:build !(cgo && amd64 && !purego)

package kernel

// haveAVX2 is false: this build has no C implementation (purego, no cgo or
// not amd64).
const haveAVX2 = false

// haveAVX512 is false: this build has no C implementation.
const haveAVX512 = false

// runAVX512 is never called in this build (New refuses AVX512).
func runAVX512(arena []float32, jobs []job, p *coreParams) {
	panic("kernel: avx512 implementation not compiled in")
}

// runAVX2 is never called in this build (New refuses AVX2).
func runAVX2(arena []float32, jobs []job, p *coreParams) {
	panic("kernel: avx2 implementation not compiled in")
}

// cFMA is not available in this build.
const haveCFMA = false

func cFMA(a, b, c float32) float32 { panic("kernel: C fmaf not compiled in") }

func checkAVX2(t *Tile, stride int) bool { panic("kernel: avx2 implementation not compiled in") }

func foodAVX2(t *Tile, stride int, D []float32, cp int, out *foodOut) {
	panic("kernel: avx2 implementation not compiled in")
}

func scaleAVX2(D []float32, rows, cols, cp int, scale float32, rowNZ, colNZ []int32) {
	panic("kernel: avx2 implementation not compiled in")
}

func finishAVX2(t *Tile, stride int, D []float32, cp int, thr float32, outD []float32, alive []int32, out *finishOut) {
	panic("kernel: avx2 implementation not compiled in")
}
