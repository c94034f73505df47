package quantize

import "encoding/binary"

// Encoders of IQ3_XXS and IQ3_S: ggml's quantize_row_iq3_xxs_impl (grid
// size 256) and quantize_row_iq3_s_impl (block size 32), operation for
// operation. Without importance weights a value's weight is x*x.

// iq3GridSearch is the scale search of the IQ3 encoders over one group of
// 32 values (eight grid groups of 4): trial scales (max/15 apart by 0.2
// steps, from -lo to lo), the best fit kept, then the groups off the grid
// re-fitted at that scale (all groups when refitAll, as IQ3_S does). It
// returns the scale and leaves the codes in L.
func iq3GridSearch(s *iqSearch, weight, waux, xval []float32, L []int8, mx float32, lo int, onGridInit, refitAll bool) float32 {
	const kMaxQ = 8
	var laux [32]int8
	var onGrid, onGridAux [8]bool
	best := float32(0)
	scale := mx / (2*kMaxQ - 1)
	for k := range onGrid {
		onGrid[k] = onGridInit
	}
	for is := -lo; is <= lo; is++ {
		id := (float32(2*kMaxQ-1) + float32(float32(is)*0.2)) / mx
		thisScale := 1 / id
		for k := 0; k < 8; k++ {
			u := s.iqRoundL(laux[4*k:], xval[4*k:], id, kMaxQ-1)
			onGridAux[k] = true
			if s.kmap[u] < 0 {
				onGridAux[k] = false
				s.bestNeighbour(u, xval[4*k:], waux[4*k:], thisScale, laux[4*k:])
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
	off := 0
	for _, g := range onGrid {
		if !g {
			off++
		}
	}
	if off > 0 && scale > 0 {
		id := 1 / scale
		for k := 0; k < 8; k++ {
			if onGrid[k] && !refitAll {
				continue
			}
			u := s.iqRoundL(L[4*k:], xval[4*k:], id, kMaxQ-1)
			gi := int(s.kmap[u])
			if gi < 0 {
				gi = s.bestNeighbour(u, xval[4*k:], waux[4*k:], scale, L[4*k:])
			}
			s.setL(L[4*k:], gi)
		}
		sumqx, sumq2 := iqFitSums(weight, xval, L)
		if sumq2 > 0 {
			scale = sumqx / sumq2
		}
	}
	return scale
}

// iq3Weights writes the weights and their square roots of one group.
func iq3Weights(weight, waux, xb, qw []float32, sigma2 float32) {
	if qw != nil {
		iqImportance(weight, xb, qw, sigma2)
	} else {
		iqSquares(weight, xb)
	}
	for i := range waux {
		waux[i] = kSqrt(weight[i])
	}
}

func encodeIQ3XXS(dst []byte, x, qw []float32) {
	s := iq3xxsSearch.tables()
	var scales [8]float32
	var weight, xval, waux [32]float32
	var L [32]int8
	var signs [4]uint8
	for ibl := 0; ibl < len(x)/256; ibl++ {
		y := dst[ibl*iq3xxsBytes : (ibl+1)*iq3xxsBytes]
		clear(y)
		q3 := y[2:]
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := 2 * iqSumX2(xbl) / 256
		for ib := 0; ib < 8; ib++ {
			xb := xbl[32*ib : 32*ib+32]
			var qwb []float32
			if qw != nil {
				qwb = qw[256*ibl+32*ib:]
			}
			iq3Weights(weight[:], waux[:], xb, qwb, sigma2)
			for k := 0; k < 4; k++ {
				signs[k] = iqEvenSigns(xval[8*k:], xb[8*k:], weight[8*k:])
			}
			mx := iqGroupMax(xval[:])
			L = [32]int8{}
			if mx < iqEpsIQ3XXS {
				scales[ib] = 0
				continue
			}
			scale := iq3GridSearch(s, weight[:], waux[:], xval[:], L[:], mx, 15, true, false)
			if scale < 0 {
				scale = -scale
				for k := range signs {
					signs[k] = ^signs[k] & 127
				}
			}
			for k := 0; k < 8; k++ {
				q3[8*ib+k] = uint8(s.iqGridIndex(L[4*k:]))
			}
			ss := uint32(signs[0]) | uint32(signs[1])<<7 | uint32(signs[2])<<14 | uint32(signs[3])<<21
			binary.LittleEndian.PutUint32(q3[64+4*ib:], ss)
			scales[ib] = scale
			maxScale = cmax(maxScale, scale)
		}
		if maxScale == 0 {
			clear(q3)
			continue
		}
		d := maxScale / 31
		binary.LittleEndian.PutUint16(y, floatToHalf(d*1.0125))
		id := 1 / d
		for ib := 0; ib < 8; ib++ {
			p := q3[64+4*ib:]
			binary.LittleEndian.PutUint32(p, binary.LittleEndian.Uint32(p)|uint32(iqScaleCode(id, scales[ib], 15))<<28)
		}
	}
}

func encodeIQ3S(dst []byte, x, qw []float32) {
	s := iq3sSearch.tables()
	var scales [8]float32
	var weight, xval, waux [32]float32
	var L [32]int8
	var signs [4]uint8
	for ibl := 0; ibl < len(x)/256; ibl++ {
		y := dst[ibl*iq3sBytes : (ibl+1)*iq3sBytes]
		clear(y)
		qs, qh, sg, sc := y[2:66], y[66:74], y[74:106], y[106:110]
		done := 0 // groups encoded so far
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := 2 * iqSumX2(xbl) / 256
		for ib := 0; ib < 8; ib++ {
			xb := xbl[32*ib : 32*ib+32]
			var qwb []float32
			if qw != nil {
				qwb = qw[256*ibl+32*ib:]
			}
			iq3Weights(weight[:], waux[:], xb, qwb, sigma2)
			for k := 0; k < 4; k++ {
				signs[k] = iqAllSigns(xval[8*k:], xb[8*k:])
			}
			mx := iqGroupMax(xval[:])
			L = [32]int8{}
			if mx == 0 {
				scales[ib] = 0
				continue
			}
			scale := iq3GridSearch(s, weight[:], waux[:], xval[:], L[:], mx, 9, false, true)
			if scale < 0 {
				scale = -scale
				for k := range signs {
					signs[k] = ^signs[k]
				}
			}
			// ggml advances its qs and signs pointers only past groups it
			// encodes: after an all-zero group the later groups' bytes sit
			// one group early (qh is indexed by group).
			for k := 0; k < 8; k++ {
				gi := s.iqGridIndex(L[4*k:])
				qs[8*done+k] = uint8(gi)
				qh[ib] |= uint8(gi>>8) << k
			}
			copy(sg[4*done:4*done+4], signs[:])
			done++
			scales[ib] = scale
			maxScale = cmax(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 31
		binary.LittleEndian.PutUint16(y, floatToHalf(d*1.033))
		id := 1 / d
		for ib := 0; ib < 8; ib += 2 {
			l1 := iqScaleCode(id, scales[ib], 15)
			l2 := iqScaleCode(id, scales[ib+1], 15)
			sc[ib/2] = uint8(l1 | l2<<4)
		}
	}
}
