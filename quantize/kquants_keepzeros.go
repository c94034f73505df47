package quantize

// Zero-preserving encoders for the K-quants with a min (Q2_K, Q4_K, Q5_K).
//
// A sub-block decodes as y = float32(d*sc)*q - float32(dmin*m). With fp16 d
// and dmin and small integers sc, m, q, both products are exact in float32
// (at most 11+6+5 significant bits), so y is exactly 0 at level q0 iff
// d*sc*q0 == dmin*m as real numbers. The encoder picks dmin = R*d for a small
// integer ratio R (rounding d to fewer mantissa bits when R*d would not be an
// exact half), and per sub-block a zero level q0 and a scale sc with
// sc*q0 divisible by R, so that m = sc*q0/R. Every candidate is checked with
// the decoder's own float expression before it is used, and exact-zero inputs
// are stored at level q0. The survivors are fitted by trying, per ratio R,
// zero levels around the one implied by the reference fit of the survivors
// and the allowed scales nearest to its step, and keeping the least squared
// error; the ratio with the least total error wins.
//
// A block without exact zeros is encoded by the reference encoder.

import "math"

// kKZFormat describes one K-quant with a min for the zero-preserving search.
type kKZFormat struct {
	nsub, sub   int     // sub-blocks and their length
	nmax        int32   // largest level
	scMax, mMax int32   // largest sub-block scale and min codes
	rmin        float32 // make_qkx2_quants parameters of the reference fit
	rdelta      float32
	nstep       int
	mad         bool
	ratios      []int32 // candidate dmin/d ratios
}

var (
	kKZQ2K = kKZFormat{nsub: 16, sub: 16, nmax: 3, scMax: 15, mMax: 15, rmin: -0.5, rdelta: 0.1, nstep: 15, mad: true,
		ratios: []int32{1, 2, 3, 4, 5, 6, 8}}
	kKZQ4K = kKZFormat{nsub: 8, sub: 32, nmax: 15, scMax: 63, mMax: 63, rmin: -1, rdelta: 0.1, nstep: 20,
		ratios: []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16}}
	kKZQ5K = kKZFormat{nsub: 8, sub: 32, nmax: 31, scMax: 63, mMax: 63, rmin: -0.5, rdelta: 0.1, nstep: 15,
		ratios: []int32{1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32}}
)

// kKZResult is a zero-preserving encoding of one super-block.
type kKZResult struct {
	hd, hm uint16     // fp16 d and dmin
	sc, m  [16]uint8  // per sub-block codes
	L      [kQK]uint8 // levels
}

func kHasZero(x []float32) bool {
	for _, v := range x {
		if v == 0 {
			return true
		}
	}
	return false
}

