package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestListTargetsText checks the text listing of stories260K: every tensor
// on its line with its role, the 35 projections targets, the others with
// their reason, and the totals.
func TestListTargetsText(t *testing.T) {
	needStories(t)
	out := mustRun(t, "prune", "--list-targets", stories)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1+48+1 {
		t.Fatalf("%d lines, want a header, 48 tensors and the totals:\n%s", len(lines), out)
	}
	if got, want := lines[len(lines)-1], "35 of 48 tensors are targets: 226560 of 292800 weights"; got != want {
		t.Errorf("totals %q, want %q", got, want)
	}
	for _, want := range []string{
		"blk.3.ffn_down.weight", "ffn_down", "token_embd.weight", "no: an embedding table",
		"output.weight", "no: output head", "blk.0.attn_norm.weight", "no: fewer than two dimensions",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("listing lacks %q", want)
		}
	}
	ex := mustRun(t, "prune", "--list-targets", "--exclude", "ffn_down", "--layers", "0-3", stories)
	if !strings.Contains(ex, "24 of 48 tensors are targets") || !strings.Contains(ex, "no: a target role left out by --exclude or --layers") {
		t.Errorf("with --exclude ffn_down --layers 0-3:\n%s", ex)
	}
}

// TestListTargetsJSON checks the JSON listing against the counts a dry run
// reports for the same flags.
func TestListTargetsJSON(t *testing.T) {
	needStories(t)
	var l targetListing
	if err := json.Unmarshal([]byte(mustRun(t, "prune", "--list-targets", "--json", "--include", `^output\.weight$`, "--include", "attn_norm", stories)), &l); err != nil {
		t.Fatal(err)
	}
	if l.TargetTensors != 35 || l.TargetWeights != 226560 || l.ModelWeights != 292800 || len(l.Tensors) != 48 {
		t.Errorf("listing %d targets, %d of %d weights, %d tensors", l.TargetTensors, l.TargetWeights, l.ModelWeights, len(l.Tensors))
	}
	for _, tt := range l.Tensors {
		if tt.Target == (tt.Reason != "") || tt.Role == "" {
			t.Errorf("%s: target %v, role %q, reason %q", tt.Name, tt.Target, tt.Role, tt.Reason)
		}
		if (tt.Name == "output.weight" || strings.HasSuffix(tt.Name, "attn_norm.weight")) && (tt.Target || !tt.Never) {
			t.Errorf("%s: --include made a tensor that is never a target one: %+v", tt.Name, tt)
		}
	}
	if _, _, err := run(t, "prune", "--json", stories, "x"); ExitCode(err) != ExitUsage {
		t.Errorf("--json without --list-targets: exit %d (%v), want %d", ExitCode(err), err, ExitUsage)
	}
	if _, _, err := run(t, "prune", "--list-targets", "missing.gguf"); err == nil || !strings.Contains(err.Error(), "missing.gguf") {
		t.Errorf("missing model: %v", err)
	}
}

// TestListTargetsNeverEvenIncluded: --include '.*' on a deepseek2 model
// (routers, norms, embeddings, the output head) makes every projection a
// target and none of the tensors that are never targets: the routers
// (ffn_gate_inp, ffn_gate_inp_shexp when present) keep their reason.
func TestListTargetsNeverEvenIncluded(t *testing.T) {
	model := filepath.Join(t.TempDir(), "ds2.gguf")
	mustRun(t, "testmodel", "--arch", "deepseek2", "--experts", "4", "--experts-used", "2", model)
	var l targetListing
	if err := json.Unmarshal([]byte(mustRun(t, "prune", "--list-targets", "--json", "--include", ".*", model)), &l); err != nil {
		t.Fatal(err)
	}
	routers := 0
	for _, tt := range l.Tensors {
		never := strings.Contains(tt.Name, "ffn_gate_inp") || strings.Contains(tt.Name, "norm") || tt.Name == "token_embd.weight" || tt.Name == "output.weight"
		if never && (tt.Target || !tt.Never) {
			t.Errorf("%s: --include '.*' made it a target: %+v", tt.Name, tt)
		}
		if strings.Contains(tt.Name, "ffn_gate_inp") {
			routers++
			if !strings.Contains(tt.Reason, "router") {
				t.Errorf("%s: reason %q", tt.Name, tt.Reason)
			}
		}
	}
	if routers == 0 || l.TargetTensors == 0 {
		t.Fatalf("%d routers, %d targets in the deepseek2 model", routers, l.TargetTensors)
	}
}
