package quantize

import "encoding/binary"

// Encoders of IQ2_XXS, IQ2_XS and IQ2_S: ggml's quantize_row_iq2_xxs_impl,
// quantize_row_iq2_xs_impl and quantize_row_iq2_s_impl, operation for
// operation. Each takes whole 256-value blocks x and, when not nil, one
// importance weight per value (qw, as long as x: the caller repeats a row's
// weights for every row, as ggml_quantize_chunk does).

// ggml's GROUP_MAX_EPS_* thresholds (GROUP_MAX_EPS itself is kGroupMaxEps).
const (
	iqEpsIQ2S   = 1e-8
	iqEpsIQ3XXS = 1e-8
	iqEpsIQ1M   = 1e-7
	iqEpsIQ1S   = 1e-12
)

// iqSumX2 returns ggml's sum of x*x over a block, in order.
func iqSumX2(xbl []float32) float32 {
	var s float32
	for _, v := range xbl {
		s += float32(v * v)
	}
	return s
}

// iqImportance writes weight[i] = qw[i] * sqrtf(sigma2 + x[i]*x[i]).
func iqImportance(weight, xb, qw []float32, sigma2 float32) {
	for i := range weight {
		weight[i] = qw[i] * kSqrt(sigma2+float32(xb[i]*xb[i]))
	}
}

// iqSquares writes weight[i] = x[i]*x[i] (ggml's weights without an
// importance matrix for IQ3 and IQ1_M).
func iqSquares(weight, xb []float32) {
	for i := range weight {
		weight[i] = xb[i] * xb[i]
	}
}

// iqEvenSigns sets xval to |x| for 8 values and returns their sign bits,
// with an even number of them set: when the count is odd, the value with
// the smallest weight*x*x keeps its sign in the code and is fitted as
// -|x| instead. Only the low 7 bits are stored (the eighth is their
// parity).
func iqEvenSigns(xval, xb, weight []float32) uint8 {
	nflip := 0
	var s uint8
	for i := 0; i < 8; i++ {
		if xb[i] >= 0 {
			xval[i] = xb[i]
		} else {
			xval[i] = -xb[i]
			nflip++
			s |= 1 << i
		}
	}
	if nflip%2 != 0 {
		imin := 0
		m := float32(weight[0]*xb[0]) * xb[0]
		for i := 1; i < 8; i++ {
			ax := float32(weight[i]*xb[i]) * xb[i]
			if ax < m {
				m, imin = ax, i
			}
		}
		xval[imin] = -xval[imin]
		s ^= 1 << imin
	}
	return s & 127
}

// iqAllSigns sets xval to |x| for 8 values and returns all 8 sign bits
// (IQ2_S, IQ3_S).
func iqAllSigns(xval, xb []float32) uint8 {
	var s uint8
	for i := 0; i < 8; i++ {
		if xb[i] >= 0 {
			xval[i] = xb[i]
		} else {
			xval[i] = -xb[i]
			s |= 1 << i
		}
	}
	return s
}

// iqGroupMax is the largest of xval, in ggml's order.
func iqGroupMax(xval []float32) float32 {
	m := xval[0]
	for _, v := range xval[1:] {
		m = cmax(m, v)
	}
	return m
}

// iqRoundL writes l = clamp(nearest_int(0.5*(id*x-1)), 0, kmax) for each
// value of a grid group and returns the group's map index.
func (s *iqSearch) iqRoundL(L []int8, xval []float32, id float32, kmax int) int {
	u := 0
	for i := 0; i < s.dims; i++ {
		l := iqClamp(nearestInt(0.5*(float32(id*xval[i])-1)), 0, kmax)
		L[i] = int8(l)
		u |= l << (s.bits * i)
	}
	return u
}

// iqFitSums returns sum w*x*q and sum w*q*q with q = 2l+1.
func iqFitSums(weight, xval []float32, L []int8) (sumqx, sumq2 float32) {
	for i := range weight {
		w := weight[i]
		q := float32(2*int(L[i]) + 1)
		sumqx += float32(float32(w*xval[i]) * q)
		sumq2 += float32(float32(w*q) * q)
	}
	return sumqx, sumq2
}

