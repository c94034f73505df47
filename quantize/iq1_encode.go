package quantize

import (
	"encoding/binary"
	"math"
	"slices"
)

// Encoders of IQ1_S and IQ1_M: ggml's quantize_row_iq1_s_impl and
// quantize_row_iq1_m_impl, operation for operation. Each group's values are
// sorted, every split into three runs (codes -1, 0, 1, shifted by -delta or
// +delta) is scored exactly, and the codes are then moved to the nearest
// grid entry when they are off the grid.

var (
	iq1XP = [3]float32{-1 + iq1Delta, iq1Delta, 1 + iq1Delta}
	iq1XM = [3]float32{-1 - iq1Delta, -iq1Delta, 1 - iq1Delta}
)

// iq1Order returns the indices of xb ordered by value, equal values in
// index order (glibc's qsort of these small arrays is a stable merge sort).
func iq1Order(idx []int, xb []float32) {
	for j := range idx {
		idx[j] = j
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case xb[a] < xb[b]:
			return -1
		case xb[a] > xb[b]:
			return 1
		}
		return 0
	})
}

// iq1SetRuns gives the sorted values idx[:i1] code 0, idx[i1:i2] code 1
// and the rest code 2; for a negative scale it mirrors the codes (2-l) and
// reports that the caller must negate the scale and flip the shifts.
func iq1SetRuns(L []int8, idx []int, i1, i2 int, scale float32) (mirrored bool) {
	for j, i := range idx {
		switch {
		case j < i1:
			L[i] = 0
		case j < i2:
			L[i] = 1
		default:
			L[i] = 2
		}
	}
	if scale < 0 {
		for j := range L {
			L[j] = 2 - L[j]
		}
		return true
	}
	return false
}

// iq1BestNeighbour2 is ggml's iq1_find_best_neighbour2: the neighbour of
// the off-grid point u nearest to xb at scale, values xx[l]; its l go to L.
// ggml falls back to the whole grid when no distance is below FLT_MAX (only
// non-finite values get there), reading past its arrays; this takes the
// first neighbour then.
func iq1BestNeighbour2(s *iqSearch, u int, xb, w []float32, scale float32, xx *[3]float32, L []int8) int {
	best := float32(math.MaxFloat32)
	list := s.neighbours(u)
	gi := int(list[0])
	x, ww := (*[8]float32)(xb), (*[8]float32)(w)
	// The scaled values of the three codes, as ggml computes scale*q.
	sq := [3]float32{float32(scale * xx[0]), float32(scale * xx[1]), float32(scale * xx[2])}
	for _, j := range list {
		l := (*[8]uint8)(s.gridL[8*int(j):])
		var d2 float32
		for i := 0; i < 8; i++ {
			diff := sq[l[i]] - x[i]
			d2 += float32(float32(ww[i]*diff) * diff)
		}
		if d2 < best {
			best, gi = d2, int(j)
		}
	}
	s.setL(L, gi)
	return gi
}

// iq1PlaceOnGrid looks up the grid entry of each group of 8 codes of L
// (moving off-grid groups to their best neighbour) and, when any moved,
// refits the scale; xxOf gives the values of group k.
func iq1PlaceOnGrid(s *iqSearch, xb, weight []float32, L []int8, index []uint16, scale float32, xxOf func(k int) *[3]float32) float32 {
	allOnGrid := true
	for k := range index {
		u := s.iqIndex(L[8*k:])
		gi := int(s.kmap[u])
		if gi < 0 {
			allOnGrid = false
			gi = iq1BestNeighbour2(s, u, xb[8*k:], weight[8*k:], scale, xxOf(k), L[8*k:])
		}
		index[k] = uint16(gi)
	}
	if !allOnGrid {
		var sumqx, sumq2 float32
		for k := range index {
			xx := xxOf(k)
			g := s.grid[index[k]]
			for j := 0; j < 8; j++ {
				w := weight[8*k+j]
				q := xx[(int8(g>>(8*j))-1)/2]
				sumqx += float32(float32(w*q) * xb[8*k+j])
				sumq2 += float32(float32(w*q) * q)
			}
		}
		if sumqx > 0 && sumq2 > 0 {
			scale = sumqx / sumq2
		}
	}
	return scale
}

