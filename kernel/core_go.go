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

// goCore holds the views of one job's D and node vectors for runGo.
type goCore struct {
	R, cp, rp int
	D         []float32
	bIn, bOut []float32
	// Input-node vectors (cp long) and output-node vectors (rp long).
	degIn, invIn, xIn, rIn, zIn, dirIn, apIn, cacc         []float32
	degOut, invOut, xOut, rOut, zOut, dirOut, apOut, dpOut []float32
}

// newGoCore returns the views of job j in arena a, with the work area zeroed.
func newGoCore(a []float32, j *job) *goCore {
	R, cp, rp := int(j.Rows), int(j.Cp), int(j.Rp)
	w := a[j.Work : j.Work+workLen]
	clear(w)
	vi := func(k int) []float32 { return w[k*vecCap : k*vecCap+cp] }
	vo := func(k int) []float32 { return w[k*vecCap : k*vecCap+rp] }
	return &goCore{
		R: R, cp: cp, rp: rp,
		D:   a[j.D : j.D+int64(R*cp)],
		bIn: a[j.BIn : j.BIn+int64(cp)], bOut: a[j.BOut : j.BOut+int64(rp)],
		degIn: vi(vDegIn), invIn: vi(vInvIn), xIn: vi(vXIn), rIn: vi(vRIn), zIn: vi(vZIn),
		dirIn: vi(vDirIn), apIn: vi(vApIn), cacc: vi(vCacc),
		degOut: vo(vDegOut), invOut: vo(vInvOut), xOut: vo(vXOut), rOut: vo(vROut), zOut: vo(vZOut),
		dirOut: vo(vDirOut), apOut: vo(vApOut), dpOut: vo(vDpOut),
	}
}

// runGo runs the dynamics on one job: D (the normalized D0) becomes D_T and
// j.SumD the tile reduction of D_T.
func runGo(a []float32, j *job, p *coreParams) {
	c := newGoCore(a, j)
	c.degrees()
	n := float32(j.N)
	T := int(p.Steps)
	var sumD float32
	for t := 1; t <= T; t++ {
		nact := invGo(c.degIn, c.invIn) + invGo(c.degOut, c.invOut)
		c.solve(t == 1, int(p.CGIters))
		c.centre(nact)
		iq := n / c.sumFlux()
		if !(iq <= math.MaxFloat32) {
			iq = 0
		}
		sumD = c.adapt(iq, p, t == T)
	}
	j.SumD = sumD
}

// degrees computes the degrees of D0: row lanes and tree, column sums in
// row order.
func (c *goCore) degrees() {
	for o := 0; o < c.R; o++ {
		row := c.D[o*c.cp : o*c.cp+c.cp]
		var l [8]float32
		for i := 0; i < c.cp; i += 8 {
			for k := 0; k < 8; k++ {
				l[k] += row[i+k]
				c.degIn[i+k] += row[i+k]
			}
		}
		c.degOut[o] = tree(&l)
	}
}

// solve runs K Jacobi-PCG iterations on L(D) x = b, warm started from x
// (the residual is b at the first step, b - L x after, with L x left in ap
// by adapt).
func (c *goCore) solve(first bool, K int) {
	if first {
		copy(c.rIn, c.bIn)
		copy(c.rOut, c.bOut)
	} else {
		for i := range c.rIn {
			c.rIn[i] = c.bIn[i] - c.apIn[i]
		}
		for o := range c.rOut {
			c.rOut[o] = c.bOut[o] - c.apOut[o]
		}
	}
	c.precondition()
	copy(c.dirIn, c.zIn)
	copy(c.dirOut, c.zOut)
	rz := dotGo(c.rIn, c.zIn) + dotGo(c.rOut, c.zOut)
	for k := 1; k <= K; k++ {
		if !(rz > 0) {
			break
		}
		c.laplacianDir()
		pap := dotGo(c.dirIn, c.apIn) + dotGo(c.dirOut, c.apOut)
		if !(pap > 0) {
			break
		}
		alpha := rz / pap
		for i := range c.xIn {
			c.xIn[i] = fma32(alpha, c.dirIn[i], c.xIn[i])
			c.rIn[i] = fma32(-alpha, c.apIn[i], c.rIn[i])
		}
		for o := range c.xOut {
			c.xOut[o] = fma32(alpha, c.dirOut[o], c.xOut[o])
			c.rOut[o] = fma32(-alpha, c.apOut[o], c.rOut[o])
		}
		if k == K {
			break
		}
		c.precondition()
		rzn := dotGo(c.rIn, c.zIn) + dotGo(c.rOut, c.zOut)
		beta := rzn / rz
		for i := range c.dirIn {
			c.dirIn[i] = fma32(beta, c.dirIn[i], c.zIn[i])
		}
		for o := range c.dirOut {
			c.dirOut[o] = fma32(beta, c.dirOut[o], c.zOut[o])
		}
		rz = rzn
	}
}

