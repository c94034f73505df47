package quantize

import (
	"encoding/binary"
	"math"

	"github.com/physarium/physarium-gguf/gguf"
)

// The legacy 32-value block formats: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0. Each
// encoder follows ggml's quantize_row_<type>_ref operation for operation in
// float32 (the scale, its reciprocal, the offsets and truncations), which is
// what ggml_quantize_chunk runs when there is no importance matrix.
//
// Block layouts (little-endian):
//
//	Q4_0: d f16, qs[16]          value j: (qs[j%16] nibble j/16) - 8) * d
//	Q4_1: d f16, m f16, qs[16]   value j: nibble * d + m
//	Q5_0: d f16, qh u32, qs[16]  value j: (nibble | bit j of qh << 4) - 16) * d
//	Q5_1: d f16, m f16, qh u32, qs[16]
//	Q8_0: d f16, qs[32] int8     value j: qs[j] * d

const qk = 32 // values per legacy block

func init() {
	register(gguf.TypeQ4_0, codec{decode: decodeQ4_0, encode: encodeQ4_0, zero: ZeroExact})
	register(gguf.TypeQ4_1, codec{decode: decodeQ4_1, encode: encodeQ4_1, encodeKeepZeros: encodeQ4_1KeepZeros, zero: ZeroPreserving})
	register(gguf.TypeQ5_0, codec{decode: decodeQ5_0, encode: encodeQ5_0, zero: ZeroExact})
	register(gguf.TypeQ5_1, codec{decode: decodeQ5_1, encode: encodeQ5_1, encodeKeepZeros: encodeQ5_1KeepZeros, zero: ZeroPreserving})
	register(gguf.TypeQ8_0, codec{decode: decodeQ8_0, encode: encodeQ8_0, zero: ZeroExact})
}

// The SIMD paths of Q8_0 and Q4_0 (legacy_avx2.go). The encoders return how
// many blocks they wrote: all of them, or the index of a block holding a
// NaN, which the Go code then encodes.
var (
	simdDecodeQ8_0 simdRoutine[func(dst []float32, src []byte)]
	simdDecodeQ4_0 simdRoutine[func(dst []float32, src []byte)]
	simdEncodeQ8_0 simdRoutine[func(dst []byte, src []float32) int]
	simdEncodeQ4_0 simdRoutine[func(dst []byte, src []float32) int]
)

func decodeQ8_0(dst []float32, src []byte) {
	if simd, ok := simdDecodeQ8_0.use(); ok {
		simd(dst, src)
		return
	}
	decodeQ8_0Go(dst, src)
}

func decodeQ4_0(dst []float32, src []byte) {
	if simd, ok := simdDecodeQ4_0.use(); ok {
		simd(dst, src)
		return
	}
	decodeQ4_0Go(dst, src)
}

// encodeSIMD runs a SIMD encoder over dst/src, handing the blocks it leaves
// (those holding a NaN) one at a time to the Go encoder.
func encodeSIMD(dst []byte, src []float32, bb int, simd func([]byte, []float32) int, scalar func([]byte, []float32)) {
	for len(src) > 0 {
		n := simd(dst, src)
		if n*qk >= len(src) {
			return
		}
		scalar(dst[n*bb:(n+1)*bb], src[n*qk:(n+1)*qk])
		dst, src = dst[(n+1)*bb:], src[(n+1)*qk:]
	}
}

func encodeQ8_0(dst []byte, src []float32) {
	if simd, ok := simdEncodeQ8_0.use(); ok {
		encodeSIMD(dst, src, 34, simd, encodeQ8_0Go)
		return
	}
	encodeQ8_0Go(dst, src)
}

func encodeQ4_0(dst []byte, src []float32) {
	if simd, ok := simdEncodeQ4_0.use(); ok {
		encodeSIMD(dst, src, 18, simd, encodeQ4_0Go)
		return
	}
	encodeQ4_0Go(dst, src)
}

// absf is fabsf: the sign bit cleared, NaN payloads kept.
func absf(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ 0x80000000) }

