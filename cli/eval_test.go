package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/llamacpp"
	"github.com/physarium/physarium-gguf/testmodels"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

const evalText = "../../shared/models/tinystories_valid_eval.txt"

// keepEnv names a directory where TestEvalStories260K keeps its three
// models and evaluates the whole text (the README's table); without it the
// test uses a temporary directory and the first 100 chunks.
const keepEnv = "PHYSARIUM_EVAL_KEEP"

// TestEvalStories260K runs the evaluation experiment the README shows:
// stories260K (dense F32), the control twin and the pruned file of its
// Q8_0 re-encoding, each against the dense model. The dense model diverges
// from itself by exactly 0 with the same top token everywhere; the control
// twin (re-encoding only) diverges a little; the pruned file more; the
// pruned file's perplexity is above the dense model's.
func TestEvalStories260K(t *testing.T) {
	rtDir := rt.Require(t)
	needStories(t)
	dir, chunks := os.Getenv(keepEnv), []string{"--chunks", "100"}
	if dir != "" {
		chunks = nil
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		dir = t.TempDir()
	}
	q8 := filepath.Join(dir, "stories260K.q8_0.gguf")
	if _, err := rt.EncodeProjections(stories, q8, gguf.TypeQ8_0); err != nil {
		t.Fatal(err)
	}
	pruned, control := filepath.Join(dir, "stories260K.q8_0.pruned.gguf"), filepath.Join(dir, "stories260K.q8_0.control.gguf")
	mustRun(t, "prune", "--quiet", "--force", "--control", control, q8, pruned)

	report := filepath.Join(dir, "eval.json")
	args := append([]string{"eval", "--llama-lib", rt.LibDir(rtDir), "--text", evalText, "--ctx", "128", "--threads", "1", "--json", report}, chunks...)
	args = append(args, "--base", stories, stories, control, pruned)
	out, stderr, err := run(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	t.Logf("physarium-gguf %s\n%s", strings.Join(args, " "), out)
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var r EvalReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Experiment != "evaluation" || !strings.HasPrefix(out, "Evaluation experiment") || len(r.Models) != 3 || r.Base == nil {
		t.Fatalf("report %s / table %q", b, out)
	}
	if r.Text.Tokens != 129187 || r.Text.SHA256 == "" || r.Llama.GGMLVersion != llamacpp.SupportedGGML[0] || r.Threads != 1 || r.Ctx != 128 {
		t.Errorf("report header %+v %+v", r.Text, r.Llama)
	}
	dense, ctl, pr := r.Models[0], r.Models[1], r.Models[2]
	for _, m := range r.Models {
		if m.KLD == nil || len(m.SHA256) != 64 || m.PPL <= 1 {
			t.Fatalf("model %+v", m)
		}
	}
	if dense.SHA256 != r.Base.SHA256 || dense.KLD.MeanKLD != 0 || dense.KLD.SameTop != 1 || dense.PPL != r.Base.PPL {
		t.Errorf("dense against itself: %+v", *dense.KLD)
	}
	if !(ctl.KLD.MeanKLD > 0 && ctl.KLD.MeanKLD < pr.KLD.MeanKLD) {
		t.Errorf("mean KLD: control %g, pruned %g; want 0 < control < pruned", ctl.KLD.MeanKLD, pr.KLD.MeanKLD)
	}
	if !(pr.PPL > dense.PPL && pr.PPL > ctl.PPL) {
		t.Errorf("PPL: dense %.4f, control %.4f, pruned %.4f; want the pruned file's highest", dense.PPL, ctl.PPL, pr.PPL)
	}
	t.Logf("PPL order: dense %.4f, control %.4f, pruned %.4f", dense.PPL, ctl.PPL, pr.PPL)
	if pr.Method == "" || pr.Target == 0 || pr.Source == "" || ctl.ControlOf == "" {
		t.Errorf("identity of the pruned file %+v, control %+v", pr, ctl)
	}
	// The pruned file's source is its Q8_0 original, not the F32 --base.
	if len(r.Warnings) == 0 || !strings.Contains(stderr, "warning: "+filepath.Base(pruned)+" names stories260K.q8_0.gguf") {
		t.Errorf("no warning that --base is not the pruned file's source: %q %q", r.Warnings, stderr)
	}
}

// TestEvalRefusals: every unusable input is refused with a clear message,
// exit code 2 for the command line and 1 for a failure.
func TestEvalRefusals(t *testing.T) {
	t.Setenv(llamacpp.LibEnv, "")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	junk := write("junk.gguf", []byte("not a model at all"))
	lib := "/nonexistent/llama/lib"
	rtDir, haveLlama := rt.Dir()
	if haveLlama {
		lib = rt.LibDir(rtDir)
	}
	cases := []struct {
		name  string
		args  []string
		code  int
		want  string
		llama bool // needs the real llama.cpp
	}{
		{"no model", []string{"eval", "--text", evalText}, ExitUsage, "missing MODEL", false},
		{"no text", []string{"eval", stories}, ExitUsage, "--text FILE is required", false},
		{"bad ctx", []string{"eval", "--text", evalText, "--ctx", "2", stories}, ExitUsage, "--ctx 2", false},
		{"save without base", []string{"eval", "--text", evalText, "--save-base-logits", filepath.Join(dir, "l"), stories}, ExitUsage, "needs --base", false},
		{"no llama", []string{"eval", "--text", evalText, stories}, ExitUsage, "@node-llama-cpp/linux-x64@3.21.1", false},
		{"unknown llama-lib", []string{"eval", "--llama-lib", filepath.Join(dir, "nope"), "--text", evalText, stories}, ExitFailure, "--llama-lib DIR", false},
		{"not a gguf", []string{"eval", "--llama-lib", lib, "--text", evalText, junk}, ExitFailure, "junk.gguf", false},
		{"empty text", []string{"eval", "--llama-lib", lib, "--text", write("empty.txt", nil), stories}, ExitFailure, "is empty", false},
		{"binary text", []string{"eval", "--llama-lib", lib, "--text", write("bin.txt", []byte{'a', 0, 1, 2}), stories}, ExitFailure, "binary", false},
		{"short text", []string{"eval", "--llama-lib", lib, "--text", write("short.txt", []byte("Once upon a time.\n")), stories}, ExitFailure, "tokenizes to only", true},
		{"llama.cpp refuses", []string{"eval", "--llama-lib", lib, "--text", evalText, writeGGUF(t, []gguf.KV{{Key: "general.architecture", Value: gguf.String("nosuch")}}, nil)}, ExitFailure, "unknown model architecture", true},
	}
	if haveLlama {
		c := testmodels.DefaultConfig()
		c.Vocab = 600
		other := filepath.Join(dir, "vocab600.gguf")
		if err := testmodels.Write(other, c, gguf.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct {
			name  string
			args  []string
			code  int
			want  string
			llama bool
		}{"vocabularies differ", []string{"eval", "--llama-lib", lib, "--text", evalText, "--base", stories, other}, ExitFailure, "refusing to compare", true})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.llama && !haveLlama {
				t.Skipf("%s is not set", rt.EnvVar)
			}
			_, _, err := run(t, tc.args...)
			if err == nil {
				t.Fatal("accepted")
			}
			t.Log(err)
			if got := ExitCode(err); got != tc.code {
				t.Errorf("exit code %d, want %d", got, tc.code)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

// TestEvalQuietJSONStdout: --json - puts the report on stdout and --quiet
// silences the rest.
func TestEvalQuietJSONStdout(t *testing.T) {
	rtDir := rt.Require(t)
	out, stderr, err := run(t, "eval", "--llama-lib", rt.LibDir(rtDir), "--text", evalText, "--ctx", "64", "--chunks", "4", "--threads", "1", "--quiet", "--json", "-", stories)
	if err != nil {
		t.Fatal(err)
	}
	var r EvalReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, out)
	}
	if stderr != "" || r.Chunks != 4 || r.Scored != 4*31 || r.Models[0].KLD != nil || r.Models[0].File != "stories260K.gguf" {
		t.Errorf("stderr %q, report %+v", stderr, r)
	}
	if s := strconv.FormatFloat(r.Models[0].PPL, 'f', 2, 64); s == "0.00" {
		t.Errorf("PPL %s", s)
	}
}
