package method

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/obs"
)

// layer is a random layer of rows x cols weights in mats matrices, with a
// calibration file whose one input has the Gram of correlated inputs.
func layer(seed uint64, rows, cols, mats, tokens int) ([]float32, *imatrix.Calibration, [][]float64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	w := make([]float32, rows*cols*mats)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * (1 + float64(i%cols)/float64(cols)))
	}
	in := &imatrix.Input{Name: "blk.0.attn_q.weight", Node: "attn_norm-0", Width: cols, Mats: mats}
	dense := make([][]float64, mats)
	for m := range mats {
		g := make([]float64, cols*cols)
		x := make([]float64, cols)
		for range tokens {
			base := rng.NormFloat64()
			for j := range x {
				x[j] = rng.NormFloat64() + base*float64(j%5)
				if j == cols-1 {
					x[j] = 0 // a dead input
				}
			}
			for i := range x {
				for j := range x {
					g[i*cols+j] += x[i] * x[j]
				}
			}
		}
		dense[m] = g
		for i := range cols {
			for j := 0; j <= i; j++ {
				in.Gram = append(in.Gram, g[i*cols+j])
			}
		}
		in.Count = append(in.Count, float64(tokens))
	}
	cal := &imatrix.Calibration{
		Tensors: map[string]*imatrix.Moments{
			"blk.0.attn_q.weight": {Name: "blk.0.attn_q.weight", Input: in.Name, Width: cols, Mats: mats},
			"blk.0.attn_k.weight": {Name: "blk.0.attn_k.weight", Input: in.Name, Width: cols, Mats: mats},
		},
		Inputs: []*imatrix.Input{in},
	}
	return w, cal, dense
}

// TestSparseGPTDecider: the decider's kills and survivors are obs.Prune's
// on each band, to the bit; the quota of each band holds; the output error
// is below the magnitude mask's with unchanged survivors; every factor is
// dropped once its last band is decided.
func TestSparseGPTDecider(t *testing.T) {
	const rows, cols, mats, s = 300, 256, 2, 0.5
	w, file, dense := layer(1, rows, cols, mats, 600)
	w[5] = 0 // an original zero counts first
	m, _ := Lookup(SparseGPT)
	cfg := Config{Params: kernel.Params{Mode: kernel.Sparsity, Sparsity: s}}
	cfg.Calibration = NewCalibration("cal.gguf", file, DefaultDamp)
	tensors := []Tensor{{Name: "blk.0.attn_q.weight", Cols: cols, Rows: rows, Matrices: mats}, {Name: "blk.0.attn_k.weight", Cols: cols, Rows: rows, Matrices: mats}}
	var states []any
	for _, tn := range tensors {
		st, err := m.(Preparer).Prepare(context.Background(), tn, cfg)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, st)
	}
	d, err := m.NewDecider(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for ti, st := range states {
		got := make([]float32, len(w))
		var killed, changed uint64
		for mat := range mats {
			for _, nr := range [][2]int{{0, 256}, {256, 44}} {
				row0 := mat*rows + nr[0]
				vals := w[row0*cols : (row0+nr[1])*cols]
				b := &Band{Values: vals, Rows: nr[1], Cols: cols, Row0: row0, MatrixRow0: nr[0], State: st}
				mask := make([]byte, len(vals))
				c, err := d.Decide(b, mask)
				if err != nil {
					t.Fatal(err)
				}
				if c.Processed != uint64(len(vals)) {
					t.Fatalf("processed %d", c.Processed)
				}
				after := got[row0*cols : (row0+nr[1])*cols]
				ch, err := d.(Reconstructor).Survivors(b, mask, after)
				if err != nil {
					t.Fatal(err)
				}
				changed += ch
				if e := obs.OutputError(f64(vals), f64(after), nr[1], dense[mat], cols); c.OutputError != e || !(c.OutputError > 0 && c.OutputError < c.OutputEnergy) {
					t.Fatalf("output error %g (energy %g), obs says %g", c.OutputError, c.OutputEnergy, e)
				}
				// The same band through obs directly.
				f, err := obs.NewFactor(dense[mat], cols, 600, DefaultDamp)
				if err != nil {
					t.Fatal(err)
				}
				w64 := make([]float64, len(vals))
				for i, v := range vals {
					w64[i] = float64(v)
				}
				zs := make([]bool, len(vals))
				for i, v := range vals {
					zs[i] = v == 0
				}
				res, err := obs.Prune(w64, nr[1], f, obs.Options{Sparsity: s, Zeros: zs})
				if err != nil {
					t.Fatal(err)
				}
				zeros := 0
				for i := range vals {
					if res.Mask[i] {
						zeros++
					}
					want := float32(w64[i])
					if math.Float32bits(after[i]) != math.Float32bits(want) {
						t.Fatalf("tensor %d row %d col %d: %v, obs %v", ti, row0+i/cols, i%cols, after[i], want)
					}
					if (mask[i] != 0) != (res.Mask[i] && vals[i] != 0) {
						t.Fatalf("mask differs at %d", i)
					}
					if mask[i] != 0 {
						killed++
					}
				}
				if want := int(math.Round(s * float64(nr[1]*cols))); zeros != want {
					t.Fatalf("band of %d rows: %d zeros, want %d", nr[1], zeros, want)
				}
			}
		}
		var rule uint64
		for mat := range mats {
			mw := w[mat*rows*cols : (mat+1)*rows*cols]
			rule += BandBlockRule{}.Kills(rows, cols, s, func(r0, r1, c0, c1 int) int {
				z := 0
				for _, v := range mw[r0*cols : r1*cols] {
					if v == 0 {
						z++
					}
				}
				return z
			})
		}
		if killed != rule || rule != mats*(32768+5632)-1 {
			t.Fatalf("killed %d, the rule says %d", killed, rule)
		}
		if changed == 0 || changed >= uint64(len(w)) {
			t.Fatalf("%d survivors changed", changed)
		}
		// The layer-output error against magnitude's mask, survivors kept.
		for mat := range mats {
			lo, hi := mat*rows*cols, (mat+1)*rows*cols
			orig := f64(w[lo:hi])
			sg := f64(got[lo:hi])
			mag := slices.Clone(orig)
			order := make([]int, len(mag))
			for i := range order {
				order[i] = i
			}
			slices.SortStableFunc(order, func(a, b int) int { return cmpAbs(mag[a], mag[b]) })
			for _, i := range order[:len(order)/2] {
				mag[i] = 0
			}
			eSG := obs.OutputError(orig, sg, rows, dense[mat], cols)
			eMag := obs.OutputError(orig, mag, rows, dense[mat], cols)
			if !(eSG < eMag/2) {
				t.Fatalf("matrix %d: SparseGPT's output error %g is not below half magnitude's %g", mat, eSG, eMag)
			}
		}
	}
	c := cfg.Calibration
	for k, sf := range c.factors {
		if sf.pending != 0 || sf.f != nil {
			t.Fatalf("factor %v kept: %d bands pending", k, sf.pending)
		}
	}
	if len(c.factors) != mats {
		t.Fatalf("%d factors for one input of %d matrices", len(c.factors), mats)
	}
}

