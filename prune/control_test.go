package prune

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sync"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/quantize"
	"github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// requantize writes a copy of in whose target projections with a whole
// number of blocks per row are encoded as typ (others keep their type).
func requantize(t *testing.T, in, out string, typ gguf.Type) int {
	t.Helper()
	f, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := gguf.Header{Version: f.Version, KVs: f.KVs}
	sel, err := Selection{}.compile()
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	convert := make([]bool, len(f.Tensors))
	for i, ti := range f.Tensors {
		_, whole := typ.RowBytes(ti.Shape[0])
		if sel.match(ti) && ti.Type == gguf.TypeF32 && whole {
			convert[i] = true
			ti.Type = typ
			changed++
		}
		h.Tensors = append(h.Tensors, ti)
	}
	w, err := gguf.Create(out, h, gguf.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, ti := range f.Tensors {
		raw, err := io.ReadAll(f.TensorReader(ti))
		if err != nil {
			t.Fatal(err)
		}
		if convert[i] {
			vals := make([]float32, ti.Elements())
			if err := quantize.Decode(ti.Type, vals, raw); err != nil {
				t.Fatal(err)
			}
			rb, _ := typ.RowBytes(ti.Elements())
			raw = make([]byte, rb)
			if err := quantize.Encode(typ, raw, vals); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Write(raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return changed
}

// TestControlTwinStories260K separates what re-encoding costs from what
// pruning costs, on stories260K re-encoded as Q8_0 and as Q4_0.
func TestControlTwinStories260K(t *testing.T) {
	types := []gguf.Type{gguf.TypeQ8_0} // the default run's quality check
	if *experiments {
		types = append(types, gguf.TypeQ4_0)
	}
	for _, typ := range types {
		t.Run(typ.String(), func(t *testing.T) {
			dir := t.TempDir()
			orig := filepath.Join(dir, "orig.gguf")
			n := requantize(t, filepath.Join(sharedModels, "stories260K.gguf"), orig, typ)
			pruned := filepath.Join(dir, "pruned.gguf")
			control := filepath.Join(dir, "control.gguf")
			r, err := File(context.Background(), orig, pruned, Options{Control: control})
			if err != nil {
				t.Fatal(err)
			}
			if r.Control == nil || r.Control.OfSHA256 == "" {
				t.Fatal("no control twin in the report")
			}
			checkControl(t, orig, pruned, control, r)
			t.Logf("%d projections as %s; surgery: %v killed over target", n, typ, r.OverTarget)

			if _, ok := llamacpp.Dir(); !ok {
				t.Skip("PHYSARIUM_LLAMA unset: perplexities not measured")
			}
			llamacpp.Require(t)
			text := controlEvalText(t)
			files := []string{orig, control, pruned}
			ppl := make([]float64, 3)
			errs := make([]error, 3)
			var wg sync.WaitGroup
			for i, f := range files {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := llamacpp.Perplexity(context.Background(), f, text, 128)
					ppl[i], errs[i] = res.PPL, err
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s: %v", files[i], err)
				}
				if math.IsNaN(ppl[i]) || math.IsInf(ppl[i], 0) {
					t.Fatalf("%s: perplexity %v", files[i], ppl[i])
				}
			}
			t.Logf("evaluation on %s, n_ctx 128 (separate from the surgery figures):", filepath.Base(text))
			t.Logf("  original (%s) %.4f, control %.4f, pruned %.4f", typ, ppl[0], ppl[1], ppl[2])
			t.Logf("  re-encoding cost = ppl(control) - ppl(original) = %+.4f", ppl[1]-ppl[0])
			t.Logf("  pruning cost     = ppl(pruned) - ppl(control)   = %+.4f", ppl[2]-ppl[1])
			fmt.Fprintf(testOutput, "%s: original %.4f control %.4f pruned %.4f re-encoding %+.4f pruning %+.4f\n", typ, ppl[0], ppl[1], ppl[2], ppl[1]-ppl[0], ppl[2]-ppl[1])
		})
	}
}

// controlEvalPrefix is how much of the held-out text the default run's
// control-twin check evaluates (three models under -race): a quick check
// that the three files run and give finite perplexities. -experiments
// evaluates the whole text, the figures the README quotes.
const controlEvalPrefix = 48 << 10

// controlEvalText returns the text TestControlTwinStories260K evaluates
// on: the whole held-out text with -experiments, else its first
// controlEvalPrefix bytes cut at a line end.
func controlEvalText(t *testing.T) string {
	t.Helper()
	whole := filepath.Join(sharedModels, "tinystories_valid_eval.txt")
	if *experiments {
		return whole
	}
	p, _ := llamacpp.TextPrefix(t, whole, controlEvalPrefix)
	return p
}

// checkControl verifies the control twin: the blocks the pruned file
// re-encoded are re-encoded from the original values, every other byte is
// the original's, and its keys say what it is.
func checkControl(t *testing.T, orig, pruned, control string, r *Report) {
	t.Helper()
	fo, _ := gguf.Open(orig)
	defer fo.Close()
	fp, _ := gguf.Open(pruned)
	defer fp.Close()
	fc, err := gguf.Open(control)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	for i, ti := range fo.Tensors {
		a, _ := io.ReadAll(fo.TensorReader(ti))
		b, _ := io.ReadAll(fp.TensorReader(fp.Tensors[i]))
		c, _ := io.ReadAll(fc.TensorReader(fc.Tensors[i]))
		info, _ := ti.Type.Info()
		bb := info.BlockBytes
		for blk := 0; blk < len(a)/bb; blk++ {
			sa, sb, sc := string(a[blk*bb:(blk+1)*bb]), string(b[blk*bb:(blk+1)*bb]), string(c[blk*bb:(blk+1)*bb])
			if sa == sb && sc != sa {
				t.Fatalf("%s block %d: untouched in the pruned file but changed in the control", ti.Name, blk)
			}
		}
		if len(a) > 0 && ti.Type != gguf.TypeF32 {
			// Zeroes: the control kills nothing.
			va := make([]float32, ti.Elements())
			vc := make([]float32, ti.Elements())
			quantize.Decode(ti.Type, va, a)
			quantize.Decode(ti.Type, vc, c)
			for j := range va {
				if va[j] != 0 && vc[j] == 0 && info.BlockSize > 1 {
					// A weight may round to zero only if the reference encoder does so too.
					enc := make([]byte, bb)
					blk := j / info.BlockSize
					quantize.EncodeKeepZeros(ti.Type, enc, va[blk*info.BlockSize:(blk+1)*info.BlockSize])
					dec := make([]float32, info.BlockSize)
					quantize.Decode(ti.Type, dec, enc)
					if dec[j%info.BlockSize] != 0 {
						t.Fatalf("%s: control zeroed element %d", ti.Name, j)
					}
				}
			}
		}
	}
	kv, ok := fc.KV("physarium.control")
	if v, _ := kv.Value.AsBool(); !ok || !v {
		t.Error("control twin lacks physarium.control = true")
	}
	if kv, _ := fc.KV("physarium.killed"); func() bool { v, _ := kv.Value.AsUint64(); return v != 0 }() {
		t.Error("control twin states kills")
	}
	kv, _ = fc.KV("physarium.control_of")
	if s, _ := kv.Value.AsString(); s != filepath.Base(pruned)+" sha256:"+r.Control.OfSHA256 {
		t.Errorf("physarium.control_of = %q", s)
	}
	if got := fileSum(t, pruned); fmt.Sprintf("%x", got) != r.Control.OfSHA256 {
		t.Errorf("control names sha256 %s, pruned file is %x", r.Control.OfSHA256, got)
	}
}
