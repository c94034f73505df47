package kernel

import "math"

// This file is the pure-Go reference of the dynamics (the "generic" path).
// It fixes the canonical order of every floating-point operation; the SIMD
// implementations follow it exactly, so all paths give bit-identical D_T.
//
// Canonical order, in float32 with round-to-nearest-even throughout:
//   - A tile is stored row-major with its row length padded to cp, a multiple
//     of 8, with zero conductivity in the padding. Node vectors are padded to
//     multiples of 8 (cp for inputs, rp for outputs) with zeros.
//   - "lanes" means 8 accumulators, lane l taking elements 8j+l in order of j;
//     tree(l) = ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
//   - A row reduction is tree(lanes over the row); a tile reduction is the
//     sequential scalar sum over rows, in row order, of the row reductions;
//     a column reduction is the sequential sum over rows, starting from +0.
//   - fma(a, b, c) is the correctly rounded a*b+c (fma32 here, vfmadd in C).
//   - Every other product, sum, quotient and square root is rounded once.

// vecCap is the capacity of each node vector in the work area.
const vecCap = 256

// Node vectors in the work area: index k occupies [k*vecCap, (k+1)*vecCap).
const (
	vDegIn = iota
	vInvIn
	vXIn
	vRIn
	vZIn
	vDirIn
	vApIn
	vCacc
	vDegOut
	vInvOut
	vXOut
	vROut
	vZOut
	vDirOut
	vApOut
	vDpOut
	numVec
)

// workLen is the number of float32s in the shared work area.
const workLen = numVec * vecCap

// job describes one tile in the arena. Its layout is mirrored by phys_job in
// the C code (offsets in float32 units, no pointers, so it may be passed to C).
type job struct {
	D, BIn, BOut, Work int64 // arena offsets: D (rows x cp), b (cp, rp), work area
	Rows, Cp, Rp, N    int32 // rows, padded columns, padded rows, n = number of edges (D0 != 0)
	SumD               float32
	_                  int32
}

// coreParams is the derived form of Params used by the cores (mirrors phys_params).
type coreParams struct {
	Steps, CGIters int32
	GWhole, GTop   int32
	GBits          uint32
	C1, C2         float32 // 1-h, 2h
	_              int32
}

// fma32 returns a*b+c rounded once to float32, like C's fmaf. The product is
// exact in float64; the sum is rounded to odd in float64 (TwoSum error term),
// after which rounding to float32 is correct (53 >= 24+2).
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	cc := float64(c)
	s := float64(p + cc)
	bv := float64(s - p)
	e := float64(p-float64(s-bv)) + float64(cc-bv)
	if e != 0 {
		bits := math.Float64bits(s)
		if bits&1 == 0 {
			if (e > 0) == (s > 0) {
				bits++
			} else {
				bits--
			}
			s = math.Float64frombits(bits)
		}
	}
	return float32(s)
}

