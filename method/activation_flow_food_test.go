package method

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/obs"
)

func TestParseFactors(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"act":                      "act",
		"contrib,act":              "act,contrib",
		"act^0.5,stab^0.5,contrib": "act^0.5,stab^0.5,contrib",
		" stab , contrib^2":        "stab,contrib^2",
		"seqcontrib,act^0.5":       "act^0.5,seqcontrib",
	} {
		f, err := ParseFactors(in)
		if err != nil || f.String() != want {
			t.Errorf("ParseFactors(%q) = %q, %v; want %q", in, f.String(), err, want)
		}
	}
	for _, bad := range []string{",", "act,act", "grad", "act^0", "act^x", "act^nan", "stab^inf"} {
		if _, err := ParseFactors(bad); err == nil {
			t.Errorf("ParseFactors(%q) accepted", bad)
		}
	}
}

// withMoments fills the moments of file's tensors from a random draw, so
// that act and stab differ between columns.
func withMoments(file *imatrix.Calibration, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 3))
	for _, mo := range file.Tensors {
		n := mo.Width * mo.Mats
		mo.Sum, mo.Abs, mo.Sq = make([]float64, n), make([]float64, n), make([]float64, n)
		mo.Count = make([]float64, mo.Mats)
		for m := range mo.Mats {
			mo.Count[m] = 100
			for j := range mo.Width {
				for range 100 {
					x := rng.NormFloat64() * (1 + float64(j%7))
					if rng.IntN(4) == 0 && j%3 == 0 {
						x *= 10 // bursty channels: lower stab
					}
					mo.Abs[m*mo.Width+j] += math.Abs(x)
					mo.Sq[m*mo.Width+j] += x * x
				}
			}
		}
	}
}

// TestFoodScales: phi is the stated formula, with [H^-1]_jj from a direct
// inverse of the damped Hessian and U_jj^2 from a direct inverse of its
// trailing block from j on.
func TestFoodScales(t *testing.T) {
	const cols = 24
	_, file, dense := layer(3, 8, cols, 1, 200)
	withMoments(file, 4)
	f, err := obs.NewFactor(dense[0], cols, 200, DefaultDamp)
	if err != nil {
		t.Fatal(err)
	}
	hinv := InverseDiagonal(f)
	// Direct: invert H = 2G/N + lambda I (dead inputs with H_jj = 1) by
	// Gauss-Jordan.
	h := make([]float64, cols*cols)
	for i := range cols {
		for j := range cols {
			h[i*cols+j] = 2 * dense[0][i*cols+j] / 200
		}
		if h[i*cols+i] == 0 {
			h[i*cols+i] = 1
		}
		h[i*cols+i] += f.Lambda
	}
	inv := gaussJordan(h, cols)
	for j := range cols {
		if d := math.Abs(hinv[j]-inv[j*cols+j]) / inv[j*cols+j]; d > 1e-9 {
			t.Fatalf("[H^-1]_%d = %v, direct %v", j, hinv[j], inv[j*cols+j])
		}
	}
	sweep := SweepDiagonal(f)
	for j := range cols {
		k := cols - j
		trail := make([]float64, k*k)
		for a := range k {
			copy(trail[a*k:(a+1)*k], h[(j+a)*cols+j:(j+a+1)*cols])
		}
		direct := gaussJordan(trail, k)[0]
		if d := math.Abs(sweep[j]-direct) / direct; d > 1e-9 {
			t.Fatalf("U_%d%d^2 = %v, direct %v", j, j, sweep[j], direct)
		}
	}
	mo := file.Tensors["blk.0.attn_q.weight"]
	fac := Factors{Act: 1, Stab: 0.5, Contrib: 1, SeqContrib: 0.5}
	d := NewDiagonals(f, fac)
	phi, err := FoodScales(mo, 0, d, fac)
	if err != nil {
		t.Fatal(err)
	}
	for j := range cols {
		act := math.Sqrt(mo.Sq[j] / 100)
		stab := mo.Abs[j] / 100 / act
		want := float32(act * math.Sqrt(stab) / math.Sqrt(hinv[j]) * math.Pow(sweep[j], -0.25))
		if phi[j] != want || !(stab > 0 && stab <= 1) {
			t.Fatalf("phi_%d = %v, want %v (stab %v)", j, phi[j], want, stab)
		}
	}
	if _, err := FoodScales(mo, 0, Diagonals{Sweep: sweep}, fac); err == nil {
		t.Fatal("contrib without H^-1 accepted")
	}
	if _, err := FoodScales(mo, 0, Diagonals{Inverse: hinv}, fac); err == nil {
		t.Fatal("seqcontrib without U_jj^2 accepted")
	}
}

