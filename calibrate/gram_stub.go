//go:build !(cgo && amd64 && !purego)

package calibrate

// haveAVX2 is false where the AVX2 kernel is not built.
const haveAVX2 = false

// gramRowsAVX2 is never called without the AVX2 kernel.
func gramRowsAVX2(g, rows []float64, n, b0, b1 int) { gramRows(g, rows, n, b0, b1) }
