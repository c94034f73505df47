//go:build cgo && amd64 && !purego

package calibrate

// No ISA flags: the AVX2 function carries a target attribute, so the binary
// runs on any x86-64; -std=c11 and the file's pragma keep gcc from fusing
// a*b+c, which the Go twin never does either.

/*
#cgo CFLAGS: -O2 -std=c11
#include "gram.h"
*/
import "C"

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// haveAVX2 reports whether the CPU and OS support AVX2.
var haveAVX2 = cpu.X86.HasAVX2

// gramRowsAVX2 is gramRows in AVX2 C.
func gramRowsAVX2(g, rows []float64, n, b0, b1 int) {
	if len(rows) < n || b1 <= b0 {
		return
	}
	C.pg_gram_rows_avx2((*C.double)(unsafe.Pointer(&g[0])), (*C.double)(unsafe.Pointer(&rows[0])),
		C.int64_t(n), C.int64_t(len(rows)/n), C.int64_t(b0), C.int64_t(b1))
}