// kKeepZerosFit searches the zero-preserving encoding of one super-block x.
// ok is false when the block is not finite, and the caller then uses the
// reference encoder.
func kKeepZerosFit(f *kKZFormat, x []float32, r *kKZResult) (ok bool) {
	var (
		step  [16]float32     // sub-block step estimates
		sref  [16][32]float32 // refined steps per zero level
		zlev  [16]int32       // zero-level estimates
		smax  float32
		surv  [32]float32
		w     [32]float32
		L     [32]uint8
		fnmax = float32(f.nmax)
	)
	for j := 0; j < f.nsub; j++ {
		xs := x[f.sub*j : f.sub*j+f.sub]
		n := 0
		var amax float32
		for _, v := range xs {
			if v-v != 0 { // NaN or Inf
				return false
			}
			if v != 0 {
				surv[n] = v
				n++
				amax = max(amax, kAbs(v))
			}
		}
		if n == 0 {
			continue
		}
		ys := surv[:n]
		if f.mad {
			for i, v := range ys {
				w[i] = kAbs(v)
			}
		} else {
			var sumX2 float32
			for _, v := range ys {
				sumX2 += v * v
			}
			av := kSqrt(sumX2 / float32(n))
			for i, v := range ys {
				w[i] = av + kAbs(v)
			}
		}
		scale, mn := kMakeQkx2(ys, w[:n], L[:n], int(f.nmax), f.rmin, f.rdelta, f.nstep, f.mad)
		if !(scale > 0) {
			scale = amax / fnmax
		}
		step[j] = scale
		zlev[j] = max(0, min(f.nmax, kNearestInt(mn/scale)))
		smax = max(smax, scale)
		// Refine the step for each zero level tried by least squares on the
		// survivors (a heuristic: the exact error decides later).
		for q0 := max(0, zlev[j]-2); q0 <= min(f.nmax, zlev[j]+2); q0++ {
			st := scale
			for it := 0; it < 3; it++ {
				var sxk, skk float64
				for _, v := range ys {
					k := max(-q0, min(f.nmax-q0, kNearestInt(v/st)))
					sxk += float64(v) * float64(k)
					skk += float64(k) * float64(k)
				}
				if skk == 0 || sxk <= 0 {
					break
				}
				st = float32(sxk / skk)
			}
			sref[j][q0] = st
		}
	}
	if smax == 0 {
		// Every value is zero: all codes zero decode to exact zeros.
		*r = kKZResult{}
		return true
	}
	if !(smax < 65504*float32(f.scMax)/2) {
		return false
	}
	bestErr := float32(math.Inf(1))
	var cand kKZResult
	for _, R := range f.ratios {
		for _, dm := range [...]float32{1, 1.04, 1.1} {
			d, dmin, ok := kKZScales(smax/float32(f.scMax)*dm, R)
			if !ok {
				continue
			}
			cand.hd, cand.hm = kF32ToF16(d), kF32ToF16(dmin)
			var total float32
			for j := 0; j < f.nsub; j++ {
				xs := x[f.sub*j : f.sub*j+f.sub]
				ls := cand.L[f.sub*j : f.sub*j+f.sub]
				if step[j] == 0 {
					cand.sc[j], cand.m[j] = 0, 0
					clear(ls)
					continue
				}
				e, sc, m := kKZSub(f, xs, ls, d, dmin, R, step[j], zlev[j], &sref[j])
				if sc < 0 {
					total = float32(math.Inf(1))
					break
				}
				cand.sc[j], cand.m[j] = uint8(sc), uint8(m)
				total += e
			}
			if total < bestErr {
				bestErr = total
				*r = cand
			}
		}
	}
	return bestErr < float32(math.Inf(1))
}

// kKZScales returns d near target and dmin = R*d, both exact halves.
func kKZScales(target float32, R int32) (d, dmin float32, ok bool) {
	h := kF32ToF16(target)
	if h == 0 {
		h = 1
	}
	for drop := uint(0); drop <= 6; drop++ {
		hh := h
		if drop > 0 {
			// Round the mantissa to fewer bits, staying within the half range.
			mask := uint16(1)<<drop - 1
			hh = (h + mask>>1 + 1) &^ mask
			if hh&0x7C00 == 0x7C00 {
				hh = h &^ mask
			}
		}
		d = kF16ToF32(hh)
		dmin = kF16ToF32(kF32ToF16(d * float32(R)))
		if d > 0 && dmin == d*float32(R) && dmin < 65504 {
			return d, dmin, true
		}
	}
	return 0, 0, false
}

