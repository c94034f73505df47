package prune

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

// TestSourceHash: the sha256 in the report (and physarium.source) is the
// input file's, both when the run hashes the bands it reads and from the
// separate pass used for files whose tensors are not in file order.
func TestSourceHash(t *testing.T) {
	dir := t.TempDir()
	c := smallConfig()
	c.Layers = 2
	in := smallModel(t, dir, c)
	sum := fileSum(t, in)
	want := hex.EncodeToString(sum[:])
	for _, dry := range []bool{false, true} {
		rep, err := File(context.Background(), in, filepath.Join(dir, "out.gguf"), Options{DryRun: dry, Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.InputSHA256 != want {
			t.Fatalf("dry run %v: report says sha256 %s, the file's is %s", dry, rep.InputSHA256, want)
		}
	}
	f, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !inOrder(f) {
		t.Fatal("a file written by gguf.Create is not in order")
	}
	if h := <-hashFile(context.Background(), f); h.err != nil || h.sum != want {
		t.Fatalf("hashFile: %s, %v; want %s", h.sum, h.err, want)
	}
	ts := func(offs ...uint64) *gguf.File {
		g := &gguf.File{}
		for _, o := range offs {
			g.Tensors = append(g.Tensors, gguf.TensorInfo{Type: gguf.TypeF32, Shape: []uint64{8}, Offset: o})
		}
		return g
	}
	for _, c := range []struct {
		f    *gguf.File
		want bool
	}{
		{ts(), true}, {ts(0, 32, 64), true}, {ts(0, 64, 32), false}, {ts(0, 16), false}, {ts(32, 0), false},
	} {
		if got := inOrder(c.f); got != c.want {
			t.Fatalf("inOrder(%v) = %v", c.f.Tensors, got)
		}
	}
}

// TestHeaderRoomGuess prunes the same model with provisional headers
// shorter and longer than the final one by 0 to 40 bytes (the input's name
// in physarium.source changed) and checks that the outputs and control
// twins are byte-identical to the run with the right guess, which fits
// its header where some of the wrong ones do not.
func TestHeaderRoomGuess(t *testing.T) {
	dir := t.TempDir()
	c := smallConfig()
	c.Layers = 2
	in := smallModel(t, dir, c)
	defer func() { adjustProvisional = nil }()
	var first, firstCtrl [32]byte
	moves := 0
	for n := -1; n <= 40; n++ {
		adjustProvisional = nil
		if n >= 0 {
			adjustProvisional = func(r *Report) { r.Input = strings.Repeat("x", n) }
		}
		misses := headerMisses.Load()
		out, ctrl := filepath.Join(dir, "out.gguf"), filepath.Join(dir, "ctrl.gguf")
		if _, err := File(context.Background(), in, out, Options{Control: ctrl, Overwrite: true}); err != nil {
			t.Fatal(err)
		}
		moved := headerMisses.Load() > misses
		s, sc := fileSum(t, out), fileSum(t, ctrl)
		if n < 0 {
			if moved {
				t.Fatal("the header moved with the right guess")
			}
			first, firstCtrl = s, sc
			continue
		}
		if moved {
			moves++
		}
		if s != first || sc != firstCtrl {
			t.Fatalf("name of %d bytes in the provisional header (moved %v): output differs from the run with the right guess", n, moved)
		}
	}
	if moves == 0 {
		t.Fatal("no wrong guess moved the header: the test exercises nothing")
	}
	t.Logf("%d of 41 wrong guesses moved the header", moves)
	onlyFiles(t, dir, "ctrl.gguf", "in.gguf", "out.gguf")
}
