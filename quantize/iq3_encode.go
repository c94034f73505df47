package quantize

import "encoding/binary"

// Encoders of IQ3_XXS and IQ3_S: ggml's quantize_row_iq3_xxs_impl (grid
// size 256) and quantize_row_iq3_s_impl (block size 32), operation for
// operation. Without importance weights a value's weight is x*x.

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
			mx := iqPrepGroup(weight[:], waux[:], xval[:], xb, qwb, sigma2, false, true, signs[:])
			L = [32]int8{}
			if mx < iqEpsIQ3XXS {
				scales[ib] = 0
				continue
			}
			scale := iqGridSearch(s, weight[:], waux[:], xval[:], L[:], mx, 8, 0.2, 15, true, false)
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
			mx := iqPrepGroup(weight[:], waux[:], xval[:], xb, qwb, sigma2, false, false, signs[:])
			L = [32]int8{}
			if mx == 0 {
				scales[ib] = 0
				continue
			}
			scale := iqGridSearch(s, weight[:], waux[:], xval[:], L[:], mx, 8, 0.2, 9, false, true)
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
		iqPackNibbles(sc, scales[:], id)
	}
}
