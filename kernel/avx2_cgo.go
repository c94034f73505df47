//go:build cgo && amd64 && !purego

package kernel

// No ISA flags here: the AVX2 functions carry target attributes, so the
// binary runs on any x86-64 and the path is chosen at run time. -std=c11
// turns off gcc's default contraction of a*b+c into fused multiply-adds
// (GNU C mode contracts; ISO C mode does not); avx2_amd64.c also sets
// fp-contract=off by pragma.

/*
#cgo CFLAGS: -O2 -std=c11
#cgo LDFLAGS: -lm
#include "physarium.h"
*/
import "C"

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// haveAVX2 reports whether the CPU and OS support AVX2 and FMA.
var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// The Go mirrors of the C structs must have the same layout.
var _ = [1]struct{}{}[unsafe.Sizeof(job{})-C.sizeof_phys_job]
var _ = [1]struct{}{}[unsafe.Sizeof(coreParams{})-C.sizeof_phys_params]

// runAVX2 runs every job of the batch in one cgo call.
func runAVX2(arena []float32, jobs []job, p *coreParams) {
	C.phys_run_avx2((*C.float)(unsafe.Pointer(&arena[0])), (*C.phys_job)(unsafe.Pointer(&jobs[0])),
		C.int(len(jobs)), (*C.phys_params)(unsafe.Pointer(p)))
}

// haveCFMA is true: cFMA calls C's fmaf (tests compare fma32 with it).
const haveCFMA = true

// cFMA returns C's fmaf(a, b, c).
func cFMA(a, b, c float32) float32 {
	return float32(C.phys_fmaf(C.float(a), C.float(b), C.float(c)))
}
