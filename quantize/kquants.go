package quantize

// Shared pieces of the K-quant codecs (Q2_K .. Q6_K): super-blocks of 256
// values, fp16 super-block scales, ggml's rounding helper and the searches
// that ggml's reference quantizers use to fit sub-block scales.
//
// Bit-exactness notes. ggml's shipped libggml-base is built for plain x86-64
// (SSE2, no FMA, no F16C), so every float operation of the reference is one
// IEEE single-precision operation, evaluated left to right as written. The Go
// code below mirrors that order. Every product that feeds a sum is wrapped in
// an explicit float32(...) conversion: the Go spec lets a compiler fuse x*y+z
// (it does on arm64, and on amd64 with GOAMD64=v3), and an explicit
// conversion forbids the fusion.

import "math"

// kQK is the number of values in one K-quant super-block.
const kQK = 256

// kGroupMaxEps is ggml's GROUP_MAX_EPS: below it a group counts as all zero.
const kGroupMaxEps = 1e-15

// kNearestInt is ggml's nearest_int: round to nearest, ties to even, by
// adding 1.5*2^23 and reading the mantissa. For |f| > 2^22 (and NaN) it
// returns the same garbage the C does, never panics.
func kNearestInt(f float32) int32 {
	// The conversion keeps an inlined caller's product from fusing with the add.
	v := math.Float32bits(float32(f) + 12582912)
	return int32(v&0x007fffff) - 0x00400000
}

// kAbs is fabsf.
func kAbs(f float32) float32 {
	return math.Float32frombits(math.Float32bits(f) &^ (1 << 31))
}

// kSqrt is sqrtf (correctly rounded: the float64 square root of a float32,
// rounded to float32, is the float32 square root).
func kSqrt(f float32) float32 {
	return float32(math.Sqrt(float64(f)))
}

// kRoundF16 is the float32 value of the half nearest to f.
func kRoundF16(f float32) float32 { return halfToFloat(floatToHalf(f)) }

func kGet16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

func kPut16(b []byte, v uint16) { b[0] = byte(v); b[1] = byte(v >> 8) }

// kScaleMinK4 unpacks the 6-bit scale and min of sub-block j (0..7) from the
// 12 packed bytes of a Q4_K or Q5_K block (ggml's get_scale_min_k4).
func kScaleMinK4(j int, q []byte) (sc, m uint8) {
	q = q[:12]
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return (q[j+4] & 0xF) | ((q[j-4] >> 6) << 4), (q[j+4] >> 4) | ((q[j] >> 6) << 4)
}

// kPackScaleMinK4 stores the 6-bit scales ls and mins lm of the 8 sub-blocks
// into the 12 packed bytes of a Q4_K or Q5_K block, as ggml does.
func kPackScaleMinK4(q []byte, ls, lm *[8]uint8) {
	q = q[:12]
	for j := 0; j < 4; j++ {
		q[j] = ls[j]
		q[j+4] = lm[j]
	}
	for j := 4; j < 8; j++ {
		q[j+4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4)
		q[j-4] |= (ls[j] >> 4) << 6
		q[j] |= (lm[j] >> 4) << 6
	}
}

// kMakeQkx2 is ggml's make_qkx2_quants: fit x ~ scale*L - min with L in
// [0, nmax] under weights w, trying nstep+1 candidate inverse scales
// (rmin + rdelta*is + nmax)/(max - min) and keeping the one with the least
// weighted error (squared, or absolute when useMad). It returns the scale
// and the (non-negative) min, and writes the levels to L.
func kMakeQkx2(x, w []float32, L []uint8, nmax int, rmin, rdelta float32, nstep int, useMad bool) (scale, theMin float32) {
	n := len(x)
	x = x[:n]
	w = w[:n]
	L = L[:n]
	var laux [32]uint8
	xmin, xmax := x[0], x[0]
	sumW := w[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < xmin {
			xmin = x[i]
		}
		if x[i] > xmax {
			xmax = x[i]
		}
		sumW += w[i]
		sumX += float32(w[i] * x[i])
	}
	if xmin > 0 {
		xmin = 0
	}
	if xmax == xmin {
		for i := range L {
			L[i] = 0
		}
		return 0, -xmin
	}
	fnmax := float32(nmax)
	iscale := fnmax / (xmax - xmin)
	scale = 1 / iscale
	var bestError float32
	for i := 0; i < n; i++ {
		l := kNearestInt(float32(iscale * (x[i] - xmin)))
		l = max(0, min(int32(nmax), l))
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(l))+xmin) - x[i]
		if useMad {
			diff = kAbs(diff)
		} else {
			diff = float32(diff * diff)
		}
		bestError += float32(w[i] * diff)
	}
	if nstep < 1 {
		return scale, -xmin
	}
	for is := 0; is <= nstep; is++ {
		iscale = float32(rmin+float32(rdelta*float32(is))+fnmax) / (xmax - xmin)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := kNearestInt(float32(iscale * (x[i] - xmin)))
			l = max(0, min(int32(nmax), l))
			laux[i] = uint8(l)
			fl := float32(l)
			wl := float32(w[i] * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := 0; i < n; i++ {
				diff := float32(float32(thisScale*float32(laux[i]))+thisMin) - x[i]
				if useMad {
					diff = kAbs(diff)
				} else {
					diff = float32(diff * diff)
				}
				curError += float32(w[i] * diff)
			}
			if curError < bestError {
				copy(L, laux[:n])
				bestError = curError
				scale = thisScale
				xmin = thisMin
			}
		}
	}
	return scale, -xmin
}

