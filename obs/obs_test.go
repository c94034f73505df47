package obs

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// problem is a random layer: weights, and a Gram matrix from correlated
// calibration inputs (x = A z with z Gaussian, so inputs share directions
// as real activations do).
type problem struct {
	rows, cols, tokens int
	w                  []float64
	gram               []float64
}

func newProblem(seed uint64, rows, cols, tokens int) problem {
	rng := rand.New(rand.NewPCG(seed, 1))
	p := problem{rows: rows, cols: cols, tokens: tokens}
	p.w = make([]float64, rows*cols)
	for i := range p.w {
		p.w[i] = rng.NormFloat64()
	}
	mix := make([]float64, cols*cols)
	for i := range mix {
		mix[i] = rng.NormFloat64() / math.Sqrt(float64(cols))
	}
	for i := 0; i < cols; i++ {
		mix[i*cols+i] += 1
	}
	p.gram = make([]float64, cols*cols)
	x := make([]float64, cols)
	z := make([]float64, cols)
	for t := 0; t < tokens; t++ {
		for i := range z {
			z[i] = rng.NormFloat64() * (1 + 3*float64(i%7)/7) // uneven channel scales
		}
		for i := range x {
			x[i] = dot(mix[i*cols:(i+1)*cols], z)
		}
		for i := 0; i < cols; i++ {
			for j := 0; j < cols; j++ {
				p.gram[i*cols+j] += x[i] * x[j]
			}
		}
	}
	return p
}

// dampedH is H + lambda I as NewFactor builds it (full, row-major).
func dampedH(p problem, f *Factor) []float64 {
	n := p.cols
	h := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			h[i*n+j] = p.gram[i*n+j] * 2 / float64(p.tokens)
		}
		if h[i*n+i] == 0 {
			h[i*n+i] = 1
		}
		h[i*n+i] += f.Lambda
	}
	return h
}

// inverse is a textbook Gauss-Jordan inverse with partial pivoting, kept
// apart from the package's Cholesky route on purpose.
func inverse(a []float64, n int) []float64 {
	m := slices.Clone(a)
	inv := make([]float64, n*n)
	for i := 0; i < n; i++ {
		inv[i*n+i] = 1
	}
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r*n+c]) > math.Abs(m[p*n+c]) {
				p = r
			}
		}
		for k := 0; k < n; k++ {
			m[c*n+k], m[p*n+k] = m[p*n+k], m[c*n+k]
			inv[c*n+k], inv[p*n+k] = inv[p*n+k], inv[c*n+k]
		}
		d := m[c*n+c]
		for k := 0; k < n; k++ {
			m[c*n+k] /= d
			inv[c*n+k] /= d
		}
		for r := 0; r < n; r++ {
			if r == c {
				continue
			}
			f := m[r*n+c]
			for k := 0; k < n; k++ {
				m[r*n+k] -= f * m[c*n+k]
				inv[r*n+k] -= f * inv[c*n+k]
			}
		}
	}
	return inv
}

// TestFactorIsInverseCholesky: U is upper triangular with a positive
// diagonal and (H + lambda I) U^T U = I, for a width inside one tile of
// the blocked factorisation and one of several tiles and groups with
// remainders (150 = 2 x 64 + 22 rows, 9 x 16 + 6).
func TestFactorIsInverseCholesky(t *testing.T) {
	for _, cols := range []int{37, 150} {
		t.Run(fmt.Sprint(cols), func(t *testing.T) { checkInverseCholesky(t, newProblem(1, 1, cols, 4*cols)) })
	}
}

func checkInverseCholesky(t *testing.T, p problem) {
	f, err := NewFactor(p.gram, p.cols, float64(p.tokens), 0.01)
	if err != nil {
		t.Fatal(err)
	}
	n := p.cols
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			if f.U[i*n+j] != 0 {
				t.Fatalf("U(%d,%d) = %v below the diagonal", i, j, f.U[i*n+j])
			}
		}
		if !(f.U[i*n+i] > 0) {
			t.Fatalf("U(%d,%d) = %v", i, i, f.U[i*n+i])
		}
	}
	// (H + lambda I) U^T U must be the identity.
	h := dampedH(p, f)
	utu := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for k := 0; k <= min(i, j); k++ {
				s += f.U[k*n+i] * f.U[k*n+j]
			}
			utu[i*n+j] = s
		}
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for k := 0; k < n; k++ {
				s += h[i*n+k] * utu[k*n+j]
			}
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(s-want) > 1e-10 {
				t.Fatalf("(H U^T U)(%d,%d) = %v, want %v", i, j, s, want)
			}
		}
	}
}