// precondition sets z = inv * r (Jacobi).
func (c *goCore) precondition() {
	for i := range c.zIn {
		c.zIn[i] = float32(c.invIn[i] * c.rIn[i])
	}
	for o := range c.zOut {
		c.zOut[o] = float32(c.invOut[o] * c.rOut[o])
	}
}

// laplacianDir sets ap = L dir.
func (c *goCore) laplacianDir() {
	clear(c.cacc)
	for o := 0; o < c.R; o++ {
		row := c.D[o*c.cp : o*c.cp+c.cp]
		u := c.dirOut[o]
		var l [8]float32
		for i := 0; i < c.cp; i += 8 {
			for m := 0; m < 8; m++ {
				l[m] = fma32(row[i+m], c.dirIn[i+m], l[m])
				c.cacc[i+m] = fma32(row[i+m], u, c.cacc[i+m])
			}
		}
		c.dpOut[o] = tree(&l)
	}
	c.laplacianFinish(c.dirIn, c.dirOut)
}

// laplacianFinish sets ap = deg * v - acc from the accumulated products.
func (c *goCore) laplacianFinish(vIn, vOut []float32) {
	for i := range c.apIn {
		c.apIn[i] = fma32(c.degIn[i], vIn[i], -c.cacc[i])
	}
	for o := range c.apOut {
		c.apOut[o] = fma32(c.degOut[o], vOut[o], -c.dpOut[o])
	}
}

// centre keeps x in the zero-mean subspace over the nact active nodes.
func (c *goCore) centre(nact int32) {
	if nact <= 0 {
		return
	}
	shift := (sumGo(c.xIn) + sumGo(c.xOut)) / float32(nact)
	for i := range c.xIn {
		if c.invIn[i] != 0 {
			c.xIn[i] -= shift
		}
	}
	for o := range c.xOut {
		if c.invOut[o] != 0 {
			c.xOut[o] -= shift
		}
	}
}

// sumFlux returns the tile reduction of the absolute fluxes |D (x_i - x_o)|.
func (c *goCore) sumFlux() float32 {
	var sumQ float32
	for o := 0; o < c.R; o++ {
		row := c.D[o*c.cp : o*c.cp+c.cp]
		u := c.xOut[o]
		var l [8]float32
		for i := 0; i < c.cp; i += 8 {
			for m := 0; m < 8; m++ {
				l[m] += abs32(float32(row[i+m] * float32(c.xIn[i+m]-u)))
			}
		}
		sumQ += tree(&l)
	}
	return sumQ
}

// adapt updates D by the response to the normalized flux (iq = n / sum of
// fluxes), fused with the degrees of the new D and, unless last, L x in ap.
// At the last step it returns the tile reduction of D_T (else 0).
func (c *goCore) adapt(iq float32, p *coreParams, last bool) float32 {
	if !last {
		clear(c.degIn)
		clear(c.cacc)
	}
	var sumD float32
	for o := 0; o < c.R; o++ {
		row := c.D[o*c.cp : o*c.cp+c.cp]
		u := c.xOut[o]
		var ls, ld [8]float32
		for i := 0; i < c.cp; i += 8 {
			for m := 0; m < 8; m++ {
				d := row[i+m]
				q := float32(abs32(float32(d*float32(c.xIn[i+m]-u))) * iq)
				qg := powG(q, p)
				f := qg / float32(1+qg)
				dn := fma32(p.C2, f, float32(p.C1*d))
				row[i+m] = dn
				ls[m] += dn
				if !last {
					ld[m] = fma32(dn, c.xIn[i+m], ld[m])
					c.degIn[i+m] += dn
					c.cacc[i+m] = fma32(dn, u, c.cacc[i+m])
				}
			}
		}
		if last {
			sumD += tree(&ls)
		} else {
			c.degOut[o] = tree(&ls)
			c.dpOut[o] = tree(&ld)
		}
	}
	if !last {
		c.laplacianFinish(c.xIn, c.xOut)
	}
	return sumD
}
