//go:build !(cgo && amd64 && !purego)

package kernel

// haveAVX2 is false: this build has no C implementation (purego, no cgo or
// not amd64).
const haveAVX2 = false

// runAVX2 is never called in this build (New refuses AVX2).
func runAVX2(arena []float32, jobs []job, p *coreParams) {
	panic("kernel: avx2 implementation not compiled in")
}

// cFMA is not available in this build.
const haveCFMA = false

func cFMA(a, b, c float32) float32 { panic("kernel: C fmaf not compiled in") }
