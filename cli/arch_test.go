package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// TestArchEndToEnd generates a phi3 model (fused QKV, fused gate/up) and
// deepseek2 models (MLA attention with attn_kv_b, or split into the 3-D
// attn_k_b and attn_v_b; routed and shared experts), prunes each,
// checks that every projection role was a target and that the report's
// non-targets explain the model denominator, has the audit agree against the
// original, and has llama.cpp compute a finite perplexity with the result,
// through llama-perplexity and through eval (the KL divergence from the
// original, and the original's perplexity equal to llama-perplexity's).
func TestArchEndToEnd(t *testing.T) {
	for _, c := range []struct {
		name  string
		gen   []string
		prune []string
		roles []string
	}{
		{"phi3", []string{"--arch", "phi3", "--type", "f16"}, nil,
			[]string{"attn_qkv", "attn_output", "ffn_up", "ffn_down"}},
		{"deepseek2", []string{"--arch", "deepseek2", "--experts", "4", "--experts-used", "2", "--type", "q8_0"},
			[]string{"--mode", "sparsity", "--sparsity", "0.3"},
			[]string{"attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
				"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"}},
		{"deepseek2-mla", []string{"--arch", "deepseek2", "--mla", "--experts", "4", "--experts-used", "2", "--type", "f16"}, nil,
			[]string{"attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_k_b", "attn_v_b", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
				"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			orig, pruned := filepath.Join(dir, "model.gguf"), filepath.Join(dir, "pruned.gguf")
			mustRun(t, append(append([]string{"testmodel"}, c.gen...), orig)...)
			r := mustPrune(t, append(append([]string{"--threads", "1"}, c.prune...), orig, pruned)...)
			kinds := map[string]bool{}
			for _, k := range r.Kinds {
				kinds[k.Kind] = true
			}
			for _, role := range c.roles {
				if !kinds[role] {
					t.Errorf("no target of role %s (kinds %v)", role, kinds)
				}
			}
			if len(kinds) != len(c.roles) {
				t.Errorf("target kinds %v, want %v", kinds, c.roles)
			}
			sum := r.Weights.Target
			for _, n := range r.NonTargets {
				sum += n.Weights
			}
			if sum != r.Weights.Model || r.Killed == 0 || r.Weights.Processed != r.Weights.Target {
				t.Errorf("target %d + non-targets = %d of %d model weights; killed %d; processed %d", r.Weights.Target, sum, r.Weights.Model, r.Killed, r.Weights.Processed)
			}
			t.Logf("%s: %d targets, %s", c.name, r.TargetCount, r.OverTarget)
			a, _, code := auditJSON(t, "--against", orig, pruned)
			if code != ExitOK || a.Verdict != "agree" {
				t.Errorf("audit: exit %d, verdict %q, disagreements %+v", code, a.Verdict, a.Disagreements)
			}
			if _, ok := llamacpp.Dir(); !ok {
				t.Skip("PHYSARIUM_LLAMA unset: perplexity not measured")
			}
			rtDir := llamacpp.Require(t)
			const text = "../../shared/models/tinystories_sample.txt"
			for _, m := range []string{orig, pruned} {
				res, err := llamacpp.Perplexity(context.Background(), m, text, 128)
				if err != nil {
					t.Fatalf("%s: %v", filepath.Base(m), err)
				}
				t.Logf("%s %s: perplexity %.3f +/- %.3f (%d chunks)", c.name, filepath.Base(m), res.PPL, res.StdErr, res.Chunks)
				if math.IsNaN(res.PPL) || math.IsInf(res.PPL, 0) || res.PPL <= 1 {
					t.Errorf("%s: perplexity %v", filepath.Base(m), res.PPL)
				}
			}
			// eval, over 4 chunks: the original against itself (llama-perplexity's
			// perplexity), and the pruned model against it.
			out, stderr, err := run(t, "eval", "--llama-lib", llamacpp.LibDir(rtDir), "--text", text, "--ctx", "128", "--chunks", "4", "--threads", "1", "--quiet", "--json", "-", "--base", orig, orig, pruned)
			if err != nil {
				t.Fatalf("eval: %v\n%s", err, stderr)
			}
			var e EvalReport
			if err := json.Unmarshal([]byte(out), &e); err != nil {
				t.Fatal(err)
			}
			self, pr := e.Models[0], e.Models[1]
			t.Logf("%s eval, 4 chunks: base PPL %.4f, pruned PPL %.4f, mean KLD %.6f, same top %.4f", c.name, e.Base.PPL, pr.PPL, pr.KLD.MeanKLD, pr.KLD.SameTop)
			if self.KLD.MeanKLD != 0 || self.KLD.SameTop != 1 || !(pr.KLD.MeanKLD > 0) || math.IsInf(pr.KLD.MeanKLD, 0) || !(pr.PPL > 1) || math.IsInf(pr.PPL, 0) || pr.Method == "" {
				t.Errorf("eval: the original against itself %+v, the pruned model %+v", *self.KLD, pr)
			}
			ref, _, err := llamacpp.Referee(context.Background(), orig, text, 128, 1, 4)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%.4f", e.Base.PPL) != fmt.Sprintf("%.4f", ref.PPL) {
				t.Errorf("eval PPL %.6f, llama-perplexity %.6f over the same 4 chunks", e.Base.PPL, ref.PPL)
			}
		})
	}
}