// kMakeQkx2x32 is kMakeQkx2 for 32 values with squared error (Q4_K, Q5_K),
// written for speed: fixed-size arrays, x-min computed only when the min
// changes (the C computes the same difference in every pass; note that the
// search moves its min, and with it the range, whenever a pass improves),
// levels kept as floats.
func kMakeQkx2x32(x, w *[32]float32, L *[32]uint8, nmax int32, rmin, rdelta float32, nstep int) (scale, theMin float32) {
	xmin, xmax := x[0], x[0]
	sumW := w[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < 32; i++ {
		if x[i] < xmin {
			xmin = x[i]
		}
		if x[i] > xmax {
			xmax = x[i]
		}
		sumW += w[i]
		sumX += float32(w[i] * x[i])
	}
	if xmin > 0 {
		xmin = 0
	}
	if xmax == xmin {
		*L = [32]uint8{}
		return 0, -xmin
	}
	var xm [32]float32
	for i := range xm {
		xm[i] = x[i] - xmin
	}
	fnmax := float32(nmax)
	rng := xmax - xmin
	iscale := fnmax / rng
	scale = 1 / iscale
	var bestError float32
	for i := range xm {
		l := kNearestInt(float32(iscale * xm[i]))
		l = max(0, min(nmax, l))
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(l))+xmin) - x[i]
		bestError += float32(w[i] * float32(diff*diff))
	}
	if nstep < 1 {
		return scale, -xmin
	}
	var laux [32]float32
	for is := 0; is <= nstep; is++ {
		iscale = float32(rmin+float32(rdelta*float32(is))+fnmax) / rng
		var sumL, sumL2, sumXL float32
		for i := range xm {
			l := kNearestInt(float32(iscale * xm[i]))
			fl := float32(max(0, min(nmax, l)))
			laux[i] = fl
			wl := float32(w[i] * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := range laux {
				diff := float32(float32(thisScale*laux[i])+thisMin) - x[i]
				curError += float32(w[i] * float32(diff*diff))
			}
			if curError < bestError {
				for i, v := range laux {
					L[i] = uint8(v)
				}
				bestError = curError
				scale = thisScale
				xmin = thisMin
				rng = xmax - xmin
				for i := range xm {
					xm[i] = x[i] - xmin
				}
			}
		}
	}
	return scale, -xmin
}

// kSignedAbsMax returns the value of x with the largest magnitude (the
// first one on ties) and that magnitude, as ggml's symmetric fits search it.
func kSignedAbsMax(x []float32) (xmax, amax float32) {
	for _, v := range x {
		if ax := kAbs(v); ax > amax {
			amax, xmax = ax, v
		}
	}
	return xmax, amax
}

// kLevelTables fills t1 and t2 with the decoded value of every level of
// sub-blocks 2j and 2j+1 of a Q4_K/Q5_K super-block: d*sc*k - dmin*m, the
// product rounded before the subtraction, as dequantize_row_q4_K/q5_K.
func kLevelTables(d, dmin float32, scales []byte, j int, t1, t2 []float32) {
	sc, m := kScaleMinK4(2*j, scales)
	d1, m1 := d*float32(sc), dmin*float32(m)
	sc, m = kScaleMinK4(2*j+1, scales)
	d2, m2 := d*float32(sc), dmin*float32(m)
	for k := range t1 {
		t1[k] = float32(d1*float32(k)) - m1
		t2[k] = float32(d2*float32(k)) - m2
	}
}