// iqScaleCode is ggml's 4-bit (or 3-bit) sub-block scale code:
// clamp(nearest_int(0.5*(id*scale-1)), 0, hi).
func iqScaleCode(id, scale float32, hi int) int {
	return iqClamp(nearestInt(0.5*(float32(id*scale)-1)), 0, hi)
}

// iqGridSearch is the scale search of IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S
// over one group of values (grid groups of s.dims): trial scales
// (2*kMaxQ-1 + is*step)/max for is in -lo..lo, each rounding every value
// to its code and moving off-grid groups to their best neighbour; the best
// fit is kept, then the groups that fell off the grid are re-fitted at
// that scale (every group when refitAll, as IQ3_S does; onGridInit is
// what a group counts as before any trial improves the fit). It returns
// the scale and leaves the codes in L.
func iqGridSearch(s *iqSearch, weight, waux, xval []float32, L []int8, mx float32, kMaxQ int, step float32, lo int, onGridInit, refitAll bool) float32 {
	var lauxBuf [32]int8
	var onGrid, onGridAux [8]bool
	laux := lauxBuf[:len(L)]
	groups := len(L) / s.dims
	best := float32(0)
	scale := mx / float32(2*kMaxQ-1)
	for k := range onGrid {
		onGrid[k] = onGridInit
	}
	for is := -lo; is <= lo; is++ {
		id := (float32(2*kMaxQ-1) + float32(float32(is)*step)) / mx
		thisScale := 1 / id
		for k := 0; k < groups; k++ {
			o := s.dims * k
			u := s.iqRoundL(laux[o:], xval[o:], id, kMaxQ-1)
			onGridAux[k] = true
			if s.kmap[u] < 0 {
				onGridAux[k] = false
				s.bestNeighbour(u, xval[o:], waux[o:], thisScale, laux[o:])
			}
		}
		sumqx, sumq2 := iqFitSums(weight, xval, laux)
		if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
			scale = sumqx / sumq2
			best = scale * sumqx
			copy(L, laux)
			onGrid = onGridAux
		}
	}
	off := false
	for _, g := range onGrid[:groups] {
		off = off || !g
	}
	if off && scale > 0 {
		id := 1 / scale
		for k := 0; k < groups; k++ {
			if onGrid[k] && !refitAll {
				continue
			}
			o := s.dims * k
			u := s.iqRoundL(L[o:], xval[o:], id, kMaxQ-1)
			if s.kmap[u] < 0 {
				s.bestNeighbour(u, xval[o:], waux[o:], scale, L[o:])
			}
		}
		sumqx, sumq2 := iqFitSums(weight, xval, L)
		if sumq2 > 0 {
			scale = sumqx / sumq2
		}
	}
	return scale
}

// iqPackNibbles stores the 4-bit scale code of each sub-block, two to a
// byte (even sub-block in the low nibble).
func iqPackNibbles(sc []byte, scales []float32, id float32) {
	for ib := 0; ib < len(scales); ib += 2 {
		sc[ib/2] = uint8(iqScaleCode(id, scales[ib], 15) | iqScaleCode(id, scales[ib+1], 15)<<4)
	}
}

