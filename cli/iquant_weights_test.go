package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/quantize"
)

// writeTestImatrix writes a GGUF importance matrix with an entry for every
// matrix tensor of the model at model: in_sum2 = a_i^2 * 10 over a count
// of 10, a_i = (i*7919 % 13) + 1, so that the weights differ from column
// to column.
func writeTestImatrix(t *testing.T, path, model string) *imatrix.Matrix {
	t.Helper()
	f, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := &imatrix.Matrix{Datasets: []string{"calib.txt"}, ChunkCount: 5, ChunkSize: 128, Entries: map[string]*imatrix.Entry{}}
	for _, ti := range f.Tensors {
		if len(ti.Shape) < 2 {
			continue
		}
		sums := make([]float32, ti.Shape[0])
		for i := range sums {
			a := float32(i*7919%13 + 1)
			sums[i] = a * a * 10
		}
		m.Entries[ti.Name] = &imatrix.Entry{Name: ti.Name, Sums: sums, Counts: []float64{10}}
	}
	if err := m.WriteGGUF(path, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err = imatrix.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPruneIQuantNeedsImatrix: a target of a type ggml encodes only with
// importance weights (IQ2_XXS; --retype IQ1_S) is refused without
// --imatrix, naming the file and the tensor, and nothing is written; a
// type that takes weights without needing them (IQ3_S) is pruned. With
// --imatrix, --retype IQ1_S is written and audit --imatrix agrees.
func TestPruneIQuantNeedsImatrix(t *testing.T) {
	dir := t.TempDir()
	model := []string{"testmodel", "--layers", "1", "--embd", "256", "--ff", "512", "--heads", "2", "--vocab", "300"}
	for _, tc := range []struct{ typ, retype string }{{"iq2_xxs", ""}, {"f32", "iq1_s"}} {
		in := filepath.Join(dir, tc.typ+".gguf")
		mustRun(t, append(model, "--type", tc.typ, in)...)
		out := filepath.Join(dir, tc.typ+".pruned.gguf")
		args := []string{"prune", "--quiet", in, out}
		if tc.retype != "" {
			args = []string{"prune", "--quiet", "--retype", tc.retype, in, out}
		}
		_, stderr, err := run(t, args...)
		if err == nil {
			t.Fatalf("%s (retype %q) pruned without an importance matrix", tc.typ, tc.retype)
		}
		msg := err.Error() + stderr
		if !strings.Contains(msg, in) || !strings.Contains(msg, "tensor blk.0.") || !strings.Contains(msg, "--imatrix") {
			t.Errorf("%s: error names no file, tensor or --imatrix: %v", tc.typ, msg)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s: an output was left behind (%v)", tc.typ, err)
		}
	}
	// With an importance matrix the retyped file is written, and audit
	// --imatrix replays its re-encoding; without an IQ target a method
	// that ranks without the matrix refuses it.
	f32 := filepath.Join(dir, "f32.gguf")
	im := filepath.Join(dir, "imatrix.gguf")
	writeTestImatrix(t, im, f32)
	out := filepath.Join(dir, "f32.iq1_s.gguf")
	mustRun(t, "prune", "--quiet", "--method", "magnitude-flow", "--imatrix", im, "--retype", "iq1_s", f32, out)
	if txt := mustRun(t, "audit", "--against", f32, "--imatrix", im, out); !strings.Contains(txt, "verdict: agree") || !strings.Contains(txt, "kills are exact") || strings.Contains(txt, "  except ") {
		t.Errorf("audit of the retyped file:\n%s", txt)
	}
	if _, _, err := run(t, "prune", "--quiet", "--method", "magnitude-flow", "--imatrix", im, f32, filepath.Join(dir, "f32.pruned.gguf")); err == nil || !strings.Contains(err.Error(), "drop --imatrix") {
		t.Errorf("magnitude-flow with an importance matrix and no IQ target: %v", err)
	}
	in := filepath.Join(dir, "iq3_s.gguf")
	mustRun(t, append(model, "--type", "iq3_s", in)...)
	mustRun(t, "prune", "--quiet", in, filepath.Join(dir, "iq3_s.pruned.gguf"))
}

// TestPruneIQuantImatrix prunes an IQ2_XXS model with --imatrix and a
// magnitude method (which ranks without it): physarium.imatrix names the
// matrix and the report lists every target as re-encoded with it; every block the control twin changed is
// quantize.EncodeKeepZerosWeighted of the original's values with the
// entry's column weights (sum/count) and some differ from the unweighted
// re-encoding; audit --against --imatrix replays the kills and agrees on
// both twins (and disagrees with another matrix), and without --imatrix it names the tensors it cannot check
// instead of disagreeing.
func TestPruneIQuantImatrix(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "iq2_xxs.gguf")
	mustRun(t, "testmodel", "--layers", "1", "--embd", "256", "--ff", "512", "--heads", "2", "--vocab", "300", "--type", "iq2_xxs", in)
	im := filepath.Join(dir, "imatrix.gguf")
	m := writeTestImatrix(t, im, in)
	out, ctrl := filepath.Join(dir, "out.gguf"), filepath.Join(dir, "ctrl.gguf")
	rep := filepath.Join(dir, "report.json")
	mustRun(t, "prune", "--quiet", "--method", "magnitude-flow", "--imatrix", im, "--control", ctrl, "--report", rep, in, out)
	fi, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer fi.Close()
	fc, err := gguf.Open(ctrl)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	fo, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	kv, _ := fo.KV("physarium.imatrix")
	fo.Close()
	if s, _ := kv.Value.AsString(); !strings.HasPrefix(s, "imatrix.gguf ") {
		t.Errorf("physarium.imatrix %q does not name the matrix", s)
	}
	var r prune.Report
	if raw, err := os.ReadFile(rep); err != nil || json.Unmarshal(raw, &r) != nil || len(r.ReencodeWeights) != len(r.Tensors) || len(r.Tensors) == 0 {
		t.Errorf("the report lists %d of its %d targets as re-encoded with the importance weights (%v)", len(r.ReencodeWeights), len(r.Tensors), err)
	}
	info, _ := gguf.TypeIQ2_XXS.Info()
	bs, bb := info.BlockSize, info.BlockBytes
	var changed, unlikeFlat int
	for _, ti := range fi.Tensors {
		if ti.Type != gguf.TypeIQ2_XXS {
			continue
		}
		tc, _ := fc.Tensor(ti.Name)
		a, _ := io.ReadAll(fi.TensorReader(ti))
		c, _ := io.ReadAll(fc.TensorReader(tc))
		vals := make([]float32, len(a)/bb*bs)
		if err := quantize.Decode(ti.Type, vals, a); err != nil {
			t.Fatal(err)
		}
		w, err := m.Entries[ti.Name].Weights(int(ti.Shape[0]), 1)
		if err != nil {
			t.Fatal(err)
		}
		want, flat := make([]byte, bb), make([]byte, bb)
		qw := make([]float32, bs)
		for blk := 0; blk < len(a)/bb; blk++ {
			got := c[blk*bb : (blk+1)*bb]
			if bytes.Equal(got, a[blk*bb:(blk+1)*bb]) {
				continue
			}
			changed++
			v := vals[blk*bs : (blk+1)*bs]
			for i := range qw {
				qw[i] = w[(blk*bs+i)%len(w)]
			}
			if err := quantize.EncodeKeepZerosWeighted(ti.Type, want, v, qw); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s block %d: the control's bytes are not the weighted re-encoding", ti.Name, blk)
			}
			if err := quantize.EncodeKeepZeros(ti.Type, flat, v); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(flat, want) {
				unlikeFlat++
			}
		}
	}
	if changed == 0 || unlikeFlat == 0 {
		t.Fatalf("the control changed %d blocks, %d of them unlike the unweighted re-encoding", changed, unlikeFlat)
	}
	if txt := mustRun(t, "audit", "--against", in, "--imatrix", im, out); !strings.Contains(txt, "verdict: agree") || !strings.Contains(txt, "kills are exact") {
		t.Errorf("audit --against --imatrix:\n%s", txt)
	}
	if txt := mustRun(t, "audit", "--against", in, "--imatrix", im, "--pruned", out, ctrl); !strings.Contains(txt, "verdict: agree") {
		t.Errorf("audit of the control twin:\n%s", txt)
	}
	// Another matrix gives other bytes: the audit sees it.
	other := &imatrix.Matrix{Entries: map[string]*imatrix.Entry{}}
	for name, e := range m.Entries {
		sums := make([]float32, len(e.Sums))
		for i := range sums {
			sums[i] = e.Sums[len(sums)-1-i]
		}
		other.Entries[name] = &imatrix.Entry{Name: name, Sums: sums, Counts: e.Counts}
	}
	otherPath := filepath.Join(dir, "other.gguf")
	if err := other.WriteGGUF(otherPath, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if txt, _, _ := run(t, "audit", "--against", in, "--imatrix", otherPath, out); !strings.Contains(txt, "verdict: DISAGREE") {
		t.Errorf("audit with another importance matrix agrees:\n%s", txt)
	}
	txt, _, err := run(t, "audit", "--against", in, out)
	if err != nil || strings.Contains(txt, "verdict: DISAGREE") || !strings.Contains(txt, "except blk.0.attn_q.weight: not replayed: its IQ2_XXS blocks were re-encoded with the importance weights") {
		t.Errorf("audit --against without --imatrix (%v):\n%s", err, txt)
	}
	t.Logf("control: %d IQ2_XXS blocks re-encoded, %d of them unlike the unweighted re-encoding", changed, unlikeFlat)
}
