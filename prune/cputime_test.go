package prune

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/testmodels"
)

// TestReportCPU checks the report's CPU breakdown on a Q4_K model: every
// stage used some CPU time, and the stages, read from their threads'
// clocks, add up to no more than the process used over the run.
func TestReportCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the threads' clocks are read on Linux only")
	}
	dir := t.TempDir()
	c := testmodels.DefaultConfig()
	c.Type = gguf.TypeQ4_K
	c.Layers = 1
	in := filepath.Join(dir, "in.gguf")
	if err := testmodels.Write(in, c, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := File(context.Background(), in, filepath.Join(dir, "out.gguf"), Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	cpu := r.CPU
	t.Logf("CPU seconds: %+v", cpu)
	if cpu.Decode <= 0 || cpu.Decide <= 0 || cpu.Surgery <= 0 || cpu.Hash <= 0 {
		t.Errorf("a stage used no CPU time: %+v", cpu)
	}
	// The process's time is counted in microseconds, the threads' in
	// nanoseconds: allow a few microseconds of rounding.
	if parts := cpu.Decode + cpu.Decide + cpu.Surgery + cpu.Hash; parts > cpu.Total+1e-5 {
		t.Errorf("stages add up to %.6f s, more than the run's %.6f s", parts, cpu.Total)
	}
}