// naiveOBS is the textbook rule the solver must reproduce: for each masked
// column j in order, with R = {j, ..., n-1} the columns not yet visited,
// remove w_j and move the columns of R by -w_j / [H_RR^-1]_00 times the
// first column of H_RR^-1.
func naiveOBS(p problem, h []float64, mask []bool) []float64 {
	n := p.cols
	w := slices.Clone(p.w)
	for j := 0; j < n; j++ {
		k := n - j
		sub := make([]float64, k*k)
		for a := 0; a < k; a++ {
			for b := 0; b < k; b++ {
				sub[a*k+b] = h[(j+a)*n+j+b]
			}
		}
		inv := inverse(sub, k)
		for r := 0; r < p.rows; r++ {
			if !mask[r*n+j] {
				continue
			}
			c := w[r*n+j] / inv[0]
			for a := 0; a < k; a++ {
				w[r*n+j+a] -= c * inv[a]
			}
			w[r*n+j] = 0
		}
	}
	return w
}

func randomMask(seed uint64, n int, frac float64) []bool {
	rng := rand.New(rand.NewPCG(seed, 2))
	m := make([]bool, n)
	for i := range m {
		m[i] = rng.Float64() < frac
	}
	return m
}

func maxRelDiff(a, b []float64) float64 {
	var worst, scale float64
	for i := range a {
		worst = max(worst, math.Abs(a[i]-b[i]))
		scale = max(scale, math.Abs(b[i]))
	}
	return worst / scale
}

func TestReconstructMatchesTextbookOBS(t *testing.T) {
	p := newProblem(2, 9, 41, 300)
	f, err := NewFactor(p.gram, p.cols, float64(p.tokens), 0.01)
	if err != nil {
		t.Fatal(err)
	}
	mask := randomMask(3, len(p.w), 0.5)
	want := naiveOBS(p, dampedH(p, f), mask)
	for _, bs := range []int{1, 3, 4, 16, 128} {
		w := slices.Clone(p.w)
		res, err := Prune(w, p.rows, f, Options{Mask: mask, BlockSize: bs})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Mask, mask) {
			t.Fatalf("block %d: the fixed mask changed", bs)
		}
		for i, m := range mask {
			if m && w[i] != 0 {
				t.Fatalf("block %d: removed weight %d is %v, not 0", bs, i, w[i])
			}
		}
		if d := maxRelDiff(w, want); d > 1e-10 {
			t.Errorf("block %d: differs from the textbook rule by %g (relative)", bs, d)
		}
	}
}

// With every removed column before every kept one, the sequential rule
// must reach the exact least-squares optimum of each row:
// v_S = w_S + H_SS^-1 H_SP w_P.
func TestReconstructExactWhenPrunedColumnsComeFirst(t *testing.T) {
	p := newProblem(4, 5, 30, 250)
	f, err := NewFactor(p.gram, p.cols, float64(p.tokens), 0.01)
	if err != nil {
		t.Fatal(err)
	}
	n, cut := p.cols, 12
	mask := make([]bool, len(p.w))
	for r := 0; r < p.rows; r++ {
		for j := 0; j < cut; j++ {
			mask[r*n+j] = true
		}
	}
	w := slices.Clone(p.w)
	if _, err := Prune(w, p.rows, f, Options{Mask: mask, BlockSize: 7}); err != nil {
		t.Fatal(err)
	}
	h := dampedH(p, f)
	k := n - cut
	hss := make([]float64, k*k)
	for a := 0; a < k; a++ {
		for b := 0; b < k; b++ {
			hss[a*k+b] = h[(cut+a)*n+cut+b]
		}
	}
	inv := inverse(hss, k)
	for r := 0; r < p.rows; r++ {
		rhs := make([]float64, k)
		for a := 0; a < k; a++ {
			for j := 0; j < cut; j++ {
				rhs[a] += h[(cut+a)*n+j] * p.w[r*n+j]
			}
		}
		for a := 0; a < k; a++ {
			want := p.w[r*n+cut+a]
			for b := 0; b < k; b++ {
				want += inv[a*k+b] * rhs[b]
			}
			if got := w[r*n+cut+a]; math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
				t.Fatalf("row %d column %d: %v, optimum %v", r, cut+a, got, want)
			}
		}
	}
}

