package cli

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// TestPruneRetype prunes an IQ3_S model (a type without a zero code) and an
// F32 one with --retype: every target is written in the new type, every
// other tensor keeps its bytes, physarium.retype and the report say so,
// the kills read exactly 0 (Q4_K and Q8_0 hold 0), audit agrees with and
// without the original, and llama.cpp loads and runs the file.
func TestPruneRetype(t *testing.T) {
	_, haveLlama := llamacpp.Dir()
	if haveLlama {
		llamacpp.Require(t)
	}
	dir := t.TempDir()
	text := filepath.Join("..", "..", "shared", "models", "tinystories_sample.txt")
	for _, tc := range []struct{ from, to string }{{"iq3_s", "q4_k"}, {"f32", "q8_0"}} {
		t.Run(tc.from+"-"+tc.to, func(t *testing.T) {
			in := filepath.Join(dir, tc.from+".gguf")
			mustRun(t, "testmodel", "--layers", "1", "--embd", "256", "--ff", "512", "--heads", "2", "--vocab", "300", "--type", tc.from, in)
			out := filepath.Join(dir, tc.from+"-"+tc.to+".gguf")
			r := mustPrune(t, "--retype", tc.to, in, out)
			want, _ := gguf.ParseType(tc.to)
			from, _ := gguf.ParseType(tc.from)
			if r.Retype != want.String() || r.Killed == 0 || r.ExactZero != r.Killed {
				t.Fatalf("report: retype %q, %d killed, %d exact zeros", r.Retype, r.Killed, r.ExactZero)
			}
			checkRetyped(t, in, out, &r, from, want)
			if txt := mustRun(t, "audit", "--against", in, out); !strings.Contains(txt, "verdict: agree") || !strings.Contains(txt, "kills are exact") {
				t.Errorf("audit --against:\n%s", txt)
			}
			if txt := mustRun(t, "audit", out); !strings.Contains(txt, "verdict: agree") {
				t.Errorf("audit:\n%s", txt)
			}
			if haveLlama {
				res, err := llamacpp.Perplexity(context.Background(), out, text, 128)
				if err != nil {
					t.Fatalf("llama.cpp: %v", err)
				}
				if math.IsNaN(res.PPL) || math.IsInf(res.PPL, 0) {
					t.Fatalf("llama.cpp perplexity %v", res.PPL)
				}
				t.Logf("%s -> %s: %d of %d target weights killed, all exact zeros; ppl(sample, random weights) %s", tc.from, tc.to, r.Killed, r.Weights.Target, ftoa4(res.PPL))
			}
		})
	}
}

// checkRetyped checks that every target of out is of type to (of type from
// in in), holds the report's kills, and that every other tensor is in's.
func checkRetyped(t *testing.T, in, out string, r *prune.Report, from, to gguf.Type) {
	t.Helper()
	fi, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer fi.Close()
	fo, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fo.Close()
	kv, _ := fo.KV("physarium.retype")
	if s, ok := kv.Value.AsString(); !ok || s != to.String() {
		t.Errorf("physarium.retype: %q %v", s, ok)
	}
	targets := map[string]prune.TensorReport{}
	for _, tr := range r.Tensors {
		targets[tr.Name] = tr
	}
	for _, ti := range fi.Tensors {
		to2, ok := fo.Tensor(ti.Name)
		if !ok {
			t.Fatalf("%s missing", ti.Name)
		}
		tr, target := targets[ti.Name]
		b, _ := io.ReadAll(fo.TensorReader(to2))
		if !target {
			a, _ := io.ReadAll(fi.TensorReader(ti))
			if to2.Type != ti.Type || !bytes.Equal(a, b) {
				t.Errorf("%s is no target but changed", ti.Name)
			}
			continue
		}
		if ti.Type != from || to2.Type != to || tr.Type != to.String() || tr.RetypedFrom != from.String() {
			t.Errorf("%s: %s -> %s, report %s from %s", ti.Name, ti.Type, to2.Type, tr.Type, tr.RetypedFrom)
		}
		info, _ := to.Info()
		if tr.Reencoded != tr.Blocks || tr.Blocks != to2.Elements()/uint64(info.BlockSize) {
			t.Errorf("%s: %d of %d blocks re-encoded", ti.Name, tr.Reencoded, tr.Blocks)
		}
	}
}

// TestPruneRetypeRefused: a type prune cannot encode, rows that are not
// whole blocks of the type (naming the tensor) and a control twin are
// refused, and no output is left.
func TestPruneRetypeRefused(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "m.gguf")
	mustRun(t, "testmodel", "--layers", "1", "--embd", "128", "--ff", "256", "--heads", "2", "--vocab", "300", in)
	out := filepath.Join(dir, "out.gguf")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--retype", "q9_9"}, "not a type prune can encode"},
		{[]string{"--retype", "q4_k"}, "blk.0.attn_q.weight: --retype Q4_K: rows of 128 weights are not whole Q4_K blocks of 256"},
		{[]string{"--retype", "q8_0", "--control", filepath.Join(dir, "c.gguf")}, "control twin is not supported"},
	} {
		_, _, err := run(t, append(append([]string{"prune", "--quiet"}, tc.args...), in, out)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || ExitCode(err) == 0 {
			t.Errorf("%q: %v, want an error saying %q", tc.args, err, tc.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("%q left %s behind", tc.args, out)
		}
	}
}
