package quantize

import "github.com/physarium/physarium-gguf/gguf"

// Q3_K: 110-byte blocks of 256 values: 32 bytes of high bits (hmask), 64
// bytes of low 2-bit quants, 12 bytes of packed 6-bit signed scales for 16
// sub-blocks of 16, fp16 d. Value = d*(sc-32)*(q-4) with q in [0, 7].

const kQ3KBytes = 110

func init() {
	register(gguf.TypeQ3_K, codec{
		decode: decodeQ3K,
		encode: encodeQ3K,
		zero:   ZeroExact,
	})
}

// kQ3KScales unpacks the 16 6-bit scales of a Q3_K block, minus 32.
func kQ3KScales(p []byte, s *[16]int8) {
	p = p[:12]
	for j := 0; j < 16; j++ {
		var lo uint8
		if j < 8 {
			lo = p[j] & 0xF
		} else {
			lo = p[j-8] >> 4
		}
		hi := (p[8+j%4] >> (2 * (j / 4))) & 3
		s[j] = int8(lo|hi<<4) - 32
	}
}

func decodeQ3K(dst []float32, src []byte) {
	for len(src) >= kQ3KBytes && len(dst) >= kQK {
		b := src[:kQ3KBytes]
		y := dst[:kQK]
		dAll := halfToFloat(kGet16(b[108:]))
		var sc [16]int8
		kQ3KScales(b[96:108], &sc)
		hm := b[0:32]
		for n := 0; n < 2; n++ {
			q := b[32+32*n : 32+32*n+32]
			for j := 0; j < 4; j++ {
				shift := uint(2 * j)
				hshift := uint(4*n + j)
				for h := 0; h < 2; h++ {
					dl := dAll * float32(sc[8*n+2*j+h])
					var t [8]float32
					for k := range t {
						t[k] = dl * float32(k-4)
					}
					qq := q[16*h : 16*h+16]
					hh := hm[16*h : 16*h+16]
					yy := y[128*n+32*j+16*h : 128*n+32*j+16*h+16]
					for l, v := range qq {
						yy[l] = t[(v>>shift)&3|((hh[l&15]>>hshift)&1)<<2]
					}
				}
			}
		}
		src = src[kQ3KBytes:]
		dst = dst[kQK:]
	}
}

// kMakeQ3 is ggml's make_q3_quants with do_rmse: a symmetric fit of 16
// values to levels in [-nmax, nmax-1] by weighted least squares (weights
// x^2) with up to 5 rounds of coordinate moves. L receives level+nmax.
func kMakeQ3(x []float32, L []int8, nmax int32) float32 {
	x = x[:16]
	L = L[:16]
	xmax, amax := kSignedAbsMax(x)
	if amax < kGroupMaxEps {
		clear(L)
		return 0
	}
	iscale := float32(-nmax) / xmax
	var sumlx, suml2 float32
	for i, v := range x {
		l := kNearestInt(iscale * v)
		l = max(-nmax, min(nmax-1, l))
		L[i] = int8(l)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	for itry := 0; itry < 5; itry++ {
		nChanged := 0
		for i, v := range x {
			w := float32(v * v)
			fL := float32(L[i])
			slx := sumlx - float32(float32(w*v)*fL)
			if slx > 0 {
				sl2 := suml2 - float32(float32(w*fL)*fL)
				newL := kNearestInt(float32(v*sl2) / slx)
				newL = max(-nmax, min(nmax-1, newL))
				if newL != int32(L[i]) {
					fn := float32(newL)
					slx += float32(float32(w*v) * fn)
					sl2 += float32(float32(w*fn) * fn)
					if sl2 > 0 && float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = int8(newL)
						sumlx = slx
						suml2 = sl2
						nChanged++
					}
				}
			}
		}
		if nChanged == 0 {
			break
		}
	}
	for i := range L {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

func encodeQ3K(dst []byte, src []float32) {
	for len(src) >= kQK && len(dst) >= kQ3KBytes {
		encodeQ3KBlock(dst[:kQ3KBytes], src[:kQK])
		src = src[kQK:]
		dst = dst[kQ3KBytes:]
	}
}

func encodeQ3KBlock(b []byte, x []float32) {
	var (
		L      [kQK]int8
		scales [16]float32
	)
	var maxScale, amax float32
	for j := 0; j < 16; j++ {
		scales[j] = kMakeQ3(x[16*j:16*j+16], L[16*j:16*j+16], 4)
		s := kAbs(scales[j])
		if s > amax {
			amax = s
			maxScale = scales[j]
		}
	}
	sb := b[96:108]
	clear(sb)
	if maxScale != 0 {
		iscale := -32 / maxScale
		for j := 0; j < 16; j++ {
			l := int8(kNearestInt(iscale * scales[j]))
			l = max(-32, min(31, l)) + 32
			if j < 8 {
				sb[j] = uint8(l) & 0xF
			} else {
				sb[j-8] |= (uint8(l) & 0xF) << 4
			}
			l >>= 4
			sb[j%4+8] |= uint8(l) << (2 * (j / 4))
		}
		kPut16(b[108:], floatToHalf(1/iscale))
	} else {
		kPut16(b[108:], floatToHalf(0))
	}
	var sc [16]int8
	kQ3KScales(sb, &sc)
	fd := halfToFloat(kGet16(b[108:]))
	for j := 0; j < 16; j++ {
		d := fd * float32(sc[j])
		if d == 0 {
			continue
		}
		xs := x[16*j : 16*j+16]
		ls := L[16*j : 16*j+16]
		for ii, v := range xs {
			l := kNearestInt(v / d)
			ls[ii] = int8(max(-4, min(3, l)) + 4)
		}
	}
	hm := b[0:32]
	clear(hm)
	m := 0
	hb := uint8(1)
	for j := 0; j < kQK; j++ {
		if L[j] > 3 {
			hm[m] |= hb
			L[j] -= 4
		}
		m++
		if m == kQK/8 {
			m = 0
			hb <<= 1
		}
	}
	qs := b[32:96]
	for j := 0; j < 2; j++ {
		for l := 0; l < 32; l++ {
			i := 128*j + l
			qs[32*j+l] = uint8(L[i]) | uint8(L[i+32])<<2 | uint8(L[i+64])<<4 | uint8(L[i+96])<<6
		}
	}
}