func TestPruneExactCountAndBeatsZeroing(t *testing.T) {
	p := newProblem(5, 24, 64, 400)
	f, err := NewFactor(p.gram, p.cols, float64(p.tokens), 0.01)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []float64{0.3, 0.5, 0.7} {
		w := slices.Clone(p.w)
		res, err := Prune(w, p.rows, f, Options{Sparsity: s, BlockSize: 16})
		if err != nil {
			t.Fatal(err)
		}
		if want := int(math.Round(s * float64(len(w)))); res.Removed != want {
			t.Errorf("s=%v: removed %d, want %d", s, res.Removed, want)
		}
		// The same mask without the update (plain zeroing) must cost more.
		zeroed := slices.Clone(p.w)
		for i, m := range res.Mask {
			if m {
				zeroed[i] = 0
			}
		}
		// And magnitude pruning at the same count, without the update.
		mag := magnitude(p.w, res.Removed)
		eObs := OutputError(p.w, w, p.rows, p.gram, p.cols)
		eZero := OutputError(p.w, zeroed, p.rows, p.gram, p.cols)
		eMag := OutputError(p.w, mag, p.rows, p.gram, p.cols)
		t.Logf("s=%v: output error OBS %.4g, same mask zeroed %.4g, magnitude %.4g", s, eObs, eZero, eMag)
		if !(eObs < eZero && eObs < eMag) {
			t.Errorf("s=%v: OBS error %g not below zeroing %g and magnitude %g", s, eObs, eZero, eMag)
		}
	}
}

func magnitude(w []float64, k int) []float64 {
	idx := make([]int, len(w))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmpf(math.Abs(w[a]), math.Abs(w[b]))
	})
	out := slices.Clone(w)
	for _, i := range idx[:k] {
		out[i] = 0
	}
	return out
}

func cmpf(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestPatternNM(t *testing.T) {
	p := newProblem(6, 7, 48, 200)
	f, err := NewFactor(p.gram, p.cols, float64(p.tokens), 0.01)
	if err != nil {
		t.Fatal(err)
	}
	for _, nm := range [][2]int{{2, 4}, {4, 8}, {1, 4}} {
		w := slices.Clone(p.w)
		res, err := Prune(w, p.rows, f, Options{N: nm[0], M: nm[1], BlockSize: 16})
		if err != nil {
			t.Fatal(err)
		}
		for r := 0; r < p.rows; r++ {
			for g := 0; g < p.cols; g += nm[1] {
				k := 0
				for j := g; j < g+nm[1]; j++ {
					if res.Mask[r*p.cols+j] {
						k++
						if w[r*p.cols+j] != 0 {
							t.Fatalf("%d:%d row %d column %d removed but %v", nm[0], nm[1], r, j, w[r*p.cols+j])
						}
					}
				}
				if k != nm[0] {
					t.Fatalf("%d:%d row %d group %d: %d removed", nm[0], nm[1], r, g, k)
				}
			}
		}
		// The update must still match the textbook rule for this mask.
		if d := maxRelDiff(w, naiveOBS(p, dampedH(p, f), res.Mask)); d > 1e-10 {
			t.Errorf("%d:%d: differs from the textbook rule by %g", nm[0], nm[1], d)
		}
	}
	if _, err := Prune(slices.Clone(p.w), p.rows, f, Options{N: 2, M: 5}); err == nil {
		t.Error("2:5 on 48 columns accepted")
	}
}

func TestWorkersDoNotChangeBits(t *testing.T) {
	p := newProblem(7, 33, 40, 150)
	f, err := NewFactor(p.gram, p.cols, float64(p.tokens), 0.01)
	if err != nil {
		t.Fatal(err)
	}
	base := slices.Clone(p.w)
	if _, err := Prune(base, p.rows, f, Options{Sparsity: 0.5, BlockSize: 8, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{2, 3, 8, 64} {
		w := slices.Clone(p.w)
		if _, err := Prune(w, p.rows, f, Options{Sparsity: 0.5, BlockSize: 8, Workers: k}); err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if math.Float64bits(w[i]) != math.Float64bits(base[i]) {
				t.Fatalf("%d workers: weight %d is %v, one worker gave %v", k, i, w[i], base[i])
			}
		}
	}
}

func TestDeadInputsAndDamping(t *testing.T) {
	p := newProblem(8, 4, 12, 50)
	n := p.cols
	// Input 5 never fires: its Gram row and column are zero.
	for j := 0; j < n; j++ {
		p.gram[5*n+j], p.gram[j*n+5] = 0, 0
	}
	f, err := NewFactor(p.gram, n, float64(p.tokens), 0.01)
	if err != nil {
		t.Fatal(err)
	}
	if f.Dead != 1 || f.Retries != 0 {
		t.Errorf("dead %d retries %d, want 1 and 0", f.Dead, f.Retries)
	}
	// An indefinite "Gram" (not a Gram at all) needs more damping.
	bad := make([]float64, n*n)
	for i := 0; i < n; i++ {
		bad[i*n+i] = 1
	}
	bad[1*n+0], bad[0*n+1] = 3, 3
	f, err = NewFactor(bad, n, 1, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	if f.Retries == 0 || !(f.Damp > 0.01) {
		t.Errorf("indefinite H: retries %d damp %v", f.Retries, f.Damp)
	}
	for _, v := range f.U {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatal("non-finite U")
		}
	}
	// A Gram with a NaN is refused, never factored into NaNs.
	bad[2*n+1] = math.NaN()
	if _, err := NewFactor(bad, n, 1, 0.01); err == nil {
		t.Error("NaN Gram accepted")
	}
	// A hopelessly indefinite matrix ends with the error value.
	neg := make([]float64, n*n)
	for i := 0; i < n; i++ {
		neg[i*n+i] = -1
	}
	if _, err := NewFactor(neg, n, 1, 0); !errors.Is(err, ErrNotPositiveDefinite) {
		t.Errorf("negative definite: %v", err)
	}
}

func TestOutputErrorMatchesDirect(t *testing.T) {
	p := newProblem(9, 3, 10, 20)
	v := slices.Clone(p.w)
	for i := range v {
		if i%3 == 0 {
			v[i] = 0
		}
	}
	n := p.cols
	var want float64
	for r := 0; r < p.rows; r++ {
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				want += (p.w[r*n+i] - v[r*n+i]) * p.gram[i*n+j] * (p.w[r*n+j] - v[r*n+j])
			}
		}
	}
	if got := OutputError(p.w, v, p.rows, p.gram, n); math.Abs(got-want) > 1e-9*want {
		t.Errorf("OutputError %v, direct %v", got, want)
	}
}