// iqPrepGroup prepares one group of values for a grid search: its
// weights, qw*sqrtf(sigma2 + x*x), or without importance weights (nil qw)
// x*x (0.25*sigma2 + x*x for IQ2_S, iq2s); their square roots; the magnitudes xval and
// the sign bits of each 8 values (an even number of them when even, for
// the types that store 7 of 8). It returns the largest magnitude.
func iqPrepGroup(weight, waux, xval, xb, qw []float32, sigma2 float32, iq2s, even bool, signs []uint8) float32 {
	switch {
	case qw != nil:
		iqImportance(weight, xb, qw, sigma2)
	case iq2s:
		for i := range weight {
			weight[i] = float32(0.25*sigma2) + float32(xb[i]*xb[i])
		}
	default:
		iqSquares(weight, xb)
	}
	for i := range waux {
		waux[i] = kSqrt(weight[i])
	}
	for k := range signs {
		if even {
			signs[k] = iqEvenSigns(xval[8*k:], xb[8*k:], weight[8*k:])
		} else {
			signs[k] = iqAllSigns(xval[8*k:], xb[8*k:])
		}
	}
	return iqGroupMax(xval)
}

// iqGridIndex returns the grid entry of the codes in L; ggml aborts when
// they are off the grid, which only non-finite values reach: entry 0 then.
func (s *iqSearch) iqGridIndex(L []int8) int {
	if j := s.kmap[s.iqIndex(L)]; j >= 0 {
		return int(j)
	}
	return 0
}

func encodeIQ2XXS(dst []byte, x, qw []float32) {
	s := iq2xxsSearch.tables()
	const kMaxQ = 3
	var scales [8]float32
	var weight, xval, waux [32]float32
	var L, laux [32]int8
	var lq [32]uint8
	var signs [4]uint8
	var q2 [16]uint32
	for ibl := 0; ibl < len(x)/256; ibl++ {
		y := dst[ibl*iq2xxsBytes : (ibl+1)*iq2xxsBytes]
		binary.LittleEndian.PutUint16(y, 0)
		q2 = [16]uint32{}
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := iqSumX2(xbl) / 256
		for ib := 0; ib < 8; ib++ {
			xb := xbl[32*ib : 32*ib+32]
			mx := iqPrepGroup(weight[:], waux[:], xval[:], xb, qw[256*ibl+32*ib:], sigma2, false, true, signs[:])
			if mx < kGroupMaxEps {
				scales[ib] = 0
				L = [32]int8{}
				continue
			}
			scale := makeQPQuants(kMaxQ+1, xval[:], lq[:], weight[:])
			for i, v := range lq {
				L[i] = int8(v)
			}
			effMax := scale * kMaxQ
			if effMax <= 0 {
				scales[ib] = 0
				L = [32]int8{}
				continue
			}
			best := float32(0)
			for is := -6; is <= 6; is++ {
				id := (float32(2*kMaxQ-1) + float32(float32(is)*0.1)) / effMax
				thisScale := 1 / id
				for k := 0; k < 4; k++ {
					u := s.iqRoundL(laux[8*k:], xval[8*k:], id, kMaxQ-1)
					if s.kmap[u] < 0 {
						s.bestNeighbour(u, xval[8*k:], waux[8*k:], thisScale, laux[8*k:])
					}
				}
				sumqx, sumq2 := iqFitSums(weight[:], xval[:], laux[:])
				if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
					scale = sumqx / sumq2
					best = scale * sumqx
					L = laux
				}
			}
			if scale > 0 {
				id := 1 / scale
				for k := 0; k < 4; k++ {
					u := s.iqRoundL(L[8*k:], xval[8*k:], id, kMaxQ-1)
					gi := int(s.kmap[u])
					if gi < 0 {
						gi = s.bestNeighbour(u, xval[8*k:], waux[8*k:], scale, L[8*k:])
					}
					s.setL(L[8*k:], gi)
				}
				sumqx, sumq2 := iqFitSums(weight[:], xval[:], L[:])
				if sumq2 > 0 {
					scale = sumqx / sumq2
				}
			}
			if scale < 0 {
				scale = -scale
				for k := range signs {
					signs[k] = ^signs[k] & 127
				}
			}
			for k := 0; k < 4; k++ {
				gi := s.iqGridIndex(L[8*k:])
				q2[2*ib] |= uint32(gi) << (8 * k)
				q2[2*ib+1] |= uint32(signs[k]) << (7 * k)
			}
			scales[ib] = scale
			maxScale = cmax(maxScale, scale)
		}
		qs := y[2:]
		if maxScale == 0 {
			clear(qs)
			continue
		}
		d := maxScale / 31
		binary.LittleEndian.PutUint16(y, floatToHalf(d))
		id := 1 / d
		for ib := 0; ib < 8; ib++ {
			q2[2*ib+1] |= uint32(iqScaleCode(id, scales[ib], 15)) << 28
		}
		for i, v := range q2 {
			binary.LittleEndian.PutUint32(qs[4*i:], v)
		}
	}
}

