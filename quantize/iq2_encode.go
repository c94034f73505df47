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

// iq2GridSearch is the scale search shared by IQ2_XS and IQ2_S (16 values,
// two grid groups): 19 trial scales around max/5, the best fit kept, then
// the groups that fell off the grid re-fitted at that scale. It returns the
// scale and leaves the codes in L.
func iq2GridSearch(s *iqSearch, weight, waux, xval []float32, L []int8, mx float32) float32 {
	const kMaxQ = 3
	var laux [16]int8
	var onGrid, onGridAux [2]bool
	best := float32(0)
	scale := mx / (2*kMaxQ - 1)
	onGrid = [2]bool{true, true}
	for is := -9; is <= 9; is++ {
		id := (float32(2*kMaxQ-1) + float32(float32(is)*0.1)) / mx
		thisScale := 1 / id
		for k := 0; k < 2; k++ {
			u := s.iqRoundL(laux[8*k:], xval[8*k:], id, kMaxQ-1)
			onGridAux[k] = true
			if s.kmap[u] < 0 {
				onGridAux[k] = false
				s.bestNeighbour(u, xval[8*k:], waux[8*k:], thisScale, laux[8*k:])
			}
		}
		sumqx, sumq2 := iqFitSums(weight, xval, laux[:])
		if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
			scale = sumqx / sumq2
			best = scale * sumqx
			copy(L, laux[:])
			onGrid = onGridAux
		}
	}
	if (!onGrid[0] || !onGrid[1]) && scale > 0 {
		id := 1 / scale
		for k := 0; k < 2; k++ {
			if onGrid[k] {
				continue
			}
			u := s.iqRoundL(L[8*k:], xval[8*k:], id, kMaxQ-1)
			if s.kmap[u] < 0 {
				s.bestNeighbour(u, xval[8*k:], waux[8*k:], scale, L[8*k:])
			}
		}
		sumqx, sumq2 := iqFitSums(weight, xval, L)
		if sumq2 > 0 {
			scale = sumqx / sumq2
		}
	}
	return scale
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
			iqImportance(weight[:], xb, qw[256*ibl+32*ib:], sigma2)
			for i := range waux {
				waux[i] = kSqrt(weight[i])
			}
			for k := 0; k < 4; k++ {
				signs[k] = iqEvenSigns(xval[8*k:], xb[8*k:], weight[8*k:])
			}
			mx := iqGroupMax(xval[:])
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
			iqImportance(weight[:], xb, qw[256*ibl+16*ib:], sigma2)
			for i := range waux {
				waux[i] = kSqrt(weight[i])
			}
			for k := 0; k < 2; k++ {
				signs[k] = iqEvenSigns(xval[8*k:], xb[8*k:], weight[8*k:])
			}
			mx := iqGroupMax(xval[:])
			L = [16]int8{}
			if mx < kGroupMaxEps {
				scales[ib] = 0
				continue
			}
			scale := iq2GridSearch(s, weight[:], waux[:], xval[:], L[:], mx)
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
		sc := y[66:74]
		for ib := 0; ib < 16; ib++ {
			l := uint8(iqScaleCode(id, scales[ib], 15))
			if ib%2 == 0 {
				sc[ib/2] = l
			} else {
				sc[ib/2] |= l << 4
			}
		}
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
			if qw != nil {
				iqImportance(weight[:], xb, qw[256*ibl+16*ib:], sigma2)
			} else {
				for i := range weight {
					weight[i] = float32(0.25*sigma2) + float32(xb[i]*xb[i])
				}
			}
			for i := range waux {
				waux[i] = kSqrt(weight[i])
			}
			for k := 0; k < 2; k++ {
				signs[k] = iqAllSigns(xval[8*k:], xb[8*k:])
			}
			mx := iqGroupMax(xval[:])
			L = [16]int8{}
			if mx < iqEpsIQ2S {
				scales[ib] = 0
				continue
			}
			scale := iq2GridSearch(s, weight[:], waux[:], xval[:], L[:], mx)
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
		for ib := 0; ib < 16; ib++ {
			l := uint8(iqScaleCode(id, scales[ib], 15))
			if ib%2 == 0 {
				sc[ib/2] = l
			} else {
				sc[ib/2] |= l << 4
			}
		}
	}
}
