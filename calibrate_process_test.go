//go:build linux && cgo

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/physarium/physarium-gguf/imatrix"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

const calibText = "../shared/models/tinystories_valid_calib.txt"

// TestCalibrateProcess runs the built binary's calibrate as a user does, on
// generated models with llama.cpp's runtime: interrupted by SIGINT mid-run
// and writing to a full disk, it exits non-zero with a clear error and
// leaves no OUT and no temporary file; with --gram, one layer's Grams per
// pass (--max-memory of one layer, as the default plans for layers of 256
// MiB or more) keep the peak RSS within one layer's matrices of a run
// without the Gram, well below a run that holds every layer's at once.
func TestCalibrateProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs llama.cpp")
	}
	lib := rt.LibDir(rt.Require(t))
	dir := t.TempDir()
	bin := filepath.Join(dir, "physarium-gguf")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	model := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		if out, err := exec.Command(bin, append(append([]string{"testmodel"}, args...), p)...).CombinedOutput(); err != nil {
			t.Fatalf("testmodel %v: %v\n%s", args, err, out)
		}
		return p
	}
	calibrate := func(args ...string) *exec.Cmd {
		return exec.Command(bin, append([]string{"calibrate", "--llama-lib", lib, "--text", calibText, "--threads", "2"}, args...)...)
	}
	small := model("small.gguf")
	t.Run("interrupt", func(t *testing.T) { testInterrupt(t, calibrate, small) })
	t.Run("full disk", func(t *testing.T) { testFullDisk(t, calibrate, small) })
	t.Run("memory", func(t *testing.T) {
		const embd, ff, layers = 512, 2048, 4
		m := model("wide.gguf", "--layers", fmt.Sprint(layers), "--embd", fmt.Sprint(embd), "--ff", fmt.Sprint(ff),
			"--heads", "8", "--type", "f16")
		testMemory(t, calibrate, m, 8*uint64(3*imatrix.PackedLen(embd)+imatrix.PackedLen(ff)), layers)
	})
}

// entries lists dir's file names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// exitCode returns the child's exit code, failing the test when it did not
// run or was killed by a signal.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) || ee.ExitCode() < 0 {
		t.Fatalf("child: %v", err)
	}
	return ee.ExitCode()
}

// testInterrupt sends SIGINT once the first chunk group of a run over the
// whole text is done.
func testInterrupt(t *testing.T, calibrate func(...string) *exec.Cmd, model string) {
	out := filepath.Join(t.TempDir(), "out.gguf")
	cmd := calibrate("--ctx", "64", "--gram", model, out)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "chunk groups") {
			break
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
	}
	code := exitCode(t, cmd.Wait())
	s := log.String()
	if code != 130 || !strings.Contains(s, "interrupted by SIGINT") {
		t.Fatalf("exit %d after SIGINT, want 130 and the reason:\n%s", code, s)
	}
	if left := entries(t, filepath.Dir(out)); len(left) != 0 {
		t.Fatalf("left behind after SIGINT: %v", left)
	}
	t.Logf("stopped %v after SIGINT: %s", time.Since(sent).Round(time.Millisecond), strings.TrimSpace(s[strings.LastIndex(strings.TrimSpace(s), "\n")+1:]))
}

// testFullDisk writes the output to a 1 MiB tmpfs (mounted when the test
// may; else under a 1 MiB file size limit, where writes fail with EFBIG
// as on a full disk), smaller than the Grams.
func testFullDisk(t *testing.T, calibrate func(...string) *exec.Cmd, model string) {
	dir := t.TempDir()
	args := []string{"--ctx", "64", "--chunks", "2", "--gram", model, filepath.Join(dir, "out.gguf")}
	var cmd *exec.Cmd
	want := "no space left on device"
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err == nil {
		t.Cleanup(func() {
			if err := syscall.Unmount(dir, 0); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
			}
		})
		cmd = calibrate(args...)
	} else {
		t.Logf("no tmpfs (%v): a 1 MiB file size limit instead", err)
		want = "file too large"
		c := calibrate(args...)
		cmd = exec.Command("bash", append([]string{"-c", `ulimit -f 1024 && exec "$@"`, "bash"}, c.Args...)...)
	}
	out, err := cmd.CombinedOutput()
	code := exitCode(t, err)
	s := string(out)
	if code != 1 || !strings.Contains(s, want) || !strings.Contains(s, "out.gguf") {
		t.Fatalf("exit %d, want 1 and an error naming out.gguf saying %q:\n%s", code, want, s)
	}
	if left := entries(t, dir); len(left) != 0 {
		t.Fatalf("left behind on a full disk: %v", left)
	}
	t.Logf("%s", strings.TrimSpace(s[strings.LastIndex(strings.TrimSpace(s), "\n")+1:]))
}

// testMemory measures the peak RSS of calibrate without the Gram, with it
// one layer per pass and with every layer in one pass.
func testMemory(t *testing.T, calibrate func(...string) *exec.Cmd, model string, layerBytes uint64, layers int) {
	dir := t.TempDir()
	peak := func(name string, flags ...string) int64 {
		out := filepath.Join(dir, name+".gguf")
		cmd := calibrate(slices.Concat([]string{"--ctx", "128", "--chunks", "2", "--quiet"}, flags, []string{model, out})...)
		rss := measured(t, cmd)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		return rss()
	}
	none := peak("none")
	perLayer := peak("per-layer", "--gram", "--max-memory", fmt.Sprint(layerBytes))
	onePass := peak("one-pass", "--gram", "--max-memory", "1G")
	a, err := os.ReadFile(filepath.Join(dir, "per-layer.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "one-pass.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("one layer per pass and one pass wrote different bytes")
	}
	const mb = 1 << 20
	t.Logf("peak RSS: %d MB without the Gram, %d MB with it one layer per pass, %d MB in one pass (one layer's Grams %d MB, %d layers)",
		none/mb, perLayer/mb, onePass/mb, layerBytes/mb, layers)
	if perLayer > none+int64(layerBytes)+24*mb {
		t.Errorf("one layer per pass: %d MB over the run without the Gram, one layer's Grams are %d MB", (perLayer-none)/mb, layerBytes/mb)
	}
	if onePass < perLayer+int64(layers-2)*int64(layerBytes) {
		t.Errorf("one pass %d MB, one layer per pass %d MB: want a difference of about %d layers' Grams", onePass/mb, perLayer/mb, layers-1)
	}
}
