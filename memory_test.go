package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
)

// TestPruneMemoryFlat prunes generated F16 models of about 50 MB and 400 MB
// with the built binary and checks that the peak RSS does not grow with the
// model: the larger model may use at most 40 MB more, and neither more than
// 300 MB.
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
	peak := func(layers string) int64 {
		in := filepath.Join(dir, "m"+layers+".gguf")
		gen := exec.Command(bin, "testmodel", "--embd", "1024", "--ff", "4096", "--heads", "8", "--type", "f16", "--layers", layers, in)
		if out, err := gen.CombinedOutput(); err != nil {
			t.Fatalf("testmodel: %v\n%s", err, out)
		}
		cmd := exec.Command(bin, "prune", "--quiet", "--threads", "2", in, filepath.Join(dir, "out"+layers+".gguf"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("prune: %v\n%s", err, out)
		}
		return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	}
	small, large := peak("2"), peak("16")
	t.Logf("peak RSS: %d MB pruning a 2-layer (~50 MB) model, %d MB pruning a 16-layer (~400 MB) model", small>>20, large>>20)
	if large > small+40<<20 || large > 300<<20 {
		t.Errorf("peak RSS grows with the model: %d MB -> %d MB", small>>20, large>>20)
	}
}
