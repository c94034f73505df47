package testmodels_test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/testmodels"
	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

const sampleText = "../../shared/models/tinystories_sample.txt"

// TestLlamaCppLoadsAndRuns generates models of several shapes and types and
// measures their perplexity with the real llama.cpp at n_ctx 128: each must
// load, tokenize the sample with the built-in vocabulary, and give a finite
// perplexity. F16 and BF16 store the F32 twin's values rounded, so their
// perplexity must stay close to the twin's.
func TestLlamaCppLoadsAndRuns(t *testing.T) {
	llamacpp.Require(t)
	text, err := os.ReadFile(sampleText)
	if err != nil {
		t.Fatal(err)
	}
	def := testmodels.DefaultConfig()
	type tc struct {
		name string
		c    testmodels.Config
	}
	with := func(name string, mut func(*testmodels.Config)) tc {
		c := def
		mut(&c)
		return tc{name, c}
	}
	cases := []tc{
		with("f32", func(c *testmodels.Config) {}),
		with("f16", func(c *testmodels.Config) { c.Type = gguf.TypeF16 }),
		with("bf16", func(c *testmodels.Config) { c.Type = gguf.TypeBF16 }),
		with("f32-3x128-t3", func(c *testmodels.Config) {
			c.Layers, c.Embd, c.FF, c.Heads, c.KVHeads, c.Vocab, c.Dist = 3, 128, 384, 8, 8, 1000, "t3"
		}),
		with("f16-gqa-laplace", func(c *testmodels.Config) {
			c.Type, c.Heads, c.KVHeads, c.Dist, c.Seed = gguf.TypeF16, 8, 2, "laplace", 42
		}),
		with("f16-moe", func(c *testmodels.Config) {
			c.Type, c.KVHeads, c.Experts, c.ExpertsUsed = gguf.TypeF16, 2, 4, 2
		}),
	}
	core := len(cases)
	// Every other type that can be written, at the default shape (whose
	// dims suit 256-blocks); the full list only without -short.
	for _, typ := range gguf.Types() {
		if !testmodels.SupportedType(typ) || typ == gguf.TypeF32 || typ == gguf.TypeF16 || typ == gguf.TypeBF16 {
			continue
		}
		cases = append(cases, with(strings.ToLower(typ.String()), func(c *testmodels.Config) { c.Type = typ }))
	}
	if testing.Short() {
		cases = cases[:core]
	}

	dir := t.TempDir()
	ppl := map[string]float64{}
	for _, tc := range cases {
		p := filepath.Join(dir, tc.name+".gguf")
		if err := testmodels.Write(p, tc.c, gguf.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		r, err := llamacpp.Perplexity(context.Background(), p, sampleText, 128)
		if err != nil {
			t.Errorf("%s (%s): %v", tc.name, tc.c, err)
			continue
		}
		t.Logf("%-16s ppl %10.3f +/- %.3f  (%d chunks, %d tokens, %d scored)", tc.name, r.PPL, r.StdErr, r.Chunks, r.Tokens, r.Scored)
		if math.IsNaN(r.PPL) || math.IsInf(r.PPL, 0) || r.PPL <= 1 || r.Chunks < 2 {
			t.Errorf("%s: perplexity %v over %d chunks", tc.name, r.PPL, r.Chunks)
		}
		// The vocabulary's pieces must do real work: fewer tokens than
		// bytes, and more than one token per word.
		if r.Tokens >= len(text) || r.Tokens < len(strings.Fields(string(text))) {
			t.Errorf("%s: %d tokens for %d bytes", tc.name, r.Tokens, len(text))
		}
		ppl[tc.name] = r.PPL
	}
	for name, tol := range map[string]float64{"f16": 0.005, "bf16": 0.05} {
		if got, ok := ppl[name]; ok && math.Abs(got/ppl["f32"]-1) > tol {
			t.Errorf("%s perplexity %.4f differs from its F32 twin's %.4f by more than %g %%", name, got, ppl["f32"], 100*tol)
		}
	}
}