// recip is ggml's "id = d ? 1.0f/d : 0.0f".
func recip(d float32) float32 {
	if d != 0 {
		return 1 / d
	}
	return 0
}

// roundToInt is C's (int)roundf(v) for a float32 v (halves away from zero)
// as x86 converts it: the float64 sum is exact for every float32, and an out
// of range or NaN value gives the x86 "integer indefinite" 0x80000000.
func roundToInt(v float32) int32 {
	h := math.Float64frombits(0x3FE0000000000000 | uint64(math.Float32bits(v)&0x80000000)<<32)
	return int32(float64(v) + h)
}

// truncToInt is C's float-to-int conversion (truncation; x86 gives
// 0x80000000 for NaN and out-of-range values).
func truncToInt(v float32) int32 { return int32(v) }

func decodeQ8_0Go(dst []float32, src []byte) {
	for i := 0; i+34 <= len(src); i += 34 {
		b := (*[34]byte)(src[i:])
		o := (*[32]float32)(dst[i/34*32:])
		d := halfToFloat(binary.LittleEndian.Uint16(b[:]))
		for j := range 32 {
			o[j] = float32(int8(b[2+j])) * d
		}
	}
}

func encodeQ8_0Go(dst []byte, src []float32) {
	for i := 0; i+qk <= len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		y := (*[34]byte)(dst[i/qk*34:])
		var amax float32
		for _, v := range x {
			a := absf(v)
			if !(amax > a) { // MAX(amax, a) as the C macro (and maxss) picks
				amax = a
			}
		}
		d := amax / 127
		id := recip(d)
		binary.LittleEndian.PutUint16(y[:], floatToHalf(d))
		for j, v := range x {
			y[2+j] = byte(roundToInt(v * id))
		}
	}
}

func decodeQ4_0Go(dst []float32, src []byte) {
	for i := 0; i+18 <= len(src); i += 18 {
		b := (*[18]byte)(src[i:])
		o := (*[32]float32)(dst[i/18*32:])
		d := halfToFloat(binary.LittleEndian.Uint16(b[:]))
		for j := range 16 {
			q := b[2+j]
			o[j] = float32(int32(q&0x0F)-8) * d
			o[j+16] = float32(int32(q>>4)-8) * d
		}
	}
}

// absMaxSigned returns the value of largest magnitude in x (the first one on
// ties) and its magnitude, as quantize_row_q4_0_ref scans for it.
func absMaxSigned(x *[qk]float32) (amax, max float32) {
	for _, v := range x {
		if a := absf(v); amax < a {
			amax, max = a, v
		}
	}
	return amax, max
}

// q4Code is MIN(15, (int8_t)(v + off)): truncation to int8, then the clamp.
func q4Code(v, off float32) byte {
	return byte(min(15, int8(truncToInt(v+off))))
}

func encodeQ4_0Go(dst []byte, src []float32) {
	for i := 0; i+qk <= len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		y := (*[18]byte)(dst[i/qk*18:])
		_, max := absMaxSigned(x)
		d := max / -8
		id := recip(d)
		binary.LittleEndian.PutUint16(y[:], floatToHalf(d))
		for j := range 16 {
			y[2+j] = q4Code(x[j]*id, 8.5) | q4Code(x[j+16]*id, 8.5)<<4
		}
	}
}

func decodeQ4_1(dst []float32, src []byte) {
	for i := 0; i+20 <= len(src); i += 20 {
		b := (*[20]byte)(src[i:])
		o := (*[32]float32)(dst[i/20*32:])
		d := halfToFloat(binary.LittleEndian.Uint16(b[0:]))
		m := halfToFloat(binary.LittleEndian.Uint16(b[2:]))
		for j := range 16 {
			q := b[4+j]
			// The explicit float32 conversions forbid fusing into an FMA,
			// which ggml's scalar code does not use.
			o[j] = float32(float32(q&0x0F)*d) + m
			o[j+16] = float32(float32(q>>4)*d) + m
		}
	}
}

