package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestBinary builds physarium-gguf with a version set by -ldflags and
// checks what a shell sees: the version, the "physarium-gguf: " error prefix
// on stderr, and the exit codes (2 for usage errors, 1 for failures).
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "physarium-gguf")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	build := exec.Command(goTool, "build", "-ldflags", "-X main.version=v9.8.7-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	if out, _, code := run("--version"); code != 0 || !strings.Contains(out, "v9.8.7-test") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	for _, args := range [][]string{{}, {"nope"}, {"inspect"}, {"testmodel", "--layers", "x", "m.gguf"}, {"dump", "--force"}} {
		out, stderr, code := run(args...)
		if code != 2 || !strings.Contains(stderr, "physarium-gguf: ") {
			t.Errorf("%q: exit %d, stderr %q, want 2 and the prefix", args, code, stderr)
		}
		if out != "" {
			t.Errorf("%q: usage error wrote to stdout: %q", args, out)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing.gguf")
	if _, stderr, code := run("inspect", missing); code != 1 || !strings.HasPrefix(stderr, "physarium-gguf: ") || !strings.Contains(stderr, "missing.gguf") {
		t.Errorf("inspect of a missing file: exit %d, stderr %q", code, stderr)
	}
	model := filepath.Join(t.TempDir(), "m.gguf")
	if _, stderr, code := run("testmodel", "--layers", "1", model); code != 0 {
		t.Fatalf("testmodel: exit %d, %s", code, stderr)
	}
	if out, _, code := run("inspect", "--json", model); code != 0 || !strings.HasPrefix(out, `{"version":3,`) {
		t.Errorf("inspect --json: exit %d, %.40q", code, out)
	}
}
