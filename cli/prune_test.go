package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPruneUsageErrors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.gguf")
	for _, args := range [][]string{
		{"prune", stories},
		{"prune", "--mode", "bogus", stories, out},
		{"prune", "--mode", "sparsity", stories, out},
		{"prune", "--mode", "sparsity", "--sparsity", "1.5", stories, out},
		{"prune", "--sparsity", "0.3", stories, out},
		{"prune", "--kernel", "bogus", stories, out},
		{"prune", "--threads", "-1", stories, out},
		{"prune", "--layers", "3-1", stories, out},
		{"prune", "--dry-run", "--control", out + ".c", stories, out},
	} {
		_, _, err := run(t, args...)
		if ExitCode(err) != ExitUsage {
			t.Errorf("%q: exit %d (%v), want %d", args, ExitCode(err), err, ExitUsage)
		}
		if _, e := os.Stat(out); e == nil {
			t.Fatalf("%q wrote %s", args, out)
		}
	}
}

func TestPruneReportJSON(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.gguf")
	stdout, stderr, err := run(t, "prune", "--report", "-", stories, out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var r struct {
		Killed  uint64 `json:"killed"`
		Weights struct {
			Target, Processed, Model uint64
		} `json:"weights"`
		OverTarget struct {
			Numerator, Denominator uint64
			Of                     string
			Percent                float64
		} `json:"kill_rate_over_target"`
		Tensors []struct {
			Name     string `json:"name"`
			Weights  uint64 `json:"weights"`
			Killed   uint64 `json:"killed"`
			KillRate struct {
				Numerator, Denominator uint64
				Of                     string
			} `json:"kill_rate"`
		} `json:"tensors"`
		Errata string `json:"errata"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("--report - is not JSON: %v\n%s", err, stdout)
	}
	if r.OverTarget.Numerator != r.Killed || r.OverTarget.Denominator != r.Weights.Target || r.OverTarget.Of != "target" || r.Weights.Target != 226560 {
		t.Errorf("kill rate over target %+v, killed %d, target %d", r.OverTarget, r.Killed, r.Weights.Target)
	}
	for _, tr := range r.Tensors {
		if tr.KillRate.Numerator != tr.Killed || tr.KillRate.Denominator != tr.Weights || tr.KillRate.Of != "tensor" {
			t.Errorf("%s: rate %+v without its denominator", tr.Name, tr.KillRate)
		}
	}
	// With the JSON on stdout, the summary and progress go to stderr.
	for _, want := range []string{"over target:", "of 226560 target weights", "denominator: all weights of the 35 target tensors", "tensor 48/48"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	// An existing output is refused without --force, kept, and replaced with it.
	before, _ := os.ReadFile(out)
	_, _, err = run(t, "prune", "--quiet", stories, out)
	if ExitCode(err) != ExitFailure || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("existing output: exit %d (%v)", ExitCode(err), err)
	}
	if after, _ := os.ReadFile(out); string(after) != string(before) {
		t.Fatal("refused run changed the output")
	}
	if _, _, err := run(t, "prune", "--quiet", "--force", "--mode", "sparsity", "--sparsity", "0.5", stories, out); err != nil {
		t.Fatal(err)
	}
}

func TestPruneDryRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.gguf")
	report := filepath.Join(dir, "r.json")
	stdout, _, err := run(t, "prune", "--dry-run", "--report", report, "--layers", "0-1", "--exclude", "ffn_", stories, out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("dry run wrote the output")
	}
	if !strings.Contains(stdout, "dry run: no file written") || !strings.Contains(stdout, "target tensors:   8 ") {
		t.Errorf("summary:\n%s", stdout)
	}
	b, err := os.ReadFile(report)
	if err != nil || !json.Valid(b) {
		t.Fatalf("report file: %v", err)
	}
}
