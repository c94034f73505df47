//go:build cgo && amd64 && !purego

package quantize

/*
#cgo CFLAGS: -O2
#include <stddef.h>
#include <stdint.h>
void pg_decode_q8_0(const uint8_t *src, float *dst, size_t nb);
void pg_decode_q4_0(const uint8_t *src, float *dst, size_t nb);
size_t pg_encode_q8_0(const float *src, uint8_t *dst, size_t nb);
size_t pg_encode_q4_0(const float *src, uint8_t *dst, size_t nb);
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
	simdDecodeQ8_0.provide("avx2", func(dst []float32, src []byte) {
		if len(src) >= 34 {
			C.pg_decode_q8_0((*C.uint8_t)(unsafe.Pointer(&src[0])), (*C.float)(unsafe.Pointer(&dst[0])), C.size_t(len(src)/34))
		}
	})
	simdDecodeQ4_0.provide("avx2", func(dst []float32, src []byte) {
		if len(src) >= 18 {
			C.pg_decode_q4_0((*C.uint8_t)(unsafe.Pointer(&src[0])), (*C.float)(unsafe.Pointer(&dst[0])), C.size_t(len(src)/18))
		}
	})
	simdEncodeQ8_0.provide("avx2", func(dst []byte, src []float32) int {
		if len(src) < qk {
			return 0
		}
		return int(C.pg_encode_q8_0((*C.float)(unsafe.Pointer(&src[0])), (*C.uint8_t)(unsafe.Pointer(&dst[0])), C.size_t(len(src)/qk)))
	})
	simdEncodeQ4_0.provide("avx2", func(dst []byte, src []float32) int {
		if len(src) < qk {
			return 0
		}
		return int(C.pg_encode_q4_0((*C.float)(unsafe.Pointer(&src[0])), (*C.uint8_t)(unsafe.Pointer(&dst[0])), C.size_t(len(src)/qk)))
	})
}
