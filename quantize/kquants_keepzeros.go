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
// are stored at level q0.
//
// The search is mostly analytic, so that it runs about as fast as the
// reference encoder. Per sub-block, the survivors' min and max give the zero
// levels whose grids cover them with the smallest steps; for each, a few
// clipping steps are tried (assign levels, refit the step by least squares)
// and the best is refined (Q2_K, with 4 levels and 16 values, gets the exact
// optimum for every zero level instead: kKZFitSubQ2). That leaves, per candidate zero level, the error
// as a quadratic in the step, emin + C*(step - s)^2 (an upper bound: the
// levels may be re-rounded). The ratio R and d are then chosen by that
// predicted error, each sub-block taking the allowed scale code nearest its
// step, and finally, per sub-block, the exact error (as the decoder
// computes the values) decides between the three best predicted choices.
//
// A block without exact zeros is encoded by the reference encoder.
//
// Products that feed a sum are converted explicitly (float64(a*b) + c), so
// that no build fuses them into a multiply-add: the AVX2 C twin of the
// search (kquants_keepzeros_avx2.c) rounds every operation on its own.

import "math"

// kKZFormat describes one K-quant with a min for the zero-preserving search.
type kKZFormat struct {
	nsub, sub   int           // sub-blocks and their length
	nmax        int32         // largest level
	scMax, mMax int32         // largest sub-block scale and min codes
	ratios      []int32       // candidate dmin/d ratios
	dfac        []float64     // candidate d, as multiples of (largest step)/scMax
	sfac        []float64     // sub-block steps tried, as multiples of the covering step
	qspan       int32         // zero levels tried on each side of the continuous optimum
	refine      int           // least-squares refinement passes
	grid        [][32]kKZGrid // per ratio and zero level, the allowed scale codes
	params      kKZParams     // the scalar fields, for the AVX2 C search
}

// kKZParams holds the scalar fields of a kKZFormat in the layout of the C
// struct kz_params (kquants_keepzeros_avx2.h).
type kKZParams struct {
	nmax, scMax, mMax, qspan, refine, nratios, ndfac, nsfac int32
}