func encodeIQ2XS(dst []byte, x, qw []float32) {
	s := iq2xsSearch.tables()
	var scales [16]float32
	var weight, xval, waux [16]float32
	var L [16]int8
	var signs [2]uint8
	var q2 [32]uint16
	for ibl := 0; ibl < len(x)/256; ibl++ {
		y := dst[ibl*iq2xsBytes : (ibl+1)*iq2xsBytes]
		clear(y)
		q2 = [32]uint16{}
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := iqSumX2(xbl) / 256
		for ib := 0; ib < 16; ib++ {
			xb := xbl[16*ib : 16*ib+16]
			mx := iqPrepGroup(weight[:], waux[:], xval[:], xb, qw[256*ibl+16*ib:], sigma2, false, true, signs[:])
			L = [16]int8{}
			if mx < kGroupMaxEps {
				scales[ib] = 0
				continue
			}
			scale := iqGridSearch(s, weight[:], waux[:], xval[:], L[:], mx, 3, 0.1, 9, true, false)
			if scale < 0 {
				scale = -scale
				for k := range signs {
					signs[k] = ^signs[k] & 127
				}
			}
			for k := 0; k < 2; k++ {
				q2[2*ib+k] = uint16(s.iqGridIndex(L[8*k:])) | uint16(signs[k])<<9
			}
			scales[ib] = scale
			maxScale = cmax(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 31
		binary.LittleEndian.PutUint16(y, floatToHalf(d))
		id := 1 / d
		iqPackNibbles(y[66:74], scales[:], id)
		for i, v := range q2 {
			binary.LittleEndian.PutUint16(y[2+2*i:], v)
		}
	}
}

func encodeIQ2S(dst []byte, x, qw []float32) {
	s := iq2sSearch.tables()
	var scales [16]float32
	var weight, xval, waux [16]float32
	var L [16]int8
	var signs [2]uint8
	for ibl := 0; ibl < len(x)/256; ibl++ {
		y := dst[ibl*iq2sBytes : (ibl+1)*iq2sBytes]
		clear(y)
		qs, qh, sc := y[2:66], y[66:74], y[74:82]
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := 2 * iqSumX2(xbl) / 256
		for ib := 0; ib < 16; ib++ {
			xb := xbl[16*ib : 16*ib+16]
			var qwb []float32
			if qw != nil {
				qwb = qw[256*ibl+16*ib:]
			}
			mx := iqPrepGroup(weight[:], waux[:], xval[:], xb, qwb, sigma2, true, false, signs[:])
			L = [16]int8{}
			if mx < iqEpsIQ2S {
				scales[ib] = 0
				continue
			}
			scale := iqGridSearch(s, weight[:], waux[:], xval[:], L[:], mx, 3, 0.1, 9, true, false)
			if scale < 0 {
				scale = -scale
				for k := range signs {
					signs[k] = ^signs[k]
				}
			}
			for k := 0; k < 2; k++ {
				gi := s.iqGridIndex(L[8*k:])
				i8 := 2*ib + k
				qs[i8] = uint8(gi)
				qh[i8/4] |= uint8(gi>>8) << (2 * (i8 % 4))
				qs[32+i8] = signs[k]
			}
			scales[ib] = scale
			maxScale = cmax(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 31
		binary.LittleEndian.PutUint16(y, floatToHalf(d*0.9875))
		id := 1 / d
		iqPackNibbles(sc, scales[:], id)
	}
}
