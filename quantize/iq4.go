package quantize

import (
	"encoding/binary"
	"math"

	"github.com/physarium/physarium-gguf/gguf"
)

// IQ4_NL and IQ4_XS: 4-bit non-linear codes. Each code indexes the 16 values
// of kvaluesIQ4NL (-127 .. 113, none of them zero), times a block scale.
//
//	IQ4_NL: 32 values in 18 bytes: fp16 scale d, 16 bytes of codes (value j
//	        in the low nibble of byte j, value j+16 in the high nibble).
//	IQ4_XS: 256 values in 136 bytes: fp16 super-scale d, a uint16 with the
//	        high 2 bits and 4 bytes with the low 4 bits of eight 6-bit
//	        sub-block scales ls (each 32 values scaled by d*(ls-32)), then
//	        128 bytes of codes laid out like eight IQ4_NL blocks.
//
// Neither format has a zero code, so both register as ZeroNone. A killed
// (0.0) weight always takes the code of value +1 (the nearest to zero), so it
// decodes to the scale of its 32 values (d for IQ4_NL, d*(ls-32) for IQ4_XS),
// not to 0. It reads back exactly 0 only where that scale is 0: a group whose
// values are all below 1e-15 in magnitude, an fp16 scale that underflows, or
// (IQ4_XS) a sub-block scale that rounds to ls=32 beside much larger groups.
// Callers that prune into these types must decode the result and
// measure |decoded| of the killed weights themselves (TestIQ4ZeroNone logs
// how large it is relative to the group's largest magnitude).
//
// Encode is byte-identical with ggml_quantize_chunk without an importance
// matrix (quantize_iq4_nl / quantize_iq4_xs: a scale search over 15 trial
// scales per 32 values, weights x*x), not with quantize_row_iq4_nl_ref,
// which searches no trial scales.

func init() {
	register(gguf.TypeIQ4_NL, codec{decode: decodeIQ4NL, encode: encodeIQ4NL, zero: ZeroNone})
	register(gguf.TypeIQ4_XS, codec{decode: decodeIQ4XS, encode: encodeIQ4XS, zero: ZeroNone})
}

const (
	iq4nlBlockBytes = 18
	iq4xsBlockBytes = 136
	iq4NTry         = 7     // trial scales on each side, as ggml_quantize_chunk uses
	groupMaxEps     = 1e-15 // below this max |x| a group of 32 gets scale 0
)

func decodeIQ4NL(dst []float32, src []byte) {
	for len(src) >= iq4nlBlockBytes && len(dst) >= 32 {
		b := src[:iq4nlBlockBytes]
		y := dst[:32]
		d := halfToFloat(binary.LittleEndian.Uint16(b))
		qs := b[2:18]
		for j := 0; j < 16; j++ {
			y[j] = d * float32(kvaluesIQ4NL[qs[j]&0xf])
			y[j+16] = d * float32(kvaluesIQ4NL[qs[j]>>4])
		}
		src, dst = src[iq4nlBlockBytes:], dst[32:]
	}
}

func decodeIQ4XS(dst []float32, src []byte) {
	for len(src) >= iq4xsBlockBytes && len(dst) >= 256 {
		b := src[:iq4xsBlockBytes]
		d := halfToFloat(binary.LittleEndian.Uint16(b))
		scalesH := binary.LittleEndian.Uint16(b[2:])
		scalesL := b[4:8]
		qs := b[8:136]
		for ib := 0; ib < 8; ib++ {
			ls := int(scalesL[ib/2]>>(4*(ib%2))&0xf) | int(scalesH>>(2*ib)&3)<<4
			dl := d * float32(ls-32)
			q := qs[16*ib : 16*ib+16]
			y := dst[32*ib : 32*ib+32]
			for j := 0; j < 16; j++ {
				y[j] = dl * float32(kvaluesIQ4NL[q[j]&0xf])
				y[j+16] = dl * float32(kvaluesIQ4NL[q[j]>>4])
			}
		}
		src, dst = src[iq4xsBlockBytes:], dst[256:]
	}
}

