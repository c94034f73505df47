//go:build cgo && amd64 && !purego

package quantize

/*
#cgo CFLAGS: -O2 -std=c11
#include <stddef.h>
#include <stdint.h>
void pg_zero_killed(float *vals, const float *before, const uint8_t *mask, size_t n, uint64_t out[2]);
void pg_measure_killed(const float *got, const float *before, const uint8_t *mask, size_t n, double sums[8], uint64_t out[3]);
*/
import "C"

import (
	"math"
	"unsafe"

	"golang.org/x/sys/cpu"
)

func init() {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasPOPCNT {
		return
	}
	simdZeroKilled.provide("avx2", func(vals, before []float32, mask []byte) (uint64, uint64) {
		var out [2]C.uint64_t
		C.pg_zero_killed((*C.float)(unsafe.Pointer(&vals[0])), (*C.float)(unsafe.Pointer(&before[0])),
			(*C.uint8_t)(unsafe.Pointer(&mask[0])), C.size_t(len(mask)), &out[0])
		return uint64(out[0]), uint64(out[1])
	})
	simdMeasureKilled.provide("avx2", func(got, before []float32, mask []byte, s *KilledStats) {
		var sums [8]float64
		var out [3]C.uint64_t
		C.pg_measure_killed((*C.float)(unsafe.Pointer(&got[0])), (*C.float)(unsafe.Pointer(&before[0])),
			(*C.uint8_t)(unsafe.Pointer(&mask[0])), C.size_t(len(mask)), (*C.double)(unsafe.Pointer(&sums[0])), &out[0])
		s.Killed, s.ExactZero = uint64(out[0]), uint64(out[1])
		s.MaxKilledAbs = math.Float32frombits(uint32(out[2]))
		s.SurvivorSq = combineSums(&sums)
	})
}
