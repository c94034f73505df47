//go:build cgo && amd64 && !purego

package quantize

/*
#cgo CFLAGS: -O2
#include <stddef.h>
#include <stdint.h>
size_t kq_encode_q4k(const float *src, uint8_t *dst, size_t nb);
size_t kq_encode_q6k(const float *src, uint8_t *dst, size_t nb);
*/
import "C"

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

func init() {
	if !cpu.X86.HasAVX2 {
		return
	}
	kEncQ4KSIMD = func(dst []byte, src []float32) int {
		nb := min(len(src)/kQK, len(dst)/kQ4KBytes)
		if nb == 0 {
			return 0
		}
		return int(C.kq_encode_q4k((*C.float)(unsafe.Pointer(&src[0])), (*C.uint8_t)(unsafe.Pointer(&dst[0])), C.size_t(nb)))
	}
	kEncQ6KSIMD = func(dst []byte, src []float32) int {
		nb := min(len(src)/kQK, len(dst)/kQ6KBytes)
		if nb == 0 {
			return 0
		}
		return int(C.kq_encode_q6k((*C.float)(unsafe.Pointer(&src[0])), (*C.uint8_t)(unsafe.Pointer(&dst[0])), C.size_t(nb)))
	}
}