// iq4GroupScale finds the scale of one group of 32 values as ggml's
// quantize_row_iq4_nl_impl does without an importance matrix: a first fit
// from the value of largest magnitude, then 2*iq4NTry+1 trial inverse scales,
// keeping the weighted least-squares scale of the best. It returns 0 for a
// group whose max |x| is below groupMaxEps. (ggml also keeps the first fit's
// codes, but with trial scales it always recomputes them afterwards.)
func iq4GroupScale(xb *[32]float32) float32 {
	var weight [32]float32
	for j := range xb {
		weight[j] = xb[j] * xb[j]
	}
	var amax, max float32
	for j := range xb {
		ax := float32(math.Abs(float64(xb[j])))
		if ax > amax {
			amax, max = ax, xb[j]
		}
	}
	if amax < groupMaxEps {
		return 0
	}
	v0 := kvaluesIQ4NLf[0]
	d := -max / v0
	sumqx, sumq2 := iq4Sums(xb, &weight, 1/d)
	d = 0
	if sumq2 > 0 {
		d = sumqx / sumq2
	}
	best := d * sumqx
	for itry := -iq4NTry; itry <= iq4NTry; itry++ {
		id := float32(itry+int(kvaluesIQ4NL[0])) / max
		sumqx, sumq2 = iq4Sums(xb, &weight, id)
		if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
			d = sumqx / sumq2
			best = d * sumqx
		}
	}
	return d
}

// iq4Sums returns the sums ggml's scale search compares for the inverse
// scale id: sum of w*q*x and of w*q*q over the group, in index order, q the
// IQ4 value nearest id*x. The nearest-value search is bestIndexIQ4's, written
// out here because this loop is the encoder's hot spot (it runs 16 times per
// group) and the compiler does not inline bestIndexIQ4.
func iq4Sums(xb, weight *[32]float32, id float32) (sumqx, sumq2 float32) {
	v := &kvaluesIQ4NLf
	for j := range xb {
		x := xb[j]
		al := id * x
		var q float32
		switch {
		case al <= v[0]:
			q = v[0]
		case !(al < v[15]): // at or above the last value, or NaN
			q = v[15]
		default:
			base := 0
			if s := base + 8; v[s] <= al {
				base = s
			}
			if s := base + 4; v[s] <= al {
				base = s
			}
			if s := base + 2; v[s] <= al {
				base = s
			}
			if s := base + 1; v[s] <= al {
				base = s
			}
			q = v[base+1]
			if al-v[base] < q-al {
				q = v[base]
			}
		}
		w := weight[j]
		sumqx += float32(float32(w*q) * x)
		sumq2 += float32(float32(w*q) * q)
	}
	return sumqx, sumq2
}

// packIQ4 stores 32 codes as 16 bytes: code j low, code j+16 high.
func packIQ4(q []byte, L *[32]uint8) {
	for j := 0; j < 16; j++ {
		q[j] = L[j] | L[16+j]<<4
	}
}

func encodeIQ4NL(dst []byte, src []float32) {
	for len(src) >= 32 && len(dst) >= iq4nlBlockBytes {
		xb := (*[32]float32)(src[:32])
		b := dst[:iq4nlBlockBytes]
		var L [32]uint8
		s := iq4GroupScale(xb)
		binary.LittleEndian.PutUint16(b, floatToHalf(s))
		var id float32
		if s != 0 {
			id = 1 / s
		}
		for j := range xb {
			L[j] = uint8(bestIndexIQ4(float32(id * xb[j])))
		}
		packIQ4(b[2:18], &L)
		src, dst = src[32:], dst[iq4nlBlockBytes:]
	}
}

func encodeIQ4XS(dst []byte, src []float32) {
	for len(src) >= 256 && len(dst) >= iq4xsBlockBytes {
		x := src[:256]
		b := dst[:iq4xsBlockBytes]
		var scales [8]float32
		var L [32]uint8
		var maxScale, amaxScale float32
		for ib := 0; ib < 8; ib++ {
			s := iq4GroupScale((*[32]float32)(x[32*ib : 32*ib+32]))
			scales[ib] = s
			if a := float32(math.Abs(float64(s))); a > amaxScale {
				amaxScale, maxScale = a, s
			}
		}
		d := -maxScale / 32
		binary.LittleEndian.PutUint16(b, floatToHalf(d))
		var id float32
		if d != 0 {
			id = 1 / d
		}
		var scalesH uint16
		scalesL := b[4:8]
		clear(scalesL)
		for ib := 0; ib < 8; ib++ {
			l := nearestInt(float32(id * scales[ib]))
			l = min(31, max(-32, l))
			dl := d * float32(l)
			var idl float32
			if dl != 0 {
				idl = 1 / dl
			}
			xb := x[32*ib : 32*ib+32]
			for j := range xb {
				L[j] = uint8(bestIndexIQ4(float32(idl * xb[j])))
			}
			packIQ4(b[8+16*ib:8+16*ib+16], &L)
			l += 32
			scalesL[ib/2] |= uint8(l&0xf) << (4 * (ib % 2))
			scalesH |= uint16(l>>4) << (2 * ib)
		}
		binary.LittleEndian.PutUint16(b[2:], scalesH)
		src, dst = src[256:], dst[iq4xsBlockBytes:]
	}
}