// TestZerosStayZero: weights pinned by Options.Zeros end removed and 0
// although the OBS update of earlier columns would revive them, count
// towards each block's quota, and take more than the quota where they
// outnumber it; N:M groups take them first as well.
func TestZerosStayZero(t *testing.T) {
	p := newProblem(11, 24, 64, 400)
	f, err := NewFactor(p.gram, p.cols, float64(p.tokens), 0.01)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]bool, len(p.w))
	for i := range zeros {
		// Column 40 of every row (a dead channel: more pins than its
		// block's quota would take from it alone) and scattered ones.
		if i%p.cols == 40 || i%13 == 0 {
			zeros[i] = true
			p.w[i] = 0
		}
	}
	for _, opt := range []Options{{Sparsity: 0.25, BlockSize: 32}, {N: 1, M: 4, BlockSize: 32}, {Sparsity: 0.01, BlockSize: 32}} {
		w := slices.Clone(p.w)
		opt.Zeros = zeros
		res, err := Prune(w, p.rows, f, opt)
		if err != nil {
			t.Fatal(err)
		}
		pinned := 0
		for i, z := range zeros {
			if z {
				pinned++
				if !res.Mask[i] || w[i] != 0 {
					t.Fatalf("%+v: pinned weight %d: mask %v, value %v", opt, i, res.Mask[i], w[i])
				}
			}
		}
		if opt.M == 0 {
			want := 0
			for c0 := 0; c0 < p.cols; c0 += 32 {
				q := int(math.Round(opt.Sparsity*float64(p.rows)*float64(c0+32))) - int(math.Round(opt.Sparsity*float64(p.rows)*float64(c0)))
				z := 0
				for r := 0; r < p.rows; r++ {
					for j := c0; j < c0+32; j++ {
						if zeros[r*p.cols+j] {
							z++
						}
					}
				}
				want += max(q, z)
			}
			if res.Removed != want {
				t.Fatalf("%+v: removed %d, want %d", opt, res.Removed, want)
			}
		} else if res.Removed < p.rows*p.cols/4 || res.Removed > p.rows*p.cols/4+pinned {
			t.Fatalf("N:M removed %d", res.Removed)
		}
	}
	if _, err := Prune(slices.Clone(p.w), p.rows, f, Options{Sparsity: 0.5, Zeros: zeros[1:]}); err == nil {
		t.Fatal("a short Zeros accepted")
	}
}
