package audit

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/testmodels"
)

// writeCalibration writes a calibration file with Gram matrices for the
// projection tensors of the model at model: each tensor reads an input of
// its own, whose Gram is that of 3*width random correlated tokens.
func writeCalibration(t *testing.T, path, model string) {
	t.Helper()
	f, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(5, 5))
	c := &imatrix.Calibration{
		Matrix:  imatrix.Matrix{Datasets: []string{"calib.txt"}, ChunkCount: 1, ChunkSize: 64},
		Tensors: map[string]*imatrix.Moments{},
		Info:    imatrix.Info{Text: "calib.txt", TextSHA256: "00", Model: filepath.Base(model), Tokens: 64, Gram: true},
	}
	for _, ti := range f.Tensors {
		if len(ti.Shape) < 2 || !projection.MatchString(ti.Name) {
			continue
		}
		n, mats := int(ti.Shape[0]), 1
		for _, d := range ti.Shape[2:] {
			mats *= int(d)
		}
		tokens := 3 * n
		mo := &imatrix.Moments{Name: ti.Name, Input: ti.Name, Width: n, Mats: mats}
		in := &imatrix.Input{Name: ti.Name, Node: "node-" + ti.Name, Width: n, Mats: mats}
		x := make([]float64, n)
		for range mats {
			g := make([]float64, imatrix.PackedLen(n))
			sq := make([]float64, n)
			for range tokens {
				base := rng.NormFloat64()
				for j := range x {
					x[j] = rng.NormFloat64() + base*float64(j%3)
					sq[j] += x[j] * x[j]
				}
				for i := range n {
					for j := 0; j <= i; j++ {
						g[imatrix.PackedIndex(i, j)] += x[i] * x[j]
					}
				}
			}
			in.Gram = append(in.Gram, g...)
			in.Count = append(in.Count, float64(tokens))
			mo.Count = append(mo.Count, float64(tokens))
			mo.Sq = append(mo.Sq, sq...)
			mo.Sum = append(mo.Sum, make([]float64, n)...)
			mo.Abs = append(mo.Abs, sq...)
		}
		c.Tensors[ti.Name] = mo
		c.Inputs = append(c.Inputs, in)
	}
	if err := c.WriteGGUF(path, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestSparseGPTAudits: SparseGPT files, --reconstruct files of wanda,
// v1 and v2 and N:M files (2:4, 4:8) (F32, Q8_0 with zeros in the original, F16 experts)
// and their control twins audit clean alone and against the original;
// the kill counts are exact by the count rule in sparsity mode, the
// survivors' count exact for F32, and what cannot be checked without the
// calibration file is said by name.
func TestSparseGPTAudits(t *testing.T) {
	for _, mc := range []struct {
		name string
		cfg  func(*testmodels.Config)
	}{
		{"f32", func(c *testmodels.Config) {}},
		{"q8_0", func(c *testmodels.Config) { c.Type = gguf.TypeQ8_0 }},
		{"moe-f16", func(c *testmodels.Config) {
			c.Embd, c.FF, c.Type, c.Experts, c.ExpertsUsed = 64, 96, gguf.TypeF16, 3, 2
		}},
	} {
		t.Run(mc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testmodels.DefaultConfig()
			cfg.Layers = 1
			mc.cfg(&cfg)
			orig := filepath.Join(dir, "m.gguf")
			if err := testmodels.Write(orig, cfg, gguf.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			cal := filepath.Join(dir, "cal.gguf")
			writeCalibration(t, cal, orig)
			for _, o := range []prune.Options{
				{Method: "sparsegpt"},
				{Method: "wanda", Imatrix: cal, Reconstruct: true},
				{Method: "magnitude-flow", Reconstruct: true},
				{Method: "sparsegpt", Pattern: method.Pattern{N: 2, M: 4}},
				{Method: "activation-flow", Imatrix: cal, Reconstruct: true, Pattern: method.Pattern{N: 4, M: 8}},
				{Method: "magnitude", Pattern: method.Pattern{N: 2, M: 4}},
			} {
				name := o.Method
				if !o.Pattern.None() {
					name += "-" + strings.Replace(o.Pattern.String(), ":", "of", 1)
				}
				t.Run(name, func(t *testing.T) {
					auditReconstructed(t, orig, cal, mc.name, o)
				})
			}
		})
	}
}

// auditReconstructed prunes orig with o and the calibration file cal and
// audits the result and its control twin.
func auditReconstructed(t *testing.T, orig, cal, typ string, o prune.Options) {
	ctx := context.Background()
	dir := t.TempDir()
	o.Threads = 2
	if o.Reconstruct || o.Method == "sparsegpt" {
		o.Calibration = cal
	}
	p := kernel.DefaultParams()
	if o.Method != "magnitude-flow" {
		p.Mode, p.Sparsity = kernel.Sparsity, 0.4
	}
	if !o.Pattern.None() {
		p.Mode, p.Sparsity = kernel.Sparsity, float64(o.Pattern.N)/float64(o.Pattern.M)
	}
	o.Params = &p
	out, ctl := filepath.Join(dir, "p.gguf"), filepath.Join(dir, "c.gguf")
	o.Control = ctl
	rep, err := prune.File(ctx, orig, out, o)
	if err != nil {
		t.Fatal(err)
	}
	moves := o.Calibration != ""
	if rep.Reconstructed != moves || (rep.SurvivorsChanged.Numerator > 0) != moves || rep.Killed == 0 {
		t.Fatalf("report: reconstructed %v, survivors %v, killed %d", rep.Reconstructed, rep.SurvivorsChanged, rep.Killed)
	}
	r := agreesAloneAndAgainst(t, ctx, out, orig)
	if p.Mode == kernel.Sparsity && (r.Killed == nil || !r.Killed.Exact || r.Killed.Lo != rep.Killed) {
		t.Errorf("killed %+v, prune %d", r.Killed, rep.Killed)
	}
	if moves {
		ck := findCheck(t, r, "physarium.survivors_changed")
		if typ == "f32" && ck.Status != StatusExact || typ != "f32" && (ck.Status != StatusUnverifiable || !strings.Contains(ck.Note, "calibration")) {
			t.Errorf("survivors_changed: %+v", ck)
		}
	}
	if ck := findCheck(t, r, "physarium.errata"); ck.Status != StatusExact && !(ck.Status == StatusBounds && p.Mode == kernel.Natural) || strings.Contains(ck.Stored, "The survivors moved") != moves {
		t.Errorf("errata: %+v", ck)
	}
	why := "calibration file"
	if !o.Pattern.None() {
		why = "physarium.pattern"
		if ck := findCheck(t, r, "physarium.pattern"); ck.Status != StatusExact {
			t.Errorf("pattern: %+v", ck)
		}
	}
	if r.Replay.Ran || !strings.Contains(r.Replay.Reason, why) {
		t.Errorf("replay %+v", r.Replay)
	}
	if moves {
		replayFromCalibration(t, orig, cal, out, ctl, rep)
	}
	for _, co := range []Options{{}, {Against: orig}, {Against: orig, Pruned: out}} {
		cr, err := File(ctx, ctl, co)
		if err != nil {
			t.Fatal(err)
		}
		if !cr.OK() || !cr.Control {
			t.Fatalf("control twin %+v: %+v", co, cr.Disagreements)
		}
	}
	t.Logf("killed %d of %d (zero before %d), %d survivors changed; audit killed %s", rep.Killed, rep.Weights.Target, rep.ZeroBefore, rep.SurvivorsChanged.Numerator, r.Killed)
}

// agreesAloneAndAgainst audits out on its own and against orig, fails the
// test unless both agree, and returns the audit against orig.
func agreesAloneAndAgainst(t *testing.T, ctx context.Context, out, orig string) *Report {
	t.Helper()
	alone, err := File(ctx, out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !alone.OK() {
		t.Fatalf("alone: %+v", alone.Disagreements)
	}
	r, err := File(ctx, out, Options{Against: orig})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("against: %+v", r.Disagreements)
	}
	return r
}
