//go:build cgo && amd64 && !purego

package quantize

/*
#cgo CFLAGS: -O2
#include <stddef.h>
#include <stdint.h>
void pg_decode_f16(const uint16_t *src, float *dst, size_t n);
void pg_decode_bf16(const uint16_t *src, float *dst, size_t n);
void pg_clear_killed16(uint16_t *data, const uint8_t *mask, size_t n, uint64_t out[2]);
void pg_clear_killed32(uint32_t *data, const uint8_t *mask, size_t n, uint64_t out[2]);
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
	simdDecodeF16.provide("avx2", func(dst []float32, src []byte) {
		_ = src[2*len(dst)-1]
		C.pg_decode_f16((*C.uint16_t)(unsafe.Pointer(&src[0])), (*C.float)(unsafe.Pointer(&dst[0])), C.size_t(len(dst)))
	})
	simdDecodeBF16.provide("avx2", func(dst []float32, src []byte) {
		_ = src[2*len(dst)-1]
		C.pg_decode_bf16((*C.uint16_t)(unsafe.Pointer(&src[0])), (*C.float)(unsafe.Pointer(&dst[0])), C.size_t(len(dst)))
	})
	simdClearKilled16.provide("avx2", func(data, mask []byte) (uint64, uint64) {
		if uintptr(unsafe.Pointer(&data[0]))%2 != 0 {
			return clearKilledGo(data, mask, 2)
		}
		var out [2]C.uint64_t
		C.pg_clear_killed16((*C.uint16_t)(unsafe.Pointer(&data[0])), (*C.uint8_t)(unsafe.Pointer(&mask[0])), C.size_t(len(mask)), &out[0])
		return uint64(out[0]), uint64(out[1])
	})
	simdClearKilled32.provide("avx2", func(data, mask []byte) (uint64, uint64) {
		if uintptr(unsafe.Pointer(&data[0]))%4 != 0 {
			return clearKilledGo(data, mask, 4)
		}
		var out [2]C.uint64_t
		C.pg_clear_killed32((*C.uint32_t)(unsafe.Pointer(&data[0])), (*C.uint8_t)(unsafe.Pointer(&mask[0])), C.size_t(len(mask)), &out[0])
		return uint64(out[0]), uint64(out[1])
	})
}
