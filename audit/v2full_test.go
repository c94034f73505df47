package audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/testmodels"
)

// TestFullFoodReplay: files of activation-flow on the full v2 food (the
// default and explicit factors, sparsity and natural mode, another rank;
// F32 and Q8_0) audit clean, and with --calibration their kills are
// replayed exactly; another calibration file is refused by its sha256.
// Adaptive v2 full (--reconstruct, also N:M) audits clean and names what
// needs the calibration file.
func TestFullFoodReplay(t *testing.T) {
	ctx := context.Background()
	for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeQ8_0} {
		dir := t.TempDir()
		cfg := testmodels.DefaultConfig()
		cfg.Layers, cfg.Type = 1, typ
		orig := filepath.Join(dir, "m.gguf")
		if err := testmodels.Write(orig, cfg, gguf.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cal := filepath.Join(dir, "cal.gguf")
		writeCalibration(t, cal, orig)
		other := filepath.Join(dir, "other.gguf")
		raw, err := os.ReadFile(cal)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(other, append(raw, 0), 0o644); err != nil { // same statistics, another sha256
			t.Fatal(err)
		}
		all, err := method.ParseFactors("act,stab^-1,contrib^0.5,seqcontrib^0.5")
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range []struct {
			o       prune.Options
			natural bool
		}{{}, {o: prune.Options{Factors: all}}, {o: prune.Options{Rank: method.RankRowFlow}}, {natural: true}} {
			o := c.o
			p := kernel.DefaultParams()
			if !c.natural {
				p.Mode, p.Sparsity = kernel.Sparsity, 0.5
			}
			o.Params, o.Method, o.Calibration, o.Threads = &p, method.ActivationFlow, cal, 2
			out := filepath.Join(dir, "p.gguf")
			o.Overwrite = true
			rep, err := prune.File(ctx, orig, out, o)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(rep.Importance, "v2 full food") || rep.Reconstructed || rep.Killed == 0 {
				t.Fatalf("case %d: report %q, reconstructed %v, killed %d", i, rep.Importance, rep.Reconstructed, rep.Killed)
			}
			r, err := File(ctx, out, Options{Against: orig})
			if err != nil {
				t.Fatal(err)
			}
			if !r.OK() || r.Replay.Ran || !strings.Contains(r.Replay.Reason, "--calibration") {
				t.Fatalf("case %d without --calibration: %+v %+v", i, r.Replay, r.Disagreements)
			}
			r, err = File(ctx, out, Options{Against: orig, Calibration: cal})
			if err != nil {
				t.Fatal(err)
			}
			if !r.OK() || !r.Replay.Ran || r.Killed == nil || !r.Killed.Exact || r.Killed.Lo != rep.Killed {
				t.Fatalf("case %d with --calibration: replay %+v, killed %+v (prune %d), %+v", i, r.Replay, r.Killed, rep.Killed, r.Disagreements)
			}
			r, err = File(ctx, out, Options{Against: orig, Calibration: other})
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() || r.Replay.Ran {
				t.Fatalf("case %d: another calibration file agreed: %+v", i, r.Replay)
			}
		}
		for _, pat := range []method.Pattern{{}, {N: 2, M: 4}} {
			t.Run("adaptive-"+typ.String()+"-"+pat.String(), func(t *testing.T) {
				auditReconstructed(t, orig, cal, strings.ToLower(typ.String()), prune.Options{Method: method.ActivationFlow, Reconstruct: true, Pattern: pat})
			})
		}
	}
}
