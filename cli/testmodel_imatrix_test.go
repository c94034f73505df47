package cli

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/quantize"
	"github.com/physarium/physarium-gguf/testmodels"
)

// TestTestmodelImatrix: testmodel --type iq2_xxs --imatrix FILE encodes a
// tensor the file names with its mean squared activations (sum/count) as
// ggml's imatrix, and the others with the flat imatrix; --imatrix with a
// type that takes none is a usage error.
func TestTestmodelImatrix(t *testing.T) {
	dir := t.TempDir()
	const name = "blk.0.attn_q.weight"
	const embd = 256
	sums := make([]float32, embd)
	for i := range sums {
		sums[i] = float32(1 + (i*37)%101)
	}
	m := &imatrix.Matrix{Entries: map[string]*imatrix.Entry{name: {Name: name, Sums: sums, Counts: []float64{8}}}}
	im := filepath.Join(dir, "m.gguf")
	if err := m.WriteGGUF(im, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "iq2.gguf")
	mustRun(t, "testmodel", "--layers", "1", "--embd", "256", "--ff", "512", "--heads", "2", "--vocab", "260", "--type", "iq2_xxs", "--imatrix", im, p)
	c := testmodels.Config{Layers: 1, Embd: 256, FF: 512, Heads: 2, KVHeads: 2, Vocab: 260, Type: gguf.TypeIQ2_XXS, Dist: "normal", Seed: testmodels.DefaultConfig().Seed}
	f, err := gguf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tname := range []string{name, "blk.0.attn_k.weight"} {
		ti, _ := f.Tensor(tname)
		got, err := io.ReadAll(f.TensorReader(ti))
		if err != nil {
			t.Fatal(err)
		}
		vals, err := testmodels.Values(c, tname)
		if err != nil {
			t.Fatal(err)
		}
		w := make([]float32, ti.Shape[0])
		for i := range w {
			w[i] = 1
			if tname == name {
				w[i] = sums[i] / 8
			}
		}
		want := make([]byte, len(got))
		if err := quantize.EncodeWeighted(ti.Type, want, vals, w); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not the IQ2_XXS encoding of its values with the expected imatrix", tname)
		}
	}
	_, _, err = run(t, "testmodel", "--type", "q4_0", "--imatrix", im, filepath.Join(dir, "q4.gguf"))
	if err == nil || !strings.Contains(err.Error(), "Q4_0") {
		t.Errorf("--type q4_0 --imatrix: %v, want an error naming Q4_0", err)
	}
}
