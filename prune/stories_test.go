package prune

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

const (
	sharedModels = "../../shared/models"
	denseEvalPPL = 6.1660 // llama-perplexity and eval, stories260K on tinystories_valid_eval.txt at n_ctx 128
)

// TestStories260KNatural prunes the real trained model in natural mode and
// measures the result in llama.cpp on held-out text.
func TestStories260KNatural(t *testing.T) {
	in := filepath.Join(sharedModels, "stories260K.gguf")
	out := filepath.Join(t.TempDir(), "pruned.gguf")
	r, err := File(context.Background(), in, out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.TargetCount != 35 {
		t.Errorf("target tensors = %d, want 35 (7 projections x 5 blocks)", r.TargetCount)
	}
	if r.Weights.Processed != r.Weights.Target {
		t.Errorf("coverage %v: processed %d of %d target weights", r.Coverage, r.Weights.Processed, r.Weights.Target)
	}
	t.Logf("kill rate over target: %v", r.OverTarget)
	t.Logf("kill rate over model: %v", r.OverModel)
	if r.OverTarget.Percent < 10 || r.OverTarget.Percent > 40 {
		t.Errorf("natural mode killed %v, outside the plausible 10-40 %% of target weights", r.OverTarget)
	}
	if r.ExactZero != r.Killed {
		t.Errorf("exact zeros %d of %d killed (F32 has a zero code)", r.ExactZero, r.Killed)
	}
	checkOutput(t, in, out, r)

	if _, ok := llamacpp.Dir(); !ok {
		t.Skip("PHYSARIUM_LLAMA unset: perplexity not measured")
	}
	llamacpp.Require(t)
	text := filepath.Join(sharedModels, "tinystories_valid_eval.txt")
	res, err := llamacpp.Perplexity(context.Background(), out, text, 128)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("evaluation (separate from the surgery figures): tinystories_valid_eval.txt, n_ctx 128, %d chunks: dense %.4f, pruned %.4f +- %.4f", res.Chunks, denseEvalPPL, res.PPL, res.StdErr)
	if math.IsNaN(res.PPL) || res.PPL >= 7.0 {
		t.Errorf("pruned perplexity %.4f, want below 7.0", res.PPL)
	}
}
