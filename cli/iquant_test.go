package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/prune"
	"github.com/physarium/physarium-gguf/quantize"
	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// iqGridTypeNames are the i-quant grid types, as --type spells them.
var iqGridTypeNames = []string{"iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m"}

// TestPruneIQuants makes a model of each i-quant grid type with testmodel
// (IQ2_XXS from a llama-imatrix importance matrix of its F32 twin when the
// runtime is there), prunes it (magnitude-flow, re-encoding with that
// importance matrix, or a synthetic one without the runtime) and checks the result: tensors prune did
// not target and blocks it did not re-encode keep their bytes, the report's
// exact_zero is the count of killed weights that read back as 0 in the
// file (these grids hold 0 only in an all-zero block), max_killed_rel is in
// (0, 1] for the tensors whose kills read non-zero, audit agrees, and
// llama.cpp loads and runs the file (finite perplexity).
func TestPruneIQuants(t *testing.T) {
	_, haveLlama := llamacpp.Dir()
	if haveLlama {
		llamacpp.Require(t)
	}
	dir := t.TempDir()
	text := filepath.Join("..", "..", "shared", "models", "tinystories_sample.txt")
	model := []string{"testmodel", "--layers", "1", "--embd", "256", "--ff", "512", "--heads", "2", "--vocab", "300"}
	var im string
	if haveLlama {
		twin := filepath.Join(dir, "f32.gguf")
		mustRun(t, append(model, twin)...)
		im = filepath.Join(dir, "imatrix.gguf")
		if err := llamacpp.Imatrix(context.Background(), twin, text, 128, im); err != nil {
			t.Fatalf("llama-imatrix: %v", err)
		}
	}
	for _, name := range iqGridTypeNames {
		t.Run(name, func(t *testing.T) {
			in := filepath.Join(dir, name+".gguf")
			args := append(append([]string{}, model...), "--type", name)
			if name == "iq2_xxs" && im != "" {
				args = append(args, "--imatrix", im)
			}
			mustRun(t, append(args, in)...)
			pim := im
			if pim == "" {
				pim = filepath.Join(dir, name+".imatrix.gguf")
				writeTestImatrix(t, pim, in)
			}
			out := filepath.Join(dir, name+".pruned.gguf")
			r := mustPrune(t, "--method", "magnitude-flow", "--imatrix", pim, in, out)
			if r.Killed == 0 || len(r.Tensors) == 0 {
				t.Fatalf("nothing pruned: %d killed in %d tensors", r.Killed, len(r.Tensors))
			}
			exactZeros, _ := checkIQPruned(t, in, out, &r)
			if exactZeros != r.ExactZero {
				t.Errorf("the file holds %d killed weights at exactly 0, the report says %d", exactZeros, r.ExactZero)
			}
			if txt := mustRun(t, "audit", "--against", in, "--imatrix", pim, out); !strings.Contains(txt, "verdict: agree") || strings.Contains(txt, "  except ") {
				t.Errorf("audit:\n%s", txt)
			}
			msg := ""
			if haveLlama {
				res, err := llamacpp.Perplexity(context.Background(), out, text, 128)
				if err != nil {
					t.Fatalf("llama.cpp: %v", err)
				}
				if math.IsNaN(res.PPL) || math.IsInf(res.PPL, 0) {
					t.Fatalf("llama.cpp perplexity %v", res.PPL)
				}
				msg = " ppl(sample, random weights) " + ftoa4(res.PPL)
			}
			var maxKilled, maxRel float64
			for _, tr := range r.Tensors {
				maxKilled = math.Max(maxKilled, tr.MaxKilledAbs)
				maxRel = math.Max(maxRel, tr.MaxKilledRel)
				if tr.Killed > tr.ExactZero && !(tr.MaxKilledRel > 0 && tr.MaxKilledRel <= 1) {
					t.Errorf("%s: %d of %d kills read non-zero, yet max_killed_rel is %v", tr.Name, tr.Killed-tr.ExactZero, tr.Killed, tr.MaxKilledRel)
				}
			}
			t.Logf("%-7s killed %v; exact zeros %d; max |killed| %.3g, %.3g of its block's largest |value|%s", name, r.OverTarget, r.ExactZero, maxKilled, maxRel, msg)
		})
	}
}

// checkIQPruned compares in and out block by block: tensors that are not
// targets are identical, and a target's changed blocks are at most the
// report's re-encoded ones (at least one). It returns how many values of
// the changed blocks read back as exactly 0 where the original's are not 0:
// the kills at 0, as the file has them, in all and per tensor. (In a type
// with a zero code, a survivor of a re-encoded block may read 0 too and is
// counted: compare such tensors' counts with care.)
// mustPrune runs prune --quiet --report - with args and returns the
// report it printed.
func mustPrune(t *testing.T, args ...string) prune.Report {
	t.Helper()
	var r prune.Report
	out := mustRun(t, append([]string{"prune", "--quiet", "--report", "-"}, args...)...)
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("prune %v: report: %v", args, err)
	}
	return r
}

