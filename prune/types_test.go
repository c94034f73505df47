package prune

import (
	"context"
	"math"
	"path/filepath"
	"strconv"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
	"github.com/physarium/physarium-gguf/testmodels"
	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// encodableTypes are the weight types prune must handle end to end.
var encodableTypes = []gguf.Type{
	gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16, gguf.TypeQ8_0, gguf.TypeQ4_0, gguf.TypeQ4_1,
	gguf.TypeQ5_0, gguf.TypeQ5_1, gguf.TypeQ2_K, gguf.TypeQ3_K, gguf.TypeQ4_K, gguf.TypeQ5_K,
	gguf.TypeQ6_K, gguf.TypeIQ4_NL, gguf.TypeIQ4_XS, gguf.TypeMXFP4, gguf.TypeTQ1_0, gguf.TypeTQ2_0,
}

// TestEveryType prunes a generated model of each encodable type and checks
// the output: non-targets byte for byte, kills exactly 0.0 where the type
// has a zero code, gguf-parser-go reads it, llama.cpp loads it with a
// finite perplexity.
func TestEveryType(t *testing.T) {
	_, haveLlama := llamacpp.Dir()
	if haveLlama {
		llamacpp.Require(t)
	}
	text := filepath.Join(sharedModels, "tinystories_sample.txt")
	for _, typ := range encodableTypes {
		if !quantize.CanEncode(typ) {
			t.Errorf("%s cannot be encoded", typ)
			continue
		}
		t.Run(typ.String(), func(t *testing.T) {
			dir := t.TempDir()
			c := testmodels.DefaultConfig()
			c.Type = typ
			c.Layers = 1
			in := filepath.Join(dir, "in.gguf")
			if err := testmodels.Write(in, c, gguf.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out.gguf")
			r, err := File(context.Background(), in, out, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if r.TargetCount != 7 || r.Coverage.Numerator != r.Coverage.Denominator {
				t.Fatalf("%d targets, coverage %v", r.TargetCount, r.Coverage)
			}
			z, _ := quantize.Zero(typ)
			if z != quantize.ZeroNone && r.ExactZero != r.Killed {
				t.Errorf("%s has a zero code but only %v read back as exactly 0.0", typ, r.ExactZeroOf)
			}
			checkOutput(t, in, out, r)
			if _, err := parser.ParseGGUFFile(out); err != nil {
				t.Errorf("gguf-parser-go: %v", err)
			}
			rmse := 0.0
			for _, tr := range r.Tensors {
				rmse = math.Max(rmse, tr.SurvivorRMSE)
			}
			msg := ""
			if haveLlama {
				res, err := llamacpp.Perplexity(context.Background(), out, text, 128)
				if err != nil {
					t.Fatalf("llama.cpp: %v", err)
				}
				if math.IsNaN(res.PPL) || math.IsInf(res.PPL, 0) {
					t.Fatalf("llama.cpp perplexity %v", res.PPL)
				}
				msg = " ppl(sample, random weights) " + ftoa(res.PPL)
			}
			t.Logf("%-7s killed %v; exact zeros %v; worst survivor RMSE %.3g; max |killed| %.3g%s", typ, r.OverTarget, r.ExactZeroOf, rmse, maxKilled(r), msg)
		})
	}
}

func maxKilled(r *Report) float64 {
	m := 0.0
	for _, t := range r.Tensors {
		m = math.Max(m, t.MaxKilledAbs)
	}
	return m
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 4, 64) }
