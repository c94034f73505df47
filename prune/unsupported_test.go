package prune

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

// unsupportedType is a type quantize cannot decode (nor re-encode).
const unsupportedType = gguf.TypeQ1_0

// withIQ2 rewrites a generated model so that blk.0.attn_k.weight is stored
// as unsupportedType (random bytes).
func withIQ2(t *testing.T, dir string) (string, string) {
	t.Helper()
	src := smallModel(t, dir, smallConfig())
	f, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const name = "blk.0.attn_k.weight"
	h := gguf.Header{Version: f.Version, KVs: f.KVs}
	for _, ti := range f.Tensors {
		if ti.Name == name {
			ti.Type = unsupportedType
		}
		h.Tensors = append(h.Tensors, ti)
	}
	out := filepath.Join(dir, "iq2.gguf")
	w, err := gguf.Create(out, h, gguf.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i, ti := range f.Tensors {
		var r io.Reader = f.TensorReader(ti)
		if ti.Name == name {
			b := make([]byte, w.Tensors()[i].Bytes())
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			r = bytes.NewReader(b)
		}
		if err := w.WriteTensor(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out, name
}

func TestUnsupportedTypeIsNamed(t *testing.T) {
	dir := t.TempDir()
	in, name := withIQ2(t, dir)
	out := filepath.Join(dir, "out.gguf")
	_, err := File(context.Background(), in, out, Options{})
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), unsupportedType.String()) || !strings.Contains(err.Error(), "--skip-unsupported") {
		t.Fatalf("err = %v, want one naming %s, %s and --skip-unsupported", err, name, unsupportedType)
	}

	r, err := File(context.Background(), in, out, Options{SkipUnsupported: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Skipped) != 1 || r.Skipped[0].Name != name || r.Skipped[0].Type != unsupportedType.String() || r.SkippedNote == "" {
		t.Fatalf("skipped = %+v (%q)", r.Skipped, r.SkippedNote)
	}
	for _, tr := range r.Tensors {
		if tr.Name == name {
			t.Fatalf("%s counted as a target", name)
		}
	}
	f, _ := gguf.Open(in)
	defer f.Close()
	ti, _ := f.Tensor(name)
	var target uint64
	for _, tr := range r.Tensors {
		target += tr.Weights
	}
	if r.Weights.Target != target || r.TargetCount != 6 {
		t.Fatalf("target denominator %d over %d tensors; the 6 pruned tensors hold %d (the skipped one, %d weights, must not count)", r.Weights.Target, r.TargetCount, target, ti.Elements())
	}
	checkOutput(t, in, out, r) // the skipped tensor is copied byte for byte
}
