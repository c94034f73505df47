package testmodels

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
	"github.com/physarium/physarium-gguf/obs"
)

// TestWriteCalibration: the synthetic calibration file loads, covers every
// target, shares one input among attn_q/k/v and among ffn_gate/up, and
// every Gram is positive definite (factors without extra damping) with
// the diagonal its in_sq moments state.
func TestWriteCalibration(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Layers = 2
	model := filepath.Join(dir, "m.gguf")
	if err := Write(model, cfg, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cal.gguf")
	if err := WriteCalibration(path, model, 512, 1); err != nil {
		t.Fatal(err)
	}
	c, err := imatrix.LoadCalibration(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := len(c.Tensors), 2*7; got != want {
		t.Fatalf("%d tensors, want %d", got, want)
	}
	if got, want := len(c.Inputs), 2*4; got != want {
		t.Fatalf("%d inputs, want %d (attn_q/k/v, attn_output, ffn_gate/up, ffn_down per block)", got, want)
	}
	if c.Tensors["blk.1.attn_v.weight"].Input != "blk.1.attn_q.weight" || c.Tensors["blk.0.ffn_up.weight"].Input != c.Tensors["blk.0.ffn_gate.weight"].Input {
		t.Fatal("inputs not shared as calibrate records them")
	}
	for _, in := range c.Inputs {
		g, err := in.Dense(0)
		if err != nil {
			t.Fatal(err)
		}
		sq := c.Tensors[in.Name].Sq
		for i := range in.Width {
			if g[i*in.Width+i] != sq[i] {
				t.Fatalf("input %s: G[%d][%d] = %g, in_sq %g", in.Name, i, i, g[i*in.Width+i], sq[i])
			}
		}
		f, err := obs.NewFactor(g, in.Width, in.Count[0], 0.01)
		if err != nil || f.Retries != 0 {
			t.Fatalf("input %s: %v, %+v", in.Name, err, f)
		}
	}
}

var (
	synthCalModel = flag.String("synthcal.model", "", "TestSyntheticCalibrationFile: write a synthetic calibration file for this GGUF (an absolute path: go test runs in the package directory)")
	synthCalOut   = flag.String("synthcal.out", "", "TestSyntheticCalibrationFile: the calibration file to write (an absolute path; it must not exist)")
)

// TestSyntheticCalibrationFile writes WriteCalibration(out, model, 4096,
// 1) for the model named by -synthcal.model, the calibration file the
// README's whole-file SparseGPT and v2 full timings use, and checks that
// it loads with a Gram for every target of the model. It runs only with
// -synthcal.model and -synthcal.out.
func TestSyntheticCalibrationFile(t *testing.T) {
	if *synthCalModel == "" || *synthCalOut == "" {
		t.Skip("needs -synthcal.model MODEL and -synthcal.out FILE")
	}
	if _, err := os.Lstat(*synthCalOut); err == nil {
		t.Fatalf("%s exists", *synthCalOut)
	}
	if err := WriteCalibration(*synthCalOut, *synthCalModel, 4096, 1); err != nil {
		t.Fatal(err)
	}
	c, err := imatrix.LoadCalibration(*synthCalOut)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := gguf.Open(*synthCalModel)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	targets := regexp.MustCompile(errata.DefaultTargetPattern)
	inputs := map[string]*imatrix.Input{}
	for _, in := range c.Inputs {
		inputs[in.Name] = in
	}
	n := 0
	for _, ti := range f.Tensors {
		if len(ti.Shape) < 2 || !targets.MatchString(ti.Name) {
			continue
		}
		n++
		mo := c.Tensors[ti.Name]
		if mo == nil {
			t.Fatalf("%s: no entry for target %s", *synthCalOut, ti.Name)
		}
		if in := inputs[mo.Input]; in == nil || !in.HasGram() || in.Width != int(ti.Shape[0]) {
			t.Fatalf("%s: target %s: input %s missing, without a Gram or of another width", *synthCalOut, ti.Name, mo.Input)
		}
	}
	st, err := os.Stat(*synthCalOut)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d bytes, %d targets, %d inputs", *synthCalOut, st.Size(), n, len(c.Inputs))
}
