package quantize

import (
	"math"

	"github.com/physarium/physarium-gguf/gguf"
)

// MXFP4: 32 values share an E8M0 scale (a bare power-of-two exponent) and
// each value is a 4-bit E2M1 float. Block layout: e u8, qs[16] (value j in
// the low nibble of qs[j] for j < 16, the high nibble of qs[j-16] above).
// ggml stores the E2M1 values doubled as int8 (kvaluesFP4) and halves the
// scale to match.

func init() {
	register(gguf.TypeMXFP4, codec{decode: decodeMXFP4, encode: encodeMXFP4, zero: ZeroExact})
}

// kvaluesFP4 are twice the E2M1 values of the 16 codes.
var kvaluesFP4 = [16]int8{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

// e8m0Half is ggml's GGML_E8M0_TO_FP32_HALF: 2^(e-128), with the two
// smallest exponents as float32 subnormals.
func e8m0Half(e uint8) float32 {
	if e < 2 {
		return math.Float32frombits(0x00200000 << e)
	}
	return math.Float32frombits(uint32(e-1) << 23)
}

func decodeMXFP4(dst []float32, src []byte) {
	for i := 0; i+17 <= len(src); i += 17 {
		b := (*[17]byte)(src[i:])
		o := (*[32]float32)(dst[i/17*32:])
		d := e8m0Half(b[0])
		for j := range 16 {
			q := b[1+j]
			o[j] = float32(kvaluesFP4[q&0x0F]) * d
			o[j+16] = float32(kvaluesFP4[q>>4]) * d
		}
	}
}

// mxfp4Exponent is ggml's scale choice (uint8_t)(floorf(log2f(amax)) - 2 +
// 127) for amax > 0. floor(log2f(amax)) is amax's binary exponent except
// just below a power of two, where log2f rounds up to the next integer; there
// (and only there) the logarithm is computed, in float64 and rounded to
// float32 as glibc's correctly rounded log2f returns it. For an infinite
// amax the conversion of +Inf gives x86's 0x80000000, whose low byte is 0.
func mxfp4Exponent(amax float32) uint8 {
	bits := math.Float32bits(amax)
	var fl float32
	if exp := int32(bits >> 23); exp != 0 && exp != 0xFF && bits&0x7FFFFF < 0x7FF000 {
		fl = float32(exp - 127)
	} else {
		fl = float32(math.Floor(float64(float32(math.Log2(float64(amax))))))
	}
	return uint8(truncToInt(fl - 2 + 127))
}

// bestFP4 is best_index_mxfp4: the code whose value times d is nearest to
// x, the first one on ties, with the errors rounded as float32. The negative
// codes can only win for x < 0 and mirror the positive ones exactly (float
// rounding is symmetric), and the rounded errors along the sorted positive
// values fall, then rise, so the scan stops at the first rise.
func bestFP4(x, d float32) byte {
	a := absf(x)
	best := a // the error of code 0
	idx := byte(0)
	for k := 1; k < 8; k++ {
		err := absf(float32(kvaluesFP4[k])*d - a)
		if !(err < best) {
			break
		}
		best, idx = err, byte(k)
	}
	if idx != 0 && x < 0 {
		idx += 8
	}
	return idx
}

func encodeMXFP4(dst []byte, src []float32) {
	for i := 0; i+qk <= len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		y := (*[17]byte)(dst[i/qk*17:])
		var amax float32
		for _, v := range x {
			if a := absf(v); amax < a {
				amax = a
			}
		}
		var e uint8
		if amax > 0 {
			e = mxfp4Exponent(amax)
		}
		d := e8m0Half(e)
		y[0] = e
		for j := range 16 {
			y[1+j] = bestFP4(x[j], d) | bestFP4(x[j+16], d)<<4
		}
	}
}
