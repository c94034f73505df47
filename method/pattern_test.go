package method

import (
	"math/rand/v2"
	"testing"

	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/obs"
)

// TestPatternDecider: every method's N:M decider leaves exactly the
// group quota of zeros in every group of every row (a shorter last group
// too), the original's zeros counting first, and kills in each group the
// weights with the lowest scores of its own Scorer.
func TestPatternDecider(t *testing.T) {
	const rows, cols = 40, 300 // 300 = 37*8 + 4: a short last group for 4:8
	rng := rand.New(rand.NewPCG(3, 3))
	vals := make([]float32, rows*cols)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
		if i%29 == 0 {
			vals[i] = 0
		}
	}
	act := make([]float32, cols)
	for i := range act {
		act[i] = float32(1 + i%5)
	}
	sparsity := Config{Params: kernel.DefaultParams()}
	sparsity.Params.Mode, sparsity.Params.Sparsity = kernel.Sparsity, 0.5
	for _, name := range []string{Magnitude, Wanda, MagnitudeFlow, ActivationFlow} {
		for _, p := range []Pattern{{2, 4}, {4, 8}, {1, 4}} {
			m := Patterned(lookupT(t, name))
			cfg := sparsity
			cfg.Pattern = p
			if m.Rule(cfg).String() != (PatternRule{p}).String() {
				t.Fatalf("%s: rule %s", name, m.Rule(cfg))
			}
			d, err := m.NewDecider(cfg)
			if err != nil {
				t.Fatal(err)
			}
			b := &Band{Values: vals, Rows: rows, Cols: cols}
			if m.ActivationAware() {
				b.Act = act
			}
			mask := make([]byte, len(vals))
			if _, err := d.Decide(b, mask); err != nil {
				t.Fatal(err)
			}
			score := make([]float32, len(vals))
			if err := d.(*patternDecider).sc.Score(b, score); err != nil {
				t.Fatal(err)
			}
			for r := range rows {
				for c0 := 0; c0 < cols; c0 += p.M {
					lo, hi := r*cols+c0, r*cols+min(c0+p.M, cols)
					q := obs.GroupQuota(p.N, p.M, hi-lo)
					zeros, orig, maxKilled, minKept := 0, 0, float32(-1), float32(1e30)
					for i := lo; i < hi; i++ {
						if vals[i] == 0 {
							orig++
						}
						if mask[i] != 0 && vals[i] == 0 {
							t.Fatalf("%s %s: a zero marked", name, p)
						}
						switch {
						case vals[i] == 0 || mask[i] != 0:
							zeros++
							if mask[i] != 0 {
								maxKilled = max(maxKilled, score[i])
							}
						default:
							minKept = min(minKept, score[i])
						}
					}
					if zeros != max(q, orig) {
						t.Fatalf("%s %s: row %d group at %d: %d zeros, quota %d", name, p, r, c0, zeros, q)
					}
					if maxKilled > minKept {
						t.Fatalf("%s %s: row %d group at %d kills score %v above a kept %v", name, p, r, c0, maxKilled, minKept)
					}
				}
			}
		}
	}
	if _, err := ParsePattern("4:2"); err == nil {
		t.Error("4:2 accepted")
	}
	if p, err := ParsePattern("2:4"); err != nil || p != (Pattern{2, 4}) || p.String() != "2:4" {
		t.Errorf("2:4: %v %v", p, err)
	}
}

// lookupT returns a registered method.
func lookupT(t *testing.T, name string) Method {
	m, ok := Lookup(name)
	if !ok {
		t.Fatalf("no method %s", name)
	}
	return m
}