func checkIQPruned(t *testing.T, in, out string, r *prune.Report) (exactZeros uint64, perTensor map[string]uint64) {
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
	perTensor = map[string]uint64{}
	targets := map[string]prune.TensorReport{}
	for _, tr := range r.Tensors {
		targets[tr.Name] = tr
	}
	for _, ti := range fi.Tensors {
		to, ok := fo.Tensor(ti.Name)
		if !ok || to.Type != ti.Type {
			t.Fatalf("%s: missing or retyped in the output", ti.Name)
		}
		a, _ := io.ReadAll(fi.TensorReader(ti))
		b, _ := io.ReadAll(fo.TensorReader(to))
		tr, target := targets[ti.Name]
		if !target {
			if !bytes.Equal(a, b) {
				t.Errorf("%s is no target but changed", ti.Name)
			}
			continue
		}
		info, _ := ti.Type.Info()
		va := make([]float32, len(a)/info.BlockBytes*info.BlockSize)
		vb := make([]float32, len(va))
		if err := quantize.Decode(ti.Type, va, a); err != nil {
			t.Fatal(err)
		}
		if err := quantize.Decode(ti.Type, vb, b); err != nil {
			t.Fatal(err)
		}
		var changed uint64
		for blk := 0; blk < len(a)/info.BlockBytes; blk++ {
			if bytes.Equal(a[blk*info.BlockBytes:(blk+1)*info.BlockBytes], b[blk*info.BlockBytes:(blk+1)*info.BlockBytes]) {
				continue
			}
			changed++
			ob := va[blk*info.BlockSize : (blk+1)*info.BlockSize]
			for i, v := range vb[blk*info.BlockSize : (blk+1)*info.BlockSize] {
				if v == 0 && ob[i] != 0 {
					exactZeros++
					perTensor[ti.Name]++
				}
			}
		}
		if changed > tr.Reencoded || changed == 0 {
			t.Errorf("%s: %d blocks changed, the report re-encoded %d", ti.Name, changed, tr.Reencoded)
		}
	}
	return exactZeros, perTensor
}

func ftoa4(f float64) string {
	b, _ := json.Marshal(math.Round(f*1e4) / 1e4)
	return string(b)
}

// TestPruneLlamaQuantizeIQuants prunes the i-quant files that llama.cpp's
// own llama-quantize makes (with a llama-imatrix importance matrix) from a
// generated F32 model, as users get them: llama-quantize mixes types
// across tensors as it chooses. The same checks as TestPruneIQuants hold:
// untouched tensors and blocks keep their bytes, exact_zero is what the
// file holds, audit agrees, and llama.cpp runs the result.
func TestPruneLlamaQuantizeIQuants(t *testing.T) {
	llamacpp.Require(t)
	dir := t.TempDir()
	text := filepath.Join("..", "..", "shared", "models", "tinystories_sample.txt")
	f32 := filepath.Join(dir, "f32.gguf")
	mustRun(t, "testmodel", "--layers", "1", "--embd", "256", "--ff", "512", "--heads", "2", "--vocab", "300", f32)
	im := filepath.Join(dir, "imatrix.gguf")
	if err := llamacpp.Imatrix(context.Background(), f32, text, 128, im); err != nil {
		t.Fatalf("llama-imatrix: %v", err)
	}
	for _, typ := range []string{"IQ2_XXS", "IQ3_S", "IQ1_S"} {
		t.Run(typ, func(t *testing.T) {
			in := filepath.Join(dir, typ+".gguf")
			if _, err := llamacpp.RunTool(context.Background(), "llama-quantize", "--imatrix", im, f32, in, typ, "1"); err != nil {
				t.Fatal(err)
			}
			types := map[gguf.Type]int{}
			if f, err := gguf.Open(in); err == nil {
				for _, ti := range f.Tensors {
					types[ti.Type]++
				}
				f.Close()
			}
			out := filepath.Join(dir, typ+".pruned.gguf")
			r := mustPrune(t, "--method", "magnitude-flow", "--imatrix", im, in, out)
			if r.Killed == 0 {
				t.Fatal("nothing pruned")
			}
			// Per tensor: in the i-quant grid types no survivor reads 0 (only
			// an all-zero block does), so the file's zeros are the kills at 0;
			// in the K-quants llama-quantize mixes in, kills read exactly 0.
			_, zeros := checkIQPruned(t, in, out, &r)
			for _, tr := range r.Tensors {
				if !tr.ZeroCode {
					if zeros[tr.Name] != tr.ExactZero {
						t.Errorf("%s (%s): the file holds %d killed weights at exactly 0, the report says %d", tr.Name, tr.Type, zeros[tr.Name], tr.ExactZero)
					}
				} else if tr.ExactZero != tr.Killed {
					t.Errorf("%s (%s): %d of %d kills read exactly 0", tr.Name, tr.Type, tr.ExactZero, tr.Killed)
				}
			}
			if txt := mustRun(t, "audit", "--against", in, "--imatrix", im, out); !strings.Contains(txt, "verdict: agree") || strings.Contains(txt, "  except ") {
				t.Errorf("audit:\n%s", txt)
			}
			res, err := llamacpp.Perplexity(context.Background(), out, text, 128)
			if err != nil {
				t.Fatalf("llama.cpp: %v", err)
			}
			if math.IsNaN(res.PPL) || math.IsInf(res.PPL, 0) {
				t.Fatalf("llama.cpp perplexity %v", res.PPL)
			}
			t.Logf("%s from llama-quantize (tensor types %v): killed %v; exact zeros %d; ppl(sample, random weights) %s", typ, types, r.OverTarget, r.ExactZero, ftoa4(res.PPL))
		})
	}
}
