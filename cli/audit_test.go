package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/audit"
)

// The audit's behaviour is tested in package audit; these tests cover the
// command: its flags, exit codes, JSON shape and text.

// auditPair writes a one-block F32 test model with the given seed, its
// pruned twin and (control) its control twin through the commands.
func auditPair(t *testing.T, seed string, control bool) (orig, pruned, ctl string) {
	t.Helper()
	dir := t.TempDir()
	orig = filepath.Join(dir, "model.gguf")
	pruned = filepath.Join(dir, "model.pruned.gguf")
	mustRun(t, "testmodel", "--layers", "1", "--seed", seed, orig)
	args := []string{"prune", "--quiet", "--threads", "1"}
	if control {
		ctl = filepath.Join(dir, "model.control.gguf")
		args = append(args, "--control", ctl)
	}
	mustRun(t, append(args, orig, pruned)...)
	return orig, pruned, ctl
}

// auditJSON runs the audit command with --json and returns the decoded
// report, the raw JSON and the exit code.
func auditJSON(t *testing.T, args ...string) (audit.Report, map[string]any, int) {
	t.Helper()
	out, stderr, err := run(t, append([]string{"audit", "--json"}, args...)...)
	code := ExitCode(err)
	var r audit.Report
	var raw map[string]any
	if code != ExitUsage {
		if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
			t.Fatalf("audit %q: exit %d, bad JSON: %v (stderr %q)", args, code, jerr, stderr)
		}
		json.Unmarshal([]byte(out), &raw)
	}
	return r, raw, code
}

// TestAuditCommand: exit 0 and a JSON report for a file that agrees, exit
// 1 naming the first disagreement for one audited against another
// original, and the text summary's lines.
func TestAuditCommand(t *testing.T) {
	orig, pruned, _ := auditPair(t, "1", false)
	r, raw, code := auditJSON(t, "--against", orig, pruned)
	if code != ExitOK || r.Verdict != "agree" || !r.Pruned || len(r.Checks) == 0 {
		t.Fatalf("exit %d, verdict %q, %d checks", code, r.Verdict, len(r.Checks))
	}
	for _, key := range []string{"file", "against", "pruned", "version", "method", "replay", "weights", "coverage", "tensors", "checks", "disagreements", "verdict", "kill_rate_over_target"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("JSON report without %q", key)
		}
	}
	out := mustRun(t, "audit", "--against", orig, pruned)
	for _, want := range []string{"verdict: agree", "target weights)", "kills are exact"} {
		if !strings.Contains(out, want) {
			t.Errorf("text audit without %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "audit", "--no-replay", "--against", orig, pruned)
	if !strings.Contains(out, "replay: NOT RUN, skipped (--no-replay)") {
		t.Errorf("text output does not say the replay was skipped:\n%s", out)
	}

	other, _, _ := auditPair(t, "2", false)
	r, _, code = auditJSON(t, "--against", other, pruned)
	if code != ExitFailure || r.Verdict != "disagree" || len(r.Disagreements) == 0 {
		t.Fatalf("against another original: exit %d, verdict %q", code, r.Verdict)
	}
	_, _, err := run(t, "audit", "--against", other, pruned)
	if err == nil || !strings.Contains(err.Error(), "disagrees with the recount") || !strings.Contains(err.Error(), "stored") {
		t.Errorf("the error names no disagreement: %v", err)
	}
	out, _, _ = run(t, "audit", "--against", other, pruned)
	if !strings.Contains(out, "verdict: DISAGREE") {
		t.Errorf("text:\n%s", out)
	}
}

// TestAuditCommandControl: --pruned audits a control twin, and is a usage
// error for a file that is no control twin.
func TestAuditCommandControl(t *testing.T) {
	orig, pruned, control := auditPair(t, "3", true)
	out := mustRun(t, "audit", "--against", orig, "--pruned", pruned, control)
	if !strings.Contains(out, "control twin") || !strings.Contains(out, "verdict: agree") {
		t.Errorf("text:\n%s", out)
	}
	if _, _, err := run(t, "audit", "--pruned", pruned, pruned); ExitCode(err) != ExitUsage {
		t.Errorf("exit %d (%v), want 2", ExitCode(err), err)
	}
}

// TestAuditCommandDense: a file without physarium.* keys gets the sparsity
// of its projections.
func TestAuditCommandDense(t *testing.T) {
	needStories(t)
	out := mustRun(t, "audit", stories)
	if !strings.Contains(out, "no physarium.* keys") || !strings.Contains(out, "tensor weights)") {
		t.Errorf("text:\n%s", out)
	}
}

func TestAuditErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.gguf")
	os.WriteFile(garbage, []byte("this is not a GGUF file at all, just text"), 0o644)
	for _, args := range [][]string{
		{"audit"},
		{"audit", garbage},
		{"audit", filepath.Join(dir, "missing.gguf")},
		{"audit", "a", "b"},
		{"audit", "--against", garbage, garbage},
		{"audit", "--nope", garbage},
	} {
		_, _, err := run(t, args...)
		if ExitCode(err) != ExitUsage {
			t.Errorf("%q: exit %d (%v), want 2", args, ExitCode(err), err)
		}
	}
}