var (
	kKZQ2K = kKZFormat{nsub: 16, sub: 16, nmax: 3, scMax: 15, mMax: 15,
		ratios: []int32{1, 2, 3, 4, 5, 6, 8}, dfac: []float64{1, 1.04, 1.08, 1.12, 1.2},
		qspan: 2}
	kKZQ4K = kKZFormat{nsub: 8, sub: 32, nmax: 15, scMax: 63, mMax: 63,
		ratios: []int32{4, 5, 6, 7, 8, 9, 10, 12, 14, 16}, dfac: []float64{1, 1.02, 1.04, 1.07, 1.1, 1.14},
		sfac: []float64{1, 0.94, 0.88}, qspan: 1, refine: 2}
	kKZQ5K = kKZFormat{nsub: 8, sub: 32, nmax: 31, scMax: 63, mMax: 63,
		ratios: []int32{1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32}, dfac: []float64{1, 1.01, 1.02, 1.03, 1.045, 1.06, 1.08, 1.1},
		sfac: []float64{1, 0.96, 0.92, 0.88, 0.84}, qspan: 2, refine: 2}
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

// kKZCand is one zero level tried for a sub-block, with the least-squares
// fit of its survivors: levels k = q - q0 were assigned at some step, B is
// sum(x*k) and C is sum(k*k) over the survivors, so that with A = sum(x*x)
// the squared error at any step s, keeping those levels, is
// A - 2*s*B + s*s*C (an upper bound of the error after re-rounding at s),
// least at s = B/C.
type kKZCand struct {
	q0   int32
	s    float64
	B, C float64
	emin float64 // A - B*B/C
}

// kKZSubFit holds the candidate zero levels of one sub-block.
type kKZSubFit struct {
	n     int // survivors (non-zero values)
	A     float64
	nc    int
	cands [7]kKZCand
}

// kKZFitSub fits the survivors ys (no zeros, all finite) of one sub-block:
// for the zero levels q0 whose grids cover [min(ys,0), max(ys,0)] with the
// smallest steps, it tries steps that clip the range by the factors sfac
// (one pass each: assign levels, then the least-squares step of those
// levels), keeps the best and refines it by two more such passes.
func kKZFitSub(f *kKZFormat, ys []float32, fit *kKZSubFit) {
	nmax := f.nmax
	fit.n = len(ys)
	fit.nc = 0
	if len(ys) == 0 {
		return
	}
	if nmax == 3 && len(ys) <= 16 {
		kKZFitSubQ2(ys, fit)
		return
	}
	var lo, hi float32
	var A float64
	for _, v := range ys {
		lo = min(lo, v)
		hi = max(hi, v)
		A += float64(v) * float64(v)
	}
	fit.A = A
	fl, fh := float64(-lo), float64(hi)
	cover := func(q0 int32) float64 {
		s := 0.0
		if fl > 0 {
			if q0 == 0 {
				return math.Inf(1)
			}
			s = fl / float64(q0)
		}
		if fh > 0 {
			if q0 == nmax {
				return math.Inf(1)
			}
			s = max(s, fh/float64(nmax-q0))
		}
		return s
	}
	// The continuous optimum of the covering step is at q0 = nmax*fl/(fl+fh).
	// The levels either side of it, and qspan-1 more on each side.
	qf := int32(float64(nmax) * fl / (fl + fh))
	pass := func(s float64, kmin, kmax int32) (B, C float64) {
		is := float32(1 / s)
		var ci int32
		for _, v := range ys {
			k := max(kmin, min(kmax, kNearestInt(v*is)))
			B += float64(v) * float64(k)
			ci += k * k
		}
		return B, float64(ci)
	}
	for q0 := max(0, qf+1-f.qspan); q0 <= min(nmax, qf+f.qspan); q0++ {
		s0 := cover(q0)
		if math.IsInf(s0, 1) || !(s0 > 0) {
			continue
		}
		kmin, kmax := -q0, nmax-q0
		var bB, bC float64
		be := math.Inf(1)
		for _, fac := range f.sfac {
			B, C := pass(s0*fac, kmin, kmax)
			if C > 0 && B > 0 {
				if e := A - B*B/C; e < be {
					be, bB, bC = e, B, C
				}
			}
		}
		if math.IsInf(be, 1) {
			continue
		}
		for it := 0; it < f.refine; it++ {
			B, C := pass(bB/bC, kmin, kmax)
			if !(C > 0 && B > 0) {
				break
			}
			if e := A - B*B/C; e < be {
				be, bB, bC = e, B, C
			} else {
				break
			}
		}
		fit.cands[fit.nc] = kKZCand{q0: q0, s: bB / bC, B: bB, C: bC, emin: be}
		fit.nc++
	}
}

// kKZGrid is, for one ratio R and zero level q0, the step g between
// allowed scale codes (m = sc*q0/R must be an integer) and the largest
// allowed code hi (m <= mMax too); hi < g when none is allowed.
type kKZGrid struct {
	g, hi int32
	invg  float64
}

// buildGrids builds f.grid from f.ratios, and f.params.
func (f *kKZFormat) buildGrids() {
	f.params = kKZParams{nmax: f.nmax, scMax: f.scMax, mMax: f.mMax, qspan: f.qspan, refine: int32(f.refine),
		nratios: int32(len(f.ratios)), ndfac: int32(len(f.dfac)), nsfac: int32(len(f.sfac))}
	f.grid = make([][32]kKZGrid, len(f.ratios))
	for ri, R := range f.ratios {
		for q0 := int32(0); q0 <= f.nmax; q0++ {
			g, hi := int32(1), f.scMax
			if q0 > 0 {
				g = R / kGCD(R, q0)
				hi = min(hi, f.mMax*R/q0)
			}
			f.grid[ri][q0] = kKZGrid{g: g, hi: hi / g * g, invg: 1 / float64(g)}
		}
	}
}

func init() {
	kKZQ2K.buildGrids()
	kKZQ4K.buildGrids()
	kKZQ5K.buildGrids()
}

// kKZNearest returns the allowed scale code for candidate c nearest to its
// least-squares step at super-block scale d (1/d is id), and the predicted
// squared error e = emin + C*(d*sc - s)^2; sc < 0 when none is allowed.
func kKZNearest(c *kKZCand, gr *kKZGrid, d, id float64) (e float64, sc int32) {
	if gr.hi < gr.g {
		return math.Inf(1), -1
	}
	t := c.s * id * gr.invg
	sc = int32(t)
	if t-float64(sc) > 0.5 {
		sc++
	}
	sc = max(gr.g, min(gr.hi, sc*gr.g))
	diff := float64(d*float64(sc)) - c.s
	return c.emin + float64(c.C*diff*diff), sc
}

// kKZEvent is one value of a Q2_K sub-block, of magnitude m and on the
// negative side or not, moving from k to k+1 levels away from the zero
// level once the step falls below t = m/(k+0.5).
type kKZEvent struct {
	m, dk float64 // magnitude, and 2k+1: the growth of k*k
	act   uint8   // bit q0 set when the move exists with zero level q0
}

// kKZFitSubQ2 is kKZFitSub for Q2_K (levels 0..3, at most 16 values): for
// every zero level q0 it finds the least-squares optimum over all steps.
// At a step s, rounding to the nearest level puts a value of magnitude m at
// least k+1 levels from q0 (on its side, up to the levels that side has)
// once s < m/(k+0.5); sweeping s down through those thresholds visits every
// assignment rounding can produce, updating sum(x*k) and sum(k*k) one move
// at a time, and the best least-squares step of any of them is the optimum.
func kKZFitSubQ2(ys []float32, fit *kKZSubFit) {
	// Magnitudes in decreasing order (insertion sort: at most 16 values).
	var mag [16]float64
	var neg [16]bool
	var A, An, Ap float64
	n := 0
	for _, v := range ys {
		x := float64(v)
		A += x * x
		m, ng := x, false
		if v < 0 {
			m, ng = -x, true
			An += x * x
		} else {
			Ap += x * x
		}
		i := n
		for ; i > 0 && mag[i-1] < m; i-- {
			mag[i], neg[i] = mag[i-1], neg[i-1]
		}
		mag[i], neg[i] = m, ng
		n++
	}
	fit.A = A
	// Merge the three threshold sequences m/0.5, m/1.5, m/2.5 (each
	// decreasing) into one decreasing list of events.
	var ev [48]kKZEvent
	inv := [3]float64{2, 1 / 1.5, 1 / 2.5}
	var head [3]int
	for e := 0; e < 3*n; e++ {
		bk, bt := -1, -1.0
		for k := 0; k < 3; k++ {
			if head[k] < n {
				if t := mag[head[k]] * inv[k]; t > bt {
					bk, bt = k, t
				}
			}
		}
		i := head[bk]
		// A negative value has q0 levels below the zero level, a positive
		// one 3-q0 above it.
		act := uint8(0b1111 << (bk + 1) & 0b1111)
		if !neg[i] {
			act = uint8(0b1111 >> (bk + 1))
		}
		ev[e] = kKZEvent{m: mag[i], dk: float64(2*bk + 1), act: act}
		head[bk]++
	}
	best := A
	for _, q0 := range [4]int32{1, 2, 0, 3} {
		// With q0 == 0 every negative value reads back 0, and so on.
		if q0 == 0 && An >= best || q0 == 3 && Ap >= best {
			continue
		}
		var B, C, bB, bC float64
		for _, e := range ev[:3*n] {
			a := float64(e.act >> q0 & 1)
			B += e.m * a
			C += e.dk * a
			// B*B/C > bB*bB/bC, without dividing (and false while C == 0).
			if B*B*bC > bB*bB*C || bC == 0 && C > 0 {
				bB, bC = B, C
			}
		}
		if bC == 0 {
			continue
		}
		e := A - bB*bB/bC
		best = min(best, e)
		fit.cands[fit.nc] = kKZCand{q0: q0, s: bB / bC, B: bB, C: bC, emin: e}
		fit.nc++
	}
}

// kKZPick returns the scale code sc and zero level q0 (with m = sc*q0/R) of
// least predicted error for one sub-block at super-block scale d and ratio
// index ri, and that error; sc == 0 (all survivors read back 0) is always
// allowed. When alt is not nil it receives the next two candidates (sc < 0
// when absent).
func kKZPick(f *kKZFormat, fit *kKZSubFit, d, id float64, ri int, alt *[2][2]int32) (e float64, sc, q0 int32) {
	e, sc, q0 = fit.A, 0, 0
	grid := &f.grid[ri]
	if alt == nil {
		for ci := 0; ci < fit.nc; ci++ {
			c := &fit.cands[ci]
			if ee, s := kKZNearest(c, &grid[c.q0], d, id); ee < e {
				e, sc, q0 = ee, s, c.q0
			}
		}
		return e, sc, q0
	}
	alt[0], alt[1] = [2]int32{-1, 0}, [2]int32{-1, 0}
	e1, e2 := math.Inf(1), math.Inf(1)
	for ci := 0; ci < fit.nc; ci++ {
		c := &fit.cands[ci]
		gr := &grid[c.q0]
		ee, s := kKZNearest(c, gr, d, id)
		if s < 0 {
			continue
		}
		// The neighbouring allowed code on the other side of the step.
		s2 := s + gr.g
		if d*float64(s) > c.s {
			s2 = s - gr.g
		}
		diff := float64(d*float64(s2)) - c.s
		ee2 := c.emin + float64(c.C*diff*diff)
		if s2 < gr.g || s2 > gr.hi {
			ee2 = math.Inf(1)
		}
		for _, o := range [2]struct {
			e  float64
			sc int32
		}{{ee, s}, {ee2, s2}} {
			switch {
			case o.e < e:
				e2, alt[1] = e1, alt[0]
				e1, alt[0] = e, [2]int32{sc, q0}
				e, sc, q0 = o.e, o.sc, c.q0
			case o.e < e1:
				e2, alt[1] = e1, alt[0]
				e1, alt[0] = o.e, [2]int32{o.sc, c.q0}
			case o.e < e2:
				e2, alt[1] = o.e, [2]int32{o.sc, c.q0}
			}
		}
	}
	return e, sc, q0
}

// kKZTotal is the sum over the sub-blocks of kKZPick's predicted error at
// super-block scale d and ratio index ri; it stops early once it reaches
// limit.
func kKZTotal(f *kKZFormat, fits *[16]kKZSubFit, d float64, ri int, limit float64) float64 {
	grid := &f.grid[ri]
	id := 1 / d
	var tot float64
	for j := 0; j < f.nsub && tot < limit; j++ {
		fit := &fits[j]
		e := fit.A
		for ci := 0; ci < fit.nc; ci++ {
			c := &fit.cands[ci]
			gr := &grid[c.q0]
			if gr.hi < gr.g {
				continue
			}
			t := c.s * id * gr.invg
			sc := int32(t)
			if t-float64(sc) > 0.5 {
				sc++
			}
			sc = max(gr.g, min(gr.hi, sc*gr.g))
			diff := float64(d*float64(sc)) - c.s
			e = min(e, c.emin+float64(c.C*diff*diff))
		}
		tot += e
	}
	return tot
}

// kKeepZerosFit searches the zero-preserving encoding of one super-block x.
// ok is false when the block is not finite, and the caller then uses the
// reference encoder.
func kKeepZerosFit(f *kKZFormat, x []float32, r *kKZResult) (ok bool) {
	// The C search holds at most 4 zero levels per sub-block and 48
	// (ratio, factor) pairs per phase.
	if simd, ok := simdKeepZerosFit8x32.use(); ok && f.nsub == 8 && f.sub == 32 && f.qspan <= 2 && len(f.sfac) > 0 && len(f.ratios) <= 24 && len(f.dfac) <= 24 {
		return simd(f, x[:f.nsub*f.sub], r)
	}
	return kKeepZerosFitGo(f, x, r)
}

// kKeepZerosFitGo is kKeepZerosFit in Go.
func kKeepZerosFitGo(f *kKZFormat, x []float32, r *kKZResult) (ok bool) {
	var (
		fits [16]kKZSubFit
		surv [32]float32
		smax float64
	)
	for j := 0; j < f.nsub; j++ {
		xs := x[f.sub*j : f.sub*j+f.sub]
		n := 0
		for _, v := range xs {
			if v-v != 0 { // NaN or Inf
				return false
			}
			if v != 0 {
				surv[n] = v
				n++
			}
		}
		fit := &fits[j]
		kKZFitSub(f, surv[:n], fit)
		// The step of the sub-block's best candidate sets the block's range.
		be, bs := math.Inf(1), 0.0
		for ci := 0; ci < fit.nc; ci++ {
			c := &fit.cands[ci]
			if c.emin < be {
				be, bs = c.emin, c.s
			}
		}
		smax = max(smax, bs)
	}
	if smax == 0 {
		// No survivor can be fitted: all codes zero decode to exact zeros.
		*r = kKZResult{}
		return true
	}
	if !(smax < 65504*float64(f.scMax)/2) {
		return false
	}
	// Choose the ratio R = dmin/d and d by the predicted error: every ratio
	// at the first two scale factors, then every factor for the two best
	// ratios.
	var alt [2][2]int32
	best := math.Inf(1)
	var bd, bdmin float32
	bri := -1
	var rbest [2]float64
	rbi := [2]int{-1, -1}
	try := func(ri int, fac float64) float64 {
		d, dmin, ok := kKZScales(float32(smax/float64(f.scMax)*fac), f.ratios[ri])
		if !ok {
			return math.Inf(1)
		}
		tot := kKZTotal(f, &fits, float64(d), ri, best)
		if tot < best {
			best, bd, bdmin, bri = tot, d, dmin, ri
		}
		return tot
	}
	rbest[0], rbest[1] = math.Inf(1), math.Inf(1)
	for ri := range f.ratios {
		e := math.Inf(1)
		for _, fac := range f.dfac[:2] {
			e = min(e, try(ri, fac))
		}
		switch {
		case e < rbest[0]:
			rbest[1], rbi[1] = rbest[0], rbi[0]
			rbest[0], rbi[0] = e, ri
		case e < rbest[1]:
			rbest[1], rbi[1] = e, ri
		}
	}
	for _, ri := range rbi {
		if ri >= 0 {
			for _, fac := range f.dfac[2:] {
				try(ri, fac)
			}
		}
	}
	if bri < 0 {
		return false
	}
	bR := f.ratios[bri]
	// Per sub-block, the exact error of the best predicted choices decides.
	r.hd, r.hm = floatToHalf(bd), floatToHalf(bdmin)
	for j := 0; j < f.nsub; j++ {
		xs := x[f.sub*j : f.sub*j+f.sub]
		ls := r.L[f.sub*j : f.sub*j+f.sub]
		fit := &fits[j]
		if fit.nc == 0 {
			r.sc[j], r.m[j] = 0, 0
			clear(ls)
			continue
		}
		_, sc, q0 := kKZPick(f, fit, float64(bd), 1/float64(bd), bri, &alt)
		bestE := float32(math.Inf(1))
		bsc, bq0 := int32(-1), int32(0)
		var tmp [32]uint8
		for _, c := range [3][2]int32{{sc, q0}, alt[0], alt[1]} {
			if c[0] < 0 {
				continue
			}
			if e, ok := kKZExact(f, xs, tmp[:len(xs)], bd, bdmin, bR, c[0], c[1], bestE); ok && e < bestE {
				bestE, bsc, bq0 = e, c[0], c[1]
				copy(ls, tmp[:len(xs)])
			}
		}
		if bsc < 0 {
			bsc, bq0 = 0, 0
			kKZExact(f, xs, ls, bd, bdmin, bR, 0, 0, float32(math.Inf(1)))
		}
		r.sc[j], r.m[j] = uint8(bsc), uint8(bsc*bq0/bR)
	}
	return true
}

// kKZExact computes the squared error on the survivors of sub-block xs
// encoded with scale code sc and zero level q0 (m = sc*q0/R), as the
// decoder computes the values, writing the levels to ls; ok is false when
// the choice does not decode zero exactly. It stops early, with ls
// incomplete, once the error reaches limit.
func kKZExact(f *kKZFormat, xs []float32, ls []uint8, d, dmin float32, R, sc, q0 int32, limit float32) (e float32, ok bool) {
	m := sc * q0 / R
	if m*R != sc*q0 || m > f.mMax || sc > f.scMax {
		return 0, false
	}
	d1 := d * float32(sc)
	m1 := dmin * float32(m)
	if float32(d1*float32(q0))-m1 != 0 {
		return 0, false
	}
	if sc == 0 {
		for i, v := range xs {
			e += float32(v * v)
			ls[i] = 0
		}
		return e, true
	}
	id1 := 1 / d1
	nmax := f.nmax
	for i, v := range xs {
		q := q0
		if v != 0 {
			q = max(0, min(nmax, kNearestInt(float32(v+m1)*id1)))
			diff := v - (float32(d1*float32(q)) - m1)
			e += float32(diff * diff)
		}
		ls[i] = uint8(q)
		if e >= limit {
			return e, true
		}
	}
	return e, true
}

// kKZScales returns d near target and dmin = R*d, both exact halves.
func kKZScales(target float32, R int32) (d, dmin float32, ok bool) {
	h := floatToHalf(target)
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
		d = halfToFloat(hh)
		dmin = halfToFloat(floatToHalf(d * float32(R)))
		if d > 0 && dmin == d*float32(R) && dmin < 65504 {
			return d, dmin, true
		}
	}
	return 0, 0, false
}

