package quantize

import "github.com/physarium/physarium-gguf/gguf"

// Q6_K: 210-byte blocks of 256 values: 128 bytes of low 4-bit quants, 64
// bytes of high 2-bit quants, 16 signed 8-bit scales for sub-blocks of 16,
// fp16 d. Value = d*sc*(q-32) with q in [0, 63].

const kQ6KBytes = 210

func init() {
	register(gguf.TypeQ6_K, codec{
		decode: decodeQ6K,
		encode: encodeQ6K,
		zero:   ZeroExact,
	})
}

// kQ6Levels[q] is float32(q-32).
var kQ6Levels = func() (t [64]float32) {
	for q := range t {
		t[q] = float32(q - 32)
	}
	return
}()

func decodeQ6K(dst []float32, src []byte) {
	for len(src) >= kQ6KBytes && len(dst) >= kQK {
		b := src[:kQ6KBytes]
		y := dst[:kQK]
		d := halfToFloat(kGet16(b[208:]))
		sc := b[192:208]
		for n := 0; n < 2; n++ {
			ql := b[64*n : 64*n+64]
			qh := b[128+32*n : 128+32*n+32]
			s := sc[8*n : 8*n+8]
			yy := y[128*n : 128*n+128]
			for h := 0; h < 2; h++ {
				is := h
				d1 := d * float32(int8(s[is+0]))
				d2 := d * float32(int8(s[is+2]))
				d3 := d * float32(int8(s[is+4]))
				d4 := d * float32(int8(s[is+6]))
				for l := 16 * h; l < 16*h+16; l++ {
					a, c, hb := ql[l&31], ql[32+l&31], qh[l&31]
					yy[l&31] = d1 * kQ6Levels[(a&0xF)|(hb&3)<<4]
					yy[32+l&31] = d2 * kQ6Levels[(c&0xF)|((hb>>2)&3)<<4]
					yy[64+l&31] = d3 * kQ6Levels[(a>>4)|((hb>>4)&3)<<4]
					yy[96+l&31] = d4 * kQ6Levels[(c>>4)|(hb>>6)<<4]
				}
			}
		}
		src = src[kQ6KBytes:]
		dst = dst[kQK:]
	}
}

// kMakeQx1 is ggml's make_qx_quants with rmse_type 1 and no importance
// weights, for 16 values: a symmetric fit to levels in [-nmax, nmax-1] with
// weights x^2, trying 18 perturbed inverse scales. L receives level+nmax.
// The weights w = x*x and the products w*x are computed once (the same
// float32 values the reference computes in every pass).
func kMakeQx1(x []float32, L []int8, nmax int32) float32 {
	x = x[:16]
	L = L[:16]
	xmax, amax := kSignedAbsMax(x)
	if amax < kGroupMaxEps {
		clear(L)
		return 0
	}
	var w, wx [16]float32
	for i, v := range x {
		w[i] = float32(v * v)
		wx[i] = float32(w[i] * v)
	}
	fnmax := float32(nmax)
	iscale := float32(-nmax) / xmax
	var sumlx, suml2 float32
	for i, v := range x {
		l := kNearestInt(iscale * v)
		l = max(-nmax, min(nmax-1, l))
		L[i] = int8(l + nmax)
		fl := float32(l)
		sumlx += float32(wx[i] * fl)
		suml2 += float32(float32(w[i]*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	var laux [16]int8
	for is := int32(-9); is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -float32(fnmax+float32(0.1*float32(is))) / xmax
		sumlx, suml2 = 0, 0
		for i, v := range x {
			l := kNearestInt(iscale * v)
			l = max(-nmax, min(nmax-1, l))
			laux[i] = int8(l + nmax)
			fl := float32(l)
			sumlx += float32(wx[i] * fl)
			suml2 += float32(float32(w[i]*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			copy(L, laux[:])
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

func encodeQ6K(dst []byte, src []float32) {
	if simd, ok := simdEncodeQ6K.use(); ok {
		kEncodeSIMD(dst, src, kQ6KBytes, simd, encodeQ6KBlock)
		return
	}
	encodeQ6KGo(dst, src)
}

// encodeQ6KGo is the pure-Go Q6_K reference encoder.
func encodeQ6KGo(dst []byte, src []float32) {
	for len(src) >= kQK && len(dst) >= kQ6KBytes {
		encodeQ6KBlock(dst[:kQ6KBytes], src[:kQK])
		src = src[kQK:]
		dst = dst[kQ6KBytes:]
	}
}

func encodeQ6KBlock(b []byte, x []float32) {
	var (
		L      [kQK]int8
		scales [16]float32
	)
	var maxScale, maxAbsScale float32
	for ib := 0; ib < 16; ib++ {
		s := kMakeQx1(x[16*ib:16*ib+16], L[16*ib:16*ib+16], 32)
		scales[ib] = s
		if as := kAbs(s); as > maxAbsScale {
			maxAbsScale = as
			maxScale = s
		}
	}
	if maxAbsScale < kGroupMaxEps {
		clear(b)
		kPut16(b[208:], floatToHalf(0))
		return
	}
	iscale := -128 / maxScale
	kPut16(b[208:], floatToHalf(1/iscale))
	sb := b[192:208]
	for ib := range sb {
		sb[ib] = uint8(int8(min(127, kNearestInt(iscale*scales[ib]))))
	}
	fd := halfToFloat(kGet16(b[208:]))
	for j := 0; j < 16; j++ {
		d := fd * float32(int8(sb[j]))
		if d == 0 {
			continue
		}
		xs := x[16*j : 16*j+16]
		ls := L[16*j : 16*j+16]
		for ii, v := range xs {
			l := kNearestInt(v / d)
			ls[ii] = int8(max(-32, min(31, l)) + 32)
		}
	}
	for n := 0; n < 2; n++ {
		ql := b[64*n : 64*n+64]
		qh := b[128+32*n : 128+32*n+32]
		for l := 0; l < 32; l++ {
			i := 128*n + l
			q1, q2, q3, q4 := uint8(L[i]), uint8(L[i+32]), uint8(L[i+64]), uint8(L[i+96])
			ql[l] = q1&0xF | (q3&0xF)<<4
			ql[l+32] = q2&0xF | (q4&0xF)<<4
			qh[l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
		}
	}
}