func encodeIQ1S(dst []byte, x, qw []float32) {
	s := iq1Search.tables()
	const bs = 32
	var scales [8]float32
	var shifts [8]int
	var weight [bs]float32
	var L [bs]int8
	var sumx, sumw [bs + 1]float32
	var idx [bs]int
	var index [bs / 8]uint16
	for ibl := 0; ibl < len(x)/256; ibl++ {
		y := dst[ibl*iq1sBytes : (ibl+1)*iq1sBytes]
		clear(y)
		qs := y[2:34]
		var qh [8]uint16
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := 2 * iqSumX2(xbl) / 256
		for ib := 0; ib < 256/bs; ib++ {
			xb := xbl[bs*ib : bs*ib+bs]
			iqImportance(weight[:], xb, qw[256*ibl+bs*ib:], sigma2)
			mx := kAbs(xb[0])
			for _, v := range xb[1:] {
				mx = cmax(mx, kAbs(v))
			}
			if mx < iqEpsIQ1S {
				scales[ib], shifts[ib] = 0, 1
				continue
			}
			iq1Order(idx[:], xb)
			for j := 0; j < bs; j++ {
				i := idx[j]
				sumx[j+1] = sumx[j] + float32(weight[i]*xb[i])
				sumw[j+1] = sumw[j] + weight[i]
			}
			bestScore, scale := float32(-math.MaxFloat32), mx
			besti1, besti2, bestShift := -1, -1, 0
			for i1 := 0; i1 <= bs; i1++ {
				for i2 := i1; i2 <= bs; i2++ {
					a, b, c := sumx[i1]-sumx[0], sumx[i2]-sumx[i1], sumx[bs]-sumx[i2]
					wa, wb, wc := sumw[i1]-sumw[0], sumw[i2]-sumw[i1], sumw[bs]-sumw[i2]
					for _, sh := range [2]int{1, -1} {
						xx := &iq1XP
						if sh < 0 {
							xx = &iq1XM
						}
						sumqx := float32(float32(a*xx[0])+float32(b*xx[1])) + float32(c*xx[2])
						sumq2 := float32(float32(float32(wa*xx[0])*xx[0])+float32(float32(wb*xx[1])*xx[1])) + float32(float32(wc*xx[2])*xx[2])
						if sumq2 > 0 && float32(sumqx*sumqx) > float32(bestScore*sumq2) {
							scale = sumqx / sumq2
							bestScore = scale * sumqx
							besti1, besti2, bestShift = i1, i2, sh
						}
					}
				}
			}
			if besti1 < 0 || besti2 < 0 || bestShift == 0 {
				scales[ib], shifts[ib] = 0, 1
				continue
			}
			if iq1SetRuns(L[:], idx[:], besti1, besti2, scale) {
				scale, bestShift = -scale, -bestShift
			}
			xx := &iq1XP
			if bestShift != 1 {
				xx = &iq1XM
			}
			scale = iq1PlaceOnGrid(s, xb, weight[:], L[:], index[:], scale, func(int) *[3]float32 { return xx })
			var h uint16
			for k := 0; k < bs/8; k++ {
				qs[bs/8*ib+k] = uint8(index[k])
				h |= index[k] >> 8 << (3 * k)
			}
			qh[ib] = h
			scales[ib], shifts[ib] = scale, bestShift
			maxScale = cmax(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 15
		binary.LittleEndian.PutUint16(y, floatToHalf(d*1.125))
		id := 1 / d
		for ib := 0; ib < 8; ib++ {
			l := iqScaleCode(id, scales[ib], 7)
			if shifts[ib] == -1 {
				l |= 8
			}
			qh[ib] |= uint16(l) << 12
		}
		for ib, v := range qh {
			binary.LittleEndian.PutUint16(y[34+2*ib:], v)
		}
	}
}

// encodeIQ1M follows ggml's quantize_row_iq1_m_impl step for step, which is why it is long.
func encodeIQ1M(dst []byte, x, qw []float32) {
	s := iq1Search.tables()
	const bs = 16
	masks := [4]uint8{0x00, 0x80, 0x08, 0x88}
	var scales [16]float32
	var shifts [16]int
	var weight [bs]float32
	var L [bs]int8
	var idx [bs]int
	var index [bs / 8]uint16
	var terms [bs][3][8]float32 // per sorted value and run: its terms of the eight sums
	// xxOf gives group k's values for shift code sh (bit 1: first group
	// shifted down, bit 0: second group).
	xxOf := func(sh, k int) *[3]float32 {
		if k == 0 && sh < 2 || k != 0 && sh%2 == 0 {
			return &iq1XP
		}
		return &iq1XM
	}
	weights := func(xb []float32, qwb []float32, sigma2 float32) {
		if qw != nil {
			iqImportance(weight[:], xb, qwb, sigma2)
		} else {
			iqSquares(weight[:], xb)
		}
	}
	for ibl := 0; ibl < len(x)/256; ibl++ {
		y := dst[ibl*iq1mBytes : (ibl+1)*iq1mBytes]
		clear(y)
		qs, qh := y[0:32], y[32:48]
		var sc [4]uint16
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := 2 * iqSumX2(xbl) / 256
		qwOf := func(ib int) []float32 {
			if qw == nil {
				return nil
			}
			return qw[256*ibl+bs*ib:]
		}
		for ib := 0; ib < 256/bs; ib++ {
			xb := xbl[bs*ib : bs*ib+bs]
			weights(xb, qwOf(ib), sigma2)
			mx := kAbs(xb[0])
			for _, v := range xb[1:] {
				mx = cmax(mx, kAbs(v))
			}
			if mx < iqEpsIQ1M {
				scales[ib], shifts[ib] = 0, 0
				continue
			}
			iq1Order(idx[:], xb)
			// ggml sums, for every split (i1, i2), each of the eight sums
			// over the sorted values in order, from zero. The terms of
			// value j in run r are the same for every split, and the sums
			// of two splits agree on their common prefix, so both are
			// computed once; each sum is still the same additions in the
			// same order.
			for j := 0; j < bs; j++ {
				i := idx[j]
				for r := 0; r < 3; r++ {
					w, p, m := weight[i], iq1XP[r], iq1XM[r]
					wpx, wmx := float32(float32(w*p)*xb[i]), float32(float32(w*m)*xb[i])
					wpp, wmm := float32(float32(w*p)*p), float32(float32(w*m)*m)
					if i < bs/2 {
						terms[j][r] = [8]float32{wpx, wpx, wmx, wmx, wpp, wpp, wmm, wmm}
					} else {
						terms[j][r] = [8]float32{wpx, wmx, wpx, wmx, wpp, wmm, wpp, wmm}
					}
				}
			}
			bestScore, scale := float32(-math.MaxFloat32), mx
			besti1, besti2, bestK := -1, -1, -1
			var low [8]float32 // run 0 over j < i1
			for i1 := 0; i1 <= bs; i1++ {
				if i1 > 0 {
					addTerms(&low, &terms[i1-1][0])
				}
				mid := low // then run 1 over i1 <= j < i2
				for i2 := i1; i2 <= bs; i2++ {
					if i2 > i1 {
						addTerms(&mid, &terms[i2-1][1])
					}
					sum := mid // then run 2 over j >= i2
					for j := i2; j < bs; j++ {
						addTerms(&sum, &terms[j][2])
					}
					for k := 0; k < 4; k++ {
						sumqx, sumq2 := sum[k], sum[4+k]
						if sumq2 > 0 && float32(sumqx*sumqx) > float32(bestScore*sumq2) {
							scale = sumqx / sumq2
							bestScore = scale * sumqx
							besti1, besti2, bestK = i1, i2, k
						}
					}
				}
			}
			if besti1 < 0 || besti2 < 0 || bestK < 0 {
				scales[ib], shifts[ib] = 0, 0
				continue
			}
			if iq1SetRuns(L[:], idx[:], besti1, besti2, scale) {
				scale, bestK = -scale, 3-bestK
			}
			k0 := bestK
			scale = iq1PlaceOnGrid(s, xb, weight[:], L[:], index[:], scale, func(k int) *[3]float32 { return xxOf(k0, k) })
			qs[2*ib] = uint8(index[0])
			qs[2*ib+1] = uint8(index[1])
			qh[ib] = uint8(index[0]>>8) | uint8(index[1]>>8)<<4
			scales[ib], shifts[ib] = scale, bestK
			maxScale = cmax(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 15
		id := 1 / d
		var sumqxF, sumq2F float32
		for ib := 0; ib < 256/bs; ib++ {
			l := iqScaleCode(id, scales[ib], 7)
			sc[ib/4] |= uint16(l) << (3 * (ib % 4))
			qh[ib] |= masks[shifts[ib]]
			xb := xbl[bs*ib : bs*ib+bs]
			weights(xb, qwOf(ib), sigma2)
			for k := 0; k < bs/8; k++ {
				xx := xxOf(shifts[ib], k)
				gi := int(qs[2*ib+k]) + (int(qh[ib])<<(8-4*k))&0x700
				g := s.grid[gi]
				for j := 0; j < 8; j++ {
					w := weight[8*k+j]
					q := xx[(int8(g>>(8*j))-1)/2] * float32(2*l+1)
					sumqxF += float32(float32(w*q) * xb[8*k+j])
					sumq2F += float32(float32(w*q) * q)
				}
			}
		}
		if sumq2F > 0 {
			d = sumqxF / sumq2F
		}
		h := floatToHalf(d * 1.1125)
		sc[0] |= (h & 0x000f) << 12
		sc[1] |= (h & 0x00f0) << 8
		sc[2] |= (h & 0x0f00) << 4
		sc[3] |= h & 0xf000
		for i, v := range sc {
			binary.LittleEndian.PutUint16(y[48+2*i:], v)
		}
	}
}

// addTerms adds t to s element by element.
func addTerms(s, t *[8]float32) {
	for k := range s {
		s[k] += t[k]
	}
}
