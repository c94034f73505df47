package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestPruneMemoryFlat prunes generated F16 models of about 50 MB and 400 MB
// with the built binary and checks that the peak RSS does not grow with the
// model: the larger model may use at most 40 MB more, and neither more than
// 300 MB; nor with the larger model written as, or read from, 19 shards.
func TestPruneMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and writes 1 GB of models")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "physarium-gguf")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	prune := func(args ...string) int64 {
		cmd := exec.Command(bin, append([]string{"prune", "--quiet", "--threads", "2"}, args...)...)
		peak := measured(t, cmd)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("prune: %v\n%s", err, out)
		}
		return peak()
	}
	peak := func(layers string) int64 {
		in := filepath.Join(dir, "m"+layers+".gguf")
		gen := exec.Command(bin, "testmodel", "--embd", "1024", "--ff", "4096", "--heads", "8", "--type", "f16", "--layers", layers, in)
		if out, err := gen.CombinedOutput(); err != nil {
			t.Fatalf("testmodel: %v\n%s", err, out)
		}
		return prune(in, filepath.Join(dir, "out"+layers+".gguf"))
	}
	small, large := peak("2"), peak("16")
	t.Logf("peak RSS: %d MB pruning a 2-layer (~50 MB) model, %d MB pruning a 16-layer (~400 MB) model", small>>20, large>>20)
	if large > small+40<<20 || large > 300<<20 {
		t.Errorf("peak RSS grows with the model: %d MB -> %d MB", small>>20, large>>20)
	}
	// Shards: the 16-layer model written as 19 shards of at most 8 tensors,
	// then read as 19 shards (and written so again).
	toShards := prune("--split-max-tensors", "8", filepath.Join(dir, "m16.gguf"), filepath.Join(dir, "s16.gguf"))
	fromShards := prune(filepath.Join(dir, "s16-00001-of-00019.gguf"), filepath.Join(dir, "t16.gguf"))
	t.Logf("peak RSS: %d MB writing it as 19 shards, %d MB reading and writing 19 shards", toShards>>20, fromShards>>20)
	for _, p := range []int64{toShards, fromShards} {
		if p > small+40<<20 || p > 300<<20 {
			t.Errorf("peak RSS grows with the shards: %d MB for the file of one piece, %d MB with 19 shards", small>>20, p>>20)
		}
	}
}
