package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestPruneSplitInterrupted sends SIGINT (Ctrl-C) to the built binary
// while it writes the third shard of a split output and its control twin:
// the shards are still temporary files then, and it must exit 130 and
// leave no shard and no temporary file.
func TestPruneSplitInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and writes a 100 MB model")
	}
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "physarium-gguf")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	in := filepath.Join(dir, "in.gguf")
	if out, err := exec.Command(bin, "testmodel", "--embd", "1024", "--ff", "4096", "--heads", "8", "--type", "f16", "--layers", "4", in).CombinedOutput(); err != nil {
		t.Fatalf("testmodel: %v\n%s", err, out)
	}
	// 39 tensors, 4 a shard: 10 shards.
	cmd := exec.Command(bin, "prune", "--quiet", "--threads", "1", "--split-max-tensors", "4", "--control", filepath.Join(dir, "ctl.gguf"), in, filepath.Join(dir, "out.gguf"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for reached := false; !reached; {
		select {
		case err := <-done:
			t.Fatalf("prune ended before the third shard was written: %v", err)
		case <-deadline:
			cmd.Process.Kill()
			t.Fatal("the third shard was not written within 2 minutes")
		case <-time.After(5 * time.Millisecond):
		}
		parts, _ := filepath.Glob(filepath.Join(dir, "out-00003-of-00010.gguf.partial-*"))
		for _, p := range parts {
			// Past its header (a few KB): its first 8 MB tensor is being written.
			if st, err := os.Stat(p); err == nil && st.Size() > 1<<20 {
				reached = true
			}
		}
	}
	if parts, _ := filepath.Glob(filepath.Join(dir, "*.partial-*")); len(parts) != 20 {
		t.Errorf("%d temporary files before SIGINT, want the 10 shards of the output and the 10 of the control twin: %v", len(parts), parts)
	}
	// No shard lands before all are complete.
	if landed, _ := filepath.Glob(filepath.Join(dir, "*-of-00010.gguf")); len(landed) != 0 {
		t.Errorf("shards in place before the run ended: %v", landed)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("prune after SIGINT: %v, want exit 130", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "in.gguf" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("left behind after SIGINT: %v", names)
	}
}