func tree(l *[8]float32) float32 {
	return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// dotGo: lanes of fma(a, b, acc), then tree.
func dotGo(a, b []float32) float32 {
	var l [8]float32
	for j := 0; j+8 <= len(a); j += 8 {
		for k := 0; k < 8; k++ {
			l[k] = fma32(a[j+k], b[j+k], l[k])
		}
	}
	return tree(&l)
}

// sumGo: lanes of acc + a, then tree.
func sumGo(a []float32) float32 {
	var l [8]float32
	for j := 0; j+8 <= len(a); j += 8 {
		for k := 0; k < 8; k++ {
			l[k] += a[j+k]
		}
	}
	return tree(&l)
}

// invGo sets inv = 1/deg where deg > 0 and the quotient is finite, else 0,
// and returns the number of non-zero entries.
func invGo(deg, inv []float32) int32 {
	n := int32(0)
	for i, d := range deg {
		v := float32(0)
		if d > 0 {
			if q := 1 / d; q <= math.MaxFloat32 {
				v = q
				n++
			}
		}
		inv[i] = v
	}
	return n
}

// powG returns q^g as q^whole times the square-root chain: s = q; for
// k = 1..top: s = sqrt(s); if bit k is set, acc = acc*s.
func powG(q float32, p *coreParams) float32 {
	acc := q
	for j := int32(1); j < p.GWhole; j++ {
		acc = float32(acc * q)
	}
	s := q
	for k := int32(1); k <= p.GTop; k++ {
		s = sqrt32(s)
		if p.GBits>>(k-1)&1 != 0 {
			acc = float32(acc * s)
		}
	}
	return acc
}

// runGo runs the dynamics on one job: D (the normalized D0) becomes D_T and
// j.SumD the tile reduction of D_T.
func runGo(a []float32, j *job, p *coreParams) {
	R, cp, rp := int(j.Rows), int(j.Cp), int(j.Rp)
	D := a[j.D : j.D+int64(R*cp)]
	bIn := a[j.BIn : j.BIn+int64(cp)]
	bOut := a[j.BOut : j.BOut+int64(rp)]
	w := a[j.Work : j.Work+workLen]
	clear(w)
	vi := func(k int) []float32 { return w[k*vecCap : k*vecCap+cp] }
	vo := func(k int) []float32 { return w[k*vecCap : k*vecCap+rp] }
	degIn, invIn, xIn, rIn, zIn, dirIn, apIn, cacc := vi(vDegIn), vi(vInvIn), vi(vXIn), vi(vRIn), vi(vZIn), vi(vDirIn), vi(vApIn), vi(vCacc)
	degOut, invOut, xOut, rOut, zOut, dirOut, apOut, dpOut := vo(vDegOut), vo(vInvOut), vo(vXOut), vo(vROut), vo(vZOut), vo(vDirOut), vo(vApOut), vo(vDpOut)

	// Degrees of D0.
	for o := 0; o < R; o++ {
		row := D[o*cp : o*cp+cp]
		var l [8]float32
		for i := 0; i < cp; i += 8 {
			for k := 0; k < 8; k++ {
				l[k] += row[i+k]
				degIn[i+k] += row[i+k]
			}
		}
		degOut[o] = tree(&l)
	}

	n := float32(j.N)
	T, K := int(p.Steps), int(p.CGIters)
	var sumD float32
	for t := 1; t <= T; t++ {
		nact := invGo(degIn, invIn) + invGo(degOut, invOut)
		if t == 1 {
			copy(rIn, bIn)
			copy(rOut, bOut)
		} else {
			for i := range rIn {
				rIn[i] = bIn[i] - apIn[i]
			}
			for o := range rOut {
				rOut[o] = bOut[o] - apOut[o]
			}
		}
		for i := range zIn {
			zIn[i] = float32(invIn[i] * rIn[i])
		}
		for o := range zOut {
			zOut[o] = float32(invOut[o] * rOut[o])
		}
		copy(dirIn, zIn)
		copy(dirOut, zOut)
		rz := dotGo(rIn, zIn) + dotGo(rOut, zOut)
		for k := 1; k <= K; k++ {
			if !(rz > 0) {
				break
			}
			// ap = L dir.
			clear(cacc)
			for o := 0; o < R; o++ {
				row := D[o*cp : o*cp+cp]
				u := dirOut[o]
				var l [8]float32
				for i := 0; i < cp; i += 8 {
					for m := 0; m < 8; m++ {
						l[m] = fma32(row[i+m], dirIn[i+m], l[m])
						cacc[i+m] = fma32(row[i+m], u, cacc[i+m])
					}
				}
				dpOut[o] = tree(&l)
			}
			for i := range apIn {
				apIn[i] = fma32(degIn[i], dirIn[i], -cacc[i])
			}
			for o := range apOut {
				apOut[o] = fma32(degOut[o], dirOut[o], -dpOut[o])
			}
			pap := dotGo(dirIn, apIn) + dotGo(dirOut, apOut)
			if !(pap > 0) {
				break
			}
			alpha := rz / pap
			for i := range xIn {
				xIn[i] = fma32(alpha, dirIn[i], xIn[i])
				rIn[i] = fma32(-alpha, apIn[i], rIn[i])
			}
			for o := range xOut {
				xOut[o] = fma32(alpha, dirOut[o], xOut[o])
				rOut[o] = fma32(-alpha, apOut[o], rOut[o])
			}
			if k == K {
				break
			}
			for i := range zIn {
				zIn[i] = float32(invIn[i] * rIn[i])
			}
			for o := range zOut {
				zOut[o] = float32(invOut[o] * rOut[o])
			}
			rzn := dotGo(rIn, zIn) + dotGo(rOut, zOut)
			beta := rzn / rz
			for i := range dirIn {
				dirIn[i] = fma32(beta, dirIn[i], zIn[i])
			}
			for o := range dirOut {
				dirOut[o] = fma32(beta, dirOut[o], zOut[o])
			}
			rz = rzn
		}

		// Keep x in the zero-mean subspace over the active nodes.
		if nact > 0 {
			shift := (sumGo(xIn) + sumGo(xOut)) / float32(nact)
			for i := range xIn {
				if invIn[i] != 0 {
					xIn[i] -= shift
				}
			}
			for o := range xOut {
				if invOut[o] != 0 {
					xOut[o] -= shift
				}
			}
		}

		// Mean absolute flux.
		var sumQ float32
		for o := 0; o < R; o++ {
			row := D[o*cp : o*cp+cp]
			u := xOut[o]
			var l [8]float32
			for i := 0; i < cp; i += 8 {
				for m := 0; m < 8; m++ {
					l[m] += abs32(float32(row[i+m] * float32(xIn[i+m]-u)))
				}
			}
			sumQ += tree(&l)
		}
		iq := n / sumQ
		if !(iq <= math.MaxFloat32) {
			iq = 0
		}

		// Adapt, fused with the degrees of the new D and (unless last) L x.
		last := t == T
		if !last {
			clear(degIn)
			clear(cacc)
		}
		for o := 0; o < R; o++ {
			row := D[o*cp : o*cp+cp]
			u := xOut[o]
			var ls, ld [8]float32
			for i := 0; i < cp; i += 8 {
				for m := 0; m < 8; m++ {
					d := row[i+m]
					q := float32(abs32(float32(d*float32(xIn[i+m]-u))) * iq)
					qg := powG(q, p)
					f := qg / float32(1+qg)
					dn := fma32(p.C2, f, float32(p.C1*d))
					row[i+m] = dn
					ls[m] += dn
					if !last {
						ld[m] = fma32(dn, xIn[i+m], ld[m])
						degIn[i+m] += dn
						cacc[i+m] = fma32(dn, u, cacc[i+m])
					}
				}
			}
			if last {
				sumD += tree(&ls)
			} else {
				degOut[o] = tree(&ls)
				dpOut[o] = tree(&ld)
			}
		}
		if !last {
			for i := range apIn {
				apIn[i] = fma32(degIn[i], xIn[i], -cacc[i])
			}
			for o := range apOut {
				apOut[o] = fma32(degOut[o], xOut[o], -dpOut[o])
			}
		}
	}
	j.SumD = sumD
}
