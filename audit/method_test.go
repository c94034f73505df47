package audit

import (
	"context"
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

// writeImatrix writes a GGUF importance matrix for the projection tensors
// of the model at model, except those in skip: in_sum2 = a_i^2 * count with
// a_i = (i*7919 % 13) + 1 (every matrix of an expert tensor on its own).
func writeImatrix(t *testing.T, path, model string, skip map[string]bool) {
	t.Helper()
	f, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := &imatrix.Matrix{Datasets: []string{"calib.txt"}, ChunkCount: 5, ChunkSize: 128, Entries: map[string]*imatrix.Entry{}}
	for _, ti := range f.Tensors {
		if len(ti.Shape) < 2 || !projection.MatchString(ti.Name) || skip[ti.Name] {
			continue
		}
		mats := 1
		for _, n := range ti.Shape[2:] {
			mats *= int(n)
		}
		sums := make([]float32, int(ti.Shape[0])*mats)
		for i := range sums {
			a := float32(i*7919%13 + 1)
			sums[i] = a * a * 10
		}
		m.Entries[ti.Name] = &imatrix.Entry{Name: ti.Name, Sums: sums, Counts: []float64{10}}
	}
	if err := m.WriteGGUF(path, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// methodCase is one way prune can be run.
type methodCase struct {
	method   method.Method
	mode     kernel.Mode
	rank     method.Rank
	fallback bool // one target missing from the imatrix, --imatrix-missing v1
}

func (c methodCase) String() string {
	s := c.method.Name() + "/" + c.mode.String()
	if c.rank != "" {
		s += "/" + string(c.rank)
	}
	if c.fallback {
		s += "/fallback"
	}
	return s
}

// lookup returns the registered method of a name.
func lookup(name string) method.Method {
	m, _ := method.Lookup(name)
	return m
}

func methodCases() []methodCase {
	cs := []methodCase{
		{method: lookup(method.MagnitudeFlow), mode: kernel.Natural},
		{method: lookup(method.MagnitudeFlow), mode: kernel.Sparsity},
		{method: lookup(method.ActivationFlow), mode: kernel.Natural},
		{method: lookup(method.ActivationFlow), mode: kernel.Natural, fallback: true},
		{method: lookup(method.Magnitude), mode: kernel.Sparsity},
		{method: lookup(method.Wanda), mode: kernel.Sparsity},
		{method: lookup(method.Wanda), mode: kernel.Sparsity, fallback: true},
	}
	for _, r := range method.Ranks() {
		cs = append(cs, methodCase{method: lookup(method.ActivationFlow), mode: kernel.Sparsity, rank: r})
	}
	return append(cs, methodCase{method: lookup(method.ActivationFlow), mode: kernel.Sparsity, rank: method.RankRowMould, fallback: true})
}

// TestMethodsMirrorPrune prunes generated models with every method, mode
// and v2 rank prune offers (and the --imatrix-missing v1 fallback), checks
// that prune's rules, as the audit calls them, give what prune wrote, and
// that every file audits clean alone and against its original, with the
// kill counts of sparsity mode exact by the count rule where no replay
// ran.
func TestMethodsMirrorPrune(t *testing.T) {
	ctx := context.Background()
	for _, mc := range []struct {
		name string
		cfg  func(*testmodels.Config)
	}{
		{"f32", func(c *testmodels.Config) {}},
		{"q8_0", func(c *testmodels.Config) { c.Type = gguf.TypeQ8_0 }}, // zeros before in the original
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
			full, part := filepath.Join(dir, "im.gguf"), filepath.Join(dir, "im-part.gguf")
			writeImatrix(t, full, orig, nil)
			const skipped = "blk.0.attn_k.weight"
			writeImatrix(t, part, orig, map[string]bool{skipped: true})
			for _, c := range methodCases() {
				t.Run(c.String(), func(t *testing.T) {
					p := kernel.DefaultParams()
					if c.mode == kernel.Sparsity {
						p.Mode, p.Sparsity = kernel.Sparsity, 0.4
					}
					opts := prune.Options{Threads: 1, Method: c.method.Name(), Rank: c.rank, Params: &p}
					if c.method.NeedsImatrix() {
						opts.Imatrix = full
						if c.fallback {
							opts.Imatrix, opts.ImatrixMissingV1 = part, true
						}
					}
					tmp := t.TempDir()
					out, ctl := filepath.Join(tmp, "p.gguf"), filepath.Join(tmp, "c.gguf")
					opts.Control = ctl
					rep, err := prune.File(ctx, orig, out, opts)
					if err != nil {
						t.Fatal(err)
					}
					rank := c.rank
					if rank == "" && c.method.Name() == method.ActivationFlow && c.mode == kernel.Sparsity {
						rank = method.DefaultRank
					}
					if rep.Version != c.method.Version() || rep.Importance != c.method.Importance(method.Config{Params: kernel.Params{Mode: c.mode}, Rank: rank}) || (rep.Imatrix != "") != c.method.NeedsImatrix() {
						t.Fatalf("rules drifted: prune wrote version %d importance %q imatrix %q; mirror %d %q activation %v",
							rep.Version, rep.Importance, rep.Imatrix, c.method.Version(), c.method.Importance(method.Config{Params: kernel.Params{Mode: c.mode}, Rank: rank}), c.method.NeedsImatrix())
					}
					if c.fallback && (len(rep.ImatrixMissing) != 1 || rep.ImatrixMissing[0] != skipped) {
						t.Fatalf("fallback: %q", rep.ImatrixMissing)
					}
					if rep.Killed == 0 {
						t.Fatal("nothing killed")
					}
					r := agreesAloneAndAgainst(t, ctx, out, orig)
					replayed := c.method == lookup(method.MagnitudeFlow) || c.method == lookup(method.Magnitude)
					if r.Replay.Ran != replayed || !replayed && !strings.Contains(r.Replay.Reason, "not verifiable by replay") {
						t.Errorf("replay %+v", r.Replay)
					}
					if c.mode == kernel.Sparsity && (r.Killed == nil || !r.Killed.Exact || r.Killed.Lo != rep.Killed) {
						t.Errorf("sparsity mode: killed %+v, prune %d", r.Killed, rep.Killed)
					}
					for _, key := range []string{"physarium.version", "physarium.importance", "physarium.activation_aware", "physarium.errata"} {
						ck := findCheck(t, r, key)
						if ck.Status != StatusExact && !(key == "physarium.errata" && ck.Status == StatusBounds && c.mode == kernel.Natural) {
							t.Errorf("%s: %+v", key, ck)
						}
					}
					// The control twin of every method audits clean as such.
					for _, o := range []Options{{}, {Against: orig}, {Against: orig, Pruned: out}} {
						cr, err := File(ctx, ctl, o)
						if err != nil {
							t.Fatal(err)
						}
						if !cr.OK() || !cr.Control {
							t.Fatalf("control twin %+v: %+v", o, cr.Disagreements)
						}
					}
					t.Logf("killed %d of %d (zero before %d); audit killed %s, replay %v", rep.Killed, rep.Weights.Target, rep.ZeroBefore, r.Killed, r.Replay.Ran)
				})
			}
		})
	}
}

func findCheck(t *testing.T, r *Report, key string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Key == key && c.Tensor == "" {
			return c
		}
	}
	t.Fatalf("no check %s", key)
	return Check{}
}