// f64 widens v.
func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// cmpAbs orders by |a|.
func cmpAbs(a, b float64) int {
	switch x, y := math.Abs(a), math.Abs(b); {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// TestSparseGPTRefusals: a tensor the file does not hold, a file without
// Grams, a width that does not match, and natural mode are refused by
// name.
func TestSparseGPTRefusals(t *testing.T) {
	_, file, _ := layer(2, 8, 16, 1, 20)
	m, _ := Lookup(SparseGPT)
	cfg := Config{Params: kernel.Params{Mode: kernel.Sparsity, Sparsity: 0.5}, Calibration: NewCalibration("cal.gguf", file, DefaultDamp)}
	p := m.(Preparer)
	for _, tc := range []struct {
		t    Tensor
		want string
	}{
		{Tensor{Name: "blk.9.ffn_up.weight", Cols: 16, Rows: 8, Matrices: 1}, "cal.gguf: no calibration entry for target tensor blk.9.ffn_up.weight"},
		{Tensor{Name: "blk.0.attn_q.weight", Cols: 32, Rows: 8, Matrices: 1}, "input blk.0.attn_q.weight is 16 wide x 1 matrices, tensor blk.0.attn_q.weight 32 x 1"},
	} {
		if _, err := p.Prepare(context.Background(), tc.t, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.t.Name, err, tc.want)
		}
	}
	file.Inputs[0].Gram = nil
	if _, err := p.Prepare(context.Background(), Tensor{Name: "blk.0.attn_q.weight", Cols: 16, Rows: 8, Matrices: 1}, cfg); err == nil || !strings.Contains(err.Error(), "calibrate with --gram") {
		t.Errorf("no Gram: %v", err)
	}
	if err := m.Validate(Config{Params: kernel.Params{Mode: kernel.Natural}}); err == nil {
		t.Error("natural mode accepted")
	}
}
