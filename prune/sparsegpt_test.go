package prune

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/physarium/physarium-gguf/calibrate"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/kernel"
	"github.com/physarium/physarium-gguf/llamacpp"
	"github.com/physarium/physarium-gguf/method"
	"github.com/physarium/physarium-gguf/obs"
	"github.com/physarium/physarium-gguf/quantize"
	rt "github.com/physarium/physarium-gguf/testmodels/llamacpp"
)

// storiesCalibration writes a small calibration file with Gram matrices
// of stories260K (8 chunks of 64 tokens of the calibration text) through
// the real llama.cpp, and returns its path.
func storiesCalibration(t *testing.T) string {
	t.Helper()
	dir := rt.Require(t)
	lib, err := llamacpp.Load(rt.LibDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(sharedModels, "tinystories_valid_calib.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "cal.gguf")
	_, err = calibrate.Run(context.Background(), lib, calibrate.Options{Model: filepath.Join(sharedModels, "stories260K.gguf"), Out: out,
		Text: text, TextName: "tinystories_valid_calib.txt", Ctx: 64, Chunks: 8, Threads: 1, Gram: true, MaxMemory: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSparseGPTStories260K prunes stories260K (F32, and its Q8_0
// re-encoding) with SparseGPT at 50 % and recomputes every target tensor
// independently: obs on the decoded original with the calibration file's
// Gram, the kills set to zero, the changed blocks encoded with the
// zero-preserving encoder and every other block's bytes kept. The output
// must be that, byte for byte.
func TestSparseGPTStories260K(t *testing.T) {
	cal := storiesCalibration(t)
	file, err := imatrix.LoadCalibration(cal)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	q8 := filepath.Join(dir, "q8.gguf")
	if _, err := rt.EncodeProjections(filepath.Join(sharedModels, "stories260K.gguf"), q8, gguf.TypeQ8_0); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{filepath.Join(sharedModels, "stories260K.gguf"), q8} {
		out := filepath.Join(dir, "sg-"+filepath.Base(in))
		p := kernel.DefaultParams()
		p.Mode, p.Sparsity = kernel.Sparsity, 0.5
		r, err := File(context.Background(), in, out, Options{Method: "sparsegpt", Calibration: cal, Params: &p, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		checkOutput(t, in, out, r)
		// Each band ends with half its weights at zero; the weights
		// already zero (Q8_0 rounds small ones to 0) have the lowest
		// score and count first.
		if r.Killed > r.Weights.Target/2 || r.Killed+r.ZeroBefore < r.Weights.Target/2 || r.ExactZero != r.Killed {
			t.Errorf("%s: killed %d of %d, %d exact zeros", in, r.Killed, r.Weights.Target, r.ExactZero)
		}
		if !(r.ReconstructionError > 0 && r.ReconstructionError < 0.1) {
			t.Errorf("%s: reconstruction error %g", in, r.ReconstructionError)
		}
		if r.SurvivorsChanged.Numerator == 0 || r.SurvivorsChanged.Denominator != r.Weights.Target {
			t.Errorf("%s: survivors changed %+v", in, r.SurvivorsChanged)
		}
		t.Logf("%s: killed %d of %d target weights, %d survivors changed", filepath.Base(in), r.Killed, r.Weights.Target, r.SurvivorsChanged.Numerator)
		replaySparseGPT(t, in, out, file, r)
	}
}

// replaySparseGPT recomputes every target of r from in and the
// calibration file and compares it with out, byte for byte.
func replaySparseGPT(t *testing.T, in, out string, cal *imatrix.Calibration, r *Report) {
	t.Helper()
	replayOBS(t, in, out, cal, r, nil, method.Pattern{})
}

// replayOBS recomputes every target of r from in and the calibration
// file, with obs choosing the mask (fixed == nil) or reconstructing under
// the mask of the file at fixed (its weights zero where in's are not), and
// compares it with out, byte for byte.
func replayOBS(t *testing.T, in, out string, cal *imatrix.Calibration, r *Report, fixed *gguf.File, pat method.Pattern) {
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
	inputs := map[string]*imatrix.Input{}
	for _, x := range cal.Inputs {
		inputs[x.Name] = x
	}
	for _, tr := range r.Tensors {
		ti, _ := fi.Tensor(tr.Name)
		to, _ := fo.Tensor(tr.Name)
		raw, _ := io.ReadAll(fi.TensorReader(ti))
		got, _ := io.ReadAll(fo.TensorReader(to))
		cols, rows := int(ti.Shape[0]), int(ti.Shape[1])
		before := make([]float32, rows*cols)
		if err := quantize.Decode(ti.Type, before, raw); err != nil {
			t.Fatal(err)
		}
		if rows > 256 {
			t.Fatalf("%s: %d rows, the replay handles one band", tr.Name, rows)
		}
		x := inputs[cal.Tensors[tr.Name].Input]
		g, err := x.Dense(0)
		if err != nil {
			t.Fatal(err)
		}
		f, err := obs.NewFactor(g, cols, x.Count[0], 0.01)
		if err != nil {
			t.Fatal(err)
		}
		w := make([]float64, len(before))
		for i, v := range before {
			w[i] = float64(v)
		}
		zeros := make([]bool, len(w))
		for i, v := range before {
			zeros[i] = v == 0
		}
		opt := obs.Options{Sparsity: 0.5, Zeros: zeros, BlockSize: 128, N: pat.N, M: pat.M}
		if fixed != nil {
			tf, _ := fixed.Tensor(tr.Name)
			fraw, _ := io.ReadAll(fixed.TensorReader(tf))
			fv := make([]float32, len(before))
			if err := quantize.Decode(tf.Type, fv, fraw); err != nil {
				t.Fatal(err)
			}
			opt = obs.Options{Mask: make([]bool, len(w)), BlockSize: 128}
			for i := range fv {
				opt.Mask[i] = fv[i] == 0
			}
		}
		res, err := obs.Prune(w, rows, f, opt)
		if err != nil {
			t.Fatal(err)
		}
		after := make([]float32, len(w))
		for i, v := range w {
			after[i] = float32(v)
		}
		info, _ := ti.Type.Info()
		want := bytes.Clone(raw)
		for blk := 0; blk < len(after)/info.BlockSize; blk++ {
			lo, hi := blk*info.BlockSize, (blk+1)*info.BlockSize
			touched := false
			for i := lo; i < hi; i++ {
				touched = touched || res.Mask[i] || math.Float32bits(after[i]) != math.Float32bits(before[i])
			}
			if touched {
				if err := quantize.EncodeKeepZeros(ti.Type, want[blk*info.BlockBytes:(blk+1)*info.BlockBytes], after[lo:hi]); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s (%s): the output is not obs's reconstruction re-encoded", tr.Name, ti.Type)
		}
	}
}

// TestSparseGPTPatternStories260K: SparseGPT at 2:4 and 4:8 (ffn_down's
// 172-weight rows end with a group of 4 that loses 2) is obs's N:M
// choice and update, byte for byte, and every group holds its zeros.
func TestSparseGPTPatternStories260K(t *testing.T) {
	cal := storiesCalibration(t)
	file, err := imatrix.LoadCalibration(cal)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(sharedModels, "stories260K.gguf")
	for _, pat := range []method.Pattern{{N: 2, M: 4}, {N: 4, M: 8}} {
		out := filepath.Join(t.TempDir(), "p.gguf")
		p := kernel.DefaultParams()
		p.Mode, p.Sparsity = kernel.Sparsity, 0.5
		r, err := File(context.Background(), in, out, Options{Method: "sparsegpt", Calibration: cal, Params: &p, Pattern: pat})
		if err != nil {
			t.Fatal(err)
		}
		if r.Pattern != pat.String() || r.Killed != r.Weights.Target/2 {
			t.Fatalf("%s: pattern %q, killed %d of %d", pat, r.Pattern, r.Killed, r.Weights.Target)
		}
		checkOutput(t, in, out, r)
		replayOBS(t, in, out, file, r, nil, pat)
	}
}

// TestSparseGPTNeedsCalibration: the method refuses to run without a
// calibration file, and another method refuses one.
func TestSparseGPTNeedsCalibration(t *testing.T) {
	in := filepath.Join(sharedModels, "stories260K.gguf")
	p := kernel.DefaultParams()
	p.Mode, p.Sparsity = kernel.Sparsity, 0.5
	if _, err := File(context.Background(), in, "", Options{Method: "sparsegpt", Params: &p, DryRun: true}); err == nil {
		t.Error("sparsegpt ran without --calibration")
	}
	if _, err := File(context.Background(), in, "", Options{Method: "magnitude", Calibration: "x.gguf", Params: &p, DryRun: true}); err == nil {
		t.Error("magnitude took a calibration file")
	}
	if _, err := File(context.Background(), in, "", Options{Method: "sparsegpt", Calibration: in, Params: &p, DryRun: true}); err == nil {
		t.Error("a model was taken for a calibration file")
	}
}

// TestReconstructStories260K: --reconstruct keeps each method's kills
// (the same weights die as without it) and the survivors are obs's
// reconstruction under that mask, byte for byte; magnitude-flow in
// natural mode and wanda in sparsity mode.
func TestReconstructStories260K(t *testing.T) {
	cal := storiesCalibration(t)
	file, err := imatrix.LoadCalibration(cal)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(sharedModels, "stories260K.gguf")
	dir := t.TempDir()
	sp := kernel.DefaultParams()
	sp.Mode, sp.Sparsity = kernel.Sparsity, 0.5
	for _, o := range []Options{{Method: "magnitude-flow"}, {Method: "wanda", Imatrix: cal, Params: &sp}} {
		plain := filepath.Join(dir, o.Method+".gguf")
		rp, err := File(context.Background(), in, plain, o)
		if err != nil {
			t.Fatal(err)
		}
		o.Reconstruct, o.Calibration = true, cal
		out := filepath.Join(dir, o.Method+"-rec.gguf")
		r, err := File(context.Background(), in, out, o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Killed != rp.Killed || !r.Reconstructed || r.SurvivorsChanged.Numerator == 0 || r.Method != o.Method {
			t.Fatalf("%s: killed %d (plain %d), reconstructed %v, survivors %v", o.Method, r.Killed, rp.Killed, r.Reconstructed, r.SurvivorsChanged)
		}
		checkOutput(t, in, out, r)
		fp, err := gguf.Open(plain)
		if err != nil {
			t.Fatal(err)
		}
		replayOBS(t, in, out, file, r, fp, method.Pattern{})
		fp.Close()
		t.Logf("%s + reconstruct: killed %d of %d, %d survivors changed; %s", o.Method, r.Killed, r.Weights.Target, r.SurvivorsChanged.Numerator, r.Reconstruction)
	}
	if _, err := File(context.Background(), in, "", Options{Method: "sparsegpt", Reconstruct: true, Calibration: cal, Params: &sp, DryRun: true}); err == nil {
		t.Error("sparsegpt took --reconstruct")
	}
}
