package audit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/testmodels"
)

// pair writes a test model and its pruned twin.
func pair(t *testing.T, cfg testmodels.Config) (orig, pruned string, r *prune.Report) {
	t.Helper()
	dir := t.TempDir()
	orig = filepath.Join(dir, "m.gguf")
	if err := testmodels.Write(orig, cfg, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pruned = filepath.Join(dir, "p.gguf")
	r, err := prune.File(context.Background(), orig, pruned, prune.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return orig, pruned, r
}

// TestChunksDoNotMatter: decoding a few blocks at a time (bounded memory)
// gives the same report as large chunks.
func TestChunksDoNotMatter(t *testing.T) {
	cfg := testmodels.DefaultConfig()
	cfg.Layers, cfg.Type = 1, gguf.TypeQ4_K
	orig, pruned, _ := pair(t, cfg)
	ctx := context.Background()
	big, err := File(ctx, pruned, Options{Against: orig})
	if err != nil {
		t.Fatal(err)
	}
	small, err := File(ctx, pruned, Options{Against: orig, ChunkWeights: 300}) // one 256-weight block per chunk
	if err != nil {
		t.Fatal(err)
	}
	if !big.OK() || !reflect.DeepEqual(big, small) {
		a, _ := json.Marshal(big)
		b, _ := json.Marshal(small)
		t.Fatalf("chunk size changed the audit:\n%s\n%s", a, b)
	}
}

// TestMoE: 3-D expert tensors are tiled expert by expert and audit clean.
func TestMoE(t *testing.T) {
	cfg := testmodels.DefaultConfig()
	cfg.Layers, cfg.Embd, cfg.FF, cfg.Type = 1, 64, 96, gguf.TypeF16
	cfg.Experts, cfg.ExpertsUsed = 3, 2
	orig, pruned, rep := pair(t, cfg)
	r, err := File(context.Background(), pruned, Options{Against: orig})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("disagreements: %+v", r.Disagreements)
	}
	var three bool
	for _, ta := range r.Tensors {
		three = three || len(ta.Shape) == 3
	}
	if !three || r.Weights != rep.Weights || r.Killed == nil || !r.Killed.Exact || r.Killed.Lo != rep.Killed {
		t.Fatalf("3-D targets %v, weights %+v killed %+v; prune %+v %d", three, r.Weights, r.Killed, rep.Weights, rep.Killed)
	}
}

// TestDenseNoKeys: a model without physarium.* keys reports the zeros of
// its projection tensors and no disagreement; against itself every tensor
// and key agrees.
func TestDenseNoKeys(t *testing.T) {
	cfg := testmodels.DefaultConfig()
	cfg.Layers, cfg.Embd, cfg.FF = 1, 64, 96
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := testmodels.Write(path, cfg, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := File(context.Background(), path, Options{Against: path})
	if err != nil {
		t.Fatal(err)
	}
	if r.Pruned || !r.OK() || r.TargetTensors != 7 || r.Killed != nil {
		t.Fatalf("%+v", r)
	}
}

func TestUnreadable(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.gguf")
	os.WriteFile(bad, []byte("GGUF\x03\x00\x00\x00 truncated"), 0o644)
	if _, err := File(context.Background(), bad, Options{}); err == nil {
		t.Fatal("no error for a truncated file")
	}
	cfg := testmodels.DefaultConfig()
	cfg.Layers, cfg.Embd, cfg.FF = 1, 64, 96
	good := filepath.Join(dir, "m.gguf")
	if err := testmodels.Write(good, cfg, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := File(context.Background(), good, Options{Against: bad}); err == nil {
		t.Fatal("no error for an unreadable original")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := File(ctx, good, Options{}); err == nil {
		t.Fatal("a cancelled audit returned no error")
	}
}