// kKZSub picks, for one sub-block, the zero level q0 and scale code sc
// (with m = sc*q0/R) of least squared error on the non-zero values, writes
// the levels to ls and returns the error; sc < 0 when nothing fits.
func kKZSub(f *kKZFormat, xs []float32, ls []uint8, d, dmin float32, R int32, step float32, zlev int32, sref *[32]float32) (bestE float32, bestSc, bestM int32) {
	bestE = float32(math.Inf(1))
	bestSc, bestM = -1, -1
	bestQ0 := int32(0)
	sc0 := step / d
	for q0 := max(0, zlev-2); q0 <= min(f.nmax, zlev+2); q0++ {
		// Allowed scale codes are multiples of g = R/gcd(R, q0); q0 == 0
		// allows every code (m = 0).
		g := int32(1)
		if q0 > 0 {
			g = R / kGCD(R, q0)
		}
		s := sref[q0]
		lo := int32(s/d/float32(g)) * g
		for _, sc := range [6]int32{lo - 2*g, lo - g, lo, lo + g, lo + 2*g, int32(sc0/float32(g)) * g} {
			if sc < 1 || sc > f.scMax {
				continue
			}
			m := sc * q0 / R
			if m > f.mMax || m*R != sc*q0 {
				continue
			}
			d1 := d * float32(sc)
			m1 := dmin * float32(m)
			if float32(d1*float32(q0))-m1 != 0 {
				continue
			}
			id1 := 1 / d1
			var e float32
			for _, v := range xs {
				if v == 0 {
					continue
				}
				q := max(0, min(f.nmax, kNearestInt((v+m1)*id1)))
				diff := v - (float32(d1*float32(q)) - m1)
				e += float32(diff * diff)
				if e >= bestE {
					break
				}
			}
			if e < bestE {
				bestE, bestSc, bestM, bestQ0 = e, sc, m, q0
			}
		}
	}
	if bestSc < 0 {
		return bestE, -1, -1
	}
	d1 := d * float32(bestSc)
	m1 := dmin * float32(bestM)
	id1 := 1 / d1
	for i, v := range xs {
		if v == 0 {
			ls[i] = uint8(bestQ0)
			continue
		}
		ls[i] = uint8(max(0, min(f.nmax, kNearestInt((v+m1)*id1))))
	}
	return bestE, bestSc, bestM
}

func kGCD(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func encodeQ4KKeepZeros(dst []byte, src []float32) {
	var r kKZResult
	for len(src) >= kQK && len(dst) >= kQ4KBytes {
		b, x := dst[:kQ4KBytes], src[:kQK]
		if !kHasZero(x) || !kKeepZerosFit(&kKZQ4K, x, &r) {
			encodeQ4KBlock(b, x)
		} else {
			kStoreKZQ45(b, &r)
			q := b[16:144]
			for j := 0; j < 4; j++ {
				for l := 0; l < 32; l++ {
					q[32*j+l] = r.L[64*j+l] | r.L[64*j+l+32]<<4
				}
			}
		}
		src, dst = src[kQK:], dst[kQ4KBytes:]
	}
}

func encodeQ5KKeepZeros(dst []byte, src []float32) {
	var r kKZResult
	for len(src) >= kQK && len(dst) >= kQ5KBytes {
		b, x := dst[:kQ5KBytes], src[:kQK]
		if !kHasZero(x) || !kKeepZerosFit(&kKZQ5K, x, &r) {
			encodeQ5KBlock(b, x)
		} else {
			kStoreKZQ45(b, &r)
			kPackQ5K(b, &r.L)
		}
		src, dst = src[kQK:], dst[kQ5KBytes:]
	}
}

// kStoreKZQ45 writes d, dmin and the packed scales of a Q4_K/Q5_K block.
func kStoreKZQ45(b []byte, r *kKZResult) {
	kPut16(b[0:], r.hd)
	kPut16(b[2:], r.hm)
	var ls, lm [8]uint8
	copy(ls[:], r.sc[:8])
	copy(lm[:], r.m[:8])
	kPackScaleMinK4(b[4:16], &ls, &lm)
}

func encodeQ2KKeepZeros(dst []byte, src []float32) {
	var r kKZResult
	for len(src) >= kQK && len(dst) >= kQ2KBytes {
		b, x := dst[:kQ2KBytes], src[:kQK]
		if !kHasZero(x) || !kKeepZerosFit(&kKZQ2K, x, &r) {
			encodeQ2KBlock(b, x)
		} else {
			for j := 0; j < 16; j++ {
				b[j] = r.sc[j] | r.m[j]<<4
			}
			kPut16(b[80:], r.hd)
			kPut16(b[82:], r.hm)
			kPackQ2K(b, &r.L)
		}
		src, dst = src[kQK:], dst[kQ2KBytes:]
	}
}
