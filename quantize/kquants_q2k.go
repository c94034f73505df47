package quantize

import "github.com/physarium/physarium-gguf/gguf"

// Q2_K: 84-byte blocks of 256 values: 16 bytes of 4-bit scale (low nibble)
// and 4-bit min (high nibble) for 16 sub-blocks of 16, 64 bytes of 2-bit
// quants, fp16 d, fp16 dmin. Value = d*sc*q - dmin*m with q in [0, 3].

const kQ2KBytes = 84

func init() {
	register(gguf.TypeQ2_K, codec{
		decode:          decodeQ2K,
		encode:          encodeQ2K,
		encodeKeepZeros: encodeQ2KKeepZeros,
		zero:            ZeroPreserving,
	})
}

func decodeQ2K(dst []float32, src []byte) {
	for len(src) >= kQ2KBytes && len(dst) >= kQK {
		b := src[:kQ2KBytes]
		y := dst[:kQK]
		d := halfToFloat(kGet16(b[80:]))
		dmin := halfToFloat(kGet16(b[82:]))
		scales := b[0:16]
		for n := 0; n < 2; n++ {
			q := b[16+32*n : 16+32*n+32]
			for j := 0; j < 4; j++ {
				shift := uint(2 * j)
				for h := 0; h < 2; h++ {
					sc := scales[8*n+2*j+h]
					dl, ml := d*float32(sc&0xF), dmin*float32(sc>>4)
					t := [4]float32{
						float32(dl*0) - ml,
						float32(dl*1) - ml,
						float32(dl*2) - ml,
						float32(dl*3) - ml,
					}
					qq := q[16*h : 16*h+16]
					yy := y[128*n+32*j+16*h : 128*n+32*j+16*h+16]
					for l, v := range qq {
						yy[l] = t[(v>>shift)&3]
					}
				}
			}
		}
		src = src[kQ2KBytes:]
		dst = dst[kQK:]
	}
}

func encodeQ2K(dst []byte, src []float32) {
	for len(src) >= kQK && len(dst) >= kQ2KBytes {
		encodeQ2KBlock(dst[:kQ2KBytes], src[:kQK])
		src = src[kQK:]
		dst = dst[kQ2KBytes:]
	}
}

func encodeQ2KBlock(b []byte, x []float32) {
	var (
		L       [kQK]uint8
		weights [16]float32
		mins    [16]float32
		scales  [16]float32
	)
	const q4scale = 15
	var maxScale, maxMin float32
	for j := 0; j < 16; j++ {
		xs := x[16*j : 16*j+16]
		for l, v := range xs {
			weights[l] = kAbs(v)
		}
		scales[j], mins[j] = kMakeQkx2(xs, weights[:], L[16*j:16*j+16], 3, -0.5, 0.1, 15, true)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	sb := b[0:16]
	if maxScale > 0 {
		iscale := q4scale / maxScale
		for j := range sb {
			sb[j] = uint8(kNearestInt(iscale * scales[j]))
		}
		kPut16(b[80:], floatToHalf(maxScale/q4scale))
	} else {
		clear(sb)
		kPut16(b[80:], floatToHalf(0))
	}
	if maxMin > 0 {
		iscale := q4scale / maxMin
		for j := range sb {
			sb[j] |= uint8(kNearestInt(iscale*mins[j]) << 4)
		}
		kPut16(b[82:], floatToHalf(maxMin/q4scale))
	} else {
		kPut16(b[82:], floatToHalf(0))
	}
	kRequantQ2K(b, x, &L)
	kPackQ2K(b, &L)
}

// kRequantQ2K recomputes the levels L against the stored scales of b.
func kRequantQ2K(b []byte, x []float32, L *[kQK]uint8) {
	fd := halfToFloat(kGet16(b[80:]))
	fm := halfToFloat(kGet16(b[82:]))
	for j := 0; j < 16; j++ {
		sc := b[j]
		d := fd * float32(sc&0xF)
		if d == 0 {
			continue
		}
		dm := fm * float32(sc>>4)
		xs := x[16*j : 16*j+16]
		ls := L[16*j : 16*j+16]
		for ii, v := range xs {
			l := kNearestInt((v + dm) / d)
			ls[ii] = uint8(max(0, min(3, l)))
		}
	}
}

// kPackQ2K stores the 2-bit levels L into the qs field of b.
func kPackQ2K(b []byte, L *[kQK]uint8) {
	qs := b[16:80]
	for j := 0; j < 2; j++ {
		for l := 0; l < 32; l++ {
			i := 128*j + l
			qs[32*j+l] = L[i] | L[i+32]<<2 | L[i+64]<<4 | L[i+96]<<6
		}
	}
}
