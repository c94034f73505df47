package quantize

import "github.com/physarium/physarium-gguf/gguf"

// Q5_K: 176-byte blocks of 256 values: fp16 d, fp16 dmin, 12 bytes of packed
// 6-bit scales and mins for 8 sub-blocks of 32, 32 bytes of high bits, then
// 128 bytes of low 4-bit quants. Value = d*sc*q - dmin*m with q in [0, 31].

const kQ5KBytes = 176

func init() {
	register(gguf.TypeQ5_K, codec{
		decode:          decodeQ5K,
		encode:          encodeQ5K,
		encodeKeepZeros: encodeQ5KKeepZeros,
		zero:            ZeroPreserving,
	})
}

func decodeQ5K(dst []float32, src []byte) {
	for len(src) >= kQ5KBytes && len(dst) >= kQK {
		b := src[:kQ5KBytes]
		y := dst[:kQK]
		d := halfToFloat(kGet16(b[0:]))
		dmin := halfToFloat(kGet16(b[2:]))
		scales := b[4:16]
		qh := b[16:48]
		var t1, t2 [32]float32
		for j := 0; j < 4; j++ {
			kLevelTables(d, dmin, scales, j, t1[:], t2[:])
			ql := b[48+32*j : 48+32*j+32]
			yy := y[64*j : 64*j+64]
			s1 := uint(2 * j)
			for l, v := range ql {
				h := qh[l&31] >> s1
				yy[l&31] = t1[(v&0xF)|(h&1)<<4]
				yy[32+l&31] = t2[(v>>4)|(h&2)<<3]
			}
		}
		src = src[kQ5KBytes:]
		dst = dst[kQK:]
	}
}

func encodeQ5K(dst []byte, src []float32) {
	for len(src) >= kQK && len(dst) >= kQ5KBytes {
		encodeQ5KBlock(dst[:kQ5KBytes], src[:kQK])
		src = src[kQK:]
		dst = dst[kQ5KBytes:]
	}
}

func encodeQ5KBlock(b []byte, x []float32) {
	var L [kQK]uint8
	kEncodeQ45KScales(b, x, &L, 31, -0.5, 15)
	kPackQ5K(b, &L)
}

// kPackQ5K stores the 5-bit levels L into the qh and qs fields of b.
func kPackQ5K(b []byte, L *[kQK]uint8) {
	qh := b[16:48]
	ql := b[48:176]
	clear(qh)
	m1, m2 := uint8(1), uint8(2)
	for n := 0; n < 4; n++ {
		for j := 0; j < 32; j++ {
			l1 := L[64*n+j]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			l2 := L[64*n+j+32]
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			ql[32*n+j] = l1 | l2<<4
		}
		m1 <<= 2
		m2 <<= 2
	}
}
