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

// haveAVX512 reports whether the CPU and OS support what the AVX-512 path
// uses: AVX-512 F, VL and DQ, besides AVX2 and FMA for its shared helpers.
var haveAVX512 = haveAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ

// The Go mirrors of the C structs must have the same layout.
var _ = [1]struct{}{}[unsafe.Sizeof(job{})-C.sizeof_phys_job]
var _ = [1]struct{}{}[unsafe.Sizeof(coreParams{})-C.sizeof_phys_params]

// runAVX2 runs every job of the batch in one cgo call.
func runAVX2(arena []float32, jobs []job, p *coreParams) {
	C.phys_run_avx2((*C.float)(unsafe.Pointer(&arena[0])), (*C.phys_job)(unsafe.Pointer(&jobs[0])),
		C.int(len(jobs)), (*C.phys_params)(unsafe.Pointer(p)))
}

// runAVX512 runs every job of the batch in one cgo call, with the AVX-512
// passes.
func runAVX512(arena []float32, jobs []job, p *coreParams) {
	C.phys_run_avx512((*C.float)(unsafe.Pointer(&arena[0])), (*C.phys_job)(unsafe.Pointer(&jobs[0])),
		C.int(len(jobs)), (*C.phys_params)(unsafe.Pointer(p)))
}

// The Go mirrors of the output structs of the set-up and finish helpers.
var _ = [1]struct{}{}[unsafe.Sizeof(foodOut{})-C.sizeof_phys_food_out]
var _ = [1]struct{}{}[unsafe.Sizeof(finishOut{})-C.sizeof_phys_finish_out]

func actPtr(act []float32) *C.float {
	if act == nil {
		return nil
	}
	return (*C.float)(unsafe.Pointer(&act[0]))
}

// checkAVX2 reports whether every weight of the tile is finite and every
// food |w|*a (with Act) is at most MaxFloat32, like checkTile's loop.
func checkAVX2(t *Tile, stride int) bool {
	return C.phys_check((*C.float)(unsafe.Pointer(&t.W[0])), C.int64_t(stride), C.int(t.Rows), C.int(t.Cols), actPtr(t.Act)) != 0
}

// foodAVX2 writes the food of the tile into D (rows x cp, padding zeroed).
func foodAVX2(t *Tile, stride int, D []float32, cp int, out *foodOut) {
	C.phys_food((*C.float)(unsafe.Pointer(&t.W[0])), C.int64_t(stride), C.int(t.Rows), C.int(t.Cols), actPtr(t.Act),
		(*C.float)(unsafe.Pointer(&D[0])), C.int(cp), (*C.phys_food_out)(unsafe.Pointer(out)))
}

// scaleAVX2 scales the food into D0 and counts the edges per row and column.
func scaleAVX2(D []float32, rows, cols, cp int, scale float32, rowNZ, colNZ []int32) {
	C.phys_scale((*C.float)(unsafe.Pointer(&D[0])), C.int(rows), C.int(cols), C.int(cp), C.float(scale),
		(*C.int32_t)(unsafe.Pointer(&rowNZ[0])), (*C.int32_t)(unsafe.Pointer(&colNZ[0])))
}

// finishAVX2 is the per-element part of finish (see phys_finish).
func finishAVX2(t *Tile, stride int, D []float32, cp int, thr float32, outD []float32, alive []int32, out *finishOut) {
	var od *C.float
	if outD != nil {
		od = (*C.float)(unsafe.Pointer(&outD[0]))
	}
	C.phys_finish((*C.float)(unsafe.Pointer(&t.W[0])), C.int64_t(stride), C.int(t.Rows), C.int(t.Cols),
		(*C.float)(unsafe.Pointer(&D[0])), C.int(cp), C.float(thr), (*C.uint8_t)(unsafe.Pointer(&t.Mask[0])), C.int64_t(t.maskStride()), od,
		(*C.int32_t)(unsafe.Pointer(&alive[0])), (*C.phys_finish_out)(unsafe.Pointer(out)))
}

// haveCFMA is true: cFMA calls C's fmaf (tests compare fma32 with it).
const haveCFMA = true

// cFMA returns C's fmaf(a, b, c).
func cFMA(a, b, c float32) float32 {
	return float32(C.phys_fmaf(C.float(a), C.float(b), C.float(c)))
}
