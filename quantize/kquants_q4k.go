package quantize

import "github.com/physarium/physarium-gguf/gguf"

// Q4_K: 144-byte blocks of 256 values: fp16 d, fp16 dmin, 12 bytes of packed
// 6-bit scales and mins for 8 sub-blocks of 32, then 128 bytes of 4-bit
// quants. Value = d*sc*q - dmin*m.

const kQ4KBytes = 144

func init() {
	register(gguf.TypeQ4_K, codec{
		decode:          decodeQ4K,
		encode:          encodeQ4K,
		encodeKeepZeros: encodeQ4KKeepZeros,
		zero:            ZeroPreserving,
	})
}

func decodeQ4K(dst []float32, src []byte) {
	if simd, ok := simdDecodeQ4K.use(); ok {
		simd(dst, src)
		return
	}
	decodeQ4KGo(dst, src)
}

// decodeQ4KAVX2 is decodeQ4KGo with the inner loops in assembly.
func decodeQ4KAVX2(dst []float32, src []byte) {
	for len(src) >= kQ4KBytes && len(dst) >= kQK {
		b := src[:kQ4KBytes]
		d := halfToFloat(kGet16(b[0:]))
		dmin := halfToFloat(kGet16(b[2:]))
		scales := b[4:16]
		for j := 0; j < 4; j++ {
			sc, m := kScaleMinK4(2*j, scales)
			d1, m1 := d*float32(sc), dmin*float32(m)
			sc, m = kScaleMinK4(2*j+1, scales)
			d2, m2 := d*float32(sc), dmin*float32(m)
			kDecQ4K64AVX2((*[64]float32)(dst[64*j:64*j+64]), (*[32]byte)(b[16+32*j:16+32*j+32]), d1, m1, d2, m2)
		}
		src = src[kQ4KBytes:]
		dst = dst[kQK:]
	}
}

// decodeQ4KGo is the pure-Go Q4_K decoder.
func decodeQ4KGo(dst []float32, src []byte) {
	for len(src) >= kQ4KBytes && len(dst) >= kQK {
		b := src[:kQ4KBytes]
		y := dst[:kQK]
		d := halfToFloat(kGet16(b[0:]))
		dmin := halfToFloat(kGet16(b[2:]))
		scales := b[4:16]
		var t1, t2 [16]float32
		for j := 0; j < 4; j++ {
			kLevelTables(d, dmin, scales, j, t1[:], t2[:])
			q := b[16+32*j : 16+32*j+32]
			yy := y[64*j : 64*j+64]
			for l, v := range q {
				yy[l] = t1[v&0xF]
				yy[l+32] = t2[v>>4]
			}
		}
		src = src[kQ4KBytes:]
		dst = dst[kQK:]
	}
}

// kSubblockWeights32 fills w with ggml's Q4_K/Q5_K reference weights for one
// sub-block of 32: sqrt(mean(x^2)) + |x|.
func kSubblockWeights32(x []float32, w *[32]float32) {
	x = x[:32]
	var sumX2 float32
	for _, v := range x {
		sumX2 += float32(v * v)
	}
	avX := kSqrt(sumX2 / 32)
	for l, v := range x {
		w[l] = avX + kAbs(v)
	}
}

func encodeQ4K(dst []byte, src []float32) {
	if simd, ok := simdEncodeQ4K.use(); ok {
		kEncodeSIMD(dst, src, kQ4KBytes, simd, encodeQ4KBlock)
		return
	}
	encodeQ4KGo(dst, src)
}

// encodeQ4KGo is the pure-Go Q4_K reference encoder.
func encodeQ4KGo(dst []byte, src []float32) {
	for len(src) >= kQK && len(dst) >= kQ4KBytes {
		encodeQ4KBlock(dst[:kQ4KBytes], src[:kQK])
		src = src[kQK:]
		dst = dst[kQ4KBytes:]
	}
}

func encodeQ4KBlock(b []byte, x []float32) {
	var L [kQK]uint8
	kEncodeQ45KScales(b, x, &L, 15, -1, 20)
	q := b[16:144]
	for j := 0; j < 4; j++ {
		for l := 0; l < 32; l++ {
			q[32*j+l] = L[64*j+l] | L[64*j+l+32]<<4
		}
	}
}

// kFinishQ45K quantizes the sub-block scales and mins of a Q4_K or Q5_K
// block to 6 bits, stores d, dmin and the packed scales into b, and requantizes
// the levels L (in [0, nmax]) against the stored scales, as ggml does.
func kFinishQ45K(b []byte, x []float32, L *[kQK]uint8, scales, mins *[8]float32, maxScale, maxMin float32, nmax int32) {
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	var ls, lm [8]uint8
	for j := 0; j < 8; j++ {
		ls[j] = min(63, uint8(kNearestInt(invScale*scales[j])))
		lm[j] = min(63, uint8(kNearestInt(invMin*mins[j])))
	}
	sb := b[4:16]
	kPackScaleMinK4(sb, &ls, &lm)
	hd := floatToHalf(maxScale / 63)
	hm := floatToHalf(maxMin / 63)
	kPut16(b[0:], hd)
	kPut16(b[2:], hm)
	fd, fm := halfToFloat(hd), halfToFloat(hm)
	for j := 0; j < 8; j++ {
		sc, m := kScaleMinK4(j, sb)
		d := fd * float32(sc)
		if d == 0 {
			continue
		}
		dm := fm * float32(m)
		xs := x[32*j : 32*j+32]
		ls := L[32*j : 32*j+32]
		for ii, v := range xs {
			l := kNearestInt((v + dm) / d)
			ls[ii] = uint8(max(0, min(nmax, l)))
		}
	}
}

// kEncodeQ45KScales is the part Q4_K and Q5_K encoders share: each of the
// eight 32-value sub-blocks gets its scale and min from make_qkx2_quants
// (nmax levels, search from rmin in nstep steps of 0.1, weights from
// kSubblockWeights32) and its levels in L; kFinishQ45K then packs the
// super-block's scales, mins and requantized levels into b.
func kEncodeQ45KScales(b []byte, x []float32, L *[kQK]uint8, nmax int32, rmin float32, nstep int) {
	var (
		weights          [32]float32
		mins, scales     [8]float32
		maxScale, maxMin float32
	)
	for j := 0; j < 8; j++ {
		xs := x[32*j : 32*j+32]
		kSubblockWeights32(xs, &weights)
		scales[j], mins[j] = kMakeQkx2x32((*[32]float32)(xs), &weights, (*[32]uint8)(L[32*j:32*j+32]), nmax, rmin, 0.1, nstep)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	kFinishQ45K(b, x, L, &scales, &mins, maxScale, maxMin, nmax)
}
