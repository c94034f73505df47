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

// TestStories260KNonTargets checks that the report's non-target listing
// explains the model denominator: targets plus non-targets are every
// weight, by role, and a target role left out by a flag says so.
func TestStories260KNonTargets(t *testing.T) {
	in := filepath.Join(sharedModels, "stories260K.gguf")
	r, err := File(context.Background(), in, "", Options{DryRun: true, Selection: Selection{Exclude: []string{"ffn_down"}}})
	if err != nil {
		t.Fatal(err)
	}
	sum := r.Weights.Target
	got := map[string]NonTargetRole{}
	for _, n := range r.NonTargets {
		sum += n.Weights
		got[n.Role] = n
	}
	if sum != r.Weights.Model || r.Weights.Model != 292800 {
		t.Errorf("target %d + non-targets = %d, model %d (want 292800)", r.Weights.Target, sum, r.Weights.Model)
	}
	for role, want := range map[string]NonTargetRole{
		"ffn_down":   {Role: "ffn_down", Reason: reasonLeftOut, Tensors: 5, Weights: 55040},
		"token_embd": {Role: "token_embd", Reason: "an embedding table: rows are looked up, not multiplied", Tensors: 1, Weights: 32768},
		"attn_norm":  {Role: "attn_norm", Reason: "fewer than two dimensions (a norm, scale, bias, lerp or decay vector)", Tensors: 5, Weights: 320},
	} {
		if got[role] != want {
			t.Errorf("non-target %s = %+v, want %+v", role, got[role], want)
		}
	}
	if len(r.NonTargets) != 6 || r.TargetCount != 30 {
		t.Errorf("%d non-target roles, %d targets; want 6 and 30: %+v", len(r.NonTargets), r.TargetCount, r.NonTargets)
	}
}
