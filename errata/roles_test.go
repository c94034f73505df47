package errata_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
)

// blockName spells a role as a tensor of block 3 (every other index 1).
func blockName(role, param string) string {
	n := role
	if !strings.Contains(role, "blk.%d.") {
		n = "blk.%d." + role
	}
	n = strings.Replace(n, "%d", "3", 1)
	return strings.ReplaceAll(n, "%d", "1") + "." + param
}

// TestRolesAgreeWithPattern checks that the default pattern chooses the
// weight of every target role and of no other role, that Classify says the
// same, that every role that is not a target has a reason, and that the
// biases of target roles are never targets.
func TestRolesAgreeWithPattern(t *testing.T) {
	re := regexp.MustCompile(errata.DefaultTargetPattern)
	seen := map[string]bool{}
	targets := 0
	for _, r := range errata.Roles() {
		if seen[r.Name] {
			t.Errorf("role %s twice in the table", r.Name)
		}
		seen[r.Name] = true
		name := blockName(r.Name, "weight")
		if got := re.MatchString(name); got != r.Target {
			t.Errorf("%s: default pattern matches = %v, table says target = %v", name, got, r.Target)
		}
		v := errata.Classify(name, 2)
		if v.Role != r.Name || v.Target != r.Target || v.Never != r.Never || v.Reason != r.Reason {
			t.Errorf("%s: Classify = %+v, table row %+v", name, v, r)
		}
		if r.Target == (r.Reason != "") {
			t.Errorf("role %s: target %v with reason %q", r.Name, r.Target, r.Reason)
		}
		if b := errata.Classify(blockName(r.Name, "bias"), 2); b.Target || !b.Never || b.Reason != errata.ReasonBias {
			t.Errorf("%s bias: %+v", r.Name, b)
		}
		if v := errata.Classify(blockName(r.Name, "weight"), 1); v.Target || !v.Never {
			t.Errorf("%s as a vector: %+v", r.Name, v)
		}
		if r.Target {
			targets++
			if r.Group == errata.GroupOther {
				t.Errorf("target role %s has no projection group", r.Name)
			}
			if out := strings.TrimPrefix(name, "blk.3."); !strings.Contains(out, "blk.") && re.MatchString(out) {
				t.Errorf("%s outside a block matches the default pattern", out)
			}
		}
	}
	if targets < 50 {
		t.Errorf("%d target roles, want the 50 or more of the table", targets)
	}
}

// TestClassifyKinds checks the rules for tensors outside the role table.
func TestClassifyKinds(t *testing.T) {
	for _, c := range []struct {
		name   string
		dims   int
		role   string
		target bool
		reason string
	}{
		{"blk.0.attn_q.weight", 2, "attn_q", true, ""},
		{"blk.12.ffn_gate.7.weight", 2, "ffn_gate.%d", true, ""},
		{"blk.0.ffn_gate_up_exps.weight", 3, "ffn_gate_up_exps", true, ""},
		{"enc.blk.2.attn_o.weight", 2, "enc.blk.%d.attn_o", true, ""},
		{"attn_q.weight", 2, "attn_q", false, errata.ReasonOutsideBlk},
		{"blk.0.attn_q", 2, "attn_q", false, errata.ReasonNotWeight},
		{"token_embd.weight", 2, "token_embd", false, errata.ReasonEmbedding},
		{"output.weight", 2, "output", false, "output head: its rows are the vocabulary's logits (or a classifier's), not a block's projection"},
		{"blk.1.attn_norm.weight", 1, "attn_norm", false, errata.ReasonVector},
		{"blk.1.attn_q_a_norm.weight", 2, "attn_q_a_norm", false, errata.ReasonNorm},
		{"blk.1.ssm_conv1d.weight", 2, "ssm_conv1d", false, errata.ReasonConv},
		{"blk.1.time_mix_lerp_x.weight", 3, "time_mix_lerp_x", false, errata.ReasonLerp},
		{"blk.1.ssm_a", 2, "ssm_a", false, errata.ReasonLerp},
		{"blk.1.attn_q.bias", 1, "attn_q", false, errata.ReasonBias},
		{"blk.1.something_new.weight", 2, "something_new", false, errata.ReasonUnknown},
	} {
		v := errata.Classify(c.name, c.dims)
		if v.Role != c.role || v.Target != c.target || v.Reason != c.reason {
			t.Errorf("Classify(%q, %d) = %+v, want role %s target %v reason %q", c.name, c.dims, v, c.role, c.target, c.reason)
		}
	}
}