func kGCD(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// kEncodeKeepZeros45 runs the zero-preserving encoder of the Q4_K or Q5_K
// format f (blocks of bb bytes, block encoding one in Go) over dst/src:
// the C search and packing over runs of blocks where the build has them,
// else block by block.
func kEncodeKeepZeros45(f *kKZFormat, bb int, dst []byte, src []float32, block func(b []byte, x []float32)) {
	if simd, ok := simdEncodeKeepZeros8x32.use(); ok {
		kEncodeSIMD(dst, src, bb, func(dst []byte, src []float32) int { return simd(f, dst, src) }, block)
		return
	}
	for len(src) >= kQK && len(dst) >= bb {
		block(dst[:bb], src[:kQK])
		src, dst = src[kQK:], dst[bb:]
	}
}

func encodeQ4KKeepZeros(dst []byte, src []float32) {
	kEncodeKeepZeros45(&kKZQ4K, kQ4KBytes, dst, src, encodeQ4KKeepZerosBlock)
}

// encodeQ4KKeepZerosBlock is encodeQ4KKeepZeros on one block.
func encodeQ4KKeepZerosBlock(b []byte, x []float32) {
	var r kKZResult
	if !kHasZero(x) || !kKeepZerosFit(&kKZQ4K, x, &r) {
		encodeQ4K(b, x)
		return
	}
	kStoreKZQ45(b, &r)
	q := b[16:144]
	for j := 0; j < 4; j++ {
		for l := 0; l < 32; l++ {
			q[32*j+l] = r.L[64*j+l] | r.L[64*j+l+32]<<4
		}
	}
}

func encodeQ5KKeepZeros(dst []byte, src []float32) {
	kEncodeKeepZeros45(&kKZQ5K, kQ5KBytes, dst, src, encodeQ5KKeepZerosBlock)
}

// encodeQ5KKeepZerosBlock is encodeQ5KKeepZeros on one block.
func encodeQ5KKeepZerosBlock(b []byte, x []float32) {
	var r kKZResult
	if !kHasZero(x) || !kKeepZerosFit(&kKZQ5K, x, &r) {
		encodeQ5KBlock(b, x)
		return
	}
	kStoreKZQ45(b, &r)
	kPackQ5K(b, &r.L)
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
