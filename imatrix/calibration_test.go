package imatrix

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/physarium/physarium-gguf/gguf"
)

func sampleCalibration() *Calibration {
	c := &Calibration{
		Matrix:  Matrix{Format: GGUF, Datasets: []string{"calib.txt"}, ChunkCount: 3, ChunkSize: 4},
		Tensors: map[string]*Moments{},
		Info: Info{Text: "calib.txt", TextSHA256: "ab", Model: "m.gguf", ModelSHA256: "cd", Llama: "0.23.0 x",
			Ctx: 4, Chunks: 3, Tokens: 12, Gram: true},
	}
	mk := func(name, input string, w, mats int, seed float64) *Moments {
		m := &Moments{Name: name, Input: input, Width: w, Mats: mats}
		for k := range mats {
			m.Count = append(m.Count, float64(5+k))
			for j := range w {
				v := seed + float64(k*w+j)
				m.Sum, m.Abs, m.Sq = append(m.Sum, -v), append(m.Abs, v), append(m.Sq, v*v+0.25)
			}
		}
		return m
	}
	c.Tensors["blk.0.attn_q.weight"] = mk("blk.0.attn_q.weight", "blk.0.attn_q.weight", 3, 1, 1)
	c.Tensors["blk.0.attn_k.weight"] = mk("blk.0.attn_k.weight", "blk.0.attn_q.weight", 3, 1, 1)
	c.Tensors["blk.0.ffn_up_exps.weight"] = mk("blk.0.ffn_up_exps.weight", "blk.0.ffn_up_exps.weight", 2, 2, 7)
	for _, in := range []struct {
		name, node string
		w, mats    int
	}{{"blk.0.attn_q.weight", "attn_norm-0", 3, 1}, {"blk.0.ffn_up_exps.weight", "ffn_norm-0", 2, 2}} {
		i := &Input{Name: in.name, Node: in.node, Width: in.w, Mats: in.mats}
		for k := range in.mats {
			i.Count = append(i.Count, float64(5+k))
			for p := range PackedLen(in.w) {
				i.Gram = append(i.Gram, float64(100*k+p))
			}
		}
		c.Inputs = append(c.Inputs, i)
	}
	return c
}

// TestCalibrationRoundTrip: what WriteGGUF writes, LoadCalibration reads
// back value for value, Load reads as an importance matrix (in_sum2 = in_sq
// in F32), and Dense expands the packed triangle symmetrically.
func TestCalibrationRoundTrip(t *testing.T) {
	c := sampleCalibration()
	p := filepath.Join(t.TempDir(), "cal.gguf")
	if err := c.WriteGGUF(p, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCalibration(p)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if !reflect.DeepEqual(got.Info, c.Info) || len(got.Inputs) != len(c.Inputs) {
		t.Fatalf("info %+v inputs %+v", got.Info, got.Inputs)
	}
	// The Grams stay in the file: each matrix is read when asked for.
	for i, in := range got.Inputs {
		want := c.Inputs[i]
		if in.Gram != nil || !in.HasGram() || in.Name != want.Name || in.Node != want.Node || in.Width != want.Width || in.Mats != want.Mats || !reflect.DeepEqual(in.Count, want.Count) {
			t.Fatalf("input %d: %+v, want %+v", i, in, want)
		}
		p := PackedLen(in.Width)
		for m := range in.Mats {
			g, err := in.Packed(m)
			if err != nil || !reflect.DeepEqual(g, want.Gram[m*p:(m+1)*p]) {
				t.Fatalf("input %s matrix %d: %v %v, want %v", in.Name, m, err, g, want.Gram[m*p:(m+1)*p])
			}
		}
	}
	for n, want := range c.Tensors {
		g := got.Tensors[n]
		want.Sq32 = g.Sq32 // filled from in_sum2 on reading
		if !reflect.DeepEqual(g, want) {
			t.Fatalf("%s: %+v, want %+v", n, g, want)
		}
		for i, v := range want.Sq {
			if g.Sq32[i] != float32(v) {
				t.Fatalf("%s: in_sum2[%d] %v, want %v", n, i, g.Sq32[i], float32(v))
			}
		}
	}
	m, err := Load(p)
	if err != nil || len(m.Entries) != 3 || m.ChunkCount != 3 || m.ChunkSize != 4 {
		t.Fatalf("as an imatrix: %v, %+v", err, m)
	}
	d, err := got.Inputs[1].Dense(1)
	if err != nil {
		t.Fatal(err)
	}
	// Matrix 1 of a 2-wide input: packed values 100, 101, 102.
	if want := []float64{100, 101, 101, 102}; !reflect.DeepEqual(d, want) {
		t.Fatalf("dense %v, want %v", d, want)
	}
	if _, err := got.Inputs[1].Dense(2); err == nil {
		t.Fatal("Dense of a matrix that does not exist")
	}
	if err := got.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := got.Inputs[1].Dense(0); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Dense after Close: %v", err)
	}
}

// TestCalibrationRefusals: a plain importance matrix is not a calibration
// file, and a calibration file with a missing tensor names it.
func TestCalibrationRefusals(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.gguf")
	m := &Matrix{Datasets: []string{"x"}, Entries: map[string]*Entry{"blk.0.attn_q.weight": {Sums: []float32{1, 2}, Counts: []float64{3}}}}
	if err := m.WriteGGUF(plain, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCalibration(plain); err == nil || !strings.Contains(err.Error(), "not a calibration file") {
		t.Fatalf("plain imatrix: %v", err)
	}
	c := sampleCalibration()
	c.Info.Gram = false
	noGram := filepath.Join(dir, "nogram.gguf")
	if err := c.WriteGGUF(noGram, gguf.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCalibration(noGram)
	if err != nil || got.Inputs[0].HasGram() {
		t.Fatalf("without Gram: %v", err)
	}
	c.Tensors["blk.0.attn_q.weight"].Sum = c.Tensors["blk.0.attn_q.weight"].Sum[:1]
	if err := c.WriteGGUF(filepath.Join(dir, "bad.gguf"), gguf.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "blk.0.attn_q.weight") {
		t.Fatalf("short moments: %v", err)
	}
}
