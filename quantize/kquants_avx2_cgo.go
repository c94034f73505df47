//go:build cgo && amd64 && !purego

package quantize

/*
#cgo CFLAGS: -O2
#include <stddef.h>
#include <stdint.h>
size_t kq_encode_q4k(const float *src, uint8_t *dst, size_t nb);
size_t kq_encode_q6k(const float *src, uint8_t *dst, size_t nb);
#include "kquants_keepzeros_avx2.h"
*/
import "C"

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The Go mirrors of the keep-zeros structs must have the C layout.
var (
	_ = [1]struct{}{}[unsafe.Sizeof(kKZGrid{})-C.sizeof_kz_grid]
	_ = [1]struct{}{}[unsafe.Sizeof(kKZParams{})-C.sizeof_kz_params]
	_ = [1]struct{}{}[unsafe.Sizeof(kKZResult{})-C.sizeof_kz_result]
)

func init() {
	if !cpu.X86.HasAVX2 {
		return
	}
	simdEncodeQ4K.provide("avx2", func(dst []byte, src []float32) int {
		nb := min(len(src)/kQK, len(dst)/kQ4KBytes)
		if nb == 0 {
			return 0
		}
		return int(C.kq_encode_q4k((*C.float)(unsafe.Pointer(&src[0])), (*C.uint8_t)(unsafe.Pointer(&dst[0])), C.size_t(nb)))
	})
	if cpu.X86.HasF16C { // the keep-zeros search converts halves with F16C
		simdKeepZerosFit8x32.provide("avx2", func(f *kKZFormat, x []float32, r *kKZResult) bool {
			return C.kz_fit45((*C.kz_params)(unsafe.Pointer(&f.params)), (*C.int32_t)(unsafe.Pointer(&f.ratios[0])),
				(*C.double)(unsafe.Pointer(&f.dfac[0])), (*C.double)(unsafe.Pointer(&f.sfac[0])),
				(*C.kz_grid)(unsafe.Pointer(&f.grid[0][0])), (*C.float)(unsafe.Pointer(&x[0])),
				(*C.kz_result)(unsafe.Pointer(r))) != 0
		})
		simdEncodeKeepZeros8x32.provide("avx2", func(f *kKZFormat, dst []byte, src []float32) int {
			bb := kQ4KBytes
			if f.nmax == 31 {
				bb = kQ5KBytes
			}
			nb := min(len(src)/kQK, len(dst)/bb)
			if nb == 0 {
				return 0
			}
			return int(C.kz_encode_k45((*C.kz_params)(unsafe.Pointer(&f.params)), (*C.int32_t)(unsafe.Pointer(&f.ratios[0])),
				(*C.double)(unsafe.Pointer(&f.dfac[0])), (*C.double)(unsafe.Pointer(&f.sfac[0])),
				(*C.kz_grid)(unsafe.Pointer(&f.grid[0][0])), (*C.float)(unsafe.Pointer(&src[0])),
				(*C.uint8_t)(unsafe.Pointer(&dst[0])), C.size_t(nb)))
		})
	}
	simdEncodeQ6K.provide("avx2", func(dst []byte, src []float32) int {
		nb := min(len(src)/kQK, len(dst)/kQ6KBytes)
		if nb == 0 {
			return 0
		}
		return int(C.kq_encode_q6k((*C.float)(unsafe.Pointer(&src[0])), (*C.uint8_t)(unsafe.Pointer(&dst[0])), C.size_t(nb)))
	})
}
