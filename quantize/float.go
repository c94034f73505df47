package quantize

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/physarium/physarium-gguf/gguf"
)

// F32, F16 and BF16: one value per "block". The half-precision conversions
// follow ggml's scalar code exactly (the FP16 library's float tricks), which
// ggml_quantize_chunk and to_float use: round to nearest even, overflow to
// Inf, subnormals kept, every NaN encoded as 0x7E00 with its sign, and NaN
// payloads carried through decoding as the FPU does.

func init() {
	register(gguf.TypeF32, codec{decode: decodeF32, encode: encodeF32, zero: ZeroExact})
	register(gguf.TypeF16, codec{decode: decodeF16, encode: encodeF16, zero: ZeroExact})
	register(gguf.TypeBF16, codec{decode: decodeBF16, encode: encodeBF16, zero: ZeroExact})
}

// halfToFloat converts an IEEE binary16 value to float32 as ggml's
// ggml_compute_fp16_to_fp32 does: normal values by rescaling the shifted
// bits by 2^-112, subnormals by the magic-bias subtraction.
func halfToFloat(h uint16) float32 {
	w := uint32(h) << 16
	sign := w & 0x80000000
	twoW := w + w
	var r float32
	if twoW < 1<<27 {
		r = math.Float32frombits(twoW>>17|126<<23) - 0.5
	} else {
		r = math.Float32frombits(twoW>>4+0xE0<<23) * 0x1p-112
	}
	return math.Float32frombits(sign | math.Float32bits(r))
}

// floatToHalf converts a float32 to IEEE binary16 as ggml's
// ggml_compute_fp32_to_fp16 does: the rounding is done by the FPU adding a
// power of two that aligns the mantissa, NaN becomes 0x7E00 (sign kept).
func floatToHalf(f float32) uint16 {
	w := math.Float32bits(f)
	base := math.Float32frombits(w&0x7FFFFFFF) * 0x1p112 * 0x1p-110
	shl1 := w + w
	sign := uint16((w & 0x80000000) >> 16)
	if shl1 > 0xFF000000 {
		return sign | 0x7E00
	}
	bias := shl1 & 0xFF000000
	if bias < 0x71000000 {
		bias = 0x71000000
	}
	base = math.Float32frombits(bias>>1+0x07800000) + base
	bits := math.Float32bits(base)
	return sign | uint16((bits>>13)&0x7C00+bits&0x0FFF)
}

// bf16ToFloat widens a bfloat16 to float32 (the bits shift into place).
func bf16ToFloat(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// floatToBF16 rounds a float32 to bfloat16 to nearest even; NaN is kept
// (truncated) and made quiet; subnormals are not flushed.
func floatToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7FFFFFFF > 0x7F800000 {
		return uint16(u>>16) | 64
	}
	return uint16((u + 0x7FFF + (u>>16)&1) >> 16)
}

func decodeF32(dst []float32, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

func encodeF32(dst []byte, src []float32) {
	dst = dst[:4*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

// The SIMD paths of the single-value types (float_avx2.go). They compute
// the same bits as the Go code below. The clear functions return the kills
// and, of those, the elements that were already ±0.
var (
	simdDecodeF16     simdRoutine[func(dst []float32, src []byte)]
	simdDecodeBF16    simdRoutine[func(dst []float32, src []byte)]
	simdClearKilled16 simdRoutine[func(data, mask []byte) (killed, wasZero uint64)]
	simdClearKilled32 simdRoutine[func(data, mask []byte) (killed, wasZero uint64)]
)

func decodeF16(dst []float32, src []byte) {
	if simd, ok := simdDecodeF16.use(); ok && len(dst) > 0 {
		simd(dst, src)
		return
	}
	decodeF16Go(dst, src)
}

func decodeF16Go(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = halfToFloat(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

func encodeF16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], floatToHalf(v))
	}
}

func decodeBF16(dst []float32, src []byte) {
	if simd, ok := simdDecodeBF16.use(); ok && len(dst) > 0 {
		simd(dst, src)
		return
	}
	decodeBF16Go(dst, src)
}

func decodeBF16Go(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = bf16ToFloat(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

func encodeBF16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], floatToBF16(v))
	}
}

// ClearKilled is the surgery of the single-value types whose zero is all
// zero bytes (F32, F16, BF16): for every i with mask[i] != 0 it sets the
// stored element i of data to +0, leaving every other byte as it was. It
// returns how many elements it cleared, and how many of those were already
// +0 or -0 before (a kill of a zero weight is a caller's bug to report).
// data must hold exactly len(mask) elements of type t.
func ClearKilled(t gguf.Type, data, mask []byte) (killed, wasZero uint64, err error) {
	var size int
	switch t {
	case gguf.TypeF16, gguf.TypeBF16:
		size = 2
	case gguf.TypeF32:
		size = 4
	default:
		return 0, 0, fmt.Errorf("quantize: clear killed elements: type %s has multi-value blocks or a non-zero zero code", t)
	}
	if len(data) != size*len(mask) {
		return 0, 0, fmt.Errorf("quantize: clear killed elements: %d bytes of %s for %d mask entries", len(data), t, len(mask))
	}
	routine := &simdClearKilled16
	if size == 4 {
		routine = &simdClearKilled32
	}
	if simd, ok := routine.use(); ok && len(mask) > 0 {
		killed, wasZero = simd(data, mask)
		return killed, wasZero, nil
	}
	killed, wasZero = clearKilledGo(data, mask, size)
	return killed, wasZero, nil
}

// clearKilledGo is ClearKilled for elements of size bytes, one at a time.
func clearKilledGo(data, mask []byte, size int) (killed, wasZero uint64) {
	for i, m := range mask {
		if m == 0 {
			continue
		}
		e := data[i*size : (i+1)*size]
		var bits uint32
		if size == 2 {
			bits = uint32(binary.LittleEndian.Uint16(e)) << 16
		} else {
			bits = binary.LittleEndian.Uint32(e)
		}
		killed++
		if bits<<1 == 0 {
			wasZero++
		}
		clear(e)
	}
	return killed, wasZero
}