// gaussJordan inverts the n x n matrix a.
func gaussJordan(a []float64, n int) []float64 {
	m := make([]float64, n*2*n)
	for i := range n {
		copy(m[i*2*n:], a[i*n:(i+1)*n])
		m[i*2*n+n+i] = 1
	}
	for c := range n {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r*2*n+c]) > math.Abs(m[p*2*n+c]) {
				p = r
			}
		}
		for k := range 2 * n {
			m[c*2*n+k], m[p*2*n+k] = m[p*2*n+k], m[c*2*n+k]
		}
		d := m[c*2*n+c]
		for k := range 2 * n {
			m[c*2*n+k] /= d
		}
		for r := range n {
			if r == c {
				continue
			}
			x := m[r*2*n+c]
			for k := range 2 * n {
				m[r*2*n+k] -= x * m[c*2*n+k]
			}
		}
	}
	inv := make([]float64, n*n)
	for i := range n {
		copy(inv[i*n:(i+1)*n], m[i*2*n+n:(i+1)*2*n])
	}
	return inv
}

// fullFoodRun decides every band of tensor blk.0.attn_q.weight of w by m
// under cfg and returns the mask and (for a Reconstructor) the new values.
func fullFoodRun(t *testing.T, m Method, cfg Config, w []float32, rows, cols, mats int) ([]byte, []float32) {
	t.Helper()
	tn := Tensor{Name: "blk.0.attn_q.weight", Cols: cols, Rows: rows, Matrices: mats}
	var st any
	if p, ok := m.(Preparer); ok {
		var err error
		if st, err = p.Prepare(context.Background(), tn, cfg); err != nil {
			t.Fatal(err)
		}
	}
	d, err := m.NewDecider(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mask := make([]byte, len(w))
	after := make([]float32, len(w))
	for mat := range mats {
		for r0 := 0; r0 < rows; r0 += 256 {
			nr := min(256, rows-r0)
			row0 := mat*rows + r0
			lo, hi := row0*cols, (row0+nr)*cols
			b := &Band{Values: w[lo:hi], Rows: nr, Cols: cols, Row0: row0, MatrixRow0: r0, State: st}
			if _, err := d.Decide(b, mask[lo:hi]); err != nil {
				t.Fatal(err)
			}
			if rc, ok := d.(Reconstructor); ok {
				if _, err := rc.Survivors(b, mask[lo:hi], after[lo:hi]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return mask, after
}

// TestFullFoodDecides: with the full food, activation-flow's mask is its
// flow-share mask on a band whose Act is phi; its importance names the
// factors; every factor is released.
func TestFullFoodDecides(t *testing.T) {
	const rows, cols, mats = 300, 64, 2
	w, file, _ := layer(5, rows, cols, mats, 300)
	withMoments(file, 6)
	file.Info.Gram = true
	m, _ := Lookup(ActivationFlow)
	cfg := Config{Params: kernel.Params{Mode: kernel.Sparsity, Sparsity: 0.5}}
	cal := NewCalibration("cal.gguf", file, DefaultDamp)
	cfg.Calibration = cal
	var err error
	if cfg.Factors, err = ResolveFactors(Factors{Act: 1, Stab: 1, Contrib: 1}, cal, false); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	imp := m.Importance(cfg)
	for _, want := range []string{"F/rowsum(F)", "F=|w|*act_j*stab_j*(1/[H^-1]_jj)^0.5", "unsigned OBS", "no gradients"} {
		if !strings.Contains(imp, want) {
			t.Errorf("importance %q lacks %q", imp, want)
		}
	}
	got, _ := fullFoodRun(t, m, cfg, w, rows, cols, mats)
	for k, sf := range cal.factors {
		sf.mu.Lock()
		pending, kept := sf.pending, sf.f != nil
		sf.mu.Unlock()
		if pending != 0 || kept {
			t.Fatalf("factor %v kept: %d bands pending", k, pending)
		}
	}
	// The same through today's decider on bands fed phi by hand.
	mo := file.Tensors["blk.0.attn_q.weight"]
	plain := cfg
	plain.Factors = Factors{}
	d, _ := m.NewDecider(plain)
	for mat := range mats {
		g, _ := file.Inputs[0].Dense(mat)
		f, err := obs.NewFactor(g, cols, file.Inputs[0].Count[mat], DefaultDamp)
		if err != nil {
			t.Fatal(err)
		}
		phi, err := FoodScales(mo, mat, NewDiagonals(f, cfg.Factors), cfg.Factors)
		if err != nil {
			t.Fatal(err)
		}
		for r0 := 0; r0 < rows; r0 += 256 {
			nr := min(256, rows-r0)
			row0 := mat*rows + r0
			lo, hi := row0*cols, (row0+nr)*cols
			mask := make([]byte, hi-lo)
			if _, err := d.Decide(&Band{Values: w[lo:hi], Rows: nr, Cols: cols, Row0: row0, MatrixRow0: r0, Act: phi}, mask); err != nil {
				t.Fatal(err)
			}
			for i := range mask {
				if mask[i] != got[lo+i] {
					t.Fatalf("matrix %d row %d col %d: full food %d, by hand %d", mat, row0+i/cols, i%cols, got[lo+i], mask[i])
				}
			}
		}
	}
	// Without a Gram, the default drops contrib and says so; an explicit
	// contrib is refused.
	file.Info.Gram = false
	f, err := ResolveFactors(Factors{}, cal, true)
	if err != nil || f.Contrib != 0 || f.Act == 0 || !f.NoGram {
		t.Fatalf("no Gram: %+v, %v", f, err)
	}
	cfg.Factors = f
	if !strings.Contains(m.Importance(cfg), "contribution not computed") {
		t.Errorf("importance %q does not say the contribution is missing", m.Importance(cfg))
	}
	if _, err := ResolveFactors(Factors{Contrib: 1}, cal, false); err == nil {
		t.Fatal("contrib without a Gram accepted")
	}
	if _, err := ResolveFactors(Factors{Act: 1}, nil, false); err == nil {
		t.Fatal("factors without a calibration file accepted")
	}
}

// TestAdaptiveFlow: v2 full with reconstruction ends every band with its
// BandBlockRule quota (N:M: every group with N zeros), and its survivors
// are one OBS pass under its final mask.
func TestAdaptiveFlow(t *testing.T) {
	const cols = 256
	for _, pat := range []Pattern{{}, {2, 4}} {
		w, mask, after, f := adaptiveRun(t, 7, pat, DefaultReconstructFactors)
		for r0, nr := range map[int]int{0: 256, 256: 44} {
			lo, hi := r0*cols, (r0+nr)*cols
			fixed := make([]bool, hi-lo)
			zeros := 0
			for i := range fixed {
				fixed[i] = mask[lo+i] != 0 || w[lo+i] == 0
				if fixed[i] {
					zeros++
					if after[lo+i] != 0 {
						t.Fatalf("killed weight %d reads %v", lo+i, after[lo+i])
					}
				}
			}
			if want := int(math.Round(0.5 * float64(nr*cols))); zeros != want {
				t.Fatalf("pattern %v, band at %d: %d zeros, want %d", pat, r0, zeros, want)
			}
			if !pat.None() {
				for x := 0; x < hi-lo; x += 4 {
					z := 0
					for _, b := range fixed[x : x+4] {
						if b {
							z++
						}
					}
					if z != 2 {
						t.Fatalf("group at %d has %d zeros", lo+x, z)
					}
				}
			}
			w64 := f64(w[lo:hi])
			if _, err := obs.Prune(w64, nr, f, obs.Options{Mask: fixed}); err != nil {
				t.Fatal(err)
			}
			for i, v := range w64 {
				if d := math.Abs(v - float64(after[lo+i])); d > 1e-5*(1+math.Abs(v)) {
					t.Fatalf("pattern %v: weight %d: adaptive %v, one OBS pass %v", pat, lo+i, after[lo+i], v)
				}
			}
		}
	}
}

// TestSeqContribIsSparseGPT: under an N:M pattern the flow share plays no
// part, so the adaptive v2 full eating seqcontrib alone (|w|/U_jj, the
// square root of SparseGPT's w^2/U_jj^2) chooses SparseGPT's groups: the
// same mask as obs.Prune's own N:M choice, and its survivors.
func TestSeqContribIsSparseGPT(t *testing.T) {
	const cols = 256
	pat := Pattern{2, 4}
	w, mask, after, f := adaptiveRun(t, 9, pat, Factors{SeqContrib: 1})
	for r0, nr := range map[int]int{0: 256, 256: 44} {
		lo, hi := r0*cols, (r0+nr)*cols
		w64 := f64(w[lo:hi])
		zs := make([]bool, hi-lo)
		for i := range zs {
			zs[i] = w64[i] == 0
		}
		res, err := obs.Prune(w64, nr, f, obs.Options{N: pat.N, M: pat.M, Zeros: zs})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range w64 {
			if (mask[lo+i] != 0) != (res.Mask[i] && !zs[i]) {
				t.Fatalf("weight %d: adaptive kill %d, SparseGPT %v", lo+i, mask[lo+i], res.Mask[i])
			}
			if d := math.Abs(v - float64(after[lo+i])); d > 1e-5*(1+math.Abs(v)) {
				t.Fatalf("weight %d: adaptive %v, SparseGPT %v", lo+i, after[lo+i], v)
			}
		}
	}
}

// adaptiveRun runs the adaptive v2 full (with pattern pat, eating the
// factors fac) on a random layer of 300 x 256 (one matrix, 600 tokens,
// seeded by seed, one original zero); it returns the weights, the mask,
// the weights after, and the factor of the layer's input.
func adaptiveRun(t *testing.T, seed uint64, pat Pattern, fac Factors) ([]float32, []byte, []float32, *obs.Factor) {
	t.Helper()
	const rows, cols, mats = 300, 256, 1
	w, file, dense := layer(seed, rows, cols, mats, 600)
	w[int(seed)+2] = 0
	withMoments(file, seed+1)
	file.Info.Gram = true
	base, _ := Lookup(ActivationFlow)
	cfg := Config{Params: kernel.Params{Mode: kernel.Sparsity, Sparsity: 0.5}, Pattern: pat, Factors: fac}
	cfg.Calibration = NewCalibration("cal.gguf", file, DefaultDamp)
	if !pat.None() {
		base = Patterned(base)
	}
	m := WithReconstruction(base, cfg)
	if _, ok := m.(adaptiveFlow); !ok {
		t.Fatalf("%T is not the adaptive v2 full", m)
	}
	if err := m.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	mask, after := fullFoodRun(t, m, cfg, w, rows, cols, mats)
	f, err := obs.NewFactor(dense[0], cols, 600, DefaultDamp)
	if err != nil {
		t.Fatal(err)
	}
	return w, mask, after, f
}