// TestDefaultSelectionStories260K checks that the default selection chooses
// on a real llama model exactly what it chose before the role table: the 7
// projections of each of the 5 blocks, 226,560 weights.
func TestDefaultSelectionStories260K(t *testing.T) {
	f, err := gguf.Open("../../shared/models/stories260K.gguf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sel, _, err := errata.ParseTargets(errata.TargetEntries(nil, nil, ""))
	if err != nil {
		t.Fatal(err)
	}
	old := regexp.MustCompile(`^blk\.[0-9]+\.(attn_(q|k|v|qkv|output)|ffn_(gate|up|down)(_exps|_shexp)?)\.weight$`)
	n, weights := 0, uint64(0)
	for _, ti := range f.Tensors {
		v := errata.Classify(ti.Name, len(ti.Shape))
		chosen := !v.Never && sel.Match(ti.Name)
		if chosen != v.Target {
			t.Errorf("%s: selection %v, Classify %+v", ti.Name, chosen, v)
		}
		if was := len(ti.Shape) >= 2 && old.MatchString(ti.Name); was != chosen {
			t.Errorf("%s: chosen %v, the earlier pattern %v", ti.Name, chosen, was)
		}
		if chosen {
			n++
			weights += ti.Elements()
		}
	}
	if n != 35 || weights != 226560 {
		t.Errorf("%d targets, %d weights; want 35 and 226560", n, weights)
	}
}

// llamaTensorTable parses llama.cpp's tensor-name table and the operation
// of each tensor (LLM_TENSOR_NAMES and LLM_TENSOR_INFOS in
// src/llama-arch.cpp).
func llamaTensorTable(t *testing.T, src string) (names map[string]string, ops map[string]string) {
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	section := func(decl string) string {
		i := strings.Index(s, decl)
		if i < 0 {
			t.Fatalf("%s: no %s", src, decl)
		}
		j := strings.Index(s[i:], "\n};")
		if j < 0 {
			t.Fatalf("%s: %s has no end", src, decl)
		}
		return s[i : i+j]
	}
	names, ops = map[string]string{}, map[string]string{}
	for _, m := range regexp.MustCompile(`\{\s*(LLM_TENSOR_\w+)\s*,\s*"([^"]+)"\s*\}`).FindAllStringSubmatch(section("LLM_TENSOR_NAMES ="), -1) {
		names[m[1]] = m[2]
	}
	for _, m := range regexp.MustCompile(`\{\s*(LLM_TENSOR_\w+)\s*,\s*\{\s*LLM_TENSOR_LAYER_\w+\s*,\s*(GGML_OP_\w+)\s*\}\s*\}`).FindAllStringSubmatch(section("LLM_TENSOR_INFOS ="), -1) {
		ops[m[1]] = m[2]
	}
	if len(names) < 100 || len(ops) < 100 {
		t.Fatalf("%s: parsed %d names and %d infos; the table's form has changed", src, len(names), len(ops))
	}
	return names, ops
}

// TestRolesCoverLlamaCpp walks llama.cpp's own tensor table and fails when
// a projection role there (an operation of GGML_OP_MUL_MAT or
// GGML_OP_MUL_MAT_ID, or one of the per-expert ffn_*.%d, which have no
// info) is neither a target nor excluded with a reason, or when a role of
// the table is not llama.cpp's.
func TestRolesCoverLlamaCpp(t *testing.T) {
	dir := os.Getenv("PHYSARIUM_LLAMA")
	if dir == "" {
		t.Skip("PHYSARIUM_LLAMA unset")
	}
	names, ops := llamaTensorTable(t, filepath.Join(dir, "src", "src", "llama-arch.cpp"))
	known := map[string]bool{}
	projections := 0
	for enum, name := range names {
		role := strings.TrimPrefix(name, "blk.%d.")
		known[role] = true
		op, hasInfo := ops[enum]
		projection := op == "GGML_OP_MUL_MAT" || op == "GGML_OP_MUL_MAT_ID" ||
			!hasInfo && strings.Count(name, "%d") == 2 && strings.HasPrefix(role, "ffn_")
		r, inTable := errata.LookupRole(role)
		if !projection {
			if v := errata.Classify(blockName(role, "weight"), 2); v.Target {
				t.Errorf("%s (%s, %s) is not a projection but a target", enum, name, op)
			}
			continue
		}
		projections++
		switch {
		case !inTable:
			t.Errorf("%s (%s, %s): a projection role that is neither a target nor excluded with a reason", enum, name, op)
		case !r.Target && r.Reason == "":
			t.Errorf("%s (%s): excluded without a reason", enum, name)
		}
	}
	for _, r := range errata.Roles() {
		if !known[r.Name] {
			t.Errorf("role %s of the table is not in llama.cpp's LLM_TENSOR_NAMES", r.Name)
		}
	}
	t.Logf("%d tensor names, %d projection roles, %d roles in the table", len(names), projections, len(errata.Roles()))
}
