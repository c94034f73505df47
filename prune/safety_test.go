package prune

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/testmodels"
)

// smallModel writes a small generated model into dir.
func smallModel(t *testing.T, dir string, c testmodels.Config) string {
	t.Helper()
	p := filepath.Join(dir, "in.gguf")
	if err := testmodels.Write(p, c, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func smallConfig() testmodels.Config {
	c := testmodels.DefaultConfig()
	c.Embd, c.FF, c.Layers = 256, 512, 1
	return c
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// onlyFiles fails unless dir holds exactly the named files.
func onlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("directory holds %v, want exactly %v", got, names)
	}
}

func TestRefuseOutputIsInput(t *testing.T) {
	dir := t.TempDir()
	in := smallModel(t, dir, smallConfig())
	sum := fileSum(t, in)
	link := filepath.Join(dir, "link.gguf")
	if err := os.Symlink(in, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard.gguf")
	if err := os.Link(in, hard); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{in, filepath.Join(dir, ".", "in.gguf"), link, hard} {
		_, err := File(context.Background(), in, out, Options{Overwrite: true})
		if err == nil || !strings.Contains(err.Error(), "is the input") {
			t.Errorf("out %s: err = %v, want a refusal naming the input", out, err)
		}
	}
	if fileSum(t, in) != sum {
		t.Fatal("input modified")
	}
	onlyFiles(t, dir, "hard.gguf", "in.gguf", "link.gguf")
}

func TestRefuseExistingOutput(t *testing.T) {
	dir := t.TempDir()
	in := smallModel(t, dir, smallConfig())
	out := filepath.Join(dir, "out.gguf")
	if err := os.WriteFile(out, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := File(context.Background(), in, out, Options{})
	if err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Fatal("existing output changed without Overwrite")
	}
	if _, err := File(context.Background(), in, out, Options{Overwrite: true}); err != nil {
		t.Fatalf("with Overwrite: %v", err)
	}
	onlyFiles(t, dir, "in.gguf", "out.gguf")
}

// nanModel writes a model whose last target tensor holds a NaN.
func nanModel(t *testing.T, dir string) (string, string) {
	t.Helper()
	in := smallModel(t, dir, smallConfig())
	f, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := f.Tensor("blk.0.ffn_down.weight")
	off := f.DataOffset + int64(ti.Offset) + 4*1000
	f.Close()
	fh, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], math.Float32bits(float32(math.NaN())))
	if _, err := fh.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	return in, ti.Name
}

// TestNaNFailsCleanly: the kernel's path (which finds the NaN itself) and
// a row-ranked baseline's (checked before ranking) both name the file,
// tensor and element, and leave nothing behind.
func TestNaNFailsCleanly(t *testing.T) {
	sparse := kernel.DefaultParams()
	sparse.Mode, sparse.Sparsity = kernel.Sparsity, 0.3
	for name, opts := range map[string]Options{
		"magnitude-flow": {},
		"magnitude":      {Method: method.Magnitude, Params: &sparse},
	} {
		dir := t.TempDir()
		in, tensor := nanModel(t, dir)
		sum := fileSum(t, in)
		out := filepath.Join(dir, "out.gguf")
		opts.Control = filepath.Join(dir, "ctrl.gguf")
		_, err := File(context.Background(), in, out, opts)
		if err == nil || !strings.Contains(err.Error(), tensor) || !strings.Contains(err.Error(), "element 1000") || !strings.Contains(err.Error(), in) {
			t.Fatalf("%s: err = %v, want one naming the file, tensor %s and element 1000", name, err, tensor)
		}
		onlyFiles(t, dir, "in.gguf")
		if fileSum(t, in) != sum {
			t.Fatalf("%s: input modified", name)
		}
	}
}

func TestCancelLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	in := smallModel(t, dir, smallConfig())
	sum := fileSum(t, in)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	_, err := File(ctx, in, filepath.Join(dir, "out.gguf"), Options{
		Control:  filepath.Join(dir, "ctrl.gguf"),
		Progress: func(Progress) { calls++; cancel() },
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if calls == 0 {
		t.Fatal("no progress before the cancel")
	}
	onlyFiles(t, dir, "in.gguf")
	if fileSum(t, in) != sum {
		t.Fatal("input modified")
	}
}

// TestFullDisk runs a prune in a child process whose file size limit
// (RLIMIT_FSIZE) is smaller than the output, so writes fail as on a full
// disk; the child must fail cleanly and leave nothing behind. In the split
// case the output and its control twin are split into 3 shards and the
// limit lets the first two be written whole: the third fails.
func TestFullDisk(t *testing.T) {
	if dir := os.Getenv("PHYSARIUM_FULLDISK_DIR"); dir != "" {
		signalIgnoreXFSZ()
		var opts Options
		limit := uint64(64 << 10)
		if os.Getenv("PHYSARIUM_FULLDISK_SPLIT") != "" {
			// Shards of 1.06, 1.05 and 1.58 MB of smallConfig's model.
			opts = Options{Split: Split{MaxTensors: 4}, Control: filepath.Join(dir, "ctl.gguf")}
			limit = 1_200_000
		}
		lim := &syscall.Rlimit{Cur: limit, Max: limit}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, lim); err != nil {
			fmt.Println("SETRLIMIT-FAILED", err)
			os.Exit(3)
		}
		_, err := File(context.Background(), filepath.Join(dir, "in.gguf"), filepath.Join(dir, "out.gguf"), opts)
		fmt.Println("CHILD-ERR:", err)
		if err == nil {
			os.Exit(0)
		}
		os.Exit(1)
	}
	for _, split := range []string{"", "split"} {
		dir := t.TempDir()
		in := smallModel(t, dir, smallConfig())
		sum := fileSum(t, in)
		cmd := exec.Command(os.Args[0], "-test.run=^TestFullDisk$")
		cmd.Env = append(os.Environ(), "PHYSARIUM_FULLDISK_DIR="+dir, "PHYSARIUM_FULLDISK_SPLIT="+split)
		out, _ := cmd.CombinedOutput()
		s := string(out)
		if !strings.Contains(s, "CHILD-ERR:") || strings.Contains(s, "CHILD-ERR: <nil>") {
			t.Fatalf("%s: child did not fail on the size limit:\n%s", split, s)
		}
		if !strings.Contains(s, "file too large") || (split != "" && !strings.Contains(s, "out-00003-of-00003.gguf")) {
			t.Errorf("%s: child error does not say why and where:\n%s", split, s)
		}
		t.Logf("child %s: %s", split, strings.TrimSpace(s[strings.Index(s, "CHILD-ERR:"):]))
		onlyFiles(t, dir, "in.gguf")
		if fileSum(t, in) != sum {
			t.Fatal("input modified")
		}
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	dir := t.TempDir()
	in := smallModel(t, dir, smallConfig())
	r, err := File(context.Background(), in, filepath.Join(dir, "out.gguf"), Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Killed == 0 || r.Output != "" {
		t.Fatalf("dry run report: killed %d, output %q", r.Killed, r.Output)
	}
	onlyFiles(t, dir, "in.gguf")
}

// TestNoTargetsRefused checks that a selection that leaves no target is an
// error that says so, and writes nothing.
func TestNoTargetsRefused(t *testing.T) {
	dir := t.TempDir()
	in := smallModel(t, dir, smallConfig())
	out := filepath.Join(dir, "out.gguf")
	for _, sel := range []Selection{{Exclude: []string{"."}}, {Layers: "7"}} {
		_, err := File(context.Background(), in, out, Options{Selection: sel})
		if err == nil || !strings.Contains(err.Error(), "nothing to prune") || !strings.Contains(err.Error(), in) {
			t.Fatalf("selection %+v: err = %v, want one naming %s and saying there is nothing to prune", sel, err, in)
		}
		onlyFiles(t, dir, "in.gguf")
	}
}
