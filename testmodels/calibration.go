package testmodels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/physarium/physarium-gguf/errata"
	"github.com/physarium/physarium-gguf/gguf"
	"github.com/physarium/physarium-gguf/imatrix"
)

// SyntheticText is the calibrate.text of a file from WriteCalibration.
const SyntheticText = "synthetic (no text: testmodels.WriteCalibration)"

// WriteCalibration writes a calibration file with Gram matrices (the
// format calibrate --gram writes) for the target tensors of the model at
// model, without running it: for benchmarks and memory tests of the
// methods that read Grams, on models too large to calibrate cheaply.
//
// Every input's Gram is tokens * D K D, positive definite: K_ij =
// rho^|i-j| with rho = 0.6 (neighbouring channels correlate), D a
// log-normal channel scale (sigma 0.5, a few loud channels as in real
// activations) drawn from seed and the input's name. The weights of a
// block that read the same activation share one input, as calibrate
// records them: attn_q, attn_k and attn_v; ffn_gate and ffn_up (and their
// expert forms). The Grams are generated and written one input at a time.
func WriteCalibration(path, model string, tokens float64, seed uint64) error {
	f, err := gguf.Open(model)
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	defer f.Close()
	c := &imatrix.Calibration{
		Matrix:  imatrix.Matrix{Datasets: []string{SyntheticText}, ChunkCount: 1, ChunkSize: int(tokens)},
		Tensors: map[string]*imatrix.Moments{},
		Info:    imatrix.Info{Text: SyntheticText, Model: filepath.Base(model), Tokens: uint64(tokens), Gram: true},
	}
	targets := regexp.MustCompile(errata.DefaultTargetPattern)
	scales := map[string][]float64{}
	byGroup := map[string]*imatrix.Input{}
	for _, t := range f.Tensors {
		if len(t.Shape) < 2 || !targets.MatchString(t.Name) {
			continue
		}
		n, mats := int(t.Shape[0]), 1
		for _, d := range t.Shape[2:] {
			mats *= int(d)
		}
		in := byGroup[inputGroup(t.Name)]
		if in == nil || in.Width != n || in.Mats != mats {
			in = &imatrix.Input{Name: t.Name, Node: "synthetic-" + t.Name, Width: n, Mats: mats}
			for range mats {
				in.Count = append(in.Count, tokens)
			}
			byGroup[inputGroup(t.Name)] = in
			c.Inputs = append(c.Inputs, in)
			scales[in.Name] = channelScales(n*mats, seed, in.Name)
		}
		d := scales[in.Name]
		mo := &imatrix.Moments{Name: t.Name, Input: in.Name, Width: n, Mats: mats}
		for i := range n * mats {
			sq := tokens * d[i] * d[i]
			mo.Sum = append(mo.Sum, 0)
			mo.Sq = append(mo.Sq, sq)
			mo.Abs = append(mo.Abs, tokens*d[i]*math.Sqrt(2/math.Pi))
		}
		mo.Count = append(mo.Count, in.Count...)
		c.Tensors[t.Name] = mo
	}
	if len(c.Inputs) == 0 {
		return fmt.Errorf("testmodels: %s has no target tensor", model)
	}
	h, err := c.Header()
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	w, err := gguf.Create(path, h, gguf.CreateOptions{})
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	err = c.WriteMoments(w)
	for _, in := range c.Inputs {
		if err != nil {
			break
		}
		in.Gram = syntheticGram(in.Width, in.Mats, tokens, scales[in.Name])
		err = in.WriteGram(w)
		in.Gram = nil
	}
	if err != nil {
		w.Abort()
		return fmt.Errorf("testmodels: %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	return nil
}

// inputGroup names the activation a target reads: its block and, for the
// weights that share one, the group.
func inputGroup(name string) string {
	block, role, _ := strings.Cut(name, ".attn_")
	if role != "" {
		if strings.HasPrefix(role, "q.") || strings.HasPrefix(role, "k.") || strings.HasPrefix(role, "v.") {
			return block + ".attn_in"
		}
		return name
	}
	block, role, _ = strings.Cut(name, ".ffn_")
	for _, p := range []string{"gate", "up"} {
		if rest, ok := strings.CutPrefix(role, p); ok {
			return block + ".ffn_in" + rest // ".weight", "_exps.weight", ...
		}
	}
	return name
}

// channelScales draws n log-normal channel scales for input name.
func channelScales(n int, seed uint64, name string) []float64 {
	var h uint64 = 14695981039346656037
	for _, b := range []byte(name) {
		h = (h ^ uint64(b)) * 1099511628211
	}
	rng := rand.New(rand.NewPCG(seed, h))
	d := make([]float64, n)
	for i := range d {
		d[i] = math.Exp(0.5 * rng.NormFloat64())
	}
	return d
}

// syntheticGram returns mats packed lower triangles of tokens * D K D
// (K_ij = 0.6^|i-j|), D the matrix's slice of scales.
func syntheticGram(n, mats int, tokens float64, scales []float64) []float64 {
	const rho = 0.6
	pow := make([]float64, n)
	pow[0] = 1
	for i := 1; i < n; i++ {
		pow[i] = pow[i-1] * rho
	}
	g := make([]float64, 0, imatrix.PackedLen(n)*mats)
	for m := range mats {
		d := scales[m*n : (m+1)*n]
		for i := range n {
			for j := 0; j <= i; j++ {
				g = append(g, tokens*d[i]*d[j]*pow[i-j])
			}
		}
	}
	return g
}
