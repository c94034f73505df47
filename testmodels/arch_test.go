package testmodels_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/testmodels"
	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// archConfigs are the phi3 and deepseek2 models of the tests.
func archConfigs() map[string]testmodels.Config {
	phi3 := testmodels.DefaultConfig()
	phi3.Arch = testmodels.ArchPhi3
	ds := testmodels.DefaultConfig()
	ds.Arch, ds.Experts, ds.ExpertsUsed, ds.Type = testmodels.ArchDeepSeek2, 4, 2, gguf.TypeQ8_0
	mla := ds
	mla.MLA, mla.Type = true, gguf.TypeF16
	return map[string]testmodels.Config{"phi3": phi3, "deepseek2": ds, "deepseek2-mla": mla}
}

// TestArchTensors checks the tensors of each architecture: the roles it
// has, each a target or not as the role table says.
func TestArchTensors(t *testing.T) {
	want := map[string][]string{
		"phi3": {"attn_qkv", "attn_output", "ffn_up", "ffn_down"},
		"deepseek2": {"attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b", "attn_output",
			"ffn_gate", "ffn_up", "ffn_down", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps",
			"ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"},
		"deepseek2-mla": {"attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_k_b", "attn_v_b", "attn_output",
			"ffn_gate", "ffn_up", "ffn_down", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps",
			"ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"},
	}
	for name, c := range archConfigs() {
		infos, err := testmodels.Layout(c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		targets := map[string]bool{}
		for _, ti := range infos {
			if v := errata.Classify(ti.Name, len(ti.Shape)); v.Target {
				targets[v.Role] = true
			}
		}
		for _, r := range want[name] {
			if !targets[r] {
				t.Errorf("%s: no target of role %s", name, r)
			}
		}
		if len(targets) != len(want[name]) {
			t.Errorf("%s: target roles %v, want %v", name, targets, want[name])
		}
	}
	bad := testmodels.DefaultConfig()
	for _, mut := range []func(*testmodels.Config){
		func(c *testmodels.Config) { c.Arch = "gpt9" },
		func(c *testmodels.Config) { c.Arch, c.Experts, c.ExpertsUsed = testmodels.ArchPhi3, 2, 1 },
		func(c *testmodels.Config) { c.Arch = testmodels.ArchDeepSeek2 },
		func(c *testmodels.Config) {
			c.Arch, c.Experts, c.ExpertsUsed, c.KVHeads = testmodels.ArchDeepSeek2, 2, 1, 2
		},
		func(c *testmodels.Config) { c.MLA = true },
		func(c *testmodels.Config) {
			c.Arch, c.Experts, c.ExpertsUsed, c.MLA, c.Type = testmodels.ArchDeepSeek2, 2, 1, true, gguf.TypeQ4_K
		},
	} {
		c := bad
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: valid", c)
		}
	}
}

// TestArchLlamaCppRuns checks that llama.cpp loads each architecture and
// computes a finite perplexity with it.
func TestArchLlamaCppRuns(t *testing.T) {
	llamacpp.Require(t)
	dir := t.TempDir()
	for name, c := range archConfigs() {
		p := filepath.Join(dir, name+".gguf")
		if err := testmodels.Write(p, c, gguf.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r, err := llamacpp.Perplexity(context.Background(), p, sampleText, 128)
		if err != nil {
			t.Errorf("%s (%s): %v", name, c, err)
			continue
		}
		t.Logf("%-10s ppl %10.3f +/- %.3f (%d chunks)", name, r.PPL, r.StdErr, r.Chunks)
		if math.IsNaN(r.PPL) || math.IsInf(r.PPL, 0) || r.PPL <= 1 || r.Chunks < 2 {
			t.Errorf("%s: perplexity %v over %d chunks", name, r.PPL, r.Chunks)
		}
	}
}
