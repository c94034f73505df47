package cli

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/llamacpp"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// TestCalibrateUsage: wrong arguments are usage errors (exit 2) that say
// what is wrong, before anything is loaded.
func TestCalibrateUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"calibrate", "m.gguf", "o.gguf"}, "--text FILE is required"},
		{[]string{"calibrate", "--text", "t.txt", "m.gguf"}, "want MODEL OUT.gguf"},
		{[]string{"calibrate", "--text", "t.txt", "--ctx", "8", "m.gguf", "o.gguf"}, "--ctx 8"},
		{[]string{"calibrate", "--text", "t.txt", "--max-memory", "lots", "m.gguf", "o.gguf"}, "--max-memory"},
		{[]string{"calibrate", "--text", "t.txt", "m.gguf", "o.gguf", "--gram"}, "flags must come before"},
	} {
		_, _, err := run(t, tc.args...)
		if err == nil || ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), tc.msg) {
			t.Fatalf("%v: %v (exit %d), want a usage error containing %q", tc.args, err, ExitCode(err), tc.msg)
		}
	}
}

// TestCalibrateStories260K: the command writes a calibration file that
// imatrix reads back and inspect shows, recording the text's and the
// model's sha256, printing the plan (one layer's Grams, 169 KiB, per pass),
// progress (chunk groups, tokens/s, time left) and a summary.
func TestCalibrateStories260K(t *testing.T) {
	dir := rt.Require(t)
	t.Setenv(llamacpp.LibEnv, rt.LibDir(dir))
	out := filepath.Join(t.TempDir(), "cal.gguf")
	const text = "../../shared/models/tinystories_valid_calib.txt"
	_, stderr, err := run(t, "calibrate", "--text", text, "--ctx", "64",
		"--chunks", "8", "--threads", "1", "--gram", "--max-memory", "170K", stories, out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"8 chunks of 64 tokens", "35 targets reading 20 inputs", "5 pass(es)", "pass 1/5, 1/5 chunk groups",
		"tokens/s", "left", "wrote " + out} {
		if !strings.Contains(stderr, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	cal, err := imatrix.LoadCalibration(out)
	if err != nil {
		t.Fatal(err)
	}
	if !cal.Info.Gram || cal.Info.Tokens != 8*64 || cal.Info.Model != "stories260K.gguf" || len(cal.Inputs) != 20 {
		t.Fatalf("info %+v, %d inputs", cal.Info, len(cal.Inputs))
	}
	for _, f := range []struct{ path, sum string }{{text, cal.Info.TextSHA256}, {stories, cal.Info.ModelSHA256}} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%x", sha256.Sum256(b)); f.sum != want {
			t.Fatalf("%s: recorded sha256 %s, the file's %s", f.path, f.sum, want)
		}
	}
	stdout, _, err := run(t, "inspect", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`calibrate.text           STRING    "tinystories_valid_calib.txt"`, "blk.4.ffn_gate.weight.gram ", "blk.0.attn_k.weight.in_sum2 "} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("inspect lacks %q:\n%s", want, stdout)
		}
	}
}
