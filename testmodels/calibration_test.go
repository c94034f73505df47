package testmodels

import (
	"path/filepath"
	"testing"

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