// minMax is the min/max scan of quantize_row_q4_1_ref (starting from
// ±FLT_MAX, strict comparisons).
func minMax(x *[qk]float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

func encodeQ4_1(dst []byte, src []float32) {
	for i := 0; i+qk <= len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		y := (*[20]byte)(dst[i/qk*20:])
		lo, hi := minMax(x)
		d := (hi - lo) / 15
		id := recip(d)
		binary.LittleEndian.PutUint16(y[0:], floatToHalf(d))
		binary.LittleEndian.PutUint16(y[2:], floatToHalf(lo))
		for j := range 16 {
			y[4+j] = q4Code((x[j]-lo)*id, 0.5) | q4Code((x[j+16]-lo)*id, 0.5)<<4
		}
	}
}

func decodeQ5_0(dst []float32, src []byte) {
	for i := 0; i+22 <= len(src); i += 22 {
		b := (*[22]byte)(src[i:])
		o := (*[32]float32)(dst[i/22*32:])
		d := halfToFloat(binary.LittleEndian.Uint16(b[0:]))
		qh := binary.LittleEndian.Uint32(b[2:])
		for j := range 16 {
			q := b[6+j]
			h0 := int32(qh>>j) << 4 & 0x10
			h1 := int32(qh>>(j+12)) & 0x10
			o[j] = float32(int32(q&0x0F)|h0-16) * d
			o[j+16] = float32(int32(q>>4)|h1-16) * d
		}
	}
}

func encodeQ5_0(dst []byte, src []float32) {
	for i := 0; i+qk <= len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		y := (*[22]byte)(dst[i/qk*22:])
		_, max := absMaxSigned(x)
		d := max / -16
		id := recip(d)
		binary.LittleEndian.PutUint16(y[0:], floatToHalf(d))
		var qh uint32
		for j := range 16 {
			q0 := byte(min(31, int8(truncToInt(x[j]*id+16.5))))
			q1 := byte(min(31, int8(truncToInt(x[j+16]*id+16.5))))
			y[6+j] = q0&0x0F | q1<<4
			qh |= uint32(q0&0x10)>>4<<j | uint32(q1&0x10)>>4<<(j+16)
		}
		binary.LittleEndian.PutUint32(y[2:], qh)
	}
}

func decodeQ5_1(dst []float32, src []byte) {
	for i := 0; i+24 <= len(src); i += 24 {
		b := (*[24]byte)(src[i:])
		o := (*[32]float32)(dst[i/24*32:])
		d := halfToFloat(binary.LittleEndian.Uint16(b[0:]))
		m := halfToFloat(binary.LittleEndian.Uint16(b[2:]))
		qh := binary.LittleEndian.Uint32(b[4:])
		for j := range 16 {
			q := b[8+j]
			h0 := byte(qh>>j) << 4 & 0x10
			h1 := byte(qh>>(j+12)) & 0x10
			o[j] = float32(float32(q&0x0F|h0)*d) + m
			o[j+16] = float32(float32(q>>4|h1)*d) + m
		}
	}
}

func encodeQ5_1(dst []byte, src []float32) {
	for i := 0; i+qk <= len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		y := (*[24]byte)(dst[i/qk*24:])
		lo, hi := minMax(x)
		d := (hi - lo) / 31
		id := recip(d)
		binary.LittleEndian.PutUint16(y[0:], floatToHalf(d))
		binary.LittleEndian.PutUint16(y[2:], floatToHalf(lo))
		var qh uint32
		for j := range 16 {
			q0 := byte(truncToInt((x[j]-lo)*id + 0.5))
			q1 := byte(truncToInt((x[j+16]-lo)*id + 0.5))
			y[8+j] = q0&0x0F | q1<<4
			qh |= uint32(q0&0x10)>>4<<j | uint32(q1&0x10)>>4<<(j+16)
		}
		binary.LittleEndian.PutUint32(y[4:], qh)
	}
}
