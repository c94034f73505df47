package prune

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math"
	"path/filepath"
	"testing"

	"github.com/physarium/physarium-gguf/audit"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/testmodels"
)

// withNonfinite writes a one-block test model of type typ with poison
// applied to the stored bytes of tensor name, and returns its path.
func withNonfinite(t *testing.T, typ gguf.Type, name string, poison func(b []byte)) string {
	t.Helper()
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.gguf")
	cfg := testmodels.DefaultConfig()
	cfg.Layers, cfg.Type = 1, typ
	if err := testmodels.Write(clean, cfg, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(clean)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(dir, "nonfinite.gguf")
	w, err := gguf.Create(out, gguf.Header{Version: f.Version, KVs: f.KVs, Tensors: f.Tensors}, gguf.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ti := range f.Tensors {
		b, err := io.ReadAll(f.TensorReader(ti))
		if err != nil {
			t.Fatal(err)
		}
		if ti.Name == name {
			poison(b)
			found = true
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil || !found {
		t.Fatalf("%v (tensor %s found: %v)", err, name, found)
	}
	return out
}

// poisonF32 sets value 3 to NaN and values 5 and 6 to +Inf and -Inf.
func poisonF32(b []byte) {
	binary.LittleEndian.PutUint32(b[12:], math.Float32bits(float32(math.NaN())))
	binary.LittleEndian.PutUint32(b[20:], math.Float32bits(float32(math.Inf(1))))
	binary.LittleEndian.PutUint32(b[24:], math.Float32bits(float32(math.Inf(-1))))
}

// TestNonfiniteCopied: a tensor that is not a target and holds NaN or
// infinities is copied byte for byte, counted in the report and in
// physarium.nonfinite_copied (over the model's weights), and the audit
// recounts the key; a clean model writes no such key.
func TestNonfiniteCopied(t *testing.T) {
	in := withNonfinite(t, gguf.TypeF32, "token_embd.weight", poisonF32)
	out := filepath.Join(t.TempDir(), "out.gguf")
	r, err := File(context.Background(), in, out, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.NonfiniteCopied.Numerator != 3 || r.NonfiniteCopied.Denominator != r.Weights.Model || r.NonfiniteCopied.Of != "model" {
		t.Errorf("nonfinite copied %+v, model %d", r.NonfiniteCopied, r.Weights.Model)
	}
	if len(r.NonfiniteTensors) != 1 || r.NonfiniteTensors[0] != (NonfiniteTensor{Name: "token_embd.weight", Count: 3}) {
		t.Errorf("nonfinite tensors %+v", r.NonfiniteTensors)
	}
	fi, _ := gguf.Open(in)
	defer fi.Close()
	fo, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fo.Close()
	ti, _ := fi.Tensor("token_embd.weight")
	to, _ := fo.Tensor("token_embd.weight")
	a, _ := io.ReadAll(fi.TensorReader(ti))
	b, _ := io.ReadAll(fo.TensorReader(to))
	if !bytes.Equal(a, b) {
		t.Error("token_embd.weight is not copied byte for byte")
	}
	kv, ok := fo.KV("physarium.nonfinite_copied")
	if n, _ := kv.Value.AsUint64(); !ok || n != 3 {
		t.Errorf("physarium.nonfinite_copied: %v %v", ok, kv.Value)
	}
	for _, against := range []string{"", in} {
		ar, err := audit.File(context.Background(), out, audit.Options{Against: against})
		if err != nil || !ar.OK() || ar.NonfiniteCopied == nil || ar.NonfiniteCopied.Numerator != 3 {
			t.Errorf("audit against %q: %v, disagreements %+v, nonfinite %+v", against, err, ar.Disagreements, ar.NonfiniteCopied)
		}
	}

	// The key removed, the audit disagrees.
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	h := gguf.Header{Version: fo.Version, Tensors: fo.Tensors}
	for _, kv := range fo.KVs {
		if kv.Key != "physarium.nonfinite_copied" {
			h.KVs = append(h.KVs, kv)
		}
	}
	w, err := gguf.Create(bad, h, gguf.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range fo.Tensors {
		b, _ := io.ReadAll(fo.TensorReader(ti))
		w.Write(b)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ar, err := audit.File(context.Background(), bad, audit.Options{})
	if err != nil || ar.OK() || ar.Disagreements[0].Key != "physarium.nonfinite_copied" {
		t.Errorf("the key removed: %v %+v", err, ar.Disagreements)
	}

	clean := cleanOutput(t)
	if kv, ok := clean.KV("physarium.nonfinite_copied"); ok {
		t.Errorf("a clean model's output carries %v", kv)
	}
}

// cleanOutput prunes a clean one-block model and opens the output.
func cleanOutput(t *testing.T) *gguf.File {
	t.Helper()
	in := withNonfinite(t, gguf.TypeF32, "token_embd.weight", func([]byte) {})
	out := filepath.Join(t.TempDir(), "out.gguf")
	r, err := File(context.Background(), in, out, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.NonfiniteCopied.Numerator != 0 {
		t.Errorf("clean: %+v", r.NonfiniteCopied)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestCountCopiedPieces counts a Q8_0 tensor with non-finite scales in
// pieces of every length around the block size: the sum never depends on
// where the pieces end (a block cut by a piece's end is counted whole by
// the piece it starts in).
func TestCountCopiedPieces(t *testing.T) {
	// Q8_0 blocks are 34 bytes: an F16 scale, then 32 int8 values. A NaN
	// scale makes the block's 32 values NaN (its zero quants too: 0*NaN).
	in := withNonfinite(t, gguf.TypeQ8_0, "token_embd.weight", func(b []byte) {
		binary.LittleEndian.PutUint16(b[34*1:], 0x7e00) // NaN
		binary.LittleEndian.PutUint16(b[34*7:], 0x7c00) // +Inf
	})
	f, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ti, _ := f.Tensor("token_embd.weight")
	data, err := io.ReadAll(f.TensorReader(ti))
	if err != nil {
		t.Fatal(err)
	}
	p := &tensorPlan{info: ti}
	var nv nonfiniteValues
	whole, err := nv.countCopied(f, p, 0, data)
	if err != nil {
		t.Fatal(err)
	}
	if whole != 64 {
		t.Fatalf("%d non-finite values in the whole tensor, want 64 (two poisoned blocks)", whole)
	}
	for _, piece := range []int{1, 33, 34, 35, 67, 1000} {
		var sum uint64
		for start := 0; start < len(data); start += piece {
			n, err := nv.countCopied(f, p, int64(start), data[start:min(start+piece, len(data))])
			if err != nil {
				t.Fatal(err)
			}
			sum += n
		}
		if sum != whole {
			t.Errorf("pieces of %d bytes: %d, whole %d", piece, sum, whole)
		}
	}
}
