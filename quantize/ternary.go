package quantize

import (
	"encoding/binary"

	"github.com/physarium/physarium-gguf/gguf"
)

// The ternary formats of BitNet b1.58 and TriLMs: 256 values in {-1, 0, 1}
// times an fp16 scale (the block's largest magnitude).
//
// TQ1_0 (54 bytes): qs[48], qh[4], d f16. Five trits per byte in qs and four
// in qh, stored as a base-3 fraction: a byte holding trits t0..t4 (t0 most
// significant) is ceil(sum ti*3^(4-i) * 256 / 243), and trit n is recovered
// as ((byte*3^n mod 256) * 3) >> 8. qs[0:32] holds values m + 32n of the
// first 160, qs[32:48] values 160 + m + 16n, qh values 240 + j + 4m.
//
// TQ2_0 (66 bytes): qs[64], d f16. Two bits per value (trit + 1): value
// 128h + 32n + m sits in bits 2n of qs[32h + m].

func init() {
	register(gguf.TypeTQ1_0, codec{decode: decodeTQ1_0, encode: encodeTQ1_0, zero: ZeroExact})
	register(gguf.TypeTQ2_0, codec{decode: decodeTQ2_0, encode: encodeTQ2_0, zero: ZeroExact})
}

const qkK = 256 // values per ternary (and K-quant) block

// trit is lroundf(v) + 1 for the ternary encoders, as the low byte the C
// code keeps: glibc's lroundf gives LONG_MIN for NaN and infinities, whose
// low 32 bits are 0.
func trit(v float32) byte {
	if !(absf(v) < 0x1p31) {
		return 1
	}
	return byte(roundToInt(v) + 1)
}

// absMax is the MAX(amax, fabsf(v)) scan of the ternary and Q8_0 encoders.
func absMax(x []float32) float32 {
	var amax float32
	for _, v := range x {
		a := absf(v)
		if !(amax > a) {
			amax = a
		}
	}
	return amax
}

// pack5 packs trits as a ceiling base-3 fraction of 256.
func pack5(q byte) byte { return byte((uint16(q)*256 + 242) / 243) }

func encodeTQ1_0(dst []byte, src []float32) {
	for i := 0; i+qkK <= len(src); i += qkK {
		x := (*[qkK]float32)(src[i:])
		y := (*[54]byte)(dst[i/qkK*54:])
		d := absMax(x[:])
		id := recip(d)
		for m := range 32 {
			var q byte
			for n := range 5 {
				q = q*3 + trit(x[m+32*n]*id)
			}
			y[m] = pack5(q)
		}
		for m := range 16 {
			var q byte
			for n := range 5 {
				q = q*3 + trit(x[160+m+16*n]*id)
			}
			y[32+m] = pack5(q)
		}
		for j := range 4 {
			var q byte
			for m := range 4 {
				q = q*3 + trit(x[240+j+4*m]*id)
			}
			y[48+j] = pack5(q * 3)
		}
		binary.LittleEndian.PutUint16(y[52:], floatToHalf(d))
	}
}

// tq1Values maps each byte and trit position n to the decoded trit - 1.
var tq1Values = func() (t [5][256]float32) {
	pow3 := [5]byte{1, 3, 9, 27, 81}
	for n := range 5 {
		for b := range 256 {
			q := byte(b) * pow3[n]
			t[n][b] = float32(int16((uint16(q)*3)>>8) - 1)
		}
	}
	return t
}()

func decodeTQ1_0(dst []float32, src []byte) {
	for i := 0; i+54 <= len(src); i += 54 {
		b := (*[54]byte)(src[i:])
		o := (*[qkK]float32)(dst[i/54*qkK:])
		d := halfToFloat(binary.LittleEndian.Uint16(b[52:]))
		for n := range 5 {
			tv := &tq1Values[n]
			for m := range 32 {
				o[32*n+m] = tv[b[m]] * d
			}
		}
		for n := range 5 {
			tv := &tq1Values[n]
			for m := range 16 {
				o[160+16*n+m] = tv[b[32+m]] * d
			}
		}
		for n := range 4 {
			tv := &tq1Values[n]
			for j := range 4 {
				o[240+4*n+j] = tv[b[48+j]] * d
			}
		}
	}
}

func encodeTQ2_0(dst []byte, src []float32) {
	for i := 0; i+qkK <= len(src); i += qkK {
		x := (*[qkK]float32)(src[i:])
		y := (*[66]byte)(dst[i/qkK*66:])
		d := absMax(x[:])
		id := recip(d)
		for h := range 2 {
			for m := range 32 {
				var q byte
				for n := range 4 {
					q += (trit(x[128*h+32*n+m]*id) & 3) << (2 * n)
				}
				y[32*h+m] = q
			}
		}
		binary.LittleEndian.PutUint16(y[64:], floatToHalf(d))
	}
}

func decodeTQ2_0(dst []float32, src []byte) {
	for i := 0; i+66 <= len(src); i += 66 {
		b := (*[66]byte)(src[i:])
		o := (*[qkK]float32)(dst[i/66*qkK:])
		d := halfToFloat(binary.LittleEndian.Uint16(b[64:]))
		for h := range 2 {
			for n := range 4 {
				for m := range 32 {
					q := int32(b[32*h+m]>>(2*n)) & 3
					o[128*h+32*n+m] = float32(q-1) * d
				}
			}
		}
	}
}
