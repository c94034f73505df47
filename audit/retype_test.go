package audit_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/testmodels"
)

// TestAuditRetype: a file pruned with --retype (IQ4_NL written as Q4_0)
// audits clean alone and against the original, its kills replayed exactly
// and every block checked; a wrong physarium.retype, a missing one and a
// changed block of a retyped target each disagree.
func TestAuditRetype(t *testing.T) {
	const key = "physarium.retype"
	dir := t.TempDir()
	cfg := testmodels.DefaultConfig()
	cfg.Layers, cfg.Type = 1, gguf.TypeIQ4_NL
	orig := filepath.Join(dir, "model.gguf")
	if err := testmodels.Write(orig, cfg, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pruned := filepath.Join(dir, "model.q4_0.gguf")
	to := gguf.TypeQ4_0
	rep, err := prune.File(context.Background(), orig, pruned, prune.Options{Threads: 1, Retype: &to})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Killed == 0 || rep.ExactZero != rep.Killed {
		t.Fatalf("%d killed, %d exact zeros: Q4_0 holds 0", rep.Killed, rep.ExactZero)
	}
	wantAgree(t, pruned)
	r := wantAgree(t, "--against", orig, pruned)
	if r.Killed == nil || !r.Killed.Exact || r.Killed.Lo != rep.Killed {
		t.Errorf("killed %+v, prune said %d", r.Killed, rep.Killed)
	}
	target := rep.Tensors[0].Name
	if c := findCheck(t, r, "tensor.data", target); c.Status != "verified exactly" || !strings.Contains(c.Stored, "from IQ4_NL") {
		t.Errorf("tensor.data: %+v", c)
	}
	if c := findCheck(t, r, key, ""); c.Status != "verified exactly" {
		t.Errorf("%s: %+v", key, c)
	}
	wrong := filepath.Join(dir, "wrong.gguf")
	rewrite(t, pruned, wrong, setKV(key, gguf.String("Q4_1")), nil)
	wantDisagreement(t, key, "", wrong)
	wantDisagreement(t, "tensor.type", target, "--against", orig, wrong)
	missing := filepath.Join(dir, "missing.gguf")
	rewrite(t, pruned, missing, dropKV(key), nil)
	wantDisagreement(t, "tensor.type", target, "--against", orig, missing)
	changed := filepath.Join(dir, "changed.gguf")
	rewrite(t, pruned, changed, nil, func(name string, b []byte) []byte {
		if name == target {
			b[0] ^= 0x40 // the first block's fp16 scale
		}
		return b
	})
	wantDisagreement(t, "tensor.data", target, "--against", orig, changed)
}
